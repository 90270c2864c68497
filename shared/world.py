"""The closed loop's world: users with ground-truth taste, a click model with position bias and no-response
chance, validation of responses, and the ground-truth metrics of recommendation lists. No Flower here."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrec.shared.config import FedrecConfig, LoopConfig
from fedrec.shared.data.positives import positives
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import DataError

POPULAR_FRACTION = 0.1
"""`popular_share` counts recommendations of the 10% of items with the most starting interactions."""


@dataclass(frozen=True)
class World:
    """The truth every policy faces: click chances, the starting interactions and who is popular."""

    attraction: np.ndarray
    """Probability that user u clicks item i once examined (n_users x n_items)."""
    start: Ratings
    """The starting interactions (positives, value 1), the same for every policy."""
    popular: np.ndarray
    """Boolean mask of the most popular items at the start (POPULAR_FRACTION of the catalogue)."""
    examination: np.ndarray
    """Probability that a user who looks at the list examines rank j (top_n values, decreasing)."""
    no_response: float

    @property
    def n_users(self) -> int:
        return int(self.attraction.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.attraction.shape[1])


def attraction_from_affinity(affinity: np.ndarray, loop: LoopConfig) -> np.ndarray:
    """Click chance of an examined item: a logistic function of the standardised true affinity."""
    z = (affinity - affinity.mean()) / max(float(affinity.std()), 1e-12)
    return 1.0 / (1.0 + np.exp(-(loop.click_sharpness * z + loop.click_offset)))


def build_world(config: FedrecConfig, affinity: np.ndarray, ratings: Ratings) -> World:
    """A world from a true affinity matrix and the dataset whose positives are the starting interactions."""
    loop = config.loop
    start = positives(ratings, loop.start_threshold)
    if len(start) == 0:
        raise DataError(f"--start-threshold {loop.start_threshold}: the {loop.world} world has no rating that high, "
                        "so no starting interactions")
    counts = np.bincount(start.items, minlength=start.n_items)
    n_popular = max(1, int(round(POPULAR_FRACTION * start.n_items)))
    popular = np.zeros(start.n_items, dtype=bool)
    popular[np.argsort(-counts, kind="stable")[:n_popular]] = True
    examination = 1.0 / (1.0 + np.arange(loop.top_n)) ** loop.position_bias
    return World(attraction_from_affinity(affinity, loop), start, popular, examination, loop.no_response)


def synthetic_world(config: FedrecConfig) -> World:
    """The synthetic generator's true taste (expected ratings) as the truth, its ratings as the start."""
    from fedrec.shared.data.synthetic import generate_with_truth

    ratings, truth = generate_with_truth(config.synthetic)
    return build_world(config, truth.expected_ratings(), ratings)


def fitted_world(config: FedrecConfig) -> World:
    """A MovieLens dataset with the truth an explicit MF fitted to all of it predicts (unclipped ratings)."""
    from fedrec.shared.data.load import load_dataset
    from fedrec.shared.train import fit

    data_config = config.data.model_copy(update={"dataset": config.loop.world, "train": None, "test": None})
    ratings = load_dataset(config.model_copy(update={"data": data_config}))
    model = fit(ratings, config.model, config.train)
    user, item = model.user, model.item
    affinity = item.mu + user.bu[:, None] + item.bi[None, :] + user.p.astype(np.float64) @ item.q.T
    return build_world(config, affinity, ratings)


def make_world(config: FedrecConfig) -> World:
    return synthetic_world(config) if config.loop.world == "synthetic" else fitted_world(config)


def click_chances(world: World, lists: np.ndarray) -> np.ndarray:
    """Probability of a click on each slot (users x N) for a user who looks at the list."""
    return world.examination[None, : lists.shape[1]] * np.take_along_axis(world.attraction, lists, 1)


def respond(world: World, lists: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Clicks (users x N booleans): a user looks with probability 1 - no_response, then clicks each slot
    independently with its chance. Same generator state, same draws: policies face common random numbers."""
    looks = rng.random(lists.shape[0]) >= world.no_response
    return (rng.random(lists.shape) < click_chances(world, lists)) & looks[:, None]


def validate_responses(users: np.ndarray, items: np.ndarray, seen: np.ndarray) -> None:
    """Refuse a batch of new interactions that is not one new positive per (known user, known item) pair."""
    n_users, n_items = seen.shape
    if users.shape != items.shape or users.ndim != 1:
        raise DataError("responses: users and items must be two arrays of the same length")
    if not (np.issubdtype(users.dtype, np.integer) and np.issubdtype(items.dtype, np.integer)):
        raise DataError("responses: user and item indices must be integers")
    if users.size and (users.min() < 0 or users.max() >= n_users or items.min() < 0 or items.max() >= n_items):
        raise DataError("responses: a user or item index is outside the world")
    keys = users * n_items + items
    if np.unique(keys).size != keys.size:
        raise DataError("responses: the same (user, item) pair twice in one step")
    if seen[users, items].any():
        raise DataError("responses: a click on an item the user already interacted with (it was never shown)")


def ideal_lists(world: World, seen: np.ndarray, n: int) -> np.ndarray:
    """The oracle's lists: each user's n unseen items with the highest click chance, best first."""
    scores = np.where(seen, -np.inf, world.attraction)
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)


def step_metrics(world: World, lists: np.ndarray, clicks: np.ndarray, seen: np.ndarray) -> dict[str, float]:
    """CTR, regret (expected clicks per user the oracle would have got in this state, minus the list's),
    NDCG@N against the true click chances, catalogue coverage and the share of slots on popular items."""
    ideal = ideal_lists(world, seen, lists.shape[1])
    look = 1.0 - world.no_response
    expected = look * click_chances(world, lists).sum(1)
    best = look * click_chances(world, ideal).sum(1)
    discounts = 1.0 / np.log2(np.arange(2, lists.shape[1] + 2))
    dcg = (np.take_along_axis(world.attraction, lists, 1) * discounts).sum(1)
    idcg = (np.take_along_axis(world.attraction, ideal, 1) * discounts).sum(1)
    return {
        "ctr": float(clicks.mean()),
        "regret": float(np.mean(best - expected)),
        "ndcg": float(np.mean(dcg / idcg)),
        "coverage": float(np.unique(lists).size / world.n_items),
        "popular_share": float(world.popular[lists].mean()),
    }
