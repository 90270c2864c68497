"""Joining an existing Ray cluster for `fedrec simulate --ray-address`: check the address, then connect once."""

from __future__ import annotations

import os
import socket
import sys
import threading

from fedrec.shared.cli import parse_address
from fedrec.shared.errors import ConfigError

PROBE_SECONDS = 5.0
CONNECT_SECONDS = 60.0
# Ray's own ray.init retries a silent or wrong address for minutes: fedrec waits this long, then gives up.


def _refuse(address: str, why: str) -> ConfigError:
    return ConfigError(f"--ray-address {address}: {why}. Pass the address `ray start --head` prints on the "
                       f"cluster's head node (HOST:PORT of its GCS, default port 6379)")


def connect(address: str) -> None:
    """Connect this process to the Ray cluster at HOST:PORT, or raise one ConfigError saying why not.

    Flower's Ray backend then finds Ray initialised and uses this connection: its actors run on every node of
    the cluster, as many per node as the node has CPUs for (one CPU per simulated client)."""
    host, port = parse_address(address, "--ray-address")
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            pass
    except OSError as exc:
        raise _refuse(address, f"nothing answers there ({exc.strerror or exc})") from None
    import ray

    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            # As Flower's backend would call it, plus the address (no CPU counts: the cluster has its own).
            ray.init(address=f"{host}:{port}", logging_level="ERROR", log_to_driver=False, include_dashboard=False,
                     runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}})
            outcome["error"] = None
        except Exception as exc:  # noqa: BLE001 - any failure of Ray's is reported in one line
            outcome["error"] = exc

    worker = threading.Thread(target=init, name="ray-connect", daemon=True)
    worker.start()
    worker.join(CONNECT_SECONDS)
    if "error" not in outcome:
        raise _refuse(address, f"the port is open but no Ray cluster answered within {CONNECT_SECONDS:.0f} s")
    if outcome["error"] is not None:
        first_line = (str(outcome["error"]).strip().splitlines() or [type(outcome["error"]).__name__])[0]
        raise _refuse(address, f"Ray could not connect ({first_line[:200]})")
