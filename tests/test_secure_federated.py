"""Secure aggregation inside federated training: same model as the plain sum, dropouts, aborts, no plaintext."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.parametrize("stage", ["secagg.advertise", "secagg.share_keys", "secagg.masked_input", "secagg.unmask"])
def test_a_client_dropping_at_any_stage_does_not_stop_training(stage):
    nodes = node_ids(6)
    result, _ = run(True, fail={nodes[2]: {stage}})
    assert all("skipped" not in entry for entry in result["history"])
    assert np.isfinite(result["rmse"])


def test_dropout_in_masked_input_gives_the_sum_of_the_survivors():
    """Node 3 misses round 2's training: the secure round equals a plain round without it."""
    nodes = node_ids(6)
    fail = {nodes[3]: {"secagg.masked_input@2"}}
    secure, _ = run(True, fail=fail)
    plain, _ = run(False, fail={nodes[3]: {"plain@2"}})
    assert secure["history"][1]["clients"] == 5
    np.testing.assert_allclose(secure["item_model"]["q"], plain["item_model"]["q"], atol=1e-5)


def test_too_few_survivors_aborts_the_round_loudly_and_training_goes_on():
    nodes = node_ids(6)
    fail = {node: {"secagg.masked_input@2"} for node in nodes[:5]}
    result, _ = run(True, fail=fail, **{"federated.eval_every": 4})
    second = result["history"][1]
    assert "skipped" in second
    assert any("aborted" in failure for failure in second["failures"])
    assert "skipped" not in result["history"][2]  # the next round sets up a new cohort and trains


@pytest.mark.flower
def test_secure_simulation_on_the_flower_engine(tmp_path):
    from fedrec.shared.cli import main

    common = ["simulate", "--set", "synthetic.n_users=90", "--set", "synthetic.n_items=120",
              "--set", "synthetic.n_ratings=3000", "--factors", "4", "--num-clients", "3", "--rounds", "2",
              "--model-out", str(tmp_path / "item.npz")]
    assert main([*common, "--secure", "--json", str(tmp_path / "secure.json")]) == 0
    import json

    secure = json.loads((tmp_path / "secure.json").read_text())
    assert [entry["clients"] for entry in secure["history"]] == [3, 3]
    assert np.isfinite(secure["rmse"])
