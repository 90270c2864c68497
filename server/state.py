"""The server's checkpoint: item side, optimizer state, round and history in one atomically written file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.errors import FedrecError
from fedrec.shared.federated import Stats

CHECKPOINT_FILE = "server-state.npz"


@dataclass
class Saved:
    round: int
    q: np.ndarray
    bi: np.ndarray
    stats: Stats
    optimizer: dict[str, np.ndarray]
    history: list[dict]


class Checkpoint:
    """Saved after every round, so that `fedrec server --resume` continues from the last completed one."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / CHECKPOINT_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def save(self, saved: Saved) -> None:
        s = saved.stats
        atomic.write_npz(self.path, round=saved.round, q=saved.q, bi=saved.bi, mu=s.mu, item_counts=s.item_counts,
                         test_n=s.test_n, ranked_users=s.ranked_users,
                         history=np.array(json.dumps(saved.history, default=float)),
                         **{f"opt.{key}": value for key, value in saved.optimizer.items()})

    def load(self) -> Saved:
        try:
            with np.load(self.path) as data:
                return Saved(
                    round=int(data["round"]), q=data["q"], bi=data["bi"],
                    stats=Stats(float(data["mu"]), data["item_counts"], float(data["test_n"]), float(data["ranked_users"])),
                    optimizer={key[4:]: data[key] for key in data.files if key.startswith("opt.")},
                    history=json.loads(str(data["history"])),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise FedrecError(f"cannot resume: {self.path} is unreadable ({exc})") from None
