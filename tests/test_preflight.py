"""Everything that can be checked before training is: outputs, client counts, flags, checkpoint, port, folder lock."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from fedrec.server.federation import wait_for_nodes
from fedrec.shared.federated import Stats
from fedrec.server.state import Checkpoint, Saved
from fedrec.shared import atomic
from fedrec.shared.cli import main
from fedrec.shared.errors import FedrecError
from fedrec.shared.locks import FolderLock
from fedrec.shared.processes import free_port

SMALL_DATA = ["--set", "synthetic.n_users=300", "--set", "synthetic.n_items=100", "--set", "synthetic.n_ratings=3000"]


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_more_clients_than_users_is_one_error_before_ray_starts(capsys, tmp_path):
    """Before: 1,000 client tracebacks and 132,008 lines of output."""
    assert main(["simulate", "--num-clients", "1000", "--model-out", str(tmp_path / "m.npz"), *SMALL_DATA]) == 2
    err = error_of(capsys)
    assert "fedrec: error: --num-clients 1000: the training data has only 300 users" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "m.npz").exists()


def test_more_clients_per_round_than_clients_is_an_error(capsys, tmp_path):
    """Before: ran silently with 3."""
    args = ["simulate", "--num-clients", "3", "--clients-per-round", "5", "--model-out", str(tmp_path / "m.npz")]
    assert main([*args, *SMALL_DATA]) == 2
    assert "--clients-per-round 5 is more than the 3 clients" in error_of(capsys)


def test_unwritable_outputs_are_found_before_training_and_nothing_is_written(capsys, tmp_path):
    """Before: found only after training, with the model file already written when the JSON failed."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = tmp_path / "model.npz"
    assert main(["simulate", "--json", str(blocker / "out.json"), "--model-out", str(model), *SMALL_DATA]) == 2
    assert f"--json {blocker / 'out.json'}: cannot be written ({blocker} is a file, not a folder)" in error_of(capsys)
    assert not model.exists()
    assert main(["simulate", "--model-out", str(tmp_path), *SMALL_DATA]) == 2
    assert "is a folder, expected a file name" in error_of(capsys)


def test_outputs_are_written_together_or_not_at_all(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(FedrecError, match="no output was written"):
        atomic.write_files({tmp_path / "model.npz": b"model", blocker / "out.json": b"{}"})
    assert not (tmp_path / "model.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no temporary left either


@pytest.fixture
def server_args(tmp_path):
    items = tmp_path / "items.txt"
    items.write_text("item\na\nb\nc\n")
    return ["server", "--address", f"127.0.0.1:{free_port()}", "--items", str(items), "--insecure", "--factors", "2",
            "--state-dir", str(tmp_path / "state")]


def saved(round_number: int) -> Saved:
    return Saved(round_number, np.full((3, 2), float(round_number)), np.zeros(3), Stats(3.5, np.ones(3), 10.0, 4.0),
                 {"t": np.array([round_number])}, [{"round": r} for r in range(1, round_number + 1)])


def test_the_checkpoint_before_the_last_is_kept(tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.save(saved(1))
    checkpoint.save(saved(2))
    assert checkpoint.load().round == 2
    assert Checkpoint._read(checkpoint.previous).round == 1
    checkpoint.path.unlink()  # a crash between keeping .prev and writing the new one
    assert checkpoint.exists() and checkpoint.load().round == 1


def test_a_damaged_checkpoint_is_one_error_at_start_and_the_previous_one_is_kept(capsys, server_args, tmp_path):
    """Before: found only after every client had connected, as an uncaught BadZipFile traceback."""
    checkpoint = Checkpoint(tmp_path / "state")
    checkpoint.save(saved(1))
    checkpoint.save(saved(2))
    data = checkpoint.path.read_bytes()
    checkpoint.path.write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    assert main([*server_args, "--resume"]) == 2
    err = error_of(capsys)
    assert f"cannot resume: the checkpoint {checkpoint.path} is damaged" in err
    assert "server-state.npz.prev, round 1) is intact" in err
    assert Checkpoint._read(checkpoint.previous).round == 1
    assert not (tmp_path / "state/superlink.db").exists()  # no SuperLink was started


def test_server_checks_its_json_and_resume_shape_before_starting(capsys, server_args, tmp_path):
    """Before: `fedrec server` with an unwritable --json started training."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main([*server_args, "--json", str(blocker / "r.json")]) == 2
    assert "cannot be written" in error_of(capsys)
    Checkpoint(tmp_path / "state").save(saved(1))
    assert main([*server_args, "--resume", "--factors", "5"]) == 2
    assert "the checkpoint holds 3 items x 2 factors, this run has 3 items (--items) x 5 factors" in error_of(capsys)
    assert not (tmp_path / "state/superlink.db").exists()


def test_server_refuses_a_taken_port_and_a_locked_state_folder(capsys, server_args, tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        args = [*server_args]
        args[2] = f"127.0.0.1:{port}"
        assert main(args) == 2
        assert f"--address 127.0.0.1:{port}: the port is already in use" in error_of(capsys)
    assert not (tmp_path / "state").exists()  # refused before doing anything
    with FolderLock(tmp_path / "state", "fedrec server"):
        assert main(server_args) == 2
        assert f"{tmp_path / 'state'} is in use by another fedrec server" in error_of(capsys)


def test_folder_lock_is_exclusive_and_released(tmp_path):
    first = FolderLock(tmp_path, "fedrec server").acquire()
    with pytest.raises(FedrecError, match="in use by another fedrec server"):
        FolderLock(tmp_path, "fedrec server").acquire()
    first.release()
    FolderLock(tmp_path, "fedrec server").acquire().release()


def test_a_simulation_federation_smaller_than_num_clients_is_used_as_it_is():
    """`flwr run .` with Flower's default local federation has 2 SuperNodes; before, the app waited for
    federated.num_clients (10) for 120 s and failed."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    class TwoNodes(InMemoryGrid):
        def __init__(self):  # no link state: only the node list matters here
            pass

        def get_node_ids(self):
            return [11, 22]

    assert wait_for_nodes(TwoNodes(), wanted=10, timeout=8.0) == [11, 22]
