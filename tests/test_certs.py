"""`fedrec certs`: the certificates verify, keys are private, and Flower 1.42 admits a listed SuperNode only."""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fedrec.shared import atomic
from fedrec.shared.certs import client_key_pair, make_certificates
from fedrec.shared.errors import FedrecError
from fedrec.shared.jobs import certs as certs_job

BIN = Path(sys.executable).parent


def test_files_verify_and_private_keys_are_private(tmp_path):
    paths = make_certificates(tmp_path / "pki", ["127.0.0.1", "fedrec.example", "::1"], n_clients=2)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the signature or issuer does not match
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert san.get_values_for_type(x509.DNSName) == ["fedrec.example"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    for key in [paths.ca_key, paths.server_key, *paths.client_keys]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for public in [paths.ca_cert, paths.server_cert, paths.public_key_list, *paths.client_public_keys]:
        assert stat.S_IMODE(public.stat().st_mode) == 0o644, public
    listed = paths.public_key_list.read_bytes().splitlines()
    assert len(listed) == 2
    for key, public, line in zip(paths.client_keys, paths.client_public_keys, listed):
        private = load_ssh_private_key(key.read_bytes(), None)  # what flower-supernode does with the key file
        assert load_ssh_public_key(public.read_bytes()).public_numbers() == private.public_key().public_numbers()
        assert line == public.read_bytes().strip()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch folder left behind


def test_default_hosts_and_refusal_to_overwrite(tmp_path):
    out = tmp_path / "pki"
    make_certificates(out, [], n_clients=1)
    san = x509.load_pem_x509_certificate((out / "server.pem").read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert [str(v) for v in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]

    before = (out / "ca.crt").read_bytes()
    with pytest.raises(FedrecError, match="--force"):
        make_certificates(out, [], n_clients=1)
    assert (out / "ca.crt").read_bytes() == before
    make_certificates(out, [], n_clients=1, force=True)
    assert (out / "ca.crt").read_bytes() != before


def test_an_error_leaves_nothing_half_written(tmp_path, monkeypatch):
    real, calls = atomic.write_bytes, []

    def failing(path, data, mode=None):
        calls.append(path)
        if len(calls) == 4:
            raise FedrecError(f"cannot write {path}: disk full")
        real(path, data, mode)

    monkeypatch.setattr(atomic, "write_bytes", failing)
    with pytest.raises(FedrecError, match="disk full"):
        make_certificates(tmp_path / "pki", [], n_clients=2)
    assert list(tmp_path.iterdir()) == []


def test_bad_host_is_a_clear_error(tmp_path):
    with pytest.raises(FedrecError, match="--host"):
        make_certificates(tmp_path / "pki", ["not a host"], n_clients=1)
    assert not (tmp_path / "pki").exists()


def test_command_prints_files_and_next_steps(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    certs_job.register(parser)
    args = parser.parse_args(["--out", str(tmp_path / "pki"), "--host", "10.0.0.5", "--clients", "2"])
    assert args.handler(args) == 0
    text = capsys.readouterr().out
    assert "client-1.key" in text and "--enable-supernode-auth" in text and "10.0.0.5:9093" in text
    assert sorted(p.name for p in (tmp_path / "pki").iterdir()) == sorted(
        ["ca.crt", "ca.key", "server.pem", "server.key", "client-public-keys.csv",
         "client-0.key", "client-0.pub", "client-1.key", "client-1.pub"])


# ---------------------------------------------------------------- a real SuperLink and SuperNodes on loopback


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Child processes, found through /proc: the SuperLink starts its SuperExec in a session of its own."""
    parents = {}
    for entry in Path("/proc").iterdir():
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group and every descendant, all at once; SIGKILL whatever is left after 10 s."""
    targets = {pid for proc in procs for pid in _descendants(proc.pid)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass
        for pid in targets:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in targets):
            time.sleep(0.2)
        if all(proc.poll() is not None for proc in procs) and not any(Path(f"/proc/{pid}").exists() for pid in targets):
            return


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.deployment
def test_superlink_admits_a_listed_supernode_and_refuses_others(tmp_path):
    paths = make_certificates(tmp_path / "pki", ["127.0.0.1"], n_clients=1)
    stranger_key = tmp_path / "stranger.key"
    atomic.write_bytes(stranger_key, client_key_pair("stranger")[0], mode=0o600)
    link_port = _free_port()
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "test"\n\n[superlink.test]\naddress = "127.0.0.1:{link_port}"\n'
        f'root-certificates = "{paths.ca_cert}"\n')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}

    def start(name: str, *command: str) -> subprocess.Popen:
        logs[name] = tmp_path / f"{name}.log"
        with open(logs[name], "wb") as log:
            procs[name] = subprocess.Popen([str(BIN / command[0]), *command[1:]], stdout=log,
                                           stderr=subprocess.STDOUT, env=env, start_new_session=True)
        return procs[name]

    def log(name: str) -> str:
        return logs[name].read_text(errors="replace")

    def flwr(*command: str) -> dict:
        done = subprocess.run([str(BIN / "flwr"), *command, "test", "--format", "json"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        reply = json.loads(done.stdout[done.stdout.index("{"):])
        assert reply["success"], reply  # `flwr supernode register` exits 0 even when it fails
        return reply

    def supernode(name: str, *auth: str) -> subprocess.Popen:
        return start(name, "flower-supernode", "--superlink", f"127.0.0.1:{link_port}",
                     "--root-certificates", str(paths.ca_cert), "--port", str(_free_port()), *auth)

    try:
        link = start("superlink", "flower-superlink", "--ssl-ca-certfile", str(paths.ca_cert),
                     "--ssl-certfile", str(paths.server_cert), "--ssl-keyfile", str(paths.server_key),
                     "--enable-supernode-auth", "--host", "127.0.0.1", "--port", str(link_port),
                     "--disable-runtime-dependency-installation")
        _wait_for(lambda: "Uvicorn running on https://" in log("superlink") or link.poll() is not None,
                  60, "the SuperLink to listen")
        assert link.poll() is None, "the SuperLink exited"

        node_id = int(flwr("supernode", "register", str(paths.client_public_keys[0]))["node-id"])
        member = supernode("member", "--auth-supernode-private-key", str(paths.client_keys[0]))
        stranger = supernode("stranger", "--auth-supernode-private-key", str(stranger_key))
        keyless = supernode("keyless")

        _wait_for(lambda: f"Activated node_id={node_id}" in log("superlink"), 60, "the listed SuperNode to connect")
        _wait_for(lambda: stranger.poll() is not None and keyless.poll() is not None, 60,
                  "the unlisted SuperNodes to be refused")
        assert member.poll() is None, "the listed SuperNode exited"
        assert f"SuperNode ID: {node_id}" in log("member")
        assert stranger.returncode != 0 and "Failed to activate SuperNode" in log("stranger")
        assert "No SuperNode found with the given public key" in log("superlink")
        assert keyless.returncode != 0 and "must be registered" in log("keyless")

        nodes = flwr("supernode", "ls")["nodes"]
        assert [(int(n["node-id"]), n["status"]) for n in nodes] == [(node_id, "online")]
    finally:
        _stop(list(procs.values()))
        for name in logs:
            print(f"----- {name}.log -----\n{log(name)}")
