"""Resuming a run from the server's checkpoint gives exactly the run that was never interrupted (in process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedrec.client.state import UserStateStore
from fedrec.server.app import run_deployment
from fedrec.server.cli import read_catalogue
from fedrec.server.state import Checkpoint
from fedrec.shared import protocol
from fedrec.shared.cli import main
from fedrec.shared.config import load_config
from fedrec.shared.errors import FedrecError
from tests.fakegrid import FakeGrid

SMALL = {
    "synthetic.n_users": 120, "synthetic.n_items": 150, "synthetic.n_ratings": 4000,
    "model.factors": 8, "federated.num_clients": 4, "federated.secure": False,
    # Adam on both sides: its moments and step count are state that a resume must carry over.
    "federated.server_optimizer": "adam", "federated.client_optimizer": "adam",
}
# Everything a round records except timings and bytes (the interrupted run's last round also paid a final evaluation).
COMPARED = ("round", "clients", "sampled", "rmse", "mae", "ndcg@10")


def deploy(grid: FakeGrid, rounds: int, state_dir: Path, catalogue: list[str], resume: bool, **overrides) -> dict:
    """What `fedrec server` submits to the SuperLink: a run spec read by the ServerApp's deployment path."""
    config = load_config(None, {**SMALL, "federated.rounds": rounds, **overrides})
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "catalogue.json").write_text(json.dumps(catalogue))
    spec = {"config": config.model_dump(mode="json"), "catalogue": str(state_dir / "catalogue.json"),
            "state_dir": str(state_dir), "resume": resume, "json": str(state_dir / "results.json"),
            "run_id": "the-run"}  # fedrec server keeps one run id across --resume (run-id.txt)
    (state_dir / "run.json").write_text(json.dumps(spec))
    run_deployment(grid, state_dir / "run.json")
    return json.loads((state_dir / "results.json").read_text())


def user_states(grid: FakeGrid) -> dict[int, dict[str, np.ndarray]]:
    return {node: UserStateStore(context, None, None).latest() for node, context in grid.contexts.items()}


def assert_same_run(resumed: dict, resumed_dir: Path, whole: dict, whole_dir: Path) -> None:
    assert [entry["round"] for entry in resumed["history"]] == [1, 2, 3, 4]
    for mine, theirs in zip(resumed["history"], whole["history"], strict=True):
        assert {key: mine.get(key) for key in COMPARED} == {key: theirs.get(key) for key in COMPARED}
    assert resumed["rmse"] == whole["rmse"] and resumed["mae"] == whole["mae"]
    with np.load(resumed_dir / "item-model.npz") as mine, np.load(whole_dir / "item-model.npz") as theirs:
        for key in ("q", "bi", "mu"):
            np.testing.assert_array_equal(mine[key], theirs[key])
    mine, theirs = Checkpoint(resumed_dir).load(), Checkpoint(whole_dir).load()
    assert mine.round == theirs.round == 4
    assert sorted(mine.optimizer) == sorted(theirs.optimizer) and int(mine.optimizer["t"][0]) == 4
    for key in mine.optimizer:  # the server's Adam moments and step count, bit for bit
        np.testing.assert_array_equal(mine.optimizer[key], theirs.optimizer[key])


def test_resumed_run_equals_the_uninterrupted_run(tmp_path):
    """2 rounds with a checkpoint, then resume to 4: the same history, item side and server optimizer state
    as one 4-round run. The clients keep their state in their Contexts (the same grid), as live SuperNodes do."""
    catalogue = [f"item-{k}" for k in range(150)]
    whole_grid = FakeGrid(load_config(None, SMALL), 4)
    whole = deploy(whole_grid, 4, tmp_path / "whole", catalogue, resume=False)

    grid = FakeGrid(load_config(None, SMALL), 4)
    first = deploy(grid, 2, tmp_path / "resumed", catalogue, resume=False)
    assert [entry["round"] for entry in first["history"]] == [1, 2]
    resumed = deploy(grid, 4, tmp_path / "resumed", catalogue, resume=True)
    assert_same_run(resumed, tmp_path / "resumed", whole, tmp_path / "whole")
    for node, state in user_states(grid).items():  # the clients' user factors and Adam state, too
        expected = user_states(whole_grid)[node]
        assert sorted(state) == sorted(expected) and int(state["opt.t"][0]) == 4  # one local step per round, kept
        for key in state:
            np.testing.assert_array_equal(state[key], expected[key])
    # The resumed run asked for no statistics round: the global mean and known items came from the checkpoint.
    tasks = [m.content.config_records[protocol.CONFIG]["task"] for m in grid.sent]
    assert tasks.count(protocol.TASK_STATS) == 4  # one per client, in the first run only


@pytest.fixture(scope="module")
def client_files(tmp_path_factory) -> Path:
    """Four clients' train/test files and the catalogue, written by `fedrec data partition` (in process)."""
    out = tmp_path_factory.mktemp("clients")
    code = main(["data", "partition", "--num-clients", "4", "--out", str(out),
                 "--set", "synthetic.n_users=120", "--set", "synthetic.n_items=150", "--set", "synthetic.n_ratings=4000"])
    assert code == 0
    return out


def file_nodes(files: Path, state_root: Path) -> list[dict]:
    """The node config `fedrec client` gives its SuperNode: its own files and state folder."""
    return [{protocol.NODE_DATA_FILE: str(files / f"client-{k}/train.csv"),
             protocol.NODE_TEST_FILE: str(files / f"client-{k}/test.csv"),
             protocol.NODE_STATE_DIR: str(state_root / f"client-{k}"),
             protocol.NODE_POLICY["require_secure"]: False}  # these runs use the plain sum (`--allow-plain`)
            for k in range(4)]


def test_restarted_server_and_clients_continue_exactly(client_files, tmp_path):
    """Server AND clients restarted after round 2 (fresh Contexts): the clients' factors come back from their
    state folders, so the run still equals the uninterrupted one. A client that forgot them would differ."""
    catalogue = read_catalogue(client_files / "items.txt")
    config = load_config(None, SMALL)
    whole = deploy(FakeGrid(config, 4, node_configs=file_nodes(client_files, tmp_path / "whole-clients")),
                   4, tmp_path / "whole", catalogue, resume=False)
    nodes = file_nodes(client_files, tmp_path / "clients")
    deploy(FakeGrid(config, 4, node_configs=nodes), 2, tmp_path / "resumed", catalogue, resume=False)
    restarted = FakeGrid(config, 4, node_configs=nodes)  # new processes: nothing in memory
    resumed = deploy(restarted, 4, tmp_path / "resumed", catalogue, resume=True)
    assert_same_run(resumed, tmp_path / "resumed", whole, tmp_path / "whole")
    for k in range(4):
        mine = UserStateStore(None, tmp_path / f"clients/client-{k}", None).latest()
        theirs = UserStateStore(None, tmp_path / f"whole-clients/client-{k}", None).latest()
        np.testing.assert_array_equal(mine["p"], theirs["p"])


def test_client_files_are_coded_by_the_servers_catalogue(client_files, tmp_path):
    """A client's item ids are mapped onto the server's catalogue order: shuffling the catalogue moves each
    item's counts to its new position, and ratings of items outside the catalogue are left out."""
    catalogue = read_catalogue(client_files / "items.txt")
    shuffled = list(np.random.default_rng(3).permutation(catalogue))
    dropped = shuffled.pop()  # an item the server does not know
    config = load_config(None, {**SMALL, "federated.rounds": 1})
    counts = {}
    for name, items in (("plain", catalogue), ("shuffled", shuffled)):
        grid = FakeGrid(config, 4, node_configs=file_nodes(client_files, tmp_path / name))
        deploy(grid, 1, tmp_path / f"{name}-server", items, resume=False)
        stats = [r.content.array_records[protocol.REPLY]["vector"].numpy() for r in grid.received[:4]]
        assert all(len(vector) == 4 + len(items) for vector in stats)  # [sum, n, test n, ranked users, counts]
        counts[name] = dict(zip(items, np.sum(stats, axis=0)[4:]))
        counts[name + "-n"] = float(np.sum(stats, axis=0)[1])
    assert all(counts["shuffled"][item] == counts["plain"][item] for item in shuffled)
    assert counts["shuffled-n"] == counts["plain-n"] - counts["plain"][dropped] and counts["plain"][dropped] > 0


def test_resuming_a_finished_training_only_evaluates_it(tmp_path):
    """Stopped after the last round's training, before its evaluation: the resumed run trains nothing and
    reports the evaluation the uninterrupted run reported."""
    catalogue = [f"item-{k}" for k in range(150)]
    grid = FakeGrid(load_config(None, SMALL), 4)
    first = deploy(grid, 2, tmp_path / "state", catalogue, resume=False)
    sent = len(grid.sent)
    again = deploy(grid, 2, tmp_path / "state", catalogue, resume=True)
    tasks = [m.content.config_records[protocol.CONFIG]["task"] for m in grid.sent[sent:]]
    assert tasks == [protocol.TASK_EVALUATE] * 4
    assert [e["round"] for e in again["history"]] == [1, 2]
    assert (again["rmse"], again["mae"], again["history"][-1]["rmse"]) == (first["rmse"], first["mae"], first["rmse"])


def test_resume_with_a_checkpoint_of_another_shape_is_refused(tmp_path):
    catalogue = [f"item-{k}" for k in range(150)]
    grid = FakeGrid(load_config(None, SMALL), 4)
    deploy(grid, 1, tmp_path / "state", catalogue, resume=False)
    before = (tmp_path / "state/server-state.npz").read_bytes()
    with pytest.raises(FedrecError, match="checkpoint holds 150 items x 8 factors, this run has 150 x 4"):
        deploy(grid, 2, tmp_path / "state", catalogue, resume=True, **{"model.factors": 4})
    with pytest.raises(FedrecError, match="checkpoint holds 150 items x 8 factors, this run has 149 x 8"):
        deploy(grid, 2, tmp_path / "state", catalogue[:-1], resume=True)
    assert (tmp_path / "state/server-state.npz").read_bytes() == before  # the checkpoint is left as it was
