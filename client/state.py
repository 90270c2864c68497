"""What a client keeps: its users' parameters between rounds (node state and state folder), and the model it serves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context

from fedrec.shared import atomic, mf
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.recommend import ItemModel
from fedrec.shared.serving import save_snapshot

STATE_KEY = "fedrec.user-state"
STATE_FILE = "user-state.npz"


def load_user_state(context: Context, state_dir: Path | None) -> dict[str, np.ndarray] | None:
    """The saved user side and optimizer state; the folder wins, so a restarted client keeps its factors."""
    if state_dir is not None and (state_dir / STATE_FILE).exists():
        with np.load(state_dir / STATE_FILE) as saved:
            return {key: saved[key] for key in saved.files}
    if STATE_KEY in context.state.array_records:
        return {key: array.numpy() for key, array in context.state.array_records[STATE_KEY].items()}
    return None


def save_user_state(context: Context, state_dir: Path | None, state: dict[str, np.ndarray]) -> None:
    context.state.array_records[STATE_KEY] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()})
    if state_dir is not None:
        atomic.write_npz(state_dir / STATE_FILE, mode=0o600, **state)


def save_served_model(state_dir: Path | None, item: mf.ItemSide, known: np.ndarray, catalogue, train: Ratings,
                      config: FedrecConfig) -> None:
    """Keep the item side just received (the final model after the last round) for `fedrec serve`."""
    if state_dir is None:
        return
    model = ItemModel(item.q, item.bi, item.mu, np.asarray(catalogue, dtype=str), known, config.model.reg,
                      config.model.bias_reg, train.rating_min, train.rating_max)
    save_snapshot(state_dir, model, train)
