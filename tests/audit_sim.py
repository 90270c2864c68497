"""A small federated MF run in numpy for the audit tests: what a curious server holds, plain or with DP sums."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedrec.shared import mf
from fedrec.shared.dp.accounting import noise_for_epsilon
from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.dp.clipping import clip_and_sum
from fedrec.shared.dp.skellam import encode_noised, sensitivity
from fedrec.shared.secagg.fixedpoint import decode

REG, BIAS_REG, LEVELS = 0.05, 0.01, np.arange(1.0, 6.0)


@dataclass
class ServerView:
    """What the server holds after a run, and the truth the attacks are scored against."""

    n_items: int
    factors: int
    mu: float
    rated: np.ndarray  # clients x items (truth)
    ratings: np.ndarray  # clients x items, NaN where unrated (truth)
    popularity: np.ndarray  # public per-item rating counts
    participation: np.ndarray  # rounds x clients
    sums: np.ndarray  # rounds x dim, as decoded
    replies: np.ndarray  # rounds x clients x dim (plain mode only; zeros for absent clients)
    items_sent: list = field(default_factory=list)  # (q, bi) per round
    noise_multiplier: float = 0.0


def simulate(seed: int = 0, n_clients: int = 30, n_items: int = 60, factors: int = 3, per_user: int = 10,
             rounds: int = 60, rate: float = 0.3, dp_epsilon: float | None = None, clip: float = 1.0) -> ServerView:
    rng = np.random.default_rng(seed)
    weights = 1.0 / (np.arange(n_items) + 3.0)  # public popularity is skewed, as in MovieLens
    rated = np.zeros((n_clients, n_items), dtype=bool)
    for c in range(n_clients):
        rated[c, rng.choice(n_items, per_user, replace=False, p=weights / weights.sum())] = True
    taste = rng.normal(0, 1, (n_clients, 2)) @ rng.normal(0, 1, (2, n_items))
    ratings = np.where(rated, np.clip(np.rint(3.5 + taste + rng.normal(0, 0.5, taste.shape)), 1, 5), np.nan)
    mu = float(np.nanmean(ratings))
    data = [mf.RatingData(np.zeros(per_user, np.int64), np.flatnonzero(rated[c]), ratings[c, rated[c]], 1, n_items)
            for c in range(n_clients)]
    users = [mf.init_user_side(1, factors, 0.1, np.random.default_rng([seed, c])) for c in range(n_clients)]
    item = mf.init_item_side(n_items, factors, 0.1, mu, rng)
    dim = n_items * (factors + 1)
    z = 0.0
    if dp_epsilon is not None:
        z = noise_for_epsilon(dp_epsilon, 1e-3, rounds, None, sensitivity(clip, dim))
    participation = np.zeros((rounds, n_clients), dtype=bool)
    sums = np.zeros((rounds, dim))
    replies = np.zeros((rounds, n_clients, dim)) if dp_epsilon is None else np.zeros((0, n_clients, dim))
    sent = []
    for r in range(rounds):
        if r % 2 == 0:  # a sampled cohort
            cohort = np.flatnonzero(rng.random(n_clients) < rate)
            if len(cohort) < 3:
                cohort = rng.choice(n_clients, 3, replace=False)
        else:  # the same cohort again, one member dropped out
            cohort = np.delete(cohort, rng.integers(len(cohort)))
        participation[r, cohort] = True
        sent.append((item.q.copy(), item.bi.copy()))
        vectors = []
        for c in cohort:
            _, _, user_grads, item_grads = mf.loss_and_gradients(data[c], users[c], item, REG, BIAS_REG)
            users[c].p -= 0.1 * user_grads["p"]
            users[c].bu -= 0.1 * user_grads["bu"]
            vectors.append(np.concatenate([item_grads["q"].ravel(), item_grads["bi"]]).astype(np.float64))
        vectors = np.array(vectors)
        if dp_epsilon is None:
            replies[r, cohort] = vectors
            sums[r] = vectors.sum(axis=0)
        else:  # one user per client: clip its vector, add its Skellam share, sum in uint64, decode
            plan = NoisePlan(z, clip, dim, len(cohort), max_dropouts=0, max_colluders=0)
            encoded = [encode_noised(clip_and_sum(v[None, :], clip), plan.client_mu, np.random.default_rng([seed, r, c]))
                       for v, c in zip(vectors, cohort)]
            sums[r] = decode(np.sum(encoded, axis=0, dtype=np.uint64))
        total = sums[r]
        item.q -= (0.05 * total[: n_items * factors].reshape(n_items, factors)).astype(mf.FLOAT)
        item.bi -= (0.05 * total[n_items * factors :]).astype(mf.FLOAT)
    return ServerView(n_items, factors, mu, rated, ratings, rated.sum(axis=0).astype(float), participation, sums,
                      replies, sent, z)
