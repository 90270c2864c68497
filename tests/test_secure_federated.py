"""Secure aggregation inside federated training: same model as the plain sum, dropouts, aborts, no plaintext.
(Secure aggregation on Flower's simulation engine: tests/test_federated.py::test_flower_simulation_engine_end_to_end.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from flwr.app import Message

from fedrec.server.federation import run_federation
from fedrec.shared import protocol
from fedrec.shared.config import load_config
from tests.fakegrid import FakeGrid, node_ids

SMALL = {
    "synthetic.n_users": 120, "synthetic.n_items": 150, "synthetic.n_ratings": 4000,
    "model.factors": 8, "federated.num_clients": 6, "federated.rounds": 4,
}


def run(secure: bool, fail=None, **overrides):
    config = load_config(None, {**SMALL, "federated.secure": secure, **overrides})
    grid = FakeGrid(config, 6, fail=fail)
    return run_federation(grid, config, n_items=150), grid


def test_secure_training_matches_plain_training():
    plain, _ = run(False)
    secure, _ = run(True)
    assert abs(secure["rmse"] - plain["rmse"]) <= 1e-4
    np.testing.assert_allclose(secure["item_model"]["q"], plain["item_model"]["q"], atol=1e-5)
    assert [e["rmse"] for e in secure["history"]] == pytest.approx([e["rmse"] for e in plain["history"]], abs=1e-4)


def test_no_plain_vector_reaches_the_server():
    _, grid = run(True)
    assert grid.received
    for reply in grid.received:
        records = set(reply.content.array_records) | set(reply.content.config_records)
        assert protocol.REPLY not in records  # the plain vector record never appears
        assert records <= {protocol.SECAGG, protocol.SECAGG_ARRAYS}
        if protocol.SECAGG_ARRAYS in reply.content.array_records:
            masked = reply.content.array_records[protocol.SECAGG_ARRAYS]["masked"].numpy()
            assert masked.dtype == np.uint64
            # A masked vector of small values would have tiny integers; masked ones fill 64 bits.
            assert np.median(masked.astype(np.float64)) > 2.0**60


@pytest.mark.parametrize("stage, left_out", [("secagg.advertise", True), ("secagg.share_keys", True),
                                              ("secagg.masked_input", True), ("secagg.unmask", False)])
def test_a_client_dropping_at_any_stage_gives_the_plain_run_of_the_clients_in_the_sum(stage, left_out):
    """Node 2 drops at one stage of every secure sum. Before its masked input is in, it is left out of every
    sum: the run equals a plain run without it. Once its masked input is in (a drop at unmasking), the others'
    shares unmask the sum, which includes it: the run equals the plain run of all six."""
    nodes = node_ids(6)
    secure, _ = run(True, fail={nodes[2]: {stage}})
    plain, _ = run(False, fail={nodes[2]: {"plain"}} if left_out else None)
    assert [entry["clients"] for entry in secure["history"]] == [5 if left_out else 6] * 4
    assert [entry["clients"] for entry in plain["history"]] == [entry["clients"] for entry in secure["history"]]
    assert [e["rmse"] for e in secure["history"]] == pytest.approx([e["rmse"] for e in plain["history"]], abs=1e-5)
    np.testing.assert_allclose(secure["item_model"]["q"], plain["item_model"]["q"], atol=1e-5)
    failures = [failure for entry in secure["history"] for failure in entry["failures"]]
    assert all(str(nodes[2]) in failure for failure in failures)  # nobody else was blamed
    # Every cohort member is asked at the first three stages; at unmasking only committee members are (the
    # committee is drawn from the run's random id), so a node off the committee is never missed there.
    assert failures or stage == "secagg.unmask"


class ReplayGrid(FakeGrid):
    """At one stage, node `liar` answers with a copy of node `victim`'s reply to that stage from an earlier
    round (or this one): a reply carrying another client's identity, as a malicious client could replay."""

    def __init__(self, config, num_nodes: int, liar: int, victim: int, stage: str, round_number: int, from_round: int,
                 fail=None):
        super().__init__(config, num_nodes, fail=fail)
        self.liar, self.victim, self.stage, self.round, self.from_round = liar, victim, stage, round_number, from_round
        self.kept: dict[int, Message] = {}

    def send_and_receive(self, messages, *, timeout=None):
        replies = super().send_and_receive(messages, timeout=timeout)
        config = messages[0].content.config_records[protocol.CONFIG]
        if config["stage"] == self.stage and config["round"] == self.from_round:
            self.kept.update({reply.metadata.src_node_id: reply for reply in replies})
        if config["stage"] != self.stage or config["round"] != self.round:
            return replies
        to_liar = next(m for m in messages if m.metadata.dst_node_id == self.liar)
        forged = Message(content=copy.deepcopy(self.kept[self.victim].content), reply_to=to_liar)
        return [forged if reply.metadata.src_node_id == self.liar else reply for reply in replies]


@pytest.mark.parametrize("liar, victim, from_round", [(3, 1, 2), (1, 3, 2), (1, 3, 1)])
def test_a_secure_reply_from_the_wrong_node_is_rejected(liar, victim, from_round):
    """In round 2 a node sends another node's masked input (this round's, or the previous round's while that
    node has dropped): the liar is left out of the sum and the victim counted at most once, so round 2 trains
    on exactly what a plain round without them trains on."""
    nodes = node_ids(6)
    # Two of six may be missing from round 2: the announced dropout bound must allow it (6 x 0.4).
    config = load_config(None, {**SMALL, "federated.secure": True, "secagg.dropout_bound": 0.4})
    victim_drops = from_round != 2
    grid = ReplayGrid(config, 6, nodes[liar], nodes[victim], "secagg.masked_input", 2, from_round,
                      fail={nodes[victim]: {"secagg.masked_input@2"}} if victim_drops else None)
    secure = run_federation(grid, config, n_items=150)
    left_out = [nodes[liar]] + ([nodes[victim]] if victim_drops else [])
    plain, _ = run(False, fail={node: {"plain@2"} for node in left_out})
    assert [entry["clients"] for entry in secure["history"]] == [6, 6 - len(left_out), 6, 6]
    assert any(str(nodes[liar]) in failure for failure in secure["history"][1]["failures"])
    assert secure["history"][0]["rmse"] == pytest.approx(plain["history"][0]["rmse"], abs=1e-6)  # round 1, evaluated in round 2
