"""Differential privacy in the training loop: per-user clipping of every vector, the budget, and the curious server."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.server.federation import run_federation
from fedrec.server.state import Checkpoint
from fedrec.shared import mf, protocol
from fedrec.shared.config import load_config
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import FedrecError
from fedrec.shared.federated import ClientData, ClientTrainer
from tests import test_curious_server as curious
from tests.fakegrid import FakeGrid

N_ITEMS = 120
DATA = {"synthetic.n_users": 150, "synthetic.n_items": N_ITEMS, "synthetic.n_ratings": 3000, "model.factors": 4}


def _client(ratings: Ratings, config) -> ClientTrainer:
    return ClientTrainer(ClientData(ratings, ratings), config, client_seed=3)


def _without_user(ratings: Ratings, user: int) -> Ratings:
    keep = ratings.users != user
    return Ratings(ratings.users[keep], ratings.items[keep], ratings.values[keep], None, ratings.user_ids,
                   ratings.item_ids, ratings.rating_min, ratings.rating_max)


@pytest.mark.parametrize("vector", ["stats", "train", "evaluate"])
def test_one_users_influence_on_every_vector_is_within_its_clip(dense_random_ratings, vector):
    """Remove all of one user's ratings (the neighbouring dataset of user-level DP): each vector a client
    sends moves by at most that vector's clip, however heavy the user."""
    config = load_config(None, {"dp.epsilon": 4.0, "model.factors": 6, "dp.clip": 0.5, "dp.eval_clip": 3.0})
    ratings = dense_random_ratings
    heavy = int(np.bincount(ratings.users).argmax())
    clip = {"stats": np.sqrt(5.0**2 + 1), "train": 0.5, "evaluate": 3.0}[vector]
    item = mf.init_item_side(ratings.n_items, 6, 0.3, 3.0, np.random.default_rng(1))
    known = np.ones(ratings.n_items, dtype=bool)
    outputs = []
    for data in (ratings, _without_user(ratings, heavy)):
        client = _client(data, config)
        if vector == "stats":
            outputs.append(client.stats(clip))
        elif vector == "train":
            outputs.append(client.train(item, clip))
        else:
            outputs.append(client.evaluate(item, known, clip))
    change = np.linalg.norm(outputs[0] - outputs[1])
    assert 0 < change <= clip * (1 + 1e-9)
    # Without clipping the same user moves the vector by far more: the clip is what bounds it.
    if vector == "train":
        unclipped = [_client(d, config).train(item) for d in (ratings, _without_user(ratings, heavy))]
        assert np.linalg.norm(unclipped[0] - unclipped[1]) > 3 * clip


@pytest.mark.parametrize("share", [0.05, 0.5, 0.9])
def test_a_split_clip_bounds_each_part_and_the_whole(dense_random_ratings, share):
    """dp.factor_share: removing (or arbitrarily changing) one heavy user moves the factor part by at most
    clip * sqrt(share), the bias part by at most clip * sqrt(1 - share), so the whole by at most the clip the
    accountant uses, and each part really is clipped to its own bound (a joint clip would not respect it)."""
    k, clip = 6, 0.5
    config = load_config(None, {"dp.epsilon": 4.0, "model.factors": k, "dp.clip": clip, "dp.factor_share": share})
    ratings = dense_random_ratings
    item = mf.init_item_side(ratings.n_items, k, 0.3, 3.0, np.random.default_rng(1))
    n_q = ratings.n_items * k
    bounds = {"q": clip * np.sqrt(share), "bi": clip * np.sqrt(1 - share)}
    joint_exceeds = set()
    for user in range(ratings.n_users):
        neighbour = _without_user(ratings, user)
        split = [_client(d, config).train(item, clip, share) for d in (ratings, neighbour)]
        joint = [_client(d, config).train(item, clip) for d in (ratings, neighbour)]
        change, joint_change = split[0] - split[1], joint[0] - joint[1]
        assert np.linalg.norm(change) <= clip * (1 + 1e-9)
        for part, rows in (("q", slice(0, n_q)), ("bi", slice(n_q, None))):
            assert np.linalg.norm(change[rows]) <= bounds[part] * (1 + 1e-9)
            if np.linalg.norm(joint_change[rows]) > bounds[part] * (1 + 1e-6):
                joint_exceeds.add(part)
    # Some part's own bound binds for a user where one joint clip would exceed it: the split is not a no-op
    # (the bias part dominates these gradients, so a small factor share is what exposes the factor bound).
    assert joint_exceeds == ({"q", "bi"} if share < 0.1 else {"bi"})


def test_the_server_sends_the_split_to_every_train_task(monkeypatch):
    """A DP run with dp.factor_share hands the share to each client's clipping (a client that ignored the
    task field would clip jointly)."""
    seen = []
    original = ClientTrainer.train

    def train(self, item, dp_clip=None, factor_share=None):
        seen.append((dp_clip, factor_share))
        return original(self, item, dp_clip, factor_share)

    monkeypatch.setattr(ClientTrainer, "train", train)
    config = dp_config(**{"dp.factor_share": 0.2, "federated.rounds": 2})
    run_federation(FakeGrid(config, 10), config, n_items=N_ITEMS, n_users=150)
    assert len(seen) == 20 and all(share == 0.2 and clip == config.dp.clip for clip, share in seen)


def test_local_epochs_refine_the_user_side_before_a_dp_gradient(dense_random_ratings):
    """federated.local_epochs under DP: the client takes local_epochs - 1 user steps against the received item
    side, then sends the clipped item gradient at its refined user side (a free, private improvement)."""
    item = mf.init_item_side(dense_random_ratings.n_items, 6, 0.3, 3.0, np.random.default_rng(1))
    one = load_config(None, {"dp.epsilon": 4.0, "model.factors": 6})
    three = load_config(None, {"dp.epsilon": 4.0, "model.factors": 6, "federated.local_epochs": 3})
    refined = _client(dense_random_ratings, three)
    vector = refined.train(item, 0.5)
    assert int(refined.optimizer.state["t"][0]) == 3
    stepped = _client(dense_random_ratings, one)
    stepped.train(item, 0.5)
    stepped.train(item, 0.5)
    expected = stepped.train(item, 0.5)  # after two single-step rounds at the same item side: the same user side
    np.testing.assert_allclose(vector, expected, rtol=1e-6, atol=1e-9)
    assert not np.allclose(vector, _client(dense_random_ratings, one).train(item, 0.5))


def test_factor_share_must_be_a_fraction():
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(FedrecError, match="factor_share"):
            load_config(None, {"dp.factor_share": bad})


def test_clipped_train_vector_equals_the_plain_gradient_when_the_clip_is_loose(dense_random_ratings):
    config = load_config(None, {"model.factors": 6})
    item = mf.init_item_side(dense_random_ratings.n_items, 6, 0.3, 3.0, np.random.default_rng(1))
    item.bi[:] = np.random.default_rng(2).normal(0, 0.5, item.bi.shape)  # so the biases' regularisation counts
    plain = _client(dense_random_ratings, config).train(item)
    loose = _client(dense_random_ratings, config).train(item, 1e9)
    np.testing.assert_allclose(loose, plain, rtol=1e-6, atol=1e-6)


def dp_config(**overrides):
    return load_config(None, {**DATA, "federated.num_clients": 10, "federated.rounds": 4, "federated.eval_every": 2,
                              "dp.epsilon": 8.0, **overrides})


def test_a_dp_run_records_its_spending_and_never_exceeds_the_budget():
    config = dp_config()
    result = run_federation(FakeGrid(config, 10), config, n_items=N_ITEMS, n_users=150)
    eps = [entry["epsilon"] for entry in result["history"]]
    assert all(a < b for a, b in zip(eps, eps[1:])) and eps[-1] <= 8.0 + 1e-6
    assert eps[-1] > 7.5  # the noise was chosen to use the budget, not to waste it
    dp = result["dp"]
    assert result["privacy"] == "secure-sum+dp"
    assert {"epsilon", "delta", "noise_multiplier", "clip", "rounds", "sampling_rate", "mechanism"} <= set(dp)
    assert dp["delta"] == pytest.approx(1 / 150) and dp["mechanism"] == "skellam"
    assert dp["releases_planned"] == {"stats": 1, "train": 4, "evaluate": 2}
    assert result["history"][-1]["releases"] == dp["releases_planned"]
    assert np.isfinite(result["rmse"]) and "ndcg@10" not in result


def test_an_impossible_budget_is_refused_before_any_client_is_asked():
    config = dp_config(**{"dp.epsilon": 1e-4, "federated.rounds": 50})
    grid = FakeGrid(config, 10)
    with pytest.raises(FedrecError, match="cannot cover 50 rounds"):
        run_federation(grid, config, n_items=N_ITEMS, n_users=150)
    assert grid.sent == []


def test_dp_needs_secure_aggregation():
    with pytest.raises(FedrecError, match="needs secure aggregation"):
        load_config(None, {"dp.epsilon": 4.0, "federated.secure": False})


def test_a_resumed_run_continues_the_same_accountant(tmp_path):
    config = dp_config()
    whole = run_federation(FakeGrid(config, 10), config, n_items=N_ITEMS, n_users=150)
    first = dp_config(**{"federated.rounds": 2, "federated.eval_every": 2})
    grid = FakeGrid(first, 10)
    run_federation(grid, first, n_items=N_ITEMS, n_users=150, checkpoint=Checkpoint(tmp_path))
    resumed = run_federation(grid, config, n_items=N_ITEMS, n_users=150, checkpoint=Checkpoint(tmp_path), resume=True)
    assert resumed["history"][-1]["releases"] == whole["history"][-1]["releases"]
    assert resumed["dp"]["epsilon_spent"] == pytest.approx(whole["dp"]["epsilon_spent"])


@pytest.mark.parametrize("epsilon", [None, 8.0])
def test_with_dp_no_sum_has_an_exactly_zero_row(monkeypatch, epsilon):
    """Three clients sampled a round: without noise, the rows of items none of them rated are exactly zero
    (which names items few clients rated); with DP every coordinate carries noise."""
    _, _, _, log = curious.recorded_run(monkeypatch, 10, **{"federated.clients_per_round": 3, "federated.rounds": 4,
                                                             "federated.eval_every": 4, "dp.epsilon": epsilon})
    sums = [total for _, task, _, total in log if task == protocol.TASK_TRAIN]
    zero_rows = sum(int((np.abs(total[-N_ITEMS:]) == 0).sum()) for total in sums)
    if epsilon is None:
        assert zero_rows > 0
    else:
        assert zero_rows == 0


def test_with_dp_the_dropout_difference_ranks_rated_items_no_better_than_popularity(monkeypatch):
    """The attack that beats popularity on a secure sum alone (tests/test_curious_server.py) is blind under DP."""
    config, n, victim, round_, train, log = _dropout_run_dp(monkeypatch)
    attack, guess = curious.dropout_attack(config, n, victim, round_, train, log)
    assert attack <= guess + 0.03, f"attack {attack:.3f} vs popularity {guess:.3f}"


def _dropout_run_dp(monkeypatch):
    n, victim, round_ = 10, 3, 4
    nodes = curious.node_ids(n)
    config, grid, result, log = curious.recorded_run(
        monkeypatch, n, fail={nodes[victim]: {f"secagg.masked_input@{round_}"}},
        **{"federated.rounds": 6, "federated.eval_every": 6, "dp.epsilon": 8.0, "dp.delta": 1e-3})
    train = {int(group): (parts, total) for group, task, parts, total in log if task == protocol.TASK_TRAIN}
    assert nodes[victim] in train[round_ - 1][0] and nodes[victim] not in train[round_][0]
    return config, n, victim, round_, train, log
