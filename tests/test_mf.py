"""Tests for the MF math: exact gradients, recovery of a low-rank matrix, clipping, fallbacks and optimizers."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_ratings
from fedrec.shared import mf
from fedrec.shared.config import ModelConfig, TrainConfig
from fedrec.shared.data.split import random_split
from fedrec.shared.optim import Optimizer
from fedrec.shared.train import MFModel, fit

REG, BIAS_REG = 0.1, 0.05


def tiny_problem(dtype) -> tuple[mf.RatingData, mf.UserSide, mf.ItemSide]:
    """7 users x 6 items, 3 factors; user 6 and item 5 have no ratings (their gradient is the zero vector)."""
    rng = np.random.default_rng(3)
    users = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5, 1, 3])
    items = np.array([0, 1, 2, 0, 3, 1, 2, 3, 4, 0, 4, 2, 3, 4, 0, 1, 4, 2])
    values = rng.integers(1, 6, len(users)).astype(float)
    data = mf.RatingData(users, items, values, n_users=7, n_items=6)
    user = mf.UserSide(rng.normal(0, 0.5, (7, 3)).astype(dtype), rng.normal(0, 0.3, 7).astype(dtype))
    item = mf.ItemSide(rng.normal(0, 0.5, (6, 3)).astype(dtype), rng.normal(0, 0.3, 6).astype(dtype), mu=3.2)
    return data, user, item


@pytest.fixture
def float64_mf(monkeypatch: pytest.MonkeyPatch):
    """Run the very same mf code in float64, so that finite differences are exact to about 1e-9."""
    monkeypatch.setattr(mf, "FLOAT", np.float64)
    return tiny_problem(np.float64)


def numeric_gradient(loss, array: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + h
        up = loss()
        array[index] = saved - h
        down = loss()
        array[index] = saved
        grad[index] = (up - down) / (2 * h)
    return grad


def test_gradients_match_finite_differences(float64_mf) -> None:
    data, user, item = float64_mf

    def loss() -> float:
        return mf.loss_and_gradients(data, user, item, REG, BIAS_REG)[0]

    _, _, user_grads, item_grads = mf.loss_and_gradients(data, user, item, REG, BIAS_REG)
    for side, grads in ((user, user_grads), (item, item_grads)):
        for name, array in side.arrays().items():
            numeric = numeric_gradient(loss, array)
            analytic = grads[name]
            assert analytic.shape == array.shape
            scale = np.abs(numeric).max()
            assert scale > 0.1, name  # the check is not vacuous
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * scale, err_msg=name)
    # Parameters of a user or item without ratings get no gradient at all (no data, no penalty).
    assert np.all(user_grads["p"][6] == 0) and user_grads["bu"][6] == 0
    assert np.all(item_grads["q"][5] == 0) and item_grads["bi"][5] == 0


def test_loss_is_the_documented_formula(float64_mf) -> None:
    data, user, item = float64_mf
    loss, sse, _, _ = mf.loss_and_gradients(data, user, item, REG, BIAS_REG)
    expected_sse = expected_penalty = 0.0
    for u, i, r in zip(data.users, data.items, data.values):
        e = r - (item.mu + user.bu[u] + item.bi[i] + user.p[u] @ item.q[i])
        expected_sse += e * e
        expected_penalty += REG * (user.p[u] @ user.p[u] + item.q[i] @ item.q[i])
        expected_penalty += BIAS_REG * (user.bu[u] ** 2 + item.bi[i] ** 2)
    assert sse == pytest.approx(expected_sse, rel=1e-10)
    assert loss == pytest.approx(0.5 * (expected_sse + expected_penalty), rel=1e-10)


def test_float32_gradients_agree_with_float64() -> None:
    data32, user32, item32 = tiny_problem(np.float32)
    loss32, _, ug32, ig32 = mf.loss_and_gradients(data32, user32, item32, REG, BIAS_REG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mf, "FLOAT", np.float64)
        data64, user64, item64 = tiny_problem(np.float64)
        loss64, _, ug64, ig64 = mf.loss_and_gradients(data64, user64, item64, REG, BIAS_REG)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for got, want in ((ug32, ug64), (ig32, ig64)):
        for name in want:
            assert got[name].dtype == np.float32, name  # training stays in float32
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4 * np.abs(want[name]).max())


def low_rank_ratings(noise: float = 0.01):
    """A rank-2 60 x 50 matrix around 3 (inside 1..5 by construction), half observed, plus noise."""
    rng = np.random.default_rng(11)
    p = rng.uniform(-1, 1, (60, 2))
    q = rng.uniform(-1, 1, (50, 2))
    full = 3.0 + p @ q.T
    assert full.min() > 1 and full.max() < 5
    observed = np.flatnonzero(rng.random(full.size) < 0.5)
    users, items = np.divmod(observed, 50)
    values = full[users, items] + rng.normal(0, noise, observed.size)
    return make_ratings(users, items, values, n_users=60, n_items=50)


def test_fit_recovers_a_low_rank_matrix() -> None:
    ratings = low_rank_ratings()
    test_mask = random_split(ratings, 0.2, seed=1)
    train, test = ratings.subset(~test_mask), ratings.subset(test_mask)
    model = fit(train, ModelConfig(factors=4, reg=0.001, bias_reg=0.0), TrainConfig(epochs=200, lr=0.03))
    rmse = np.sqrt(np.mean((model.predict(test.users, test.items) - test.values) ** 2))
    mean_rmse = np.sqrt(np.mean((train.values.mean() - test.values) ** 2))
    assert rmse < 0.1
    assert mean_rmse > 0.4
    assert rmse < mean_rmse / 4


def test_training_rmse_reported_per_epoch_decreases() -> None:
    ratings = low_rank_ratings()
    seen: list[tuple[int, float]] = []
    fit(ratings, ModelConfig(factors=4), TrainConfig(epochs=50), on_epoch=lambda e, rmse: seen.append((e, rmse)))
    assert [e for e, _ in seen] == list(range(1, 51))
    assert seen[-1][1] < 0.5 * seen[0][1]


def hand_model(n_users: int = 3, n_items: int = 3) -> MFModel:
    user = mf.UserSide(np.ones((n_users, 2), np.float32), np.array([2.0, -3.0, 0.5], np.float32)[:n_users])
    item = mf.ItemSide(np.ones((n_items, 2), np.float32), np.array([1.0, -1.5, 0.25], np.float32)[:n_items], mu=3.0)
    return MFModel(user, item, np.array([4, 2, 0]), np.array([5, 1, 0]), rating_min=1.0, rating_max=5.0)


def test_predictions_are_clipped_to_the_scale() -> None:
    model = hand_model()
    # user 0 item 0: 3 + 2 + 1 + 2 = 8 -> 5;  user 1 item 1: 3 - 3 - 1.5 + 2 = 0.5 -> 1;  user 1 item 0: 3 -3 +1 +2 = 3.
    np.testing.assert_allclose(model.predict(np.array([0, 1, 1]), np.array([0, 1, 0])), [5.0, 1.0, 3.0])


def test_unknown_users_and_items_fall_back_to_mean_and_known_biases() -> None:
    model = hand_model()  # user 2 and item 2 have no training ratings
    got = model.predict(np.array([2, 2, 0, 1, 2]), np.array([0, 1, 2, 2, 2]))
    # mu + b_i; mu + b_i; mu + b_u; mu + b_u = 0 clipped to 1; mu alone. No factor term for any of them.
    np.testing.assert_allclose(got, [4.0, 1.5, 5.0, 1.0, 3.0], rtol=0, atol=1e-6)


def test_unknown_user_after_fit_predicts_mean_plus_item_bias() -> None:
    ratings = low_rank_ratings()
    train = ratings.subset(ratings.users != 59)  # user 59 never seen in training
    model = fit(train, ModelConfig(factors=3), TrainConfig(epochs=30))
    assert model.user_counts[59] == 0
    items = np.arange(50)
    known = model.item_counts > 0
    expected = np.clip(model.item.mu + np.where(known, model.item.bi, 0.0), 1, 5)
    np.testing.assert_allclose(model.predict(np.full(50, 59), items), expected, rtol=1e-6)
    assert model.item.mu == pytest.approx(train.values.mean())


@pytest.mark.parametrize("name, lr", [("sgd", 0.02), ("adam", 0.03), ("adagrad", 0.1)])
def test_every_optimizer_reduces_the_loss(name: str, lr: float) -> None:
    ratings = low_rank_ratings(noise=0.05)
    data = mf.RatingData(ratings.users, ratings.items, ratings.values, ratings.n_users, ratings.n_items)
    rng = np.random.default_rng(0)
    user = mf.init_user_side(ratings.n_users, 4, 0.1, rng)
    item = mf.init_item_side(ratings.n_items, 4, 0.1, float(ratings.values.mean()), rng)
    losses = []
    user_opt, item_opt = Optimizer(name, lr), Optimizer(name, lr)
    for _ in range(60):
        loss, _, user_grads, item_grads = mf.loss_and_gradients(data, user, item, 0.05, 0.01)
        losses.append(loss)
        user_opt.step(user.arrays(), user_grads)
        item_opt.step(item.arrays(), item_grads)
    assert losses[-1] < 0.5 * losses[0], losses[::10]
    assert np.isfinite(losses).all()


def test_unknown_optimizer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown optimizer"):
        Optimizer("rmsprop", 0.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["adam", "adagrad"])
def test_optimizer_state_survives_load_state(name: str) -> None:
    rng = np.random.default_rng(5)
    grads = [{"w": rng.normal(size=(4, 3)).astype(np.float32)} for _ in range(6)]
    start = {"w": rng.normal(size=(4, 3)).astype(np.float32)}

    straight = Optimizer(name, 0.1)
    w_straight = {"w": start["w"].copy()}
    for g in grads:
        straight.step(w_straight, g)

    first = Optimizer(name, 0.1)
    w_resumed = {"w": start["w"].copy()}
    for g in grads[:3]:
        first.step(w_resumed, g)
    saved = {key: value.copy() for key, value in first.state.items()}
    resumed = Optimizer(name, 0.1)
    resumed.load_state(saved)
    saved["t"][0] = 999  # load_state copies: later changes to the saved dict do not leak in
    for g in grads[3:]:
        resumed.step(w_resumed, g)
    np.testing.assert_array_equal(w_resumed["w"], w_straight["w"])
    assert int(resumed.state["t"][0]) == 6

    # Without the saved state the result differs, so the comparison above can fail.
    fresh = Optimizer(name, 0.1)
    w_fresh = {"w": start["w"].copy()}
    first_half = Optimizer(name, 0.1)
    for g in grads[:3]:
        first_half.step(w_fresh, g)
    for g in grads[3:]:
        fresh.step(w_fresh, g)
    assert not np.allclose(w_fresh["w"], w_straight["w"])


def test_model_is_float32_and_initial_biases_are_zero() -> None:
    """The model is float32 throughout (half the memory and bytes on the wire); biases start at zero."""
    rng = np.random.default_rng(0)
    user = mf.init_user_side(5, 3, 0.1, rng)
    item = mf.init_item_side(4, 3, 0.1, 3.5, rng)
    for array in (user.p, user.bu, item.q, item.bi):
        assert array.dtype == np.float32
    assert user.p.shape == (5, 3) and item.q.shape == (4, 3) and item.mu == 3.5
    assert not user.bu.any() and not item.bi.any() and 0.05 < user.p.std() < 0.2
    data, user, item = tiny_problem(np.float32)
    assert data.users.dtype == data.items.dtype == np.int64 and data.values.dtype == np.float64
    _, _, user_grads, item_grads = mf.loss_and_gradients(data, user, item, REG, BIAS_REG)
    assert all(g.dtype == np.float32 for g in (*user_grads.values(), *item_grads.values()))


def test_rating_data_of_int32_ids_and_float32_ratings_equals_the_64_bit_one() -> None:
    """The (user, item) sort key and r - mu are computed in 64 bits whatever the callers' dtypes: int32 ids whose
    key user * n_items passes 2^31 still sort by user, and float32 ratings give the residuals of float64 ones."""
    n_users = n_items = 50_000  # 49_999 * 50_000 > 2^31
    rng = np.random.default_rng(4)
    users = np.array([49_999, 1, 0, 49_999, 1, 7, 0, 30_000])
    items = np.array([0, 5, 2, 49_998, 3, 40_000, 1, 9])
    values = rng.integers(2, 11, len(users)) / 2.0  # exact in float32
    wide = mf.RatingData(users, items, values, n_users, n_items)
    narrow = mf.RatingData(users.astype(np.int32), items.astype(np.int32), values.astype(np.float32), n_users, n_items)
    np.testing.assert_array_equal(wide.users, np.sort(users))
    for name in ("users", "items", "values"):
        np.testing.assert_array_equal(getattr(narrow, name), getattr(wide, name))
    assert narrow.values.dtype == np.float64
    user = mf.init_user_side(n_users, 2, 0.3, rng)
    item = mf.init_item_side(n_items, 2, 0.3, 3.5298712, rng)
    user.bu[:] = rng.normal(0, 0.3, n_users)
    item.bi[:] = rng.normal(0, 0.3, n_items)
    np.testing.assert_array_equal(mf.residuals(narrow, user, item), mf.residuals(wide, user, item))


def test_centred_ratings_are_kept_while_the_mean_is_the_same() -> None:
    """r - mu is computed once per mean, not at every epoch's residuals."""
    data, _, _ = tiny_problem(np.float32)
    first = data.centred(3.2)
    assert data.centred(3.2) is first
    np.testing.assert_array_equal(first, data.values - 3.2)
    np.testing.assert_array_equal(data.centred(3.0), data.values - 3.0)


def test_ranking_scores_are_factor_products_plus_item_bias() -> None:
    _, user, item = tiny_problem(np.float64)
    users = np.array([4, 0])
    np.testing.assert_allclose(mf.score_all_items(user, item, users), user.p[users] @ item.q.T + item.bi, rtol=1e-12)
