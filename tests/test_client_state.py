"""A client's user state belongs to one run: fresh for a new run, per-round for a redone round, by user id for a changed file."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fedrec.client.state import UserStateStore
from fedrec.server.federation import run_federation
from fedrec.server.state import Checkpoint
from fedrec.shared import protocol
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test, write_csv
from fedrec.shared.data.partition import partition_users
from tests.fakegrid import FakeGrid

SMALL = {
    "synthetic.n_users": 80, "synthetic.n_items": 60, "synthetic.n_ratings": 2000,
    "model.factors": 4, "federated.num_clients": 2, "federated.secure": False,
}


def config(rounds: int, factors: int = 4):
    return load_config(None, {**SMALL, "federated.rounds": rounds, "model.factors": factors})


@pytest.mark.parametrize("factors", [4, 6])
def test_a_new_server_run_starts_the_users_fresh(factors):
    """Old code reused the user factors of an unrelated earlier run on the same nodes (and failed outright
    when the new run had another model size)."""
    grid = FakeGrid(config(2), 2)
    run_federation(grid, config(2), n_items=60, run_id="earlier")
    again = run_federation(grid, config(2, factors), n_items=60, run_id="later")
    fresh = run_federation(FakeGrid(config(2), 2), config(2, factors), n_items=60, run_id="other")
    np.testing.assert_array_equal(again["item_model"]["q"], fresh["item_model"]["q"])
    assert again["rmse"] == fresh["rmse"]


def test_a_redone_round_starts_from_the_state_before_it(tmp_path):
    """The server trains round 3, dies before saving it, and is resumed from round 2: the clients must not
    apply round 3's user step twice, so the result equals an uninterrupted run."""
    grid = FakeGrid(config(3), 2)
    run_federation(grid, config(2), n_items=60, checkpoint=Checkpoint(tmp_path / "a"), run_id="run")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    # Round 3 is trained by the clients, but this server's checkpoint ("b") is then thrown away, as in a crash.
    run_federation(grid, config(3), n_items=60, checkpoint=Checkpoint(tmp_path / "b"), resume=True, run_id="run")
    resumed = run_federation(grid, config(3), n_items=60, checkpoint=Checkpoint(tmp_path / "a"), resume=True, run_id="run")
    straight = run_federation(FakeGrid(config(3), 2), config(3), n_items=60, run_id="run")
    np.testing.assert_allclose(resumed["item_model"]["q"], straight["item_model"]["q"], rtol=1e-6, atol=1e-9)
    assert resumed["rmse"] == straight["rmse"]


def test_a_ratings_file_that_gains_a_user_mid_run_gives_the_new_user_fresh_factors(tmp_path):
    """Old code failed with an IndexError in every later round once a user was appended to the file."""
    cfg = config(2)
    train, test = load_train_test(cfg)
    client_of = partition_users(train.user_counts(), 2, "iid", 0)
    grid = FakeGrid(cfg, 2)
    files = []
    for k, node in enumerate(grid.node_ids):
        folder = tmp_path / f"client-{k}"
        write_csv(train.subset(client_of[train.users] == k), folder / "train.csv")
        write_csv(test.subset(client_of[test.users] == k), folder / "test.csv")
        grid.contexts[node].node_config = {protocol.NODE_DATA_FILE: str(folder / "train.csv"),
                                           protocol.NODE_TEST_FILE: str(folder / "test.csv"),
                                           protocol.NODE_STATE_DIR: str(folder / "state"),
                                           protocol.NODE_POLICY["require_secure"]: cfg.federated.secure}
        files.append(folder / "train.csv")
    catalogue = train.item_ids.tolist()
    run_federation(grid, cfg, len(catalogue), catalogue=catalogue, checkpoint=Checkpoint(tmp_path / "server"), run_id="r")
    node = grid.node_ids[0]
    before = UserStateStore(grid.contexts[node], tmp_path / "client-0/state", None).latest()
    with files[0].open("a") as handle:  # a new user "zz-new" (sorts last) rates two items
        handle.write(f"zz-new,{catalogue[0]},4,1\nzz-new,{catalogue[1]},2,2\n")
    result = run_federation(grid, config(3), len(catalogue), catalogue=catalogue,
                            checkpoint=Checkpoint(tmp_path / "server"), resume=True, run_id="r")
    assert [entry["clients"] for entry in result["history"]] == [2, 2, 2] and not result["history"][-1]["failures"]
    after = UserStateStore(grid.contexts[node], tmp_path / "client-0/state", None).latest()
    assert after["p"].shape[0] == before["p"].shape[0] + 1
    assert np.isfinite(after["p"]).all()


def test_a_state_file_written_before_the_packed_format_is_read_then_replaced(tmp_path):
    """An upgraded client keeps its users: its old user-state.npz is read, and the next save replaces it."""
    from fedrec.client.state import LEGACY_STATE_FILE, STATE_FILE
    from fedrec.shared import arraypack
    from flwr.app import Context, RecordDict

    def context():
        return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})

    ids = np.array(["a", "b", "c"])
    state = {"p": np.arange(6.0).reshape(3, 2), "bu": np.array([0.1, 0.2, 0.3]), "opt.t": np.array(4)}
    UserStateStore(context(), tmp_path, "run=x").record(1, state, {k: v + 1 for k, v in state.items()}, ids)
    packed = (tmp_path / STATE_FILE).read_bytes()
    np.savez(tmp_path / LEGACY_STATE_FILE, **arraypack.unpack(packed))
    (tmp_path / STATE_FILE).unlink()

    legacy = UserStateStore(context(), tmp_path, "run=x")
    assert legacy.last_round == 1
    np.testing.assert_array_equal(legacy.latest()["p"], state["p"] + 1)
    legacy.record(2, legacy.latest(), legacy.latest(), ids)
    assert (tmp_path / STATE_FILE).exists() and not (tmp_path / LEGACY_STATE_FILE).exists()
    assert arraypack.unpack((tmp_path / STATE_FILE).read_bytes())["r1/p"].tolist() == state["p"].tolist()
