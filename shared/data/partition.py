"""Assigning users to federated clients: every user's ratings live on exactly one client."""

from __future__ import annotations

from typing import Literal

import numpy as np

from fedrec.shared.errors import ConfigError

PartitionScheme = Literal["iid", "activity"]


def partition_users(
    user_counts: np.ndarray, num_clients: int, scheme: PartitionScheme, seed: int
) -> np.ndarray:
    """The client (0..num_clients-1) of each user.

    `iid` deals users out at random, so clients differ only by chance. `activity` sorts users by how many
    ratings they have and gives each client a contiguous band: client 0 holds the heaviest raters, the last
    client the lightest, a skew in both data volume and behaviour that IID splits never show.
    """
    n_users = len(user_counts)
    if not 1 <= num_clients <= n_users:
        raise ConfigError(f"num_clients = {num_clients} must be between 1 and the number of users ({n_users})")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC11]))
    if scheme == "iid":
        order = rng.permutation(n_users)
    elif scheme == "activity":
        order = np.lexsort((rng.random(n_users), -np.asarray(user_counts)))
    else:
        raise ConfigError(f"unknown partition scheme {scheme!r}: use 'iid' or 'activity'")
    client_of_user = np.empty(n_users, dtype=np.int64)
    client_of_user[order] = np.arange(n_users) * num_clients // n_users
    return client_of_user
