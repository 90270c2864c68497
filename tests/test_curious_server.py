"""The curious server: it records every decoded sum with its participant list over many rounds, then attacks.

It runs the real training loop with secure aggregation and real ClientApps (the in-process fake grid), and
plays the attacks found on the old protocol: solving for constant per-client vectors over sampled rounds,
differencing the sums around a dropout, and reading rated items from that difference.
"""

from __future__ import annotations

import numpy as np
import pytest

import fedrec.server.federation as federation
from fedrec.server.federation import run_federation
from fedrec.shared import protocol
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.partition import partition_users
from fedrec.shared.errors import FedrecError
from fedrec.shared.federated import ClientTrainer, eval_length, train_length
from tests.fakegrid import FakeGrid, node_ids

N_ITEMS = 120
DATA = {"synthetic.n_users": 150, "synthetic.n_items": N_ITEMS, "synthetic.n_ratings": 3000, "model.factors": 4}


class Recorder:
    """Wraps the real aggregator and keeps what the server holds: (exchange group, participants, sum)."""

    def __init__(self, inner):
        self.inner, self.log = inner, []

    def sum(self, node_ids, config, arrays, length, group):
        result = self.inner.sum(node_ids, config, arrays, length, group)
        if result.total is not None:
            self.log.append((group, config.get("task"), tuple(sorted(result.participants)), result.total.copy()))
        return result


def recorded_run(monkeypatch, num_clients, fail=None, **overrides):
    config = load_config(None, {**DATA, "federated.num_clients": num_clients, **overrides})
    recorders = []
    real = federation.make_aggregator

    def recording(grid, cfg):
        recorders.append(Recorder(real(grid, cfg)))
        return recorders[-1]

    monkeypatch.setattr(federation, "make_aggregator", recording)
    grid = FakeGrid(config, num_clients, fail=fail)
    result = run_federation(grid, config, n_items=N_ITEMS, n_users=config.synthetic.n_users)
    return config, grid, result, recorders[0].log


def client_truth(config, num_clients):
    """Per client (in node order): per-item training counts and number of training ratings."""
    train, _ = load_train_test(config)
    owner = partition_users(train.user_counts(), num_clients, config.federated.partition, config.federated.seed)
    counts = np.zeros((num_clients, train.n_items))
    np.add.at(counts, (owner[train.users], train.items), 1.0)
    return counts, counts.sum(1)


def contains_block(vector: np.ndarray, block: np.ndarray, atol: float = 1e-3) -> bool:
    """Whether `block` appears anywhere in `vector` as a contiguous run (the server knows every layout)."""
    if vector.size < block.size:
        return False
    windows = np.lib.stride_tricks.sliding_window_view(vector, block.size)
    return bool(np.any(np.all(np.abs(windows - block) <= atol, axis=1)))


def contains_value(vector: np.ndarray, value: float, atol: float = 1e-3) -> bool:
    return bool(np.any(np.abs(vector - value) <= atol))


def test_least_squares_over_sampled_rounds_recovers_no_counts_or_totals(monkeypatch):
    """30 clients, 6 sampled a round, 40 rounds: the old train vector carried each client's per-item counts
    and rating total, which least squares over (participation x vectors = sums) recovered exactly."""
    n = 30
    config, grid, _, log = recorded_run(monkeypatch, n, **{"federated.clients_per_round": 6, "federated.rounds": 40,
                                                            "federated.eval_every": 40})
    nodes = node_ids(n)
    train = [(parts, total) for _, task, parts, total in log if task == protocol.TASK_TRAIN]
    assert len(train) == 40 and len({parts for parts, _ in train}) > 30  # the participant sets really vary
    participation = np.array([[node in parts for node in nodes] for parts, _ in train], dtype=float)
    sums = np.stack([total for _, total in train])
    recovered = np.linalg.lstsq(participation, sums, rcond=None)[0]  # the server's best per-client vectors
    counts, totals = client_truth(config, n)
    assert np.linalg.matrix_rank(participation) == n  # the system is solvable: a constant would come out
    for c in range(n):
        assert not contains_block(recovered[c], counts[c]), f"client {c}'s per-item counts recovered"
        assert not contains_value(recovered[c], totals[c]), f"client {c}'s rating total recovered"


def _dropout_run(monkeypatch):
    n, victim, round_ = 10, 3, 4
    nodes = node_ids(n)
    config, grid, result, log = recorded_run(
        monkeypatch, n, fail={nodes[victim]: {f"secagg.masked_input@{round_}"}},
        **{"federated.rounds": 6, "federated.eval_every": 1})
    # Evaluation rides on each train exchange: the first eval_length values are the previous model's evaluation.
    train = {int(group): (parts, total) for group, task, parts, total in log if task == protocol.TASK_TRAIN}
    assert nodes[victim] in train[round_ - 1][0] and nodes[victim] not in train[round_][0]
    return config, n, victim, round_, train, log


def test_differencing_sums_around_a_dropout_recovers_no_counts_or_totals(monkeypatch):
    config, n, victim, round_, train, log = _dropout_run(monkeypatch)
    counts, totals = client_truth(config, n)
    difference = train[round_ - 1][1] - train[round_][1]  # "one dropout exposes the dropped client"
    assert not contains_block(difference, counts[victim])
    assert not contains_value(difference, totals[victim])
    # Nor its test-set size or the number of its users with a relevant test rating (evaluation denominators).
    _, test = load_train_test(config)
    owner = partition_users(load_train_test(config)[0].user_counts(), n, "iid", config.federated.seed)
    mine = owner[test.users] == victim
    ranked = np.unique(test.users[mine & (test.values >= config.eval.relevant_threshold)]).size
    head = difference[: eval_length(N_ITEMS)]
    assert not contains_value(head, float(mine.sum())) and not contains_value(head, float(ranked))
    for _, _, _, total in log:  # nor in any single sum (only the one statistics sum carries counts, summed)
        assert not contains_block(total, counts[victim])


def precision_at_rated(scores: np.ndarray, rated: np.ndarray) -> float:
    """Of the |rated| items ranked highest by `scores`, the fraction the client really rated."""
    top = np.argsort(-scores, kind="stable")[: int(rated.sum())]
    return float(rated[top].mean())


def dropout_attack(config, n, victim, round_, train, log) -> tuple[float, float]:
    """The server differences the train sums before and after the dropout, corrects for the model's drift
    with the round before, and ranks items by how much of their row is left; items whose row went from
    non-zero to exactly zero come first. Returns (attack, popularity) precision at the number of items the
    victim rated; popularity ranks items by their true number of ratings over all clients, as if it were
    public (what the statistics sum tells a server without DP)."""
    counts, _ = client_truth(config, n)
    rated = counts[victim] > 0
    k = config.model.factors
    popularity = counts.sum(0)

    def per_item(vector):  # the item update's q rows and b_i, as |row| per item
        q, bi = vector[: N_ITEMS * k].reshape(N_ITEMS, k), vector[N_ITEMS * k:]
        return np.sqrt((q ** 2).sum(1) + bi ** 2)

    before, after, earlier = (train[r][1][-train_length(N_ITEMS, k):] for r in (round_ - 1, round_, round_ - 2))
    drift = before - earlier
    residual = per_item(before - (after - drift * (n - 1) / n)) / (per_item(before) + 1e-12)
    vanished = (per_item(before) > 0) & (per_item(after) == 0)
    return precision_at_rated(residual + 10.0 * vanished, rated), precision_at_rated(popularity, rated)


def test_secure_sum_alone_does_not_hide_rated_items_from_a_difference_around_a_dropout(monkeypatch):
    """What the threat model states: without noise, the drift-corrected difference of the sums around a
    dropout ranks the dropped client's rated items better than public popularity does (measured here, and
    reported by `fedrec audit`). Hiding it takes noise on every coordinate: differential privacy."""
    attack, guess = dropout_attack(*_dropout_run(monkeypatch))
    assert attack > guess + 0.02, f"attack {attack:.3f} vs popularity {guess:.3f}"


# ----- the client's own policy


def test_a_server_asking_for_a_plain_vector_gets_an_error_reply_and_nothing_else():
    clients = load_config(None, {**DATA, "federated.num_clients": 4, "federated.rounds": 1})  # secure: required
    server = clients.model_copy(update={"federated": clients.federated.model_copy(update={"secure": False})})
    grid = FakeGrid(clients, 4)
    with pytest.raises(FedrecError, match="no client answered the statistics round"):
        run_federation(grid, server, n_items=N_ITEMS)
    assert len(grid.received) == 4
    for reply in grid.received:
        assert reply.has_error() and not reply.has_content()
        assert "requires secure aggregation" in reply.error.reason


def test_a_cohort_below_the_clients_minimum_gets_error_replies():
    config = load_config(None, {**DATA, "federated.num_clients": 4, "federated.rounds": 1, "secagg.min_cohort": 5})
    grid = FakeGrid(config, 4)
    with pytest.raises(FedrecError, match="no client answered the statistics round"):
        run_federation(grid, config, n_items=N_ITEMS)
    refusals = [r.error.reason for r in grid.received if r.has_error()]
    assert refusals and all("cohort of 4 is below this client's minimum of 5" in why for why in refusals)


def test_a_range_error_reaches_the_server_without_any_number_from_the_vector(monkeypatch):
    original = ClientTrainer.train

    def huge(self, item, *args, **kwargs):
        vector = original(self, item, *args, **kwargs)
        vector[37] = 1e15  # beyond any bound: the client must refuse to encode it
        return vector

    monkeypatch.setattr(ClientTrainer, "train", huge)
    config = load_config(None, {**DATA, "federated.num_clients": 4, "federated.rounds": 1})
    grid = FakeGrid(config, 4)
    result = run_federation(grid, config, n_items=N_ITEMS)
    assert "skipped" in result["history"][0]
    reasons = [r.error.reason for r in grid.received if r.has_error()]
    assert len(reasons) == 4
    for reason in reasons:
        assert "range error" in reason and "masked_input" in reason
        assert not any(ch.isdigit() for ch in reason.replace("secagg", "")), reason
    failures = " ".join(result["history"][0]["failures"])
    assert "1e+15" not in failures and "index" not in failures and "1000000000000000" not in failures
