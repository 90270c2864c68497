"""The server's checkpoint: item side, optimizer state, round and history in one atomically written file."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.errors import FedrecError
from fedrec.shared.federated import Stats

CHECKPOINT_FILE = "server-state.npz"
PREVIOUS_SUFFIX = ".prev"


@dataclass
class Saved:
    round: int
    q: np.ndarray
    bi: np.ndarray
    stats: Stats
    optimizer: dict[str, np.ndarray]
    history: list[dict]


class Checkpoint:
    """Saved after every round, so that `fedrec server --resume` continues from the last completed one.

    The checkpoint before it is kept as `server-state.npz.prev`: if the newest is ever found damaged, the
    previous good one is still there (never overwritten by a failed save)."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / CHECKPOINT_FILE
        self.previous = self.path.with_name(self.path.name + PREVIOUS_SUFFIX)

    def exists(self) -> bool:
        return self.path.exists() or self.previous.exists()

    def save(self, saved: Saved) -> None:
        if self.path.exists():
            os.replace(self.path, self.previous)
        # A crash between these two steps leaves only .prev, which load() then uses: the round being
        # saved had not been recorded, so it is simply trained again.
        s = saved.stats
        atomic.write_npz(self.path, round=saved.round, q=saved.q, bi=saved.bi, mu=s.mu, item_counts=s.item_counts,
                         test_n=s.test_n, ranked_users=s.ranked_users,
                         history=np.array(json.dumps(saved.history, default=float)),
                         **{f"opt.{key}": value for key, value in saved.optimizer.items()})

    def load(self) -> Saved:
        """The newest checkpoint, read completely (so damage is found now, not mid-run)."""
        path = self.path if self.path.exists() else self.previous
        try:
            return self._read(path)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            hint = ""
            if path == self.path and self.previous.exists():
                try:
                    before = self._read(self.previous).round
                    hint = (f"; the checkpoint before it ({self.previous.name}, round {before}) is intact: "
                            f"move it to {self.path.name} to resume from round {before}")
                except Exception:  # noqa: BLE001 - only deciding whether to offer the hint
                    pass
            raise FedrecError(f"cannot resume: the checkpoint {path} is damaged ({type(exc).__name__}: {exc}){hint}") from None

    @staticmethod
    def _read(path: Path) -> Saved:
        with np.load(path) as data:
            return Saved(
                round=int(data["round"]), q=data["q"], bi=data["bi"],
                stats=Stats(float(data["mu"]), data["item_counts"], float(data["test_n"]), float(data["ranked_users"])),
                optimizer={key[4:]: data[key] for key in data.files if key.startswith("opt.")},
                history=json.loads(str(data["history"])),
            )
