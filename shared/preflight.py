"""Checks made before any training starts: output paths writable, client counts against users, flags together."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fedrec.shared.config import FederatedConfig
from fedrec.shared.errors import ConfigError


def check_writable(path: Path, flag: str) -> None:
    """Fail now if `path` could not be written later: it is a folder, or its nearest existing folder is
    not writable (probed by creating a file, since permission bits do not tell root or read-only mounts)."""
    path = Path(path).absolute()
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder, expected a file name")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {path}: cannot be written ({folder} is a file, not a folder)")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write in {folder} ({exc.strerror})") from None


def clients_per_round(fed: FederatedConfig, available: int) -> int:
    """How many clients a round samples out of `available` (the rule the server applies)."""
    return min(available, fed.clients_per_round or max(1, int(round(fed.fraction * available))))


def check_federation(fed: FederatedConfig, n_users: int | None = None, clients_flag: str = "--num-clients") -> None:
    """Client counts that cannot work together are one error before anything starts."""
    if n_users is not None and fed.num_clients > n_users:
        raise ConfigError(f"{clients_flag} {fed.num_clients}: the training data has only {n_users} users, and "
                          f"every client needs at least one user; use at most {n_users} clients")
    if fed.clients_per_round is not None and fed.clients_per_round > fed.num_clients:
        raise ConfigError(f"--clients-per-round {fed.clients_per_round} is more than the {fed.num_clients} clients "
                          f"({clients_flag} {fed.num_clients}); use at most {fed.num_clients}")
    sampled = clients_per_round(fed, fed.num_clients)
    if fed.min_clients > sampled:
        raise ConfigError(f"federated.min_clients = {fed.min_clients}: a round samples only {sampled} of "
                          f"{fed.num_clients} clients, so every round would be skipped")
