"""Deployment input handling, in process and fast: `fedrec server`, `fedrec client` and `fedrec data` refuse bad
input with one clear error and exit 2 before starting any process or writing anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedrec.server.cli import read_catalogue
from fedrec.shared import processes, protocol
from fedrec.shared.cli import main
from fedrec.shared.data.reader import read_ratings_file

SMALL = ["--set", "synthetic.n_users=60", "--set", "synthetic.n_items=40", "--set", "synthetic.n_ratings=900"]


class FakeProcess:
    """What `processes.start` returns in these tests: a process that has already exited (status 0)."""

    pid, returncode, stdout = -1, 0, ()

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0


@pytest.fixture
def started(monkeypatch) -> list[list[str]]:
    """Commands the CLI would start: recorded, not run (a server refusing its input must record none)."""
    commands: list[list[str]] = []

    def start(command, **_):
        commands.append([str(part) for part in command])
        return FakeProcess()

    monkeypatch.setattr(processes, "start", start)
    monkeypatch.setattr(processes, "stop", lambda *args, **kwargs: None)
    monkeypatch.setattr(processes, "handle_sigterm", lambda *args: None)  # keep pytest's own handlers
    return commands


def server(tmp_path: Path, *extra: str, items: Path | None = None) -> int:
    if items is None:
        items = tmp_path / "items.txt"
        if not items.exists():
            items.write_text("item\na\nb\nc\n")
    return main(["server", "--items", str(items), "--state-dir", str(tmp_path / "state"), *extra])


# --- the item catalogue -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("item\na\nb\n", ["a", "b"]),                   # a header is skipped
    ("movieId,title\n7,Heat\n9,Alien\n", ["7", "9"]),  # first field of a CSV, header skipped
    ("a\tx\n\nb\ty\n", ["a", "b"]),                 # tabs, blank lines
    ("1\n2\n3\n", ["1", "2", "3"]),                 # no header: the first line is an item
])
def test_catalogue_reads_the_first_field_and_skips_a_header(tmp_path, text, expected):
    path = tmp_path / "items.txt"
    path.write_text(text)
    assert read_catalogue(path) == expected


@pytest.mark.parametrize("text, message", [
    ("", "is empty"), ("item\n", "is empty"), ("\n\n", "is empty"),
    ("item\na\nb\na\n", "more than once"),
])
def test_bad_catalogue_exits_2_before_anything_starts(tmp_path, capsys, started, text, message):
    items = tmp_path / "items.txt"
    items.write_text(text)
    assert server(tmp_path, "--insecure", items=items) == 2
    error = capsys.readouterr().err
    assert error.startswith("fedrec: error:") and message in error and str(items) in error
    assert started == [] and not (tmp_path / "state").exists()


def test_missing_catalogue_exits_2(tmp_path, capsys, started):
    assert server(tmp_path, "--insecure", items=tmp_path / "nope.txt") == 2
    assert "cannot read the item catalogue" in capsys.readouterr().err and started == []


# --- addresses ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", ":9092", "127.0.0.1:0", "127.0.0.1:65536",
                                     "localhost:http", "127.0.0.1:-5"])
def test_bad_address_exits_2_for_server_and_client(tmp_path, capsys, started, address):
    assert server(tmp_path, "--insecure", "--address", address) == 2
    assert f"--address {address!r}: expected HOST:PORT" in capsys.readouterr().err
    data = tmp_path / "train.csv"
    data.write_text("user,item,rating\n1,2,3\n")
    assert main(["client", "--server", address, "--data", str(data), "--insecure"]) == 2
    assert f"--server {address!r}: expected HOST:PORT" in capsys.readouterr().err
    assert started == [] and not (tmp_path / "state").exists()


# --- --resume and the state folder --------------------------------------------------------------------------------

def test_server_checks_the_item_features_against_the_catalogue_before_starting(tmp_path, capsys, started):
    """model.item_features: a feature file with the wrong number of columns for --factors is one error before
    anything starts; a good one passes the check."""
    (tmp_path / "features.csv").write_text("item,x,y\na,1,0\nb,0,1\n")
    assert server(tmp_path, "--insecure", "--factors", "3", "--set", f"model.item_features={tmp_path / 'features.csv'}") == 2
    assert "set model.factors = 2" in capsys.readouterr().err and started == []
    server(tmp_path, "--insecure", "--factors", "2", "--set", f"model.item_features={tmp_path / 'features.csv'}")
    error = capsys.readouterr().err  # (it goes on to start the SuperLink, which these tests only pretend to)
    assert "model.factors" not in error and "item features" not in error and started


def test_resume_without_a_checkpoint_exits_2(tmp_path, capsys, started):
    assert server(tmp_path, "--insecure", "--resume") == 2
    error = capsys.readouterr().err
    assert error.startswith("fedrec: error: --resume:") and "holds no checkpoint to resume from" in error
    assert started == [] and not (tmp_path / "state").exists()


def test_a_checkpoint_without_resume_exits_2_and_is_kept(tmp_path, capsys, started):
    state = tmp_path / "state"
    state.mkdir()
    (state / "server-state.npz").write_bytes(b"earlier run")
    assert server(tmp_path, "--insecure") == 2
    error = capsys.readouterr().err
    assert "holds an earlier run: pass --resume" in error and str(state) in error
    assert started == [] and sorted(p.name for p in state.iterdir()) == ["server-state.npz"]
    assert (state / "server-state.npz").read_bytes() == b"earlier run"


def test_server_certs_folder_without_the_files_exits_2(tmp_path, capsys, started):
    (tmp_path / "certs").mkdir()
    assert server(tmp_path, "--certs", str(tmp_path / "certs")) == 2
    assert "ca.crt not found" in capsys.readouterr().err and started == []


def test_server_needs_certs_or_insecure(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        server(tmp_path)
    assert exit_info.value.code == 2 and "--certs" in capsys.readouterr().err


# --- fedrec client -------------------------------------------------------------------------------------------------

def test_client_certs_without_key_exits_2_before_starting(tmp_path, capsys, started):
    data = tmp_path / "train.csv"
    data.write_text("user,item,rating\n1,2,3\n")
    (tmp_path / "certs").mkdir()
    assert main(["client", "--server", "127.0.0.1:9092", "--data", str(data), "--certs", str(tmp_path / "certs")]) == 2
    assert "--certs needs --key FILE" in capsys.readouterr().err
    key = tmp_path / "client-0.key"
    assert main(["client", "--server", "127.0.0.1:9092", "--data", str(data), "--certs", str(tmp_path / "certs"),
                 "--key", str(key)]) == 2
    assert "ca.crt not found" in capsys.readouterr().err
    assert started == [] and not (tmp_path / "train.csv.fedrec-state").exists()


def test_client_with_a_malformed_file_exits_2_naming_the_line(tmp_path, capsys, started):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,3\n1,3,banana\n")
    assert main(["client", "--server", "127.0.0.1:9", "--data", str(bad), "--insecure"]) == 2
    error = capsys.readouterr().err
    assert f"{bad}:3" in error and "rating is not a number" in error
    assert started == []


def test_client_on_bad_rows_drop_starts_with_the_good_rows_and_passes_the_choice_on(tmp_path, capsys, started):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,3\n1,3,banana\n2,2,4\n")
    # The stand-in SuperNode exits at once, which a real client reports as not taking part (exit 2).
    assert main(["client", "--server", "127.0.0.1:9092", "--data", str(bad), "--insecure", "--on-bad-rows", "drop",
                 "--state-dir", str(tmp_path / "client-state")]) == 2
    assert "2 valid ratings of 2 users" in capsys.readouterr().err
    [command] = started
    node_config = command[command.index("--node-config") + 1]
    # The SuperNode's ClientApp reads the file again with the same choice (and the same state folder).
    assert f"{protocol.NODE_ON_BAD_ROWS}='drop'" in node_config
    assert f"{protocol.NODE_DATA_FILE}='{bad.resolve()}'" in node_config
    assert f"{protocol.NODE_STATE_DIR}='{(tmp_path / 'client-state').resolve()}'" in node_config
    assert command[command.index("--superlink") + 1] == "127.0.0.1:9092" and "--insecure" in command


# --- fedrec data check / partition ---------------------------------------------------------------------------------

def test_data_check_reports_counts_or_every_bad_row(tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text("user,item,rating\n1,2,3\n1,3,4\n2,2,5\n")
    assert main(["data", "check", str(good)]) == 0
    assert f"{good}: 3 valid ratings, 2 users, 2 items" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,3\n1,3,banana\n2,2,9\n")
    assert main(["data", "check", str(bad)]) == 2
    error = capsys.readouterr().err
    assert f"{bad}:3" in error and "rating is not a number" in error and f"{bad}:4" in error
    assert main(["data", "check", str(tmp_path / "missing.csv")]) == 2


def test_data_partition_deals_each_user_to_one_client(tmp_path):
    out = tmp_path / "parts"
    assert main(["data", "partition", "--num-clients", "3", "--out", str(out), *SMALL]) == 0
    items = read_catalogue(out / "items.txt")
    assert (out / "items.txt").read_text().startswith("item\n") and len(items) == 40
    users_of, total = [], 0
    for k in range(3):
        users = set()
        for name in ("train", "test"):
            table, report = read_ratings_file(out / f"client-{k}/{name}.csv", rating_min=1, rating_max=5)
            assert report.rows_read == report.rows_kept and set(table.items) <= set(items)
            users |= set(table.users)
            total += report.rows_kept
        users_of.append(users)
        assert users
    assert total == 900
    assert not (users_of[0] & users_of[1]) and not (users_of[0] & users_of[2]) and not (users_of[1] & users_of[2])


def test_data_partition_of_a_file_with_bad_rows_fails_or_drops_them(tmp_path, capsys):
    source = tmp_path / "ratings.csv"
    rows = [f"u{u},i{i},{1 + (u * i) % 5}" for u in range(12) for i in range(5)]
    source.write_text("user,item,rating\n" + "\n".join(rows[:7] + ["u0,i9,banana", "u1,i9,7"] + rows[7:]) + "\n")
    out = tmp_path / "parts"
    assert main(["data", "partition", "--input", str(source), "--num-clients", "2", "--out", str(out)]) == 2
    assert f"{source}:9" in capsys.readouterr().err and not out.exists()
    assert main(["data", "partition", "--input", str(source), "--num-clients", "2", "--out", str(out),
                 "--on-bad-rows", "drop"]) == 0
    kept = sum(read_ratings_file(out / f"client-{k}/{name}.csv", rating_min=1, rating_max=5)[1].rows_kept
               for k in range(2) for name in ("train", "test"))
    assert kept == 60 and read_catalogue(out / "items.txt") == [f"i{i}" for i in range(5)]


def test_partitioned_files_are_what_deployed_clients_read(tmp_path):
    """A `fedrec data partition` folder passes `fedrec client`'s own validation (no process started)."""
    out = tmp_path / "parts"
    assert main(["data", "partition", "--num-clients", "2", "--out", str(out), *SMALL]) == 0
    from fedrec.client.data import file_data
    from fedrec.shared.config import load_config

    catalogue = tuple(read_catalogue(out / "items.txt"))
    data = file_data(load_config(), out / "client-0/train.csv", out / "client-0/test.csv", catalogue)
    assert data.train.n_items == len(catalogue) and len(data.train) > 0 and len(data.test) > 0
    assert np.isin(data.test.items, np.arange(len(catalogue))).all()

