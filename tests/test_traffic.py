"""Plain replies travel as float32 when that is exact, and the run is the same to the bit."""

from __future__ import annotations

import numpy as np

from fedrec.client import app as client_app
from fedrec.server.federation import run_federation
from fedrec.shared import protocol
from fedrec.shared.config import load_config
from fedrec.shared.federated import train_length
from tests.fakegrid import FakeGrid

SMALL = {
    "synthetic.n_users": 120, "synthetic.n_items": 150, "synthetic.n_ratings": 4000,
    "model.factors": 8, "federated.num_clients": 4, "federated.rounds": 3, "federated.secure": False,
    "federated.eval_every": 2,
}


def test_wire_vector_narrows_only_what_float32_holds_exactly():
    exact = np.array([0.5, -3.25, float(np.float32(0.1)), 2.0**-140, -0.0], dtype=np.float64)
    sent = client_app.wire_vector(exact)
    assert sent.dtype == np.float32
    assert np.array_equal(sent.astype(np.float64), exact) and np.signbit(sent[-1])
    # 0.1 as a float64, a sum past 2^24, a float64 subnormal, a value past float32's range: all kept as they are.
    for value in (0.1, 2.0**24 + 1, 1e-310, 1e39, 1.0 + 2.0**-30):
        vector = np.array([1.0, value, 2.0])
        sent = client_app.wire_vector(vector)
        assert sent.dtype == np.float64 and np.array_equal(sent, vector), value


def test_a_plain_run_with_float32_replies_is_the_float64_run_to_the_bit(monkeypatch):
    config = load_config(None, SMALL)
    narrow_grid = FakeGrid(config, 4)
    narrow = run_federation(narrow_grid, config, n_items=150)
    monkeypatch.setattr(client_app, "wire_vector", lambda vector: vector)  # every reply as float64, as before
    wide = run_federation(FakeGrid(config, 4), config, n_items=150)
    np.testing.assert_array_equal(narrow["item_model"]["q"], wide["item_model"]["q"])
    np.testing.assert_array_equal(narrow["item_model"]["bi"], wide["item_model"]["bi"])
    for key in ("rmse", "mae", "ndcg@10"):
        assert narrow[key] == wide[key]
    assert [e.get("rmse") for e in narrow["history"]] == [e.get("rmse") for e in wide["history"]]
    assert not any(e["failures"] for e in narrow["history"])
    # The train replies (item gradients, computed in float32) went as float32: half the bytes up.
    train = [reply for request, reply in narrow_grid.exchanges
             if request.content.config_records[protocol.CONFIG]["task"] == protocol.TASK_TRAIN
             and not request.content.config_records[protocol.CONFIG]["evaluate"]]
    assert train and all(r.content.array_records[protocol.REPLY]["vector"].numpy().dtype == np.float32 for r in train)
    # (a reply's bytes also count its array header, the same for both)
    assert wide["history"][0]["bytes_up"] - narrow["history"][0]["bytes_up"] == 4 * 4 * train_length(150, 8)
