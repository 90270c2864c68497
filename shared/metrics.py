"""Accuracy and top-k ranking metrics, computed as sums so that federated clients can add them up."""

from __future__ import annotations

import numpy as np

from fedrec.shared import mf
from fedrec.shared.sets import sorted_unique

RANKING_SUM_KEYS = ("ndcg", "precision", "recall", "map", "users")


def error_sums(predictions: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Sums behind RMSE and MAE: squared error, absolute error and count."""
    diff = np.asarray(predictions, np.float64) - np.asarray(actual, np.float64)
    return {"sse": float(diff @ diff), "sae": float(np.abs(diff).sum()), "n": float(diff.size)}


class _ItemsByUser:
    """Each user's items, grouped by user once, so that a block of users finds its own in time proportional to them."""

    def __init__(self, users: np.ndarray, items: np.ndarray, n_users: int):
        order = np.argsort(users, kind="stable")
        self.items = np.asarray(items)[order]
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))])

    def of(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in `block`, item) of every item of the block's users."""
        begin, lengths = self.starts[block], self.starts[block + 1] - self.starts[block]
        rows = np.repeat(np.arange(len(block)), lengths)
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return rows, self.items[np.repeat(begin, lengths) + offsets]


SAMPLE_COLUMNS = 1024


def lowest_k(cost: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k lowest costs, lowest first, ties to the lower column (min(k, columns) per row).

    Exact, and about five times faster than an argpartition of whole rows: the k-th lowest cost among the first
    SAMPLE_COLUMNS columns bounds each row's k-th lowest from above, and usually only a few dozen entries per
    row are at or under it; only those are sorted.
    """
    n_rows, n_columns = cost.shape
    k = min(k, n_columns)
    if k == 0 or n_rows == 0:
        return np.zeros((n_rows, k), dtype=np.int64)
    sample = cost[:, : max(SAMPLE_COLUMNS, k)]
    bound = np.partition(sample, k - 1, axis=1)[:, k - 1 : k]
    rows, columns = np.nonzero(cost <= bound)  # NaN-free costs: at least the sample's k lowest in every row
    order = np.lexsort((columns, cost[rows, columns], rows))
    rows, columns = rows[order], columns[order]
    row_start = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - row_start[rows]
    return columns[rank < k].reshape(n_rows, k).astype(np.int64)


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
    n_users, n_items = user.p.shape[0], item.q.shape[0]
    relevant = test_values >= relevant_threshold
    rel_users, rel_items = test_users[relevant], test_items[relevant]
    users = sorted_unique(rel_users)
    seen_of = _ItemsByUser(np.asarray(train_users), np.asarray(train_items), n_users)
    relevant_of = _ItemsByUser(rel_users, rel_items, n_users)
    sums = dict.fromkeys(RANKING_SUM_KEYS, 0.0)
    recommended = np.zeros(n_items, dtype=np.int64)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for start in range(0, len(users), chunk):  # a loop over user blocks bounds memory, not a loop per rating
        block = users[start : start + chunk]
        # Ranked by negated scores, so that excluded items (+inf) sort last; the negation and the model's own
        # precision are exact, so the lists are those a float64 copy of the scores would give.
        cost = mf.score_all_items(user, item, block)
        np.negative(cost, out=cost)
        cost[np.isnan(cost)] = np.inf  # a diverged model's NaN scores rank last and count as no recommendation
        cost[:, ~candidate_items] = np.inf
        cost[seen_of.of(block)] = np.inf
        top = lowest_k(cost, k)
        valid = np.isfinite(np.take_along_axis(cost, top, 1))
        truth = np.zeros((len(block), n_items), dtype=bool)
        truth[relevant_of.of(block)] = True
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
