"""The federated client and server math without Flower: partitions, each task's vector, and the server step."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_ratings
from fedrec.shared import metrics, mf
from fedrec.shared.config import load_config
from fedrec.shared.federated import ClientData, ClientTrainer, ServerModel, Stats, finalize_dp_eval, finalize_eval
from fedrec.shared.optim import Optimizer


def ratings_table():
    """6 users, 5 items; user 5 has only held-out ratings, user 4 a single training rating, item 4 none."""
    users = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3, 4])
    items = np.array([0, 1, 2, 0, 3, 1, 2, 0, 2, 3, 1])
    values = np.array([5, 4, 1, 3, 5, 2, 4, 5, 3, 4, 2], dtype=float)
    train = make_ratings(users, items, values, timestamps=np.arange(11) + 100, n_users=6, n_items=5)
    test_users, test_items = np.array([0, 1, 2, 3, 4, 5, 5]), np.array([3, 2, 0, 1, 4, 0, 2])
    test = make_ratings(test_users, test_items, np.array([4, 5, 5, 1, 4, 3, 3], dtype=float),
                        timestamps=np.arange(7) + 500, n_users=6, n_items=5)
    return train, test


def config(**overrides):
    return load_config(None, {"model.factors": 3, "model.reg": 0.05, "model.bias_reg": 0.02, **overrides})


def test_a_partition_holds_exactly_its_users_ratings_renumbered():
    train, test = ratings_table()
    data = ClientData.from_partition(train, test, np.array([1, 3, 5]))
    assert data.train.users.tolist() == [0, 0, 1, 1, 1]  # users 1 and 3 become 0 and 1; user 5 has no training rating
    assert data.train.items.tolist() == [0, 3, 0, 2, 3] and data.train.values.tolist() == [3, 5, 5, 3, 4]
    assert data.train.timestamps.tolist() == [103, 104, 107, 108, 109]
    assert data.test.users.tolist() == [0, 1, 2, 2] and data.test.items.tolist() == [2, 1, 0, 2]
    assert data.train.user_ids.tolist() == ["1", "3", "5"] and data.train.n_items == 5
    assert (data.train.rating_min, data.train.rating_max) == (1.0, 5.0) == (data.test.rating_min, data.test.rating_max)
    first = ClientData.from_partition(train, test, np.array([0]))  # user 0, local id 0: not confused with "none"
    assert first.train.values.tolist() == [5, 4, 1] and first.test.items.tolist() == [3]
    assert data.train.users.dtype == data.test.users.dtype == np.int64  # indices (bincount refuses floats)


def test_stats_vector_has_the_catalogue_layout_even_without_the_last_items():
    train, test = ratings_table()
    trainer = ClientTrainer(ClientData.from_partition(train, test, np.array([1, 2])), config(), 0)
    stats = trainer.stats()
    assert stats.dtype == np.float64
    # [sum of training ratings, training ratings, test ratings, users with a test rating >= 4, item counts]
    np.testing.assert_array_equal(stats, [3 + 5 + 2 + 4, 4, 2, 2, 1, 1, 1, 1, 0])
    # A held-out rating equal to the relevance threshold (4) is relevant, as in the ranking sums.
    at_threshold = ClientTrainer(ClientData.from_partition(train, test, np.array([0, 3])), config(), 0).stats()
    assert at_threshold[3] == 1  # user 0's 4 counts, user 3's 1 does not


def test_mean_known_items_and_denominators_from_the_summed_stats():
    stats = Stats.from_total(np.array([3.0, 1.0, 7.0, 2.0, 0.0, 1.0, 2.0]))
    assert stats.mu == 3.0 and stats.known.tolist() == [False, True, True]
    assert (stats.test_n, stats.ranked_users) == (7.0, 2.0) and stats.item_counts.tolist() == [0.0, 1.0, 2.0]
    empty = Stats.from_total(np.zeros(6))  # no ratings at all: a defined mean, nothing known
    assert empty.mu == 0.0 and not empty.known.any()


def test_dp_statistics_give_the_mean_of_user_means_and_release_no_counts():
    """Per user with training ratings [mean rating, 1] (users 0-4 of the table; user 5 has only held-out
    ratings, user 4 a single rating); the server divides the two sums."""
    train, test = ratings_table()
    vector = ClientTrainer(ClientData.from_partition(train, test, np.arange(6)), config(), 0).stats(dp_clip=100.0)
    np.testing.assert_allclose(vector, [10 / 3 + 4 + 3 + 4 + 2, 5], rtol=1e-12)
    clipped = ClientTrainer(ClientData.from_partition(train, test, np.array([4])), config(), 0).stats(dp_clip=1.0)
    np.testing.assert_allclose(clipped, np.array([2.0, 1.0]) / np.sqrt(5.0), rtol=1e-12)  # [2, 1] scaled to norm 1
    stats = Stats.from_dp_total(np.array([16.5, 5.0]), 4)
    assert stats.mu == 3.3 and stats.item_counts.tolist() == [1.0] * 4 and stats.known.all()
    assert (stats.test_n, stats.ranked_users) == (0.0, 0.0)  # not released under DP
    assert Stats.from_dp_total(np.array([0.6, 0.4]), 1).mu == 0.6  # a noised count below one divides as one


def manual_user_steps(trainer_data, item, cfg, steps):
    ratings = mf.RatingData(trainer_data.users, trainer_data.items, trainer_data.values, trainer_data.n_users, 5)
    user = mf.init_user_side(trainer_data.n_users, 3, cfg.model.init_std,
                             np.random.default_rng(np.random.SeedSequence([cfg.model.seed, 1, 7])))
    optimizer = Optimizer(cfg.federated.client_optimizer, cfg.federated.client_lr)
    for _ in range(steps):
        _, _, grads, _ = mf.loss_and_gradients(ratings, user, item, cfg.model.reg, cfg.model.bias_reg)
        optimizer.step(user.arrays(), grads)
    return ratings, user, optimizer


@pytest.mark.parametrize("local_epochs", [1, 3])
def test_gradient_mode_refines_the_user_side_then_sends_the_item_gradient(local_epochs):
    """local_epochs - 1 user-only steps, then the item gradient at the refined user side (and one more user step)."""
    train, test = ratings_table()
    cfg = config(**{"federated.update": "gradient", "federated.local_epochs": local_epochs})
    data = ClientData.from_partition(train, test, np.arange(6))
    trainer = ClientTrainer(data, cfg, 7)
    item = mf.init_item_side(5, 3, 0.3, 3.5, np.random.default_rng(1))
    vector = trainer.train(item)
    ratings, user, optimizer = manual_user_steps(data.train, item, cfg, local_epochs - 1)
    _, sse, user_grads, item_grads = mf.loss_and_gradients(ratings, user, item, cfg.model.reg, cfg.model.bias_reg)
    optimizer.step(user.arrays(), user_grads)
    expected = np.concatenate([item_grads["q"].ravel(), item_grads["bi"]])  # the update and nothing constant
    np.testing.assert_allclose(vector, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(trainer.user.p, user.p, rtol=1e-6)
    assert int(trainer.state()["opt.t"][0]) == local_epochs


def test_delta_mode_sends_count_weighted_changes_and_nothing_constant():
    train, test = ratings_table()
    cfg = config(**{"federated.update": "delta", "federated.local_epochs": 3, "federated.client_optimizer": "sgd",
                    "federated.client_lr": 0.05})
    data = ClientData.from_partition(train, test, np.arange(6))
    item = mf.init_item_side(5, 3, 0.3, 3.5, np.random.default_rng(1))
    item.bi[:] = [0.3, -0.2, 0.1, 0.4, 0.0]
    vector = ClientTrainer(data, cfg, 7).train(item)
    ratings, user, _ = manual_user_steps(data.train, item, cfg, 0)
    local, local_user = item.copy(), mf.UserSide(user.p.copy(), user.bu.copy())
    first_sse = None
    for _ in range(3):
        _, sse, user_grads, item_grads = mf.loss_and_gradients(ratings, local_user, local, cfg.model.reg, cfg.model.bias_reg)
        first_sse = sse if first_sse is None else first_sse
        local_user.p -= 0.05 * user_grads["p"]
        local_user.bu -= 0.05 * user_grads["bu"]
        local.q -= 0.05 * item_grads["q"]
        local.bi -= 0.05 * item_grads["bi"]
    counts = ratings.item_counts.astype(float)
    expected = np.concatenate([(counts[:, None] * (item.q - local.q)).ravel(), counts * (item.bi - local.bi)])
    np.testing.assert_allclose(vector, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(item.bi - local.bi).max() > 1e-3  # the bias changed: its sign is tested


def test_server_step_in_delta_mode_is_the_per_item_average_change():
    """sgd with lr 1: each item moves by the summed weighted change over its count (FedAvg); unrated items stay."""
    n, k = 3, 2
    cfg = config(**{"model.factors": k, "federated.update": "delta", "federated.server_optimizer": "sgd",
                    "federated.server_lr": 1.0})
    server = ServerModel(n, cfg, 3.0)
    before = server.item.copy()
    q_change = np.array([[4.0, -2.0], [1.0, 1.0], [7.0, 7.0]])
    bi_change = np.array([2.0, -1.0, 5.0])
    stats = Stats(3.0, np.array([4.0, 1.0, 0.0]), 0.0, 0.0)  # the run's item counts, from the one statistics sum
    total = np.concatenate([q_change.ravel(), bi_change])
    assert server.apply(total, stats) == {}
    np.testing.assert_allclose(server.item.q, before.q - [[1.0, -0.5], [1.0, 1.0], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(server.item.bi, before.bi - [0.5, -1.0, 0.0], rtol=1e-6)
    assert server.item.q.dtype == server.item.bi.dtype == np.float32
    # Half of the clients in the sum: the expected counts behind it are half the run's.
    again = ServerModel(n, cfg, 3.0)
    again.apply(total, stats, share=0.5)
    np.testing.assert_allclose(again.item.q, before.q - [[2.0, -1.0], [2.0, 2.0], [0.0, 0.0]], rtol=1e-6)


def test_server_step_in_gradient_mode_applies_the_summed_gradient():
    cfg = config(**{"model.factors": 2, "federated.update": "gradient", "federated.server_optimizer": "sgd",
                    "federated.server_lr": 0.5})
    server = ServerModel(2, cfg, 3.0)
    before = server.item.copy()
    total = np.concatenate([[1.0, 2.0, 3.0, 4.0], [2.0, -2.0]])
    assert server.apply(total, Stats(3.0, np.array([9.0, 9.0]), 0.0, 0.0), share=0.3) == {}  # counts unused
    np.testing.assert_allclose(server.item.q, before.q - 0.5 * np.array([[1.0, 2.0], [3.0, 4.0]]), rtol=1e-6)
    np.testing.assert_allclose(server.item.bi, before.bi - [1.0, -1.0], rtol=1e-6)


def test_evaluation_vector_matches_the_metrics_of_the_clients_model():
    """Clipping to the data's scale, fallbacks for users without training ratings (user 5) and users with one
    (user 4), and the configured k and relevance threshold."""
    train, test = ratings_table()
    cfg = config(**{"eval.top_k": 2, "eval.relevant_threshold": 3.0})
    data = ClientData.from_partition(train, test, np.arange(6))
    trainer = ClientTrainer(data, cfg, 7)
    trainer.user.p[:] = np.random.default_rng(2).normal(0, 1, trainer.user.p.shape)
    trainer.user.bu[:] = [0.5, -0.5, 0.2, 0.1, 0.8, 3.0]  # user 5's bias must not be used: it has no training rating
    item = mf.ItemSide(np.random.default_rng(3).normal(0, 1, (5, 3)).astype(np.float32),
                       np.array([1.5, -6.0, 0.5, 4.0, 0.0], np.float32), 3.5)  # large enough to leave the 1..5 scale
    known = np.array([True, True, True, True, False])
    vector = trainer.evaluate(item, known)
    user_known = np.array([True, True, True, True, True, False])
    predictions = mf.predict(trainer.user, item, test.users, test.items, user_known, known, 1.0, 5.0)
    assert predictions.max() == 5.0 and predictions.min() == 1.0  # clipping at both ends matters for this model
    errors = metrics.error_sums(predictions, test.values)
    ranking, recommended = metrics.ranking_sums(trainer.user, item, train.users, train.items, test.users, test.items,
                                                test.values, candidate_items=known, k=2, relevant_threshold=3.0)
    stats = Stats(3.5, np.ones(5), errors["n"], ranking["users"])  # the denominators come from the statistics sum
    got, want = finalize_eval(vector, 2, stats), metrics.finalize(errors, ranking, None, 2)
    assert got.pop("coverage") is None and want.pop("coverage") is None  # no counts, no coverage
    assert got == pytest.approx(want, rel=1e-9)
    assert vector.dtype == np.float64 and len(vector) == 5  # no counts: they never change between evaluations
    assert ranking["users"] == 5  # users whose held-out rating is >= 3 (not the default 4)
    with_coverage = ClientTrainer(data, config(**{"eval.top_k": 2, "eval.relevant_threshold": 3.0, "eval.coverage": True}), 7)
    with_coverage.user.p[:], with_coverage.user.bu[:] = trainer.user.p, trainer.user.bu
    covered = with_coverage.evaluate(item, known)
    assert len(covered) == 5 + 5
    assert finalize_eval(covered, 2, stats) == pytest.approx(metrics.finalize(errors, ranking, recommended, 2), rel=1e-9)
    # Half the clients in this sum: every denominator is half the run's.
    halved = finalize_eval(vector, 2, stats, share=0.5)
    assert halved["rmse"] == pytest.approx(np.sqrt(errors["sse"] / (errors["n"] / 2)), rel=1e-9)
    assert halved["ndcg@2"] == pytest.approx(ranking["ndcg"] / (ranking["users"] / 2), rel=1e-9)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adagrad"])
def test_server_factor_lr_steps_the_factors_at_their_own_rate(optimizer):
    """federated.server_factor_lr moves q at its rate and b_i at server_lr (Adam's first step is lr * sign)."""
    cfg = config(**{"model.factors": 2, "federated.server_optimizer": optimizer, "federated.server_lr": 0.5,
                    "federated.server_factor_lr": 0.01})
    server = ServerModel(2, cfg, 3.0)
    before = server.item.copy()
    total = np.concatenate([[1.0, -1.0, 1.0, -1.0], [1.0, -1.0]])
    server.apply(total, Stats(3.0, np.ones(2), 0.0, 0.0))
    np.testing.assert_allclose(np.abs(server.item.q - before.q), 0.01, rtol=1e-4)
    np.testing.assert_allclose(np.abs(server.item.bi - before.bi), 0.5, rtol=1e-4)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_server_lr_schedule_scales_each_round_step(schedule):
    """federated.server_lr_schedule: with sgd and a constant gradient, step t moves the item side by
    server_lr * factor(t), decaying to 1/rounds of it; a server rebuilt from the saved optimizer state
    (a resumed run) continues the schedule where it was."""
    rounds = 4
    cfg = config(**{"model.factors": 1, "federated.server_optimizer": "sgd", "federated.server_lr": 1.0,
                    "federated.rounds": rounds, "federated.server_lr_schedule": schedule})
    expected = {"constant": [1.0, 1.0, 1.0, 1.0], "linear": [1.0, 0.75, 0.5, 0.25],
                "cosine": [1.0, 0.5 * (1 + np.cos(np.pi / 4)), 0.5, 1 / rounds]}[schedule]  # floored at 1/rounds
    server, moves = ServerModel(1, cfg, 3.0), []
    for t in range(rounds):
        if t == 2:  # resume: a new server model loading the saved item side and optimizer state
            saved_q, saved_bi, saved_state = server.item.q.copy(), server.item.bi.copy(), server.optimizer.state
            server = ServerModel(1, cfg, 3.0)
            server.item.q[:], server.item.bi[:] = saved_q, saved_bi
            server.optimizer.load_state(saved_state)
        before = server.item.bi.copy()
        server.apply(np.array([0.0, 1.0]), Stats(3.0, np.ones(1), 0.0, 0.0))
        moves.append(float(before[0] - server.item.bi[0]))
    np.testing.assert_allclose(moves, expected, rtol=1e-5)


def test_dp_evaluation_vector_is_the_error_sums_and_the_count():
    """Per user [squared error, absolute error, held-out ratings], clipped and summed; with a loose clip, the
    error sums of the client's predictions (users 5's ratings included)."""
    train, test = ratings_table()
    data = ClientData.from_partition(train, test, np.arange(6))
    trainer = ClientTrainer(data, config(), 7)
    item = mf.ItemSide(np.random.default_rng(3).normal(0, 1, (5, 3)).astype(np.float32),
                       np.array([1.5, -2.0, 0.5, 1.0, 0.0], np.float32), 3.5)
    known = np.array([True, True, True, True, False])
    vector = trainer.evaluate(item, known, dp_clip=1e3)
    predictions = mf.predict(trainer.user, item, test.users, test.items, trainer.ratings.user_counts > 0, known, 1.0, 5.0)
    errors = metrics.error_sums(predictions, test.values)
    np.testing.assert_allclose(vector, [errors["sse"], errors["sae"], 7.0], rtol=1e-9)
    assert errors["sse"] != errors["sae"]  # the two sums are told apart
    # The last user without a held-out rating: the per-user sums keep every user's row.
    trainer.data = ClientData(data.train, data.test.subset(data.test.users != 5))
    kept = test.users != 5
    fewer = metrics.error_sums(predictions[kept], test.values[kept])
    np.testing.assert_allclose(trainer.evaluate(item, known, dp_clip=1e3), [fewer["sse"], fewer["sae"], 5.0], rtol=1e-9)


def test_dp_metrics_divide_by_the_noised_count_and_never_go_negative():
    assert finalize_dp_eval(np.array([8.0, 4.0, 2.0])) == {"rmse": 2.0, "mae": 2.0}
    assert finalize_dp_eval(np.array([2.0, 1.5, 0.3])) == {"rmse": np.sqrt(2.0), "mae": 1.5}  # count below one: one
    assert finalize_dp_eval(np.array([-3.0, -1.0, 4.0])) == {"rmse": 0.0, "mae": 0.0}  # noise pushed a sum below zero
