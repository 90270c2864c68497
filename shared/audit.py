"""Attacks a curious server can mount on what it holds, each scored against a guess from public item popularity.

What the server holds, in fedrec's item-gradient layout (a vector of n_items*k factor entries, then n_items
bias entries): individual replies in plain mode; per-round decoded sums and the participant list of each
round in secure-sum modes; the item side it sent each round; the public configuration; and public item
popularity. Every attack returns per-client item scores (higher = "rated"); `score_attack` turns them into
AUC and precision@|rated| against the truth, next to the same figures for the popularity ranking. A
rational attacker breaks ties with the prior, so ties are broken by popularity: an attack that learns
nothing scores at most the popularity baseline. Pure numpy, no Flower.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def item_rows(vectors: np.ndarray, n_items: int, factors: int) -> np.ndarray:
    """(..., n_items, factors + 1): each item's gradient row [q_i part, b_i part] from flat vectors."""
    vectors = np.asarray(vectors, dtype=np.float64)
    lead = vectors.shape[:-1]
    if vectors.shape[-1] != n_items * (factors + 1):
        raise ValueError(f"vector length {vectors.shape[-1]} is not n_items*(factors+1) = {n_items * (factors + 1)}")
    q = vectors[..., : n_items * factors].reshape(*lead, n_items, factors)
    return np.concatenate([q, vectors[..., n_items * factors :, None]], axis=-1)


def row_strength(vectors: np.ndarray, n_items: int, factors: int) -> np.ndarray:
    """L2 norm of each item's row: zero exactly where a plain reply did not touch the item."""
    return np.linalg.norm(item_rows(vectors, n_items, factors), axis=-1)


# ---------------------------------------------------------------- scoring


def _auc(order_key: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Row-wise AUC of a strict ranking key (higher = more likely positive); NaN for rows without both classes."""
    ranks = rankdata(order_key, axis=-1)
    n_pos = positive.sum(axis=-1)
    n_neg = positive.shape[-1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * positive).sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _precision_at_rated(order_key: np.ndarray, positive: np.ndarray) -> np.ndarray:
    n_pos = positive.sum(axis=-1)
    ranks = rankdata(-order_key, axis=-1, method="ordinal")  # 1 = top
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks <= n_pos[:, None]) & positive).sum(axis=-1) / n_pos


def score_attack(scores: np.ndarray, rated: np.ndarray, popularity: np.ndarray) -> dict[str, float]:
    """Mean over clients of AUC and precision@|rated| for the attack (ties by popularity) and for popularity alone.

    scores, rated: clients x items; rows of `scores` that are all NaN (no evidence for that client) are skipped.
    """
    scores = np.asarray(scores, dtype=np.float64)
    rated = np.asarray(rated, dtype=bool)
    covered = ~np.all(np.isnan(scores), axis=1) & rated.any(axis=1) & ~rated.all(axis=1)
    scores, rated = np.nan_to_num(scores[covered], nan=-np.inf), rated[covered]
    prior = rankdata(popularity, method="ordinal") / (len(popularity) + 1)  # in (0, 1), strictly ordered
    attack_key = rankdata(scores, axis=1, method="dense") + prior[None, :]  # score first, popularity breaks ties
    prior_key = np.broadcast_to(prior, scores.shape)
    result = {
        "clients": int(covered.sum()),
        "auc": float(np.mean(_auc(attack_key, rated))) if covered.any() else float("nan"),
        "precision": float(np.mean(_precision_at_rated(attack_key, rated))) if covered.any() else float("nan"),
        "popularity_auc": float(np.mean(_auc(prior_key, rated))) if covered.any() else float("nan"),
        "popularity_precision": float(np.mean(_precision_at_rated(prior_key, rated))) if covered.any() else float("nan"),
    }
    result["advantage_auc"] = result["auc"] - result["popularity_auc"]
    return result


# ---------------------------------------------------------------- attacks on individual plain replies


def rated_items_from_replies(replies: np.ndarray, n_items: int, factors: int) -> np.ndarray:
    """Rated-item inference from individual replies (clients x dim): the non-zero rows are the rated items."""
    return row_strength(replies, n_items, factors)


def recover_ratings(replies: tuple[np.ndarray, np.ndarray], items_sent: tuple[tuple[np.ndarray, np.ndarray], ...],
                    mu: float, reg: float, bias_reg: float, levels: np.ndarray) -> np.ndarray:
    """FedMF-style rating recovery (Chai et al. 2020) from two consecutive replies of one client; NaN off its support.

    Each reply row of a rated item i is [reg q_i - e_i p, bias_reg b_i - e_i] at the item side (q, b_i) the
    server sent, so the error e_i is read off the bias part and the user vector p is the least-squares
    direction of the factor parts; then r_i - b_u = e_i + mu + b_i + p.q_i. Only the user bias b_u stays
    unknown, a shift shared by all of a round's items: the two rounds' shifts differ by the mean gap, and the
    shift is fixed by snapping every recovered value onto the public rating levels (smallest |b_u| on ties).
    """
    levels = np.asarray(levels, dtype=np.float64)
    partial, supports = [], []
    for reply, (q, bi) in zip(replies, items_sent):
        n_items, k = q.shape
        rows = item_rows(reply, n_items, k)
        support = np.linalg.norm(rows, axis=1) > 0
        e = bias_reg * bi[support] - rows[support, k]
        v = reg * q[support] - rows[support, :k]  # = e_i p
        p = (e @ v) / max(float(e @ e), 1e-300)
        partial.append(e + mu + bi[support] + q[support] @ p)
        supports.append(support)
    if not np.array_equal(*supports):
        raise ValueError("the two replies touch different items; they are not consecutive replies of one client")
    gap = float(np.mean(partial[0] - partial[1]))  # b_u(t+1) - b_u(t)
    values = np.concatenate([partial[0], partial[1] + gap])
    shifts = np.arange(-4.0, 4.0, 1e-3)
    shifted = values[None, :] + shifts[:, None]
    misfit = np.min(np.abs(shifted[..., None] - levels), axis=-1) ** 2
    best = shifts[np.argmin(misfit.sum(axis=1) + 1e-6 * shifts**2)]
    estimate = np.full(supports[0].shape, np.nan)
    estimate[supports[0]] = partial[0] + best
    return estimate


# ---------------------------------------------------------------- attacks on sums


def differencing(sums: np.ndarray, participation: np.ndarray) -> np.ndarray:
    """Estimate a client's vector as the difference of two sums whose participant sets differ by that client alone.

    participation: rounds x clients bool, rows in the order the sums were released. When the two sums are
    consecutive rounds a, a+1 and round a-1 had the same participants as round a, the difference is corrected
    for the model's drift as a server would: the common clients' sum is assumed to move from round a to a+1 as
    it did from a-1 to a (scaled by their share of round a). Returns clients x dim estimates (averaged over the
    corrected pairs where a client has any, else over all its pairs), NaN rows for clients that never differ
    alone.
    """
    b = np.asarray(participation, dtype=np.float64)
    sums = np.asarray(sums, dtype=np.float64)
    distance = b @ (1 - b).T + (1 - b) @ b.T
    first, second = np.nonzero(np.triu(distance == 1))
    delta = b[first] - b[second]  # +1 / -1 at the differing client
    client = np.argmax(np.abs(delta), axis=1)
    sign = delta[np.arange(len(client)), client]
    difference = sums[first] - sums[second]
    steady = (second == first + 1) & (first >= 1)
    steady[steady] &= (b[first[steady] - 1] == b[first[steady]]).all(axis=1)
    a = first[steady]
    common = (b[a] * b[a + 1]).sum(axis=1) / b[a].sum(axis=1)
    difference[steady] += (sums[a] - sums[a - 1]) * common[:, None]
    # A client with drift-corrected pairs is estimated from those alone (the others carry the drift).
    keep = steady | ~np.isin(client, client[steady])
    client, sign, difference = client[keep], sign[keep], difference[keep]
    estimates = np.zeros((b.shape[1], sums.shape[1]))
    np.add.at(estimates, client, sign[:, None] * difference)
    counts = np.bincount(client, minlength=b.shape[1]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return estimates / counts[:, None]


def least_squares(sums: np.ndarray, participation: np.ndarray) -> np.ndarray:
    """Per-client vectors X with participation @ X ~= sums (minimum-norm least squares): exact for constant vectors."""
    return np.linalg.lstsq(np.asarray(participation, dtype=np.float64), np.asarray(sums, dtype=np.float64), rcond=None)[0]


def support_intersection(sums: np.ndarray, participation: np.ndarray, n_items: int, factors: int) -> np.ndarray:
    """Non-zero supports: how much more often an item's row is non-zero in rounds with the client than without it.

    A client's rated items are non-zero in every round it joins (the intersection of those supports); items
    others touch appear as often without it. Scores are that frequency gap (clients x items).
    """
    touched = (row_strength(sums, n_items, factors) != 0).astype(np.float64)  # rounds x items
    b = np.asarray(participation, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        present = (b.T @ touched) / b.sum(axis=0)[:, None]
        absent = ((1 - b).T @ touched) / (1 - b).sum(axis=0)[:, None]
    return present - np.nan_to_num(absent, nan=0.0)


# ---------------------------------------------------------------- summaries for a report


def score_ratings(estimates: np.ndarray, truth: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """RMSE and exact-hit rate of recovered ratings against the truth, next to a public baseline guess (same shapes).

    Entries where the truth is NaN (not rated) are ignored; NaN estimates (no evidence) fall back to the baseline.
    """
    rated = ~np.isnan(truth)
    guess = np.where(np.isnan(estimates), baseline, estimates)[rated]
    truth, baseline = truth[rated], np.broadcast_to(baseline, rated.shape)[rated]
    return {
        "ratings": int(rated.sum()),
        "rmse": float(np.sqrt(np.mean((guess - truth) ** 2))),
        "exact": float(np.mean(np.rint(guess) == truth)),
        "baseline_rmse": float(np.sqrt(np.mean((baseline - truth) ** 2))),
        "baseline_exact": float(np.mean(np.rint(baseline) == truth)),
    }


def audit_sums(sums: np.ndarray, participation: np.ndarray, n_items: int, factors: int, rated: np.ndarray,
               popularity: np.ndarray) -> dict[str, dict[str, float]]:
    """Every sum-based attack, scored: differencing, least squares, support intersection."""
    return {
        "differencing": score_attack(row_strength(differencing(sums, participation), n_items, factors), rated, popularity),
        "least_squares": score_attack(row_strength(least_squares(sums, participation), n_items, factors), rated, popularity),
        "support_intersection": score_attack(support_intersection(sums, participation, n_items, factors), rated, popularity),
    }
