"""`fedrec simulate --ray-address` on a real two-node Ray cluster started on this machine (loopback only)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HELPER = Path(__file__).with_name("ray_test_cluster.py")
TINY = ["--set", "synthetic.n_users=60", "--set", "synthetic.n_items=50", "--set", "synthetic.n_ratings=1200",
        "--factors", "4", "--num-clients", "3", "--rounds", "2"]


def read_line(stream, seconds: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    if not selector.select(seconds):
        raise AssertionError(f"the Ray test cluster did not start within {seconds:.0f} s")
    return stream.readline().strip()


@pytest.mark.flower
def test_simulate_runs_on_an_existing_two_node_ray_cluster(tmp_path: Path) -> None:
    # A short folder: Ray's socket paths under it must fit in 107 bytes.
    root = tempfile.mkdtemp(prefix="frray-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": root, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    log = open(tmp_path / "cluster.log", "w")
    cluster = subprocess.Popen([sys.executable, str(HELPER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=log, text=True, env=env, start_new_session=True)
    try:
        address = read_line(cluster.stdout, 120)
        assert address.startswith("127.0.0.1:"), address
        out = tmp_path / "result.json"
        started = time.perf_counter()
        run = subprocess.Popen(["fedrec", "simulate", "--ray-address", address, *TINY, "--json", str(out),
                                "--model-out", str(tmp_path / "model.npz")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _, stderr = run.communicate(timeout=240)
        assert run.returncode == 0, stderr[-3000:]
        result = json.loads(out.read_text())
        assert [entry["round"] for entry in result["history"]] == [1, 2]
        assert all(entry["clients"] == 3 for entry in result["history"])
        assert 0.0 < result["rmse"] < 2.0
        print(f"simulation on the cluster: {time.perf_counter() - started:.1f} s")
        # One CPU per node and one per simulated client: Flower's pool held one actor per node, so both ran clients.
        cluster.stdin.close()
        seen = json.loads(read_line(cluster.stdout, 60))
        assert run.pid in seen["driver_pids"]  # fedrec drove this cluster, not a Ray of its own
        assert [node["cpus"] for node in seen["nodes"]] == [1.0, 1.0]
        assert {node["address"] for node in seen["nodes"]} == {"127.0.0.1"}
    finally:
        if cluster.stdin and not cluster.stdin.closed:
            cluster.stdin.close()
        try:
            cluster.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)  # its own session: only what this test started
            cluster.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_a_bad_ray_address_is_one_error_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fedrec.shared.cli import main

    for address, expected in (("no-port", "expected HOST:PORT"), ("127.0.0.1:1", "nothing answers there")):
        code = main(["simulate", "--ray-address", address, *TINY, "--model-out", str(tmp_path / "model.npz")])
        assert code == 2
        assert expected in capsys.readouterr().err
        assert not (tmp_path / "model.npz").exists()
