"""Tests for the accuracy and ranking metrics on tiny examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedrec.shared import metrics, mf

K = 2
D2 = 1 / math.log2(3)  # discount of rank 2


@pytest.fixture
def example():
    """4 users x 5 items, one factor; item scores are q = 5,4,3,2,1 (user 1 sees them reversed)."""
    user = mf.UserSide(np.array([[1.0], [-1.0], [1.0], [1.0]], np.float32), np.zeros(4, np.float32))
    item = mf.ItemSide(np.array([[5.0], [4.0], [3.0], [2.0], [1.0]], np.float32), np.zeros(5, np.float32), mu=3.0)
    train_users, train_items = np.array([0, 1, 2, 2]), np.array([0, 4, 0, 1])
    test = np.array([
        # user, item, rating
        [0, 2, 5.0], [0, 4, 4.0], [0, 3, 2.0],  # user 0: two relevant (2 and 4)
        [1, 1, 4.5], [1, 0, 3.0],               # user 1: item 1 relevant
        [2, 3, 5.0], [2, 4, 1.0],               # user 2: item 3 relevant, but item 3 is no candidate
        [3, 0, 2.0],                            # user 3: nothing relevant -> not ranked
    ])
    candidates = np.array([True, True, True, False, True])
    return user, item, train_users, train_items, test[:, 0].astype(int), test[:, 1].astype(int), test[:, 2], candidates


def test_ranking_sums_by_hand(example) -> None:
    sums, recommended = metrics.ranking_sums(*example, k=K, relevant_threshold=4.0)
    # Top-2 lists (training items and non-candidates excluded):
    #   user 0: [1, 2] -> hit at rank 2 of 2 relevant; user 1: [2, 1] -> hit at rank 2 of 1 relevant;
    #   user 2: [2, 4] -> no hit (its relevant item 3 is not a candidate).
    assert sums["users"] == 3
    assert sums["ndcg"] == pytest.approx(D2 / (1 + D2) + D2 / 1 + 0.0)
    assert sums["precision"] == pytest.approx(0.5 + 0.5 + 0.0)
    assert sums["recall"] == pytest.approx(0.5 + 1.0 + 0.0)
    np.testing.assert_array_equal(recommended, [0, 2, 3, 0, 1])


def test_training_items_and_non_candidates_are_never_recommended(example) -> None:
    user, item, train_users, train_items, tu, ti, tv, candidates = example
    # With k = 3 user 2 has only two candidates left (2 and 4): its list is not padded with excluded items.
    _, recommended = metrics.ranking_sums(user, item, train_users, train_items, tu, ti, tv, candidates, k=3)
    np.testing.assert_array_equal(recommended, [1, 2, 3, 0, 2])
    assert recommended[3] == 0  # not a candidate
    # Without the exclusions the best-scored items would be recommended to everyone.
    _, unfiltered = metrics.ranking_sums(
        user, item, np.array([], int), np.array([], int), tu, ti, tv, np.ones(5, bool), k=3
    )
    assert unfiltered[0] == 2 and unfiltered[3] == 1


def test_finalize_by_hand(example) -> None:
    sums, recommended = metrics.ranking_sums(*example, k=K)
    errors = metrics.error_sums(np.array([3.0, 4.0, 5.0]), np.array([4.0, 4.0, 3.0]))
    result = metrics.finalize(errors, sums, recommended, K)
    assert result["ndcg@2"] == pytest.approx((D2 / (1 + D2) + D2) / 3)
    assert result["precision@2"] == pytest.approx(1 / 3)
    assert result["recall@2"] == pytest.approx(0.5)
    assert result["coverage"] == pytest.approx(3 / 5)
    assert result["rmse"] == pytest.approx(math.sqrt(5 / 3))
    assert result["mae"] == pytest.approx(1.0)
    assert result["n_test"] == 3 and result["n_ranked_users"] == 3


def test_perfect_ranking_scores_one() -> None:
    user = mf.UserSide(np.ones((1, 1), np.float32), np.zeros(1, np.float32))
    item = mf.ItemSide(np.array([[3.0], [2.0], [1.0], [0.0], [-1.0]], np.float32), np.zeros(5, np.float32), mu=3.0)
    sums, _ = metrics.ranking_sums(
        user, item, np.array([], int), np.array([], int), np.array([0, 0]), np.array([0, 1]), np.array([5.0, 4.0]),
        np.ones(5, bool), k=2,
    )
    assert sums["ndcg"] == pytest.approx(1.0) and sums["precision"] == 1.0 and sums["recall"] == 1.0


def test_sums_add_up_over_user_blocks(example) -> None:
    """Chunked evaluation and per-client sums must give the same totals (clients add their sums)."""
    whole, rec_whole = metrics.ranking_sums(*example, k=K)
    chunked, rec_chunked = metrics.ranking_sums(*example, k=K, chunk=1)
    assert chunked == pytest.approx(whole)
    np.testing.assert_array_equal(rec_chunked, rec_whole)
    user, item, train_u, train_i, tu, ti, tv, cand = example
    total = dict.fromkeys(metrics.RANKING_SUM_KEYS, 0.0)
    for group in ([0, 3], [1, 2]):
        keep = np.isin(tu, group)
        part, _ = metrics.ranking_sums(user, item, train_u, train_i, tu[keep], ti[keep], tv[keep], cand, k=K)
        total = {key: total[key] + part[key] for key in total}
    assert total == pytest.approx(whole)


def test_error_sums() -> None:
    sums = metrics.error_sums(np.array([3.0, 4.0, 5.0, 1.5]), np.array([4.0, 4.0, 3.0, 1.0]))
    assert sums == pytest.approx({"sse": 1 + 0 + 4 + 0.25, "sae": 1 + 0 + 2 + 0.5, "n": 4})
    empty = {"users": 0.0, "ndcg": 0.0, "precision": 0.0, "recall": 0.0}
    result = metrics.finalize(sums, empty, np.zeros(3), 10)
    assert result["rmse"] == pytest.approx(math.sqrt(5.25 / 4))
    assert result["mae"] == pytest.approx(3.5 / 4)
    assert result["coverage"] == 0.0


def test_k_larger_than_the_catalogue(example) -> None:
    sums, recommended = metrics.ranking_sums(*example, k=10)
    # Every candidate is listed; user 0: items 1, 2, 4 (hits at ranks 2 and 3 of 2 relevant).
    d3 = 1 / math.log2(4)
    assert sums["ndcg"] == pytest.approx((D2 + d3) / (1 + D2) + D2 + 0.0)
    assert sums["precision"] == pytest.approx((2 + 1 + 0) / 10)
    assert sums["recall"] == pytest.approx(1.0 + 1.0 + 0.0)
    np.testing.assert_array_equal(recommended, [1, 2, 3, 0, 2])
