"""Serving math without a server: fold-in is the user's exact optimum, explanations add up, feedback merges into training."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.shared import mf
from fedrec.shared.errors import DataError
from fedrec.shared.feedback import FeedbackStore, read_feedback, with_feedback
from fedrec.shared.recommend import ItemModel, Recommender, contributions, event_rating, explain, fold_in, top_n
from tests.conftest import make_ratings


def item_model(n_items: int = 60, k: int = 5, seed: int = 0, reg: float = 0.1, bias_reg: float = 0.01) -> ItemModel:
    rng = np.random.default_rng(seed)
    known = np.ones(n_items, dtype=bool)
    known[-3:] = False  # never trained anywhere: not recommended
    return ItemModel(rng.normal(0, 0.5, (n_items, k)), rng.normal(0, 0.3, n_items), 3.5,
                     np.array([f"i{j}" for j in range(n_items)]), known, reg, bias_reg, 1.0, 5.0)


def test_fold_in_is_the_minimum_of_the_users_training_loss():
    model = item_model()
    rng = np.random.default_rng(1)
    items = rng.choice(57, size=12, replace=False)
    values = rng.integers(1, 6, 12).astype(float)
    fit = fold_in(model, items, values)
    data = mf.RatingData(np.zeros(12, np.int64), items, values, 1, model.q.shape[0])
    user = mf.UserSide(fit.p[None, :].astype(np.float64), np.array([fit.bu]))
    item = mf.ItemSide(model.q, model.bi, model.mu)
    _, _, grads, _ = mf.loss_and_gradients(data, user, item, model.reg, model.bias_reg)
    # mf computes residuals in float32, hence the tolerance; a step of 0.01 away gives gradients near 0.1.
    assert np.abs(grads["p"]).max() < 1e-5 and abs(grads["bu"][0]) < 1e-5
    user.p += 0.01
    _, _, moved, _ = mf.loss_and_gradients(data, user, item, model.reg, model.bias_reg)
    assert np.abs(moved["p"]).max() > 1e-2


def test_contributions_add_up_to_the_personal_term_and_explanations_to_the_score():
    model = item_model()
    fit = fold_in(model, np.array([0, 5, 9, 58]), np.array([5.0, 1.0, 4.0, 3.0]))  # 58 is untrained: not used
    assert fit.fit_items.tolist() == [0, 5, 9]
    every = np.arange(60)
    assert np.allclose(contributions(model, fit, every).sum(axis=1), model.q @ fit.p, atol=1e-12)
    items, item_scores = top_n(model, fit, 10)
    for why, score in zip(explain(model, fit, items, reasons=2), item_scores):
        total = why["global_mean"] + why["user_bias"] + why["item_bias"] + why["other_rated_items"]
        total += sum(reason["contribution"] for reason in why["because_you_rated"])
        assert total == pytest.approx(score, abs=1e-12)
        assert len(why["because_you_rated"]) == 2
        for reason in why["because_you_rated"]:
            j = int(reason["item"][1:])
            assert reason["liking"] == pytest.approx(reason["your_rating"] - model.mu - model.bi[j])


def test_top_n_excludes_rated_and_untrained_items_and_is_the_best():
    model = item_model()
    rated = np.array([3, 4, 5])
    fit = fold_in(model, rated, np.array([5.0, 4.0, 2.0]))
    items, item_scores = top_n(model, fit, 100)
    assert set(items.tolist()).isdisjoint({3, 4, 5, 57, 58, 59}) and len(items) == 54
    everything = model.mu + fit.bu + model.bi + model.q @ fit.p
    assert np.allclose(item_scores, everything[items]) and np.all(np.diff(item_scores) <= 0)


def test_cold_start_user_gets_the_popularity_baseline_then_a_personal_model():
    model = item_model()
    recommender = Recommender(model, {})
    fit = recommender.add("new", 7, 5.0)
    assert "new" in recommender and fit.items.tolist() == [7]
    assert recommender.recommend("new", 3)[0]["item"] != "i7"
    empty = fold_in(model, np.zeros(0, np.int64), np.zeros(0))
    items, _ = top_n(model, empty, 5)
    assert items.tolist() == np.argsort(-np.where(model.known, model.bi, -np.inf), kind="stable")[:5].tolist()


def test_events_map_onto_the_rating_scale():
    assert [event_rating(e, 1, 5) for e in ("purchase", "click", "skip")] == [5.0, 4.0, 2.0]
    assert event_rating("purchase", 0.5, 10) == 10.0


def test_stored_feedback_merges_into_training_and_replaces_the_files_rating(tmp_path):
    train = make_ratings([0, 0, 1], [0, 1, 2], [4.0, 2.0, 3.0], n_users=2, n_items=4)
    train = type(train)(train.users, train.items, train.values, None, np.array(["alice", "bob"]), train.item_ids, 1.0, 5.0)
    store = FeedbackStore(tmp_path)
    store.add("alice", "1", 5.0, None, 10)   # replaces alice's 2.0 for item 1
    store.add("carol", "3", 4.0, "click", 11)  # a new user
    store.add("carol", "3", 2.0, "skip", 12)   # a later event of the same pair wins
    store.close()
    table = read_feedback(tmp_path, 1.0, 5.0, "fail")
    merged, test = with_feedback(train, train, table, ["0", "1", "2", "3"])
    assert merged.user_ids.tolist() == ["alice", "bob", "carol"] and test.user_ids.tolist() == merged.user_ids.tolist()
    rows = sorted(zip(merged.user_ids[merged.users].tolist(), merged.items.tolist(), merged.values.tolist()))
    assert rows == [("alice", 0, 4.0), ("alice", 1, 5.0), ("bob", 2, 3.0), ("carol", 3, 2.0)]


def test_stored_feedback_goes_through_the_ratings_validation(tmp_path):
    store = FeedbackStore(tmp_path)
    store.add("alice", "1", 9.0, None, 10)  # off a 1..5 scale (e.g. the scale changed since)
    store.close()
    with pytest.raises(DataError, match=r"feedback\.csv:2: rating outside the scale"):
        read_feedback(tmp_path, 1.0, 5.0, "fail")


