"""Child processes that are always cleaned up: own process group, SIGTERM then SIGKILL, and free ports."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

STOP_GRACE_SECONDS = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


PR_SET_PDEATHSIG = 1


def tool(name: str) -> str:
    """A console script of this environment (flwr, flower-superlink), found beside the running Python first,
    because a fresh install's scripts may not be on PATH yet (pyenv shims, unactivated venvs)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the parent dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's own cleanup still stops its children


def start(command: Sequence[str], log_file: Path | None = None, env: dict | None = None,
          capture: bool = False) -> subprocess.Popen:
    """Start `command` in its own process group (so that stopping it also stops whatever it spawned),
    set to be terminated if this process dies; `capture` pipes its output to the caller as text."""
    env = dict(os.environ if env is None else env)
    # The child (and what it spawns, like Flower's flwr-serverapp) finds this environment's scripts first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    output = open(log_file, "ab") if log_file is not None else (subprocess.PIPE if capture else None)  # noqa: SIM115
    process = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT if output else None,
                               start_new_session=True, env=env, preexec_fn=_die_with_parent, text=capture or None)
    process.log_handle = output  # type: ignore[attr-defined]
    return process


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            process.wait(timeout=grace)
            # The leader is gone; children may linger in the group: one more signal to the group.
            os.killpg(process.pid, sig)
        except subprocess.TimeoutExpired:
            continue
        except (ProcessLookupError, PermissionError):
            pass
        break
    handle = getattr(process, "log_handle", None)
    if handle is not None and handle is not subprocess.PIPE:
        handle.close()


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> bool:
    """True once something accepts connections on host:port (False on timeout or if `process` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C, so that `finally` blocks stop the children."""
    raise KeyboardInterrupt
