"""Ctrl-C on `fedrec simulate` stops it within seconds, exit 130, with no Ray process and no output left behind."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from fedrec.shared import processes

pytestmark = pytest.mark.flower


def test_ctrl_c_stops_a_simulation_at_once_with_nothing_left(tmp_path):
    """Before: "fedrec: interrupted", then two more rounds logged and the process slept until killed."""
    log = tmp_path / "simulate.log"
    command = [sys.executable, "-m", "fedrec.shared.cli", "simulate", "--num-clients", "3", "--rounds", "400",
               "--no-secure", "--factors", "4", "--set", "synthetic.n_users=60", "--set", "synthetic.n_items=50",
               "--set", "synthetic.n_ratings=1200", "--json", tmp_path / "out.json", "--model-out", tmp_path / "model.npz"]
    simulation = processes.start(list(map(str, command)), log_file=log)
    try:
        deadline = time.monotonic() + 180
        while "round    3" not in log.read_text() and simulation.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "round    3" in log.read_text(), log.read_text()[-3000:]
        family = processes.descendants(simulation.pid)  # Ray's GCS, raylet and workers
        assert family
        os.kill(simulation.pid, signal.SIGINT)
        assert simulation.wait(timeout=30) == 130, log.read_text()[-3000:]
        deadline = time.monotonic() + 15
        while any(processes.alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in family if processes.alive(pid)]
        assert not (tmp_path / "out.json").exists() and not (tmp_path / "model.npz").exists()
        assert "fedrec: interrupted (Ctrl-C)" in log.read_text()
    finally:
        processes.stop(simulation, grace=5)
