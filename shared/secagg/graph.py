"""Public, seeded choice of the sparse pairwise-mask graph and of the share-holding committee."""

import math

import numpy as np

_GRAPH_KEY, _COMMITTEE_KEY = 0, 1  # spawn keys: graph and committee are drawn independently


def _rng(seed: int, key: int) -> np.random.Generator:
    # numpy is fine here: the graph and the committee are public, chosen by the server.
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(key,)))


def default_degree(n: int) -> int:
    """min(n-1, 2*ceil(log2 n)), rounded up to even (an even degree >= n-1 means the complete graph)."""
    d = min(n - 1, 2 * math.ceil(math.log2(n))) if n > 1 else 0
    return d + d % 2


def default_committee_size(n: int) -> int:
    """min(n, 2*ceil(log2 n) + 1)."""
    return min(n, 2 * math.ceil(math.log2(n)) + 1) if n > 1 else n


def default_threshold(committee_size: int) -> int:
    """A strict majority of the committee: two disjoint quorums cannot both reconstruct."""
    return committee_size // 2 + 1


def neighbours(members: list[int], degree: int, seed: int) -> dict[int, list[int]]:
    """Harary-style ring over a random permutation: degree/2 links on each side (symmetric)."""
    members = sorted(members)
    n = len(members)
    if degree >= n - 1:
        return {u: [v for v in members if v != u] for u in members}
    half = (degree + 1) // 2  # an odd degree is rounded up
    ring = [members[i] for i in _rng(seed, _GRAPH_KEY).permutation(n)]
    out: dict[int, set[int]] = {u: set() for u in members}
    for i, u in enumerate(ring):
        for k in range(1, half + 1):
            v = ring[(i + k) % n]
            out[u].add(v)
            out[v].add(u)
    return {u: sorted(vs) for u, vs in out.items()}


def committee(members: list[int], size: int, seed: int) -> list[int]:
    """`size` members drawn without replacement from the public seed, sorted."""
    members = sorted(members)
    if not 1 <= size <= len(members):
        raise ValueError(f"committee size {size} must be in [1, {len(members)}]")
    picks = _rng(seed, _COMMITTEE_KEY).choice(len(members), size=size, replace=False)
    return sorted(members[i] for i in picks)
