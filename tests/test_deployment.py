"""Real processes on 127.0.0.1: `fedrec server` and `fedrec client` with TLS, SuperNode keys and secure aggregation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
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

    def server_command(self, *extra: str, port: int | None = None, state: str = "state") -> list[str]:
        return fedrec("server", "--address", f"127.0.0.1:{port or self.port}", "--items", self.root / "data/items.txt",
                      "--state-dir", self.tmp / state, "--json", self.tmp / "result.json",
                      "--certs", self.root / "certs", "--factors", "4", "--timeout", "30", *extra)

    def server(self, *extra: str, name: str = "server") -> subprocess.Popen:
        self.children[name] = processes.start(self.server_command(*extra), log_file=self.tmp / f"{name}.log")
        return self.children[name]

    def client(self, k: int, key: Path | None = None, name: str | None = None, insecure: bool = False,
               extra: tuple[str, ...] = ()) -> subprocess.Popen:
        data = self.root / f"data/client-{k}"
        name = name or f"client-{k}"
        security = ["--insecure"] if insecure else ["--certs", self.root / "certs", "--key", key or self.root / f"certs/client-{k}.key"]
        command = fedrec("client", "--server", f"127.0.0.1:{self.port}", "--data", data / "train.csv",
                         "--test", data / "test.csv", "--state-dir", self.tmp / f"{name}-state", *security, *extra)
        self.children[name] = processes.start(command, log_file=self.tmp / f"{name}.log")
        return self.children[name]

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


def test_tls_secure_run_survives_a_killed_client_and_a_killed_server_and_a_client_serves_the_final_model(
        deployment, tmp_path):
    """Three clients over TLS with SuperNode keys and secure sums. Client 2 is killed during round 1 (a
    dropout); the server is killed after round 1 and resumed with --resume; client 0 serves recommendations
    beside its SuperNode (--serve) and ends up serving the model the server saved.

    Under the default bounds (a third of the clients colluding) three clients cannot lose one: the two left
    would be one colluder and one exposed client, so the round would abort. This run announces, and its
    clients accept, bounds with no colluders and 40% dropouts, and a minimum cohort of two.
    (One run for what were three tests: a TLS secure run, kill-and-resume, and a deployed client serving;
    resuming exactly where the run stopped is checked bit for bit in process, tests/test_resume.py.)"""
    bounds = ("--set", "secagg.colluder_fraction=0", "--set", "secagg.dropout_bound=0.4")
    deployment.server("--rounds", "3", "--min-clients", "3", *bounds, *FAST_LEARNING)
    deployment.wait_for("waiting for clients", timeout=60)
    port = processes.free_port()
    for k in range(3):
        deployment.client(k, extra=(*bounds, "--min-cohort", "2", *(("--serve", str(port)) if k == 0 else ())))
    assert processes.wait_for_port("127.0.0.1", port, 60), deployment.log("client-0")
    early = httpx.get(f"http://127.0.0.1:{port}/healthz")  # up before any model arrived
    deployment.wait_for("ROUND 1.masked", name="client-2")
    processes.stop(deployment.children["client-2"], grace=0.1)
    deployment.wait_for("fedrec round 1:")
    processes.stop(deployment.children["server"], grace=5.0)
    assert (tmp_path / "state/server-state.npz").exists()
    resumed = deployment.server("--rounds", "3", "--min-clients", "2", "--resume", *bounds, *FAST_LEARNING, name="resumed")
    assert resumed.wait(timeout=RUN_TIMEOUT) == 0, deployment.log("resumed")[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert [entry["round"] for entry in result["history"]] == [1, 2, 3]
    # Round 1 is the killed server's, read from its checkpoint: a fresh restart (the same shape of history)
    # would time and count a new round 1 of two clients, without the third client's keys and shares.
    logged = re.search(r"fedrec round 1: 2 clients, test RMSE \S+, ([\d.]+) s, (\d+) bytes up, (\d+) bytes down",
                       deployment.log("server"))
    first = result["history"][0]
    assert logged and logged.groups() == (f"{first['seconds']:.2f}", str(first["bytes_up"]), str(first["bytes_down"]))
    assert result["history"][0]["clients"] == 2  # client 2 dropped out of round 1's secure sum
    assert result["config"]["federated"]["secure"] is True
    # Only clients 0 and 1 trained after round 1 and are evaluated: a smaller margin than with all three.
    assert result["rmse"] < untrained_rmse(deployment.root, clients=(0, 1)) - 0.02
    assert (tmp_path / "client-0-state/user-state.bin").exists()  # the user factors stayed on the client

    assert early.status_code in (200, 503)
    with np.load(tmp_path / "client-0-state/item-model.npz") as kept, np.load(tmp_path / "state/item-model.npz") as final:
        assert np.array_equal(kept["q"], final["q"]) and kept["items"].tolist() == final["items"].tolist()
    deadline = time.monotonic() + 20
    while httpx.get(f"http://127.0.0.1:{port}/healthz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    data = deployment.root / "data/client-0"
    user = (data / "train.csv").read_text().splitlines()[1].split(",")[0]
    reply = httpx.get(f"http://127.0.0.1:{port}/v1/users/{user}/recommendations", params={"k": 5, "explain": "true"})
    assert reply.status_code == 200 and len(reply.json()["items"]) == 5, reply.text


def test_clients_that_cannot_take_part_exit_2_with_the_reason(deployment, setup, tmp_path):
    """An unregistered key, a plain-text client against a TLS server, and a client whose server was replaced
    (HTTP 401): each exits 2 with one line saying why (before: a vague "could not establish a connection",
    endless retries with no hint, and a traceback with exit 0)."""
    from fedrec.shared.certs import client_key_pair

    private, _ = client_key_pair("stranger")
    key = tmp_path / "stranger.key"
    key.write_bytes(private)
    key.chmod(0o600)
    deployment.server("--rounds", "1", "--min-clients", "1")
    deployment.wait_for("waiting for clients", timeout=60)
    stranger = deployment.client(0, key=key, name="stranger")
    plain = deployment.client(1, insecure=True, name="plain")
    assert stranger.wait(timeout=90) == 2
    assert plain.wait(timeout=30) == 2
    assert f"fedrec: error: the server at 127.0.0.1:{deployment.port} refused this client: its key {key} is not registered" \
        in deployment.log("stranger")
    assert "uses TLS, but this client was started with --insecure" in deployment.log("plain")
    assert "Traceback" not in deployment.log("stranger") + deployment.log("plain")

    member = deployment.client(0, name="member")
    deployment.wait_for("SuperNode ID", name="member", timeout=60)  # activated on this server
    processes.stop(deployment.children["server"], grace=5.0)
    replacement = processes.start(deployment.server_command("--rounds", "1", "--min-clients", "1", state="other"),
                                  log_file=tmp_path / "replacement.log")
    deployment.children["replacement"] = replacement
    assert member.wait(timeout=90) == 2, deployment.log("member")[-2000:]
    assert "no longer accepts this client (its heartbeat was refused, HTTP 401)" in deployment.log("member")


def leftovers(*marks: str) -> list[str]:
    """Command lines of live processes that mention any of `marks` (a state folder, a port)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        except (OSError, IndexError):
            continue
        if any(mark in command for mark in marks):
            found.append(command)
    return found


def test_one_server_per_state_folder_and_port_and_sigterm_stops_everything(deployment):
    """A second server on the same state folder and a third on the same port are refused at once (before:
    both started, and the third submitted its run to the first one's SuperLink); SIGTERM on the first
    stops it with 143 and leaves no SuperLink, `flwr run` or flwr-serverapp behind, and frees the lock."""
    import os
    import signal

    from fedrec.shared.locks import FolderLock

    server = deployment.server("--rounds", "1", "--min-clients", "1")
    deployment.wait_for("waiting for clients", timeout=60)
    state = str(deployment.tmp / "state")
    same_folder = subprocess.run(deployment.server_command(port=processes.free_port()), capture_output=True, text=True, timeout=60)
    assert same_folder.returncode == 2, same_folder.stderr
    assert f"fedrec: error: {state} is in use by another fedrec server (pid {server.pid})" in same_folder.stderr
    same_port = subprocess.run(deployment.server_command(state="other"), capture_output=True, text=True, timeout=60)
    assert same_port.returncode == 2, same_port.stderr
    assert f"--address 127.0.0.1:{deployment.port}: the port is already in use" in same_port.stderr
    assert not (deployment.tmp / "other").exists()  # refused before doing anything
    assert "Traceback" not in same_folder.stderr + same_port.stderr

    family = processes.descendants(server.pid)  # SuperLink, `flwr run`, flwr-serverapp, ...
    assert family
    os.kill(server.pid, signal.SIGTERM)  # the server process alone, as a user's `kill` would
    assert server.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 15
    while (leftovers(state, f"--port {deployment.port}") or any(processes.alive(pid) for pid in family)) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not leftovers(state, f"--port {deployment.port}")
    assert not [pid for pid in family if processes.alive(pid)]
    assert processes.wait_for_port("127.0.0.1", deployment.port, timeout=1) is False
    FolderLock(deployment.tmp / "state", "test").acquire().release()  # the lock went with the process
