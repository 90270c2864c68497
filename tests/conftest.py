"""Shared fixtures: the MovieLens folder (skipped when absent) and small rating tables built in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedrec.shared.data.ratings import Ratings

MOVIELENS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"


@pytest.fixture
def movielens_dir() -> Path:
    """The shared, pre-verified MovieLens folder; tests that need it skip when it is not there."""
    if not MOVIELENS_DIR.is_dir():
        pytest.skip(f"MovieLens files not found at {MOVIELENS_DIR} (put ml-100k / ml-latest-small there)")
    return MOVIELENS_DIR


def make_ratings(
    users: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    timestamps: np.ndarray | None = None,
    n_users: int | None = None,
    n_items: int | None = None,
    rating_min: float = 1.0,
    rating_max: float = 5.0,
) -> Ratings:
    """A Ratings table over ids 0..n-1 (string ids are the indices themselves)."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n_users = int(users.max()) + 1 if n_users is None else n_users
    n_items = int(items.max()) + 1 if n_items is None else n_items
    return Ratings(
        users=users,
        items=items,
        values=np.asarray(values, dtype=np.float64),
        timestamps=None if timestamps is None else np.asarray(timestamps, dtype=np.int64),
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        rating_min=rating_min,
        rating_max=rating_max,
    )


@pytest.fixture
def dense_random_ratings() -> Ratings:
    """60 users with 3..40 ratings each over 80 items, random values and distinct timestamps."""
    rng = np.random.default_rng(7)
    users, items = [], []
    for user in range(60):
        count = int(rng.integers(3, 41))
        users += [user] * count
        items += list(rng.choice(80, size=count, replace=False))
    n = len(users)
    return make_ratings(
        users, items, rng.integers(1, 6, n).astype(float), rng.permutation(n) + 1_000_000, n_users=60, n_items=80
    )
