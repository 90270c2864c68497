"""The server's checkpoint: item side, optimizer state, round and history in one atomically written file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.errors import FedrecError

CHECKPOINT_FILE = "server-state.npz"


@dataclass
class Saved:
    round: int
    q: np.ndarray
    bi: np.ndarray
    mu: float
    known: np.ndarray
    optimizer: dict[str, np.ndarray]
    history: list[dict]


class Checkpoint:
    """Saved after every round, so that `fedrec server --resume` continues from the last completed one."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / CHECKPOINT_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, saved: Saved) -> None:
        atomic.write_npz(self.path, round=saved.round, q=saved.q, bi=saved.bi, mu=saved.mu, known=saved.known,
                         history=np.array(json.dumps(saved.history, default=float)),
                         **{f"opt.{key}": value for key, value in saved.optimizer.items()})

    def load(self) -> Saved:
        try:
            with np.load(self.path) as data:
                return Saved(
                    round=int(data["round"]), q=data["q"], bi=data["bi"], mu=float(data["mu"]), known=data["known"],
                    optimizer={key[4:]: data[key] for key in data.files if key.startswith("opt.")},
                    history=json.loads(str(data["history"])),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise FedrecError(f"cannot resume: {self.path} is unreadable ({exc})") from None
