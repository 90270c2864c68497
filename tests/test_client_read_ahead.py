"""A client's files, read ahead by its warm SuperExec, are not read again by each message's ClientApp unless they change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from fedrec.client import cli as client_cli
from fedrec.client import data
from fedrec.shared import cli
from fedrec.shared.config import FedrecConfig

CATALOGUE = ("10", "11", "12")


@pytest.fixture
def files(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("user,item,rating\n1,10,4\n1,11,2\n2,12,5\n")
    test.write_text("user,item,rating\n2,10,3\n")
    data._read_tables.cache_clear()
    data._file_data.cache_clear()
    yield train, test
    data._read_tables.cache_clear()
    data._file_data.cache_clear()


@pytest.fixture
def reads(monkeypatch):
    """Count the reads of ratings files that reach the parser."""
    calls = []
    real = data.read_files

    def counting(paths, config):
        calls.append(list(paths))
        return real(paths, config)

    monkeypatch.setattr(data, "read_files", counting)
    return calls


def test_files_read_ahead_are_not_read_again(files, reads):
    train, test = files
    config = FedrecConfig()
    data.read_ahead(data.read_ahead_spec(config, train, test))
    assert len(reads) == 1
    served = data.file_data(config, train.resolve(), test.resolve(), CATALOGUE)  # as a ClientApp asks, by node config
    assert len(reads) == 1
    assert sorted(served.train.values.tolist()) == [2.0, 4.0, 5.0] and served.test.values.tolist() == [3.0]


def test_a_file_changed_after_reading_ahead_is_read_again(files, reads):
    train, test = files
    config = FedrecConfig()
    data.read_ahead(data.read_ahead_spec(config, train, test))
    train.write_text("user,item,rating\n1,10,1\n")
    stat = train.stat()
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a clock too coarse to see the change
    served = data.file_data(config, train.resolve(), test.resolve(), CATALOGUE)
    assert len(reads) == 2 and served.train.values.tolist() == [1.0]


def test_reading_ahead_keeps_the_clients_own_scale(files, reads):
    train, test = files
    ahead = FedrecConfig.model_validate({"data": {"rating_min": 0, "rating_max": 10}})
    data.read_ahead(data.read_ahead_spec(ahead, train, test))
    data.file_data(FedrecConfig(), train.resolve(), test.resolve(), CATALOGUE)  # another scale: not the same read
    assert len(reads) == 2


def test_fedrec_client_names_its_files_for_the_supernode(files, tmp_path, monkeypatch):
    train, test = files
    taken = {}

    def take_part(args, command, service, spec):
        taken["spec"] = spec
        return 0

    monkeypatch.setattr(client_cli, "_take_part", take_part)
    assert cli.main(["client", "--server", "127.0.0.1:1", "--data", str(train), "--test", str(test), "--insecure",
                     "--state-dir", str(tmp_path / "state"), "--rating-max", "6"]) == 0
    spec = json.loads(taken["spec"])
    assert spec["files"] == [str(train.resolve()), str(test.resolve())]  # the paths the node config gives
    assert spec["data"] == {"rating_min": None, "rating_max": 6.0, "on_bad_rows": "fail"}
    # The environment that `fedrec client` starts its SuperNode with carries it to the SuperExec.
    started = {}

    def start(command, env=None, **kwargs):
        started["env"] = env
        raise RuntimeError("stop here")

    monkeypatch.undo()
    monkeypatch.setattr(client_cli.processes, "start", start)
    monkeypatch.setattr(client_cli.processes, "handle_sigterm", lambda: None)
    with pytest.raises(RuntimeError, match="stop here"):
        client_cli._take_part(types.SimpleNamespace(), [sys.executable], None, taken["spec"])
    assert started["env"][data.READ_AHEAD_ENV] == taken["spec"]


def test_the_warm_superexec_reads_the_named_files_before_forking(files):
    train, test = files
    probe = ("from fedrec.client import data, superexec\n"
             "superexec._run_flower_superexec = lambda: None  # set up as for a SuperNode, but do not serve\n"
             "superexec.main()\n"
             "print(data._read_tables.cache_info().currsize)\n")
    env = {**os.environ, data.READ_AHEAD_ENV: data.read_ahead_spec(FedrecConfig(), train, test)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]
