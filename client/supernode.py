"""Flower's SuperNode with a shorter idle poll: `python -m client.supernode [flower-supernode options]`.

Flower 1.42's SuperNode sleeps a fixed 3 s whenever a poll finds no message (flwr/supernode/
start_client_internal.py; no option sets it), which adds up to 3 s to every exchange of a round.
This wrapper replaces that one sleep with FEDREC_POLL_SECONDS (default 0.2 s) and then runs Flower's
own SuperNode entry point unchanged.
"""

from __future__ import annotations

import os
import sys
import time
import types

IDLE_SLEEP_SECONDS = 3


def _patched_time(poll_seconds: float) -> types.ModuleType:
    shim = types.ModuleType("time")
    shim.__dict__.update(time.__dict__)
    shim.sleep = lambda seconds: time.sleep(poll_seconds if seconds == IDLE_SLEEP_SECONDS else seconds)
    return shim


def main() -> None:
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode

    poll_seconds = float(os.environ.get("FEDREC_POLL_SECONDS", "0.2"))
    start_client_internal.time = _patched_time(poll_seconds)
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
