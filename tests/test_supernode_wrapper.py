"""The SuperNode wrapper (client/supernode.py): Flower's fixed waits shortened, fedrec's SuperExec started
in place of Flower's, and nothing else about the commands changed."""

from __future__ import annotations

import importlib
import subprocess
import sys

from fedrec.client import supernode


def test_only_flowers_fixed_waits_are_shortened(monkeypatch):
    slept = []
    monkeypatch.setattr(supernode.time, "sleep", slept.append)
    shim = supernode._patched_time(poll_seconds=0.2, reply_poll_seconds=0.02)
    for seconds in (3, 0.5, 1.0, 0.1):
        shim.sleep(seconds)
    assert slept == [0.2, 0.02, 1.0, 0.1]
    assert shim.monotonic is supernode.time.monotonic  # the rest of `time` is untouched


def test_the_superexec_is_fedrecs_with_the_same_arguments_and_other_commands_are_untouched(monkeypatch):
    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, *a, **k: started.append(command))
    shim = supernode._patched_subprocess()
    shim.Popen(["flower-superexec", "--insecure", "--runtime-api-address", "127.0.0.1:9094", "--parent-pid", "7"])
    shim.Popen(["flwr-serverapp", "--insecure"])
    assert started == [
        [sys.executable, "-m", "fedrec.client.superexec", "--insecure", "--runtime-api-address", "127.0.0.1:9094",
         "--parent-pid", "7"],
        ["flwr-serverapp", "--insecure"],
    ]


def test_a_forked_clientapp_child_exits_with_flowers_exit_code_and_never_returns(monkeypatch):
    """The child body runs Flower's flwr-clientapp main and leaves through os._exit with its code, whatever
    happens (so a child can never fall back into the SuperExec's loop)."""
    from fedrec.client import superexec

    exits = []

    class Left(Exception):
        pass

    def fake_exit(code):
        exits.append(code)
        raise Left

    monkeypatch.setattr(superexec.os, "_exit", fake_exit)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    entry = importlib.import_module("flwr.supernode.cli.flwr_clientapp")

    for behaviour, code in ((lambda: None, 0), (lambda: sys.exit(3), 3), (lambda: 1 / 0, 1)):
        monkeypatch.setattr(entry, "flwr_clientapp", behaviour)
        try:
            superexec._run_in_child(["--insecure"])
        except Left:
            pass
        assert exits[-1] == code
        assert sys.argv[0] == "flwr-clientapp"
