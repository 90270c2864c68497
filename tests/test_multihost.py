"""A deployment across network namespaces: `fedrec server` in one, each `fedrec client` in its own, joined by
virtual links on private addresses, as on separate hosts (the README's multi-host commands). Needs root and
`ip`; skipped with the reason where namespaces cannot be made."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedrec.shared import processes
from fedrec.shared.certs import make_certificates

pytestmark = pytest.mark.deployment
SUBNET = "10.213.0"  # private, and only inside the namespaces this test makes: nothing on the host changes
SERVER_IP = f"{SUBNET}.1"
PORT = 9092
CLIENTS = 3  # secure aggregation's smallest cohort
RUN_TIMEOUT = 400.0  # about 40 s on an idle 2-core machine; far longer when it is shared


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


class Namespaces:
    """A server namespace with a bridge, and one namespace per client linked to it by a veth pair."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)  # distinct names, so that parallel runs never share a namespace
        self.server = f"fedrec-srv-{tag}"
        self.clients = [f"fedrec-c{k}-{tag}" for k in range(CLIENTS)]
        self.made: list[str] = []

    def run(self, *args: str) -> None:
        done = ip(*args)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def create(self) -> None:
        for name in [self.server, *self.clients]:
            self.run("netns", "add", name)
            self.made.append(name)
            self.run("-n", name, "link", "set", "lo", "up")  # each SuperNode talks to its ClientApp on loopback
        self.run("-n", self.server, "link", "add", "br0", "type", "bridge")
        self.run("-n", self.server, "addr", "add", f"{SERVER_IP}/24", "dev", "br0")
        self.run("-n", self.server, "link", "set", "br0", "up")
        for k, name in enumerate(self.clients):
            self.run("-n", self.server, "link", "add", f"to-c{k}", "type", "veth", "peer", "name", "eth0", "netns", name)
            self.run("-n", self.server, "link", "set", f"to-c{k}", "master", "br0", "up")
            self.run("-n", name, "addr", "add", f"{SUBNET}.{k + 2}/24", "dev", "eth0")
            self.run("-n", name, "link", "set", "eth0", "up")

    def remove(self) -> None:
        for name in reversed(self.made):  # deleting a namespace deletes its links and bridge
            ip("netns", "del", name)
        self.made.clear()


@pytest.fixture
def namespaces():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add); this test runs only as root")
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    made = Namespaces()
    try:
        made.create()
    except RuntimeError as exc:
        made.remove()
        pytest.skip(f"cannot make network namespaces here: {exc}")
    try:
        yield made
    finally:
        made.remove()
        leftover = ip("netns", "list").stdout
        assert made.server not in leftover and not any(name in leftover for name in made.clients)


def fedrec(namespace: str, *args: object) -> list[str]:
    return ["ip", "netns", "exec", namespace, sys.executable, "-m", "fedrec.shared.cli", *map(str, args)]


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in {log.name} within {timeout:.0f} s:\n"
                         f"{log.read_text(errors='replace')[-3000:] if log.exists() else ''}")


def test_server_and_clients_on_separate_network_namespaces(namespaces: Namespaces, tmp_path: Path) -> None:
    data = tmp_path / "data"
    subprocess.run([sys.executable, "-m", "fedrec.shared.cli", "data", "partition", "--num-clients", str(CLIENTS),
                    "--out", str(data), "--set", "synthetic.n_users=60", "--set", "synthetic.n_items=80",
                    "--set", "synthetic.n_ratings=2000"], check=True, capture_output=True)
    # The server certificate names the address clients dial; nothing else of the server's is reachable.
    make_certificates(tmp_path / "certs", [SERVER_IP], CLIENTS)
    children: list[subprocess.Popen] = []
    started = time.perf_counter()
    try:
        server = processes.start(fedrec(namespaces.server, "server", "--address", f"{SERVER_IP}:{PORT}",
                                        "--items", data / "items.txt", "--certs", tmp_path / "certs",
                                        "--rounds", "2", "--min-clients", CLIENTS, "--factors", "4",
                                        "--timeout", "60", "--state-dir", tmp_path / "server-state",
                                        "--json", tmp_path / "result.json"),
                                 log_file=tmp_path / "server.log")
        children.append(server)
        wait_for(tmp_path / "server.log", "waiting for clients", server)  # keys registered: clients may join
        for k, name in enumerate(namespaces.clients):
            folder = data / f"client-{k}"
            children.append(processes.start(
                fedrec(name, "client", "--server", f"{SERVER_IP}:{PORT}", "--data", folder / "train.csv",
                       "--test", folder / "test.csv", "--certs", tmp_path / "certs",
                       "--key", tmp_path / f"certs/client-{k}.key", "--state-dir", tmp_path / f"client-{k}-state"),
                log_file=tmp_path / f"client-{k}.log"))
        code = server.wait(timeout=RUN_TIMEOUT)
        assert code == 0, (tmp_path / "server.log").read_text()[-3000:]
    finally:
        for child in reversed(children):
            processes.stop(child, grace=5.0)
    result = json.loads((tmp_path / "result.json").read_text())
    assert [entry["round"] for entry in result["history"]] == [1, 2]
    assert all(entry["clients"] == CLIENTS for entry in result["history"])
    assert result["config"]["federated"]["secure"] is True
    # Each client reached the server over its own link: the server's namespace has no route to loopback clients.
    for k in range(CLIENTS):
        assert (tmp_path / f"client-{k}-state/user-state.bin").exists()
    print(f"multi-namespace run: {time.perf_counter() - started:.1f} s")
