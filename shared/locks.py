"""Exclusive ownership of a folder or a port: an flock'd lock file, and a check that a port is free."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from fedrec.shared.errors import ConfigError

LOCK_FILE = "fedrec.lock"


class FolderLock:
    """Held for the life of the process: the kernel drops an flock when its holder exits or crashes, so a
    stale lock file never blocks a restart. The file records the holder's pid, for the error message."""

    def __init__(self, folder: Path, what: str):
        self.path = Path(folder) / LOCK_FILE
        self.what = what
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: a child (SuperLink, SuperNode) must not inherit the lock and keep it after we exit.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise ConfigError(f"{self.path.parent} is in use by another {self.what} (pid {holder}); "
                                  f"stop it first, or choose another folder") from None
            raise ConfigError(f"cannot lock {self.path}: {exc.strerror}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def ensure_port_free(host: str, port: int, flag: str = "--address") -> None:
    """Refuse a port that something already listens on (a bind test; gRPC/HTTP servers would otherwise
    share or silently fail to take it, and our clients would reach the other server)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR mirrors what servers set, so a port in TIME_WAIT counts as free, a listening one not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{flag} {host}:{port}: the port is already in use (another server?); "
                                  f"stop it or choose another port") from None
            raise ConfigError(f"{flag} {host}:{port}: cannot listen there: {exc.strerror}") from None


def listening_pids(port: int) -> set[int]:
    """Processes holding a listening TCP socket on `port` (Linux /proc; empty elsewhere)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    pids: set[int] = set()
    if not inodes:
        return pids
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    pids.add(int(entry.name))
                    break
        except OSError:
            continue
    return pids
