"""The in-memory ratings table: integer-coded (user, item, rating[, timestamp]) arrays plus the original ids."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Ratings:
    """Ratings coded against fixed user and item id spaces, so splits and partitions stay aligned."""

    users: np.ndarray
    """int64 index into `user_ids`, one per rating."""
    items: np.ndarray
    """int64 index into `item_ids`, one per rating."""
    values: np.ndarray
    """float64 rating values."""
    timestamps: np.ndarray | None
    """int64 timestamps, or None when the source had none."""
    user_ids: np.ndarray
    """Original user ids (strings); position = user index."""
    item_ids: np.ndarray
    """Original item ids (strings); position = item index."""
    rating_min: float
    rating_max: float

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def subset(self, selector: np.ndarray) -> Ratings:
        """The ratings picked by a boolean mask or index array, in the same id spaces."""
        return replace(
            self,
            users=self.users[selector],
            items=self.items[selector],
            values=self.values[selector],
            timestamps=None if self.timestamps is None else self.timestamps[selector],
        )

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)


def encode(
    user_columns: list[np.ndarray],
    item_columns: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Code several tables' string ids into one shared id space; returns ids and per-table indices."""
    user_ids, user_codes = np.unique(np.concatenate(user_columns), return_inverse=True)
    item_ids, item_codes = np.unique(np.concatenate(item_columns), return_inverse=True)
    bounds = np.cumsum([0] + [len(column) for column in user_columns])
    users = [user_codes[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
    items = [item_codes[a:b].astype(np.int64) for a, b in zip(bounds[:-1], bounds[1:])]
    return user_ids.astype(str), item_ids.astype(str), users, items
