"""Flower's SuperNode with short polls and warm ClientApps: `python -m client.supernode [flower-supernode options]`.

Flower 1.42's SuperNode (flwr/supernode/start_client_internal.py) has three waits no option sets: it sleeps
3 s whenever a poll of the SuperLink finds no message, it checks for the ClientApp's reply every 0.5 s, and
its SuperExec helper, which it starts as `flower-superexec`, starts a fresh Python for every message. This
wrapper replaces the 3 s sleep with FEDREC_POLL_SECONDS (default 0.2 s) and the 0.5 s one with
FEDREC_REPLY_POLL_SECONDS (default 0.02 s), starts fedrec's SuperExec (client/superexec.py: warm, forked
ClientApp processes) in place of Flower's, and then runs Flower's own SuperNode entry point unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types

from fedrec.shared.flower_waits import shorten_object_pull_retries

IDLE_SLEEP_SECONDS = 3
REPLY_SLEEP_SECONDS = 0.5


def _patched_time(poll_seconds: float, reply_poll_seconds: float) -> types.ModuleType:
    shim = types.ModuleType("time")
    shim.__dict__.update(time.__dict__)
    waits = {IDLE_SLEEP_SECONDS: poll_seconds, REPLY_SLEEP_SECONDS: reply_poll_seconds}
    shim.sleep = lambda seconds: time.sleep(waits.get(seconds, seconds))
    return shim


def _patched_subprocess() -> types.ModuleType:
    """`subprocess` whose Popen starts fedrec's SuperExec wherever Flower starts `flower-superexec`."""
    shim = types.ModuleType("subprocess")
    shim.__dict__.update(subprocess.__dict__)

    def popen(command, *args, **kwargs):
        if isinstance(command, list) and command and command[0] == "flower-superexec":
            command = [sys.executable, "-m", "fedrec.client.superexec", *command[1:]]
        return subprocess.Popen(command, *args, **kwargs)

    shim.Popen = popen
    return shim


def main() -> None:
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode

    start_client_internal.time = _patched_time(float(os.environ.get("FEDREC_POLL_SECONDS", "0.2")),
                                               float(os.environ.get("FEDREC_REPLY_POLL_SECONDS", "0.02")))
    start_client_internal.subprocess = _patched_subprocess()
    shorten_object_pull_retries()  # pulling each message's objects from the SuperLink
    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
