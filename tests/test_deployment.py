"""Real processes on 127.0.0.1: `fedrec server` and `fedrec client` with TLS, SuperNode keys and secure aggregation."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedrec.shared import processes
from fedrec.shared.certs import make_certificates

pytestmark = pytest.mark.deployment
RUN_TIMEOUT = 240.0


def fedrec(*args: str) -> list[str]:
    return [sys.executable, "-m", "fedrec.shared.cli", *map(str, args)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three clients' files, the item catalogue and the certificates, made once for the module."""
    root = tmp_path_factory.mktemp("deployment")
    data = root / "data"
    subprocess.run(fedrec("data", "partition", "--num-clients", "3", "--out", data,
                          "--set", "synthetic.n_users=90", "--set", "synthetic.n_items=120",
                          "--set", "synthetic.n_ratings=3000"), check=True, capture_output=True)
    make_certificates(root / "certs", ["127.0.0.1", "localhost"], 3)
    return root


# A learning rate at which 2 rounds on this small data clearly beat an untrained model (see untrained_rmse).
FAST_LEARNING = ("--set", "federated.server_lr=0.2", "--set", "federated.client_lr=0.2")


def untrained_rmse(root: Path, clients: tuple[int, ...] = (0, 1, 2)) -> float:
    """Test RMSE of an untrained model (the global training mean) on these clients' test files: about 1.01."""
    import numpy as np

    from fedrec.shared.data.reader import read_ratings_file

    def values(name: str, ks: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
        return np.concatenate([read_ratings_file(root / f"data/client-{k}/{name}.csv", rating_min=1, rating_max=5)[0].values
                               for k in ks])

    test = values("test", clients)
    return float(np.sqrt(np.mean((test - values("train").mean()) ** 2)))


class Deployment:
    """Starts the server and clients as separate processes and always stops them."""

    def __init__(self, root: Path, tmp: Path):
        self.root, self.tmp, self.port = root, tmp, processes.free_port()
        self.children: dict[str, subprocess.Popen] = {}

    def server(self, *extra: str, name: str = "server") -> subprocess.Popen:
        command = fedrec("server", "--address", f"127.0.0.1:{self.port}", "--items", self.root / "data/items.txt",
                         "--state-dir", self.tmp / "state", "--json", self.tmp / "result.json",
                         "--certs", self.root / "certs", "--factors", "4", "--timeout", "30", *extra)
        self.children[name] = processes.start(command, log_file=self.tmp / f"{name}.log")
        return self.children[name]

    def client(self, k: int, key: Path | None = None) -> subprocess.Popen:
        data = self.root / f"data/client-{k}"
        command = fedrec("client", "--server", f"127.0.0.1:{self.port}", "--data", data / "train.csv",
                         "--test", data / "test.csv", "--state-dir", self.tmp / f"client-{k}-state",
                         "--certs", self.root / "certs", "--key", key or self.root / f"certs/client-{k}.key")
        self.children[f"client-{k}"] = processes.start(command, log_file=self.tmp / f"client-{k}.log")
        return self.children[f"client-{k}"]

    def wait_for(self, text: str, name: str = "server", timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log(name):
                return
            time.sleep(0.5)
        raise AssertionError(f"{text!r} not in {name}'s log within {timeout} s:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for child in self.children.values():
            processes.stop(child, grace=5.0)


@pytest.fixture
def deployment(setup, tmp_path):
    running = Deployment(setup, tmp_path)
    yield running
    running.stop()


def test_tls_authenticated_secure_run_of_two_rounds(deployment, tmp_path):
    server = deployment.server("--rounds", "2", "--min-clients", "3", *FAST_LEARNING)
    deployment.wait_for("waiting for clients", timeout=60)
    for k in range(3):
        deployment.client(k)
    assert server.wait(timeout=RUN_TIMEOUT) == 0, deployment.log("server")[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [entry["round"] for entry in result["history"]] == [1, 2]
    assert all(entry["clients"] == 3 for entry in result["history"])
    assert result["rmse"] < untrained_rmse(deployment.root) - 0.05 and result["config"]["federated"]["secure"] is True
    assert (tmp_path / "client-0-state/user-state.npz").exists()  # the user factors stayed on the client


def test_killed_client_and_killed_server_the_run_still_finishes_without_gaps(deployment, tmp_path):
    """Client 2 is killed during round 1 (a dropout); the server is killed after round 1 and resumed."""
    deployment.server("--rounds", "3", "--min-clients", "3", *FAST_LEARNING)
    deployment.wait_for("waiting for clients", timeout=60)
    for k in range(3):
        deployment.client(k)
    deployment.wait_for("ROUND 1.masked", name="client-2")
    processes.stop(deployment.children["client-2"], grace=0.1)
    deployment.wait_for("fedrec round 1:")
    processes.stop(deployment.children["server"], grace=5.0)
    assert (tmp_path / "state/server-state.npz").exists()
    resumed = deployment.server("--rounds", "3", "--min-clients", "2", "--resume", *FAST_LEARNING, name="resumed")
    assert resumed.wait(timeout=RUN_TIMEOUT) == 0, deployment.log("resumed")[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [entry["round"] for entry in result["history"]] == [1, 2, 3]
    assert result["history"][0]["clients"] == 2  # client 2 dropped out of round 1's secure sum
    # Only clients 0 and 1 trained after round 1 and are evaluated: a smaller margin than with all three.
    assert result["rmse"] < untrained_rmse(deployment.root, clients=(0, 1)) - 0.02


def test_unknown_client_is_refused(deployment, setup, tmp_path):
    from fedrec.shared.certs import client_key_pair

    private, _ = client_key_pair("stranger")
    key = tmp_path / "stranger.key"
    key.write_bytes(private)
    key.chmod(0o600)
    deployment.server("--rounds", "1", "--min-clients", "1")
    deployment.wait_for("waiting for clients", timeout=60)
    stranger = deployment.client(0, key=key)
    assert stranger.wait(timeout=90) != 0
    assert "error" in deployment.log("client-0").lower()


def test_sigterm_on_the_server_stops_everything_it_started(deployment):
    import os
    import signal

    server = deployment.server("--rounds", "1", "--min-clients", "1")
    deployment.wait_for("waiting for clients", timeout=60)
    os.kill(server.pid, signal.SIGTERM)  # the server process alone, as a user's `kill` would
    assert server.wait(timeout=30) != 0
    state = str(deployment.tmp / "state")

    def leftovers() -> list[str]:  # any process started for this server (SuperLink, flwr run, serverapp)
        found = []
        for entry in Path("/proc").iterdir():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if state in command or f"--port {deployment.port}" in command:
                found.append(command)
        return found

    deadline = time.monotonic() + 15
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not leftovers()
    assert processes.wait_for_port("127.0.0.1", deployment.port, timeout=1) is False
