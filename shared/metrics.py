"""Accuracy and top-k ranking metrics, computed as sums so that federated clients can add them up."""

from __future__ import annotations

import numpy as np

from fedrec.shared import mf

RANKING_SUM_KEYS = ("ndcg", "precision", "recall", "map", "users")


def error_sums(predictions: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Sums behind RMSE and MAE: squared error, absolute error and count."""
    diff = np.asarray(predictions, np.float64) - np.asarray(actual, np.float64)
    return {"sse": float(diff @ diff), "sae": float(np.abs(diff).sum()), "n": float(diff.size)}


def ranking_sums(
    user: mf.UserSide,
    item: mf.ItemSide,
    train_users: np.ndarray,
    train_items: np.ndarray,
    test_users: np.ndarray,
    test_items: np.ndarray,
    test_values: np.ndarray,
    candidate_items: np.ndarray,
    k: int = 10,
    relevant_threshold: float = 4.0,
    chunk: int = 512,
) -> tuple[dict[str, float], np.ndarray]:
    """Sums of NDCG@k, precision@k, recall@k and average precision@k (MAP@k) over users with a relevant held-out item, and how often
    each item was recommended (for catalogue coverage).

    Candidates are `candidate_items` (a boolean mask: items the model knows) minus the items the user
    rated in training. Relevance is binary: a held-out rating >= `relevant_threshold`.
    """
    n_items = item.q.shape[0]
    relevant = test_values >= relevant_threshold
    rel_users, rel_items = test_users[relevant], test_items[relevant]
    users = np.unique(rel_users)
    sums = dict.fromkeys(RANKING_SUM_KEYS, 0.0)
    recommended = np.zeros(n_items, dtype=np.int64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for start in range(0, len(users), chunk):  # a loop over user blocks bounds memory, not a loop per rating
        block = users[start : start + chunk]
        row_of = np.full(user.p.shape[0], -1)
        row_of[block] = np.arange(len(block))
        scores = mf.score_all_items(user, item, block).astype(np.float64)
        scores[:, ~candidate_items] = -np.inf
        seen = row_of[train_users] >= 0
        scores[row_of[train_users[seen]], train_items[seen]] = -np.inf
        top = np.argpartition(-scores, min(k, n_items - 1), axis=1)[:, :k]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
        valid = np.isfinite(np.take_along_axis(scores, top, 1))
        truth = np.zeros((len(block), n_items), dtype=bool)
        mine = row_of[rel_users] >= 0
        truth[row_of[rel_users[mine]], rel_items[mine]] = True
        hits = np.take_along_axis(truth, top, 1) & valid
        n_relevant = truth.sum(1)
        ideal = np.cumsum(discounts)[np.minimum(n_relevant, k) - 1]
        # A catalogue smaller than k gives shorter lists: use as many discounts as there are ranks.
        sums["ndcg"] += float(((hits * discounts[: top.shape[1]]).sum(1) / ideal).sum())
        sums["precision"] += float((hits.sum(1) / k).sum())
        sums["recall"] += float((hits.sum(1) / n_relevant).sum())
        # AP@k: precision at each hit's rank, averaged over min(relevant, k) (the most hits a list can hold).
        precision_at = np.cumsum(hits, 1) / np.arange(1, top.shape[1] + 1)
        sums["map"] += float(((hits * precision_at).sum(1) / np.minimum(n_relevant, k)).sum())
        sums["users"] += len(block)
        recommended += np.bincount(top[valid], minlength=n_items)
    return sums, recommended


def finalize_ranking(ranking: dict[str, float], recommended: np.ndarray | None, k: int) -> dict[str, float]:
    """Precision, recall, NDCG and MAP at k and coverage (None without recommendation counts) from summed
    ranking sums (`map` only when the sums hold it)."""
    users = max(ranking["users"], 1.0)
    result = {
        f"precision@{k}": ranking["precision"] / users,
        f"recall@{k}": ranking["recall"] / users,
        f"ndcg@{k}": ranking["ndcg"] / users,
    }
    if "map" in ranking:
        result[f"map@{k}"] = ranking["map"] / users
    result["coverage"] = None if recommended is None else float((np.asarray(recommended) > 0).mean())
    result["n_ranked_users"] = int(ranking["users"])
    return result


def finalize(error: dict[str, float], ranking: dict[str, float], recommended: np.ndarray | None, k: int) -> dict[str, float]:
    """Turn (possibly aggregated) sums into RMSE, MAE, precision/recall/NDCG@k and coverage (None without
    recommendation counts)."""
    n, users = max(error["n"], 1.0), max(ranking["users"], 1.0)
    return {
        "rmse": float(np.sqrt(error["sse"] / n)),
        "mae": float(error["sae"] / n),
        f"precision@{k}": ranking["precision"] / users,
        f"recall@{k}": ranking["recall"] / users,
        f"ndcg@{k}": ranking["ndcg"] / users,
        "coverage": None if recommended is None else float((np.asarray(recommended) > 0).mean()),
        "n_test": int(error["n"]),
        "n_ranked_users": int(ranking["users"]),
    }


def headline(result: dict, k: int = 10) -> str:
    """The metrics a person reads first: RMSE and MAE (explicit) or the ranking metrics (implicit); '-'
    for a metric the run did not release (ranking sums under DP)."""
    def value(key: str) -> str:
        return f"{result[key]:.4f}" if result.get(key) is not None else "-"

    if "rmse" in result:
        return f"test RMSE {value('rmse')}  MAE {value('mae')}  NDCG@{k} {value(f'ndcg@{k}')}"
    return "  ".join(f"{name}@{k} {value(f'{key}@{k}')}" for name, key in
                     (("P", "precision"), ("R", "recall"), ("NDCG", "ndcg"), ("MAP", "map")))


def round_metric(entry: dict, k: int = 10) -> str:
    """One round's evaluated metric for progress lines: test RMSE (explicit) or NDCG@k (implicit)."""
    if "rmse" in entry:
        return f"test RMSE {entry['rmse']:.4f}"
    if f"ndcg@{k}" in entry:
        return f"NDCG@{k} {entry[f'ndcg@{k}']:.4f}"
    return "test RMSE    -  "
