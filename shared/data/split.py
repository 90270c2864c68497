"""Seeded train/test splits: global random holdout, per-user holdout (fraction or leave-k-out), temporal."""

from __future__ import annotations

import numpy as np

from fedrec.shared.config import DataConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import DataError


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5B1]))


def random_split(ratings: Ratings, test_fraction: float, seed: int) -> np.ndarray:
    """A boolean test mask holding out a random `test_fraction` of all ratings."""
    n_test = int(round(test_fraction * len(ratings)))
    test = np.zeros(len(ratings), dtype=bool)
    test[_rng(seed).permutation(len(ratings))[:n_test]] = True
    return test


def per_user_split(ratings: Ratings, test_fraction: float, leave_k: int | None, seed: int) -> np.ndarray:
    """Hold out a fraction (or exactly k) of each user's ratings at random; every user keeps one in training."""
    counts = ratings.user_counts()
    draw = _rng(seed).random(len(ratings))
    order = np.lexsort((draw, ratings.users))
    first_of_user = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(ratings), dtype=np.int64)
    rank[order] = np.arange(len(ratings)) - first_of_user[ratings.users[order]]
    wanted = np.full(ratings.n_users, leave_k) if leave_k is not None else np.rint(test_fraction * counts)
    held_out = np.minimum(wanted, np.maximum(counts - 1, 0))
    return rank < held_out[ratings.users]


def temporal_split(ratings: Ratings, test_fraction: float) -> np.ndarray:
    """Hold out the latest `test_fraction` of ratings by timestamp (ties broken by file order)."""
    if ratings.timestamps is None:
        raise DataError("the temporal split needs timestamps, and these ratings have none (only 3 columns)")
    n_test = int(round(test_fraction * len(ratings)))
    order = np.argsort(ratings.timestamps, kind="stable")
    test = np.zeros(len(ratings), dtype=bool)
    test[order[len(ratings) - n_test :]] = True
    return test


def split(ratings: Ratings, config: DataConfig) -> tuple[Ratings, Ratings]:
    """Train and test sets as configured, in the same id spaces."""
    if config.split == "random":
        test = random_split(ratings, config.test_fraction, config.seed)
    elif config.split == "per-user":
        test = per_user_split(ratings, config.test_fraction, config.leave_k, config.seed)
    else:
        test = temporal_split(ratings, config.test_fraction)
    return ratings.subset(~test), ratings.subset(test)
