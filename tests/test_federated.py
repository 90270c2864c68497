"""Federated MF: equivalence with centralised training, what reaches the server, dropouts (in process; the
Ray engine end to end is tests/test_compare.py::test_compare_end_to_end)."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.server.federation import run_federation
from fedrec.shared import mf, protocol
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.errors import FedrecError
from fedrec.shared.data.partition import partition_users
from fedrec.shared.federated import ClientData, ClientTrainer, eval_length, stats_length, train_length
from fedrec.shared.train import ITEM_STREAM, MFModel, evaluate, fit, init_rng
from fedrec.client.state import UserStateStore
from tests.fakegrid import FakeGrid, node_ids

SMALL = {
    "synthetic.n_users": 120, "synthetic.n_items": 150, "synthetic.n_ratings": 4000,
    "model.factors": 8, "federated.num_clients": 4, "federated.rounds": 5,
    "federated.secure": False,  # the plain sum; tests/test_secure_federated.py covers secure aggregation
}


def small_config(**overrides):
    return load_config(None, {**SMALL, **overrides})


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_federated_full_batch_equals_centralised(optimizer):
    """All clients every round, one full-batch step: the same item factors as centralised training."""
    lr = 0.002 if optimizer == "sgd" else 0.03
    config = small_config(**{
        "federated.update": "gradient", "federated.local_epochs": 1,
        "federated.client_optimizer": optimizer, "federated.client_lr": lr,
        "federated.server_optimizer": optimizer, "federated.server_lr": lr,
        "train.optimizer": optimizer, "train.lr": lr, "train.epochs": 5,
        "eval.top_k": 5, "eval.relevant_threshold": 3.5, "eval.coverage": True,  # not the defaults: from the server
    })
    grid = FakeGrid(config, 4)
    result = run_federation(grid, config, n_items=150)

    train, _ = load_train_test(config)
    client_of_user = partition_users(train.user_counts(), 4, "iid", config.federated.seed)
    p = np.zeros((train.n_users, 8), dtype=mf.FLOAT)
    for client in range(4):  # the same initial user factors the clients drew for themselves
        users = np.flatnonzero(client_of_user == client)
        trainer = ClientTrainer(ClientData.from_partition(train, train, users), config, client)
        p[users] = trainer.user.p
    item = mf.init_item_side(150, 8, config.model.init_std, train.values.mean(), init_rng(config.model.seed, ITEM_STREAM))
    initial_q = item.q.copy()
    central = fit(train, config.model, config.train, init=(mf.UserSide(p, np.zeros(train.n_users, mf.FLOAT)), item))

    assert np.abs(central.item.q - initial_q).max() > 1e-3  # training moved the factors: the comparison means something
    np.testing.assert_allclose(result["item_model"]["q"], central.item.q, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result["item_model"]["bi"], central.item.bi, rtol=1e-4, atol=1e-6)
    assert result["item_model"]["mu"] == pytest.approx(train.values.mean())

    # Federated evaluation (sums added over clients) equals centralised evaluation (shared/metrics.py on the
    # pooled test set) of the same model: the server's item side with the user factors the clients kept.
    _, test = load_train_test(config)
    federated_p = np.zeros_like(p)
    federated_bu = np.zeros(train.n_users, mf.FLOAT)
    for client, node in enumerate(grid.node_ids):
        users = np.flatnonzero(client_of_user == client)
        state = UserStateStore(grid.contexts[node], None, None).latest()
        federated_p[users], federated_bu[users] = state["p"], state["bu"]
    item_model = mf.ItemSide(result["item_model"]["q"], result["item_model"]["bi"], result["item_model"]["mu"])
    model = MFModel(mf.UserSide(federated_p, federated_bu), item_model, central.user_counts, central.item_counts,
                    train.rating_min, train.rating_max)
    pooled = evaluate(model, train, test, config.eval)
    metric_names = ("rmse", "mae", "ndcg@5", "recall@5", "precision@5", "coverage", "n_test", "n_ranked_users")
    assert {key: result[key] for key in metric_names} == pytest.approx({key: pooled[key] for key in metric_names}, rel=1e-9)
    assert result["rmse"] != pytest.approx(result["mae"], rel=1e-3)  # swapped error sums could not pass
    assert result["n_ranked_users"] > 20 and 0 < result["recall@5"] < 1 and 0 < result["ndcg@5"] < 1
    # ... and the centrally trained model scores the same (it is the same model, up to float rounding).
    reference = evaluate(central, train, test, config.eval)
    for key in ("rmse", "mae", "ndcg@5", "recall@5"):
        assert result[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6), key


def test_only_sums_reach_the_server():
    """Every reply holds one vector of a fixed, item-sized layout: no rating, user id or user factor."""
    config = small_config()
    grid = FakeGrid(config, 4)
    run_federation(grid, config, n_items=150)
    train, _ = load_train_test(config)
    evaluation = eval_length(150)
    layouts = {stats_length(150), train_length(150, 8), evaluation, evaluation + train_length(150, 8)}
    assert grid.received
    for reply in grid.received:
        content = reply.content
        assert list(content.array_records) == [protocol.REPLY]
        assert not content.config_records and not content.metric_records
        arrays = content.array_records[protocol.REPLY]
        assert list(arrays) == ["vector"]
        vector = arrays["vector"].numpy()
        assert vector.shape[0] in layouts  # independent of how many users or ratings the client holds
    # The user factors stay in the clients' own state.
    for context in grid.contexts.values():
        p = UserStateStore(context, None, None).latest()["p"]
        for reply in grid.received:
            vector = reply.content.array_records[protocol.REPLY]["vector"].numpy()
            assert not np.isin(p.astype(np.float64).ravel()[:20], vector).any()


def test_failed_client_is_left_out_and_training_goes_on():
    config = small_config(**{"federated.eval_every": 5})
    grid = FakeGrid(config, 4, fail={node_ids(4)[1]: {"train"}})
    result = run_federation(grid, config, n_items=150)
    assert [entry["clients"] for entry in result["history"]] == [3] * 5
    assert all(any(str(node_ids(4)[1]) in f for f in entry["failures"]) for entry in result["history"])
    assert np.isfinite(result["rmse"])


def test_round_below_min_clients_is_skipped_with_the_model_unchanged():
    config = small_config(**{"federated.min_clients": 4, "federated.rounds": 2})
    grid = FakeGrid(config, 4, fail={node_ids(4)[2]: {"train"}})
    result = run_federation(grid, config, n_items=150)
    assert all("skipped" in entry for entry in result["history"])
    initial = mf.init_item_side(150, 8, config.model.init_std, 3.0, init_rng(config.model.seed, ITEM_STREAM))
    np.testing.assert_array_equal(result["item_model"]["q"], initial.q)


def test_client_sampling_uses_the_requested_count():
    config = small_config(**{"federated.clients_per_round": 2, "federated.eval_every": 5})
    grid = FakeGrid(config, 4)
    result = run_federation(grid, config, n_items=150)
    assert [entry["sampled"] for entry in result["history"]] == [2] * 5


def test_delta_mode_learns():
    config = small_config(**{"federated.update": "delta", "federated.local_epochs": 3, "federated.rounds": 15,
                             "federated.server_optimizer": "sgd", "federated.server_lr": 1.0,
                             "federated.client_optimizer": "adam", "federated.client_lr": 0.05})
    result = run_federation(FakeGrid(config, 4), config, n_items=150)
    rmse = [entry["rmse"] for entry in result["history"]]
    assert rmse[-1] < rmse[0] - 0.05


def test_malformed_client_vector_is_rejected_not_summed():
    config = small_config(**{"federated.rounds": 1, "federated.num_clients": 3})
    grid = FakeGrid(config, 3)
    original = grid.app

    class Corrupting:
        def __call__(self, message, context):
            reply = original(message, context)
            if context.node_id == node_ids(3)[0]:
                from flwr.app import Array, ArrayRecord

                reply.content.array_records[protocol.REPLY] = ArrayRecord({"vector": Array(np.zeros(3))})
            return reply

    grid.app = Corrupting()
    result = run_federation(grid, config, n_items=150)
    assert result["history"][0]["clients"] == 2
    assert any("shape" in f for f in result["history"][0]["failures"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_client_vector_is_rejected_and_the_round_is_the_sum_of_the_others(bad):
    """One client's train vector holds a NaN (or inf): it is left out, so the item side equals that of a round
    in which that client did not answer, instead of a model poisoned with NaN."""
    config = small_config(**{"federated.rounds": 1})
    grid = FakeGrid(config, 4)
    original, liar = grid.app, node_ids(4)[2]

    def corrupting(message, context):
        reply = original(message, context)
        settings = message.content.config_records[protocol.CONFIG]
        if context.node_id == liar and settings["task"] == protocol.TASK_TRAIN and settings["round"] == 1:
            vector = reply.content.array_records[protocol.REPLY]["vector"].numpy().copy()
            vector[len(vector) // 2] = bad
            from flwr.app import Array, ArrayRecord

            reply.content.array_records[protocol.REPLY] = ArrayRecord({"vector": Array(vector)})
        return reply

    grid.app = corrupting
    result = run_federation(grid, config, n_items=150)
    reference = run_federation(FakeGrid(config, 4, fail={liar: {"plain@1"}}), config, n_items=150)
    assert [entry["clients"] for entry in result["history"]] == [3]
    assert any(str(liar) in f and "NaN or infinite" in f for f in result["history"][0]["failures"])
    assert np.isfinite(result["item_model"]["q"]).all() and np.isfinite(result["rmse"])
    np.testing.assert_array_equal(result["item_model"]["q"], reference["item_model"]["q"])


def test_client_sampling_varies_between_rounds_and_follows_the_seed():
    """clients_per_round = 2 of 6: each round trains the sampled pair (only they are asked), the pairs differ
    between rounds, the same seed gives the same pairs and another seed other pairs."""

    def trained_pairs(seed: int) -> list[tuple[int, ...]]:
        config = small_config(**{"federated.num_clients": 6, "federated.clients_per_round": 2, "federated.rounds": 6,
                                 "federated.eval_every": 6, "federated.seed": seed})
        grid = FakeGrid(config, 6)
        result = run_federation(grid, config, n_items=150)
        pairs = []
        for round_number in range(1, 7):
            asked = {m.metadata.dst_node_id for m in grid.sent
                     if m.content.config_records[protocol.CONFIG]["task"] == protocol.TASK_TRAIN
                     and m.content.config_records[protocol.CONFIG]["round"] == round_number}
            pairs.append(tuple(sorted(asked)))
        assert [entry["clients"] for entry in result["history"]] == [2] * 6
        return pairs

    pairs = trained_pairs(0)
    assert all(len(pair) == 2 for pair in pairs)
    assert len(set(pairs)) >= 3  # not one fixed pair (15 pairs possible)
    assert len({node for pair in pairs for node in pair}) >= 4
    assert trained_pairs(0) == pairs
    assert trained_pairs(1) != pairs


def test_sampled_rounds_are_evaluated_on_every_client_at_the_models_of_those_rounds():
    """2 of 4 clients train each round, so evaluation is its own exchange with all clients: the RMSE recorded
    for round m equals the final RMSE of the same run stopped after m rounds; rounds not due have none."""
    overrides = {"federated.clients_per_round": 2, "federated.eval_every": 2}
    config = small_config(**overrides, **{"federated.rounds": 3})
    grid = FakeGrid(config, 4)
    result = run_federation(grid, config, n_items=150)
    assert "rmse" not in result["history"][0] and "rmse" in result["history"][1] and "rmse" in result["history"][2]
    for rounds in (2, 3):
        short = small_config(**overrides, **{"federated.rounds": rounds})
        alone = run_federation(FakeGrid(short, 4), short, n_items=150)
        assert result["history"][rounds - 1]["rmse"] == alone["rmse"]
        assert result["history"][rounds - 1]["mae"] == alone["mae"]
    evaluations = [m for m in grid.sent if m.content.config_records[protocol.CONFIG]["task"] == protocol.TASK_EVALUATE]
    assert sorted(m.metadata.dst_node_id for m in evaluations) == sorted(node_ids(4) * 2)  # rounds 2 and 3, everyone
    for message in grid.sent:  # a train message carries the known-items mask only when it also evaluates
        settings = message.content.config_records[protocol.CONFIG]
        if settings["task"] == protocol.TASK_TRAIN:
            assert "known" not in message.content.array_records[protocol.ITEM]


def test_clients_follow_the_servers_settings_not_their_own():
    """Deployed clients do not know the run's configuration: model, federated and eval settings come with every
    message. Clients built with the defaults train and evaluate exactly as clients given the server's config."""
    server_config = small_config(**{"eval.top_k": 3, "eval.relevant_threshold": 3.0, "federated.rounds": 2,
                                    "federated.client_lr": 0.1, "model.reg": 0.02})
    own = run_federation(FakeGrid(server_config, 4), server_config, n_items=150)
    # The clients' own configuration: the data, and their own policy (this plain-sum test lets them answer plain).
    data_only = load_config(None, {**{key: value for key, value in SMALL.items() if key.startswith("synthetic.")},
                                   "secagg.require_secure": False})
    assert data_only.eval.top_k == 10 and data_only.model.factors != 8
    other = run_federation(FakeGrid(data_only, 4), server_config, n_items=150)
    assert {key: other[key] for key in ("rmse", "mae", "ndcg@3", "recall@3")} == \
        {key: own[key] for key in ("rmse", "mae", "ndcg@3", "recall@3")}
    np.testing.assert_array_equal(other["item_model"]["q"], own["item_model"]["q"])


def test_clients_that_leave_are_not_asked_and_clients_that_join_take_part():
    nodes = node_ids(4)

    class ChangingGrid(FakeGrid):
        present = nodes[:3]

        def get_node_ids(self):
            return list(self.present)

    config = small_config(**{"federated.num_clients": 3, "federated.rounds": 3, "federated.eval_every": 3})
    grid = ChangingGrid(config, 4)

    def after_round(entry):
        if entry["round"] == 1:
            grid.present = nodes[1:]  # node 0 left, node 3 joined

    result = run_federation(grid, config, n_items=150, on_round=after_round)
    asked = {r: sorted(m.metadata.dst_node_id for m in grid.sent
                       if m.content.config_records[protocol.CONFIG]["task"] == protocol.TASK_TRAIN
                       and m.content.config_records[protocol.CONFIG]["round"] == r) for r in (1, 2, 3)}
    assert asked == {1: nodes[:3], 2: nodes[1:], 3: nodes[1:]}
    assert [entry["clients"] for entry in result["history"]] == [3, 3, 3]
    assert not any(entry["failures"] for entry in result["history"])


def test_a_round_nobody_answers_is_skipped_and_its_evaluation_left_empty():
    """Round 2 gets no reply at all: the evaluation of round 1 that rode on it is missing (not invented), round 2
    is skipped, and round 3 trains and is evaluated."""
    config = small_config(**{"federated.rounds": 3})
    grid = FakeGrid(config, 4, fail={node: {"plain@2"} for node in node_ids(4)})
    result = run_federation(grid, config, n_items=150)
    first, second, third = result["history"]
    assert "rmse" not in first and "skipped" not in first
    assert second["skipped"] == "0 replies, fewer than min_clients = 1" and second["clients"] == 0
    assert "skipped" not in third and third["clients"] == 4 and np.isfinite(third["rmse"])


def test_a_round_with_exactly_min_clients_trains():
    config = small_config(**{"federated.min_clients": 3, "federated.rounds": 2})
    result = run_federation(FakeGrid(config, 4, fail={node_ids(4)[2]: {"train"}}), config, n_items=150)
    assert [entry["clients"] for entry in result["history"]] == [3, 3]
    assert not any("skipped" in entry for entry in result["history"])


def test_a_small_fraction_still_samples_one_client():
    config = small_config(**{"federated.fraction": 0.1, "federated.rounds": 2})
    result = run_federation(FakeGrid(config, 4), config, n_items=150)
    assert [entry["sampled"] for entry in result["history"]] == [1, 1]


def test_waiting_for_clients_returns_once_enough_joined_or_fails_naming_the_count():
    from fedrec.server.federation import wait_for_nodes

    class Joining:
        calls = 0

        def get_node_ids(self):
            self.calls += 1
            return [7, 3, 5][: 1 + self.calls]

    assert wait_for_nodes(Joining(), 3, timeout=10) == [3, 5, 7]
    with pytest.raises(FedrecError, match="only 3 of 4 clients connected within 0.6 s"):
        wait_for_nodes(Joining(), 4, timeout=0.6)


def test_a_simulation_with_fewer_nodes_starts_once_their_number_stops_changing(monkeypatch):
    """On a clock that moves only when the server sleeps: nodes 2, then 4 at 0.5 s, then 6 at 1.2 s; the
    server starts a settle period (1 s) after the last change, with all three."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    from fedrec.server import federation

    class Clock:
        now = 0.0

        def monotonic(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    clock = Clock()

    class Simulated(InMemoryGrid):
        def __init__(self):  # no SuperLink behind it: only the node list is asked for
            pass

        def get_node_ids(self):
            return [2] if clock.now < 0.5 else [2, 4] if clock.now < 1.2 else [2, 4, 6]

    monkeypatch.setattr(federation, "time", clock)
    assert federation.wait_for_nodes(Simulated(), 5, timeout=60) == [2, 4, 6]
    assert 2.2 <= clock.now < 2.5


def test_each_round_is_reported_once_when_complete_and_the_result_describes_the_run():
    config = small_config(**{"federated.eval_every": 2, "federated.rounds": 5})
    reported: list[dict] = []
    result = run_federation(FakeGrid(config, 4), config, n_items=150, on_round=lambda entry: reported.append(dict(entry)))
    assert [entry["round"] for entry in reported] == [1, 2, 3, 4, 5]
    assert ["rmse" in entry for entry in reported] == [False, True, False, True, True]  # reported after its evaluation
    # Rounds 2 and 4 are evaluated with the next round's training (every client sampled): all answered.
    assert not any("eval_partial" in entry for entry in reported)
    assert reported == result["history"]
    assert result["rounds"] == 5 and result["num_clients"] == 4 and 0 < result["wall_seconds"] < 120
    assert 0 < sum(entry["seconds"] for entry in reported) < result["wall_seconds"]
    assert result["rmse"] == reported[-1]["rmse"]


def test_no_answer_to_the_statistics_round_is_one_clear_error():
    config = small_config()
    grid = FakeGrid(config, 4, fail={node: {"stats"} for node in node_ids(4)})
    first, second = node_ids(4)[:2]
    with pytest.raises(FedrecError, match=f"no client answered the statistics round: node {first}: no reply within "
                                          f"300 s; node {second}: no reply"):
        run_federation(grid, config, n_items=150)


def test_an_observer_sees_every_decoded_sum_before_the_server_uses_it():
    """`fedrec audit` watches what the server holds through run_federation's on_sum: every exchange, in order,
    with its group, task, length and participants."""
    config = small_config(**{"federated.rounds": 2})
    seen = []
    result = run_federation(FakeGrid(config, 4), config, n_items=150,
                            on_sum=lambda group, task, sum_: seen.append((group, task["task"], sum_)))
    n_eval, n_train = eval_length(150, False), train_length(150, 8)
    assert [(group, task, len(sum_.total), len(sum_.participants)) for group, task, sum_ in seen] == [
        ("0", protocol.TASK_STATS, stats_length(150), 4), ("1", protocol.TASK_TRAIN, n_train, 4),
        ("2", protocol.TASK_TRAIN, n_eval + n_train, 4),  # round 1's evaluation rides on round 2's exchange
        ("2.eval", protocol.TASK_EVALUATE, n_eval, 4)]
    assert [entry["clients"] for entry in result["history"]] == [4, 4]
