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
DESCENDANT_GRACE_SECONDS = 3.0  # for what outlived the group: enough for a SuperNode to sign off


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


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...), read from /proc (Linux; else [])."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "(command name)", which may hold spaces
        if fields[0] != "Z":  # a zombie is already dead, only waiting to be reaped
            parent_of[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parent_of.items() if parent in frontier]
        found += children
        frontier = children
    return found


def kill_all(pids: list[int], grace: float = 3.0) -> None:
    """SIGTERM each pid, then SIGKILL those still alive after `grace` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        signalled = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                signalled.append(pid)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while sig == signal.SIGTERM and signalled and time.monotonic() < deadline:
            time.sleep(0.1)
            signalled = [pid for pid in signalled if alive(pid)]
        pids = signalled
        if not pids:
            return


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left, including descendants that left the
    group (Flower's SuperLink starts `flwr-serverapp` processes that can outlive it and ignore SIGTERM)."""
    family = descendants(process.pid) if process.poll() is None else []
    _stop_group(process, grace)
    kill_all([pid for pid in family if alive(pid)], grace=DESCENDANT_GRACE_SECONDS)
    handle = getattr(process, "log_handle", None)
    if handle is not None and handle is not subprocess.PIPE:
        handle.close()


def _stop_group(process: subprocess.Popen, grace: float) -> None:
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


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, unwinding like Ctrl-C; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + int(signum)


def interrupt(signum: int, frame: object) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C, so that `finally` blocks stop the children."""
    raise Interrupted(signum)


def exit_code(interruption: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return getattr(interruption, "exit_code", 130)


def handle_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C (exit 143) in this process."""
    signal.signal(signal.SIGTERM, interrupt)
