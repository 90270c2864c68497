"""The built-in `synthetic` dataset: seeded MovieLens-like explicit ratings from a low-rank model with biases."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrec.shared.config import SyntheticConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import ConfigError
from fedrec.shared.sets import merge_sorted_unique, sorted_unique

RATING_MIN, RATING_MAX = 1.0, 5.0
MEAN_RATING = 3.55
MIN_RATINGS_PER_USER = 5


def _long_tail(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Zipf-like sampling weights in a random order: a few very popular ids, a long tail of rare ones."""
    weights = 1.0 / np.arange(10, n + 10, dtype=np.float64) ** exponent
    return rng.permutation(weights / weights.sum())


def _sample_pairs(rng: np.random.Generator, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) pairs: users by activity, items by popularity, oversampled then de-duplicated."""
    n_users, n_items, target = config.n_users, config.n_items, config.n_ratings
    user_weights = _long_tail(rng, n_users, 1.0)
    item_weights = _long_tail(rng, n_items, 1.1)
    # Every user gets a few ratings first, as in MovieLens where each user rated at least 20 movies.
    floor = min(MIN_RATINGS_PER_USER, n_items, target // n_users)
    users = np.repeat(np.arange(n_users), floor)
    items = rng.choice(n_items, size=users.size, p=item_weights)
    keys = sorted_unique(users * n_items + items)
    while keys.size < target:
        batch = 2 * (target - keys.size) + 1000
        more = rng.choice(n_users, size=batch, p=user_weights) * n_items + rng.choice(n_items, size=batch, p=item_weights)
        keys = merge_sorted_unique(keys, more)
    if keys.size > target:
        # Draws as rng.choice(keys, target, replace=False) does; keys are sorted, so a mask keeps them in order.
        kept = np.zeros(keys.size, dtype=bool)
        kept[rng.choice(keys.size, size=target, replace=False)] = True
        keys = keys[kept]
    return keys // n_items, keys % n_items


@dataclass(frozen=True)
class TrueTaste:
    """The generator's ground truth: expected rating = mean + user_bias + item_bias + p . q (before noise)."""

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    p: np.ndarray
    q: np.ndarray

    def expected_ratings(self) -> np.ndarray:
        """Every user's expected rating of every item (n_users x n_items)."""
        return self.mean + self.user_bias[:, None] + self.item_bias[None, :] + self.p @ self.q.T


def _signal(users: np.ndarray, items: np.ndarray, user_bias: np.ndarray, item_bias: np.ndarray,
            p: np.ndarray, q: np.ndarray, block: int = 65_536) -> np.ndarray:
    """mean + b_u + b_i + p_u . q_i per rating, a block at a time (all at once needs two ratings x rank arrays)."""
    out = np.empty(users.size, dtype=np.float64)
    for start in range(0, users.size, block):
        u, i = users[start : start + block], items[start : start + block]
        dots = np.einsum("nk,nk->n", np.take(p, u, axis=0), np.take(q, i, axis=0))
        out[start : start + block] = MEAN_RATING + np.take(user_bias, u) + np.take(item_bias, i) + dots
    return out


def generate(config: SyntheticConfig) -> Ratings:
    """Ratings r = round(mean + b_u + b_i + p_u.q_i + noise), clipped to 1..5, with timestamps."""
    return generate_with_truth(config)[0]


def generate_with_truth(config: SyntheticConfig) -> tuple[Ratings, TrueTaste]:
    """The ratings of `generate` and the true taste they were drawn from (for simulations with ground truth)."""
    if config.n_ratings > config.n_users * config.n_items // 2:
        raise ConfigError(
            f"synthetic.n_ratings = {config.n_ratings} is more than half of n_users * n_items "
            f"= {config.n_users * config.n_items}: the matrix would not be sparse like real rating data"
        )
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5E7]))
    users, items = _sample_pairs(rng, config)
    user_bias = rng.normal(0.0, 0.35, config.n_users)
    item_bias = rng.normal(0.0, 0.45, config.n_items)
    taste_scale = np.sqrt(0.6 / config.rank)  # the taste term has variance about 0.6, like fitted MovieLens models
    p = rng.normal(0.0, np.sqrt(taste_scale), (config.n_users, config.rank))
    q = rng.normal(0.0, np.sqrt(taste_scale), (config.n_items, config.rank))
    signal = _signal(users, items, user_bias, item_bias, p, q)
    values = np.clip(np.rint(signal + rng.normal(0.0, config.noise, users.size)), RATING_MIN, RATING_MAX)
    timestamps = 880_000_000 + rng.integers(0, 3 * 365 * 86_400, users.size)
    ratings = Ratings(
        users=users.astype(np.int64),
        items=items.astype(np.int64),
        values=values,
        timestamps=timestamps.astype(np.int64),
        user_ids=np.arange(1, config.n_users + 1).astype(str),
        item_ids=np.arange(1, config.n_items + 1).astype(str),
        rating_min=RATING_MIN,
        rating_max=RATING_MAX,
    )
    return ratings, TrueTaste(MEAN_RATING, user_bias, item_bias, p, q)
