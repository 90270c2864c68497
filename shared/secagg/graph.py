"""The public mask graph (Erdos-Renyi over the cohort, from a public seed) and the share-holding committee.

Every party computes the graph itself from the seed, the cohort and the edge probability, so the server
cannot hand one client a thinner neighbourhood than the others see. An edge is a keyed hash of the pair
(splitmix64), so a client computes its own row in O(n) without drawing the whole graph.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

_COMMITTEE_KEY = 1
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _edge_uniform(seed: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A uniform in [0, 1) for each unordered pair (u, v), the same whichever end asks."""
    lo, hi = np.minimum(u, v).astype(np.uint64), np.maximum(u, v).astype(np.uint64)
    key = _splitmix(_splitmix(np.uint64(seed & (2**64 - 1)) ^ lo) ^ (hi * _GOLDEN))
    return (key >> np.uint64(11)).astype(np.float64) * 2.0**-53


def neighbours_of(u: int, cohort: list[int], p: float, seed: int) -> list[int]:
    """u's neighbours among the cohort."""
    others = np.array([v for v in cohort if v != u], dtype=np.int64)
    if p >= 1.0 or others.size == 0:
        return others.tolist()
    return others[_edge_uniform(seed, np.full(others.size, u), others) < p].tolist()


def adjacency(cohort: list[int], p: float, seed: int) -> dict[int, list[int]]:
    """Every member's neighbours (symmetric), all pairs hashed at once, a block of rows at a time."""
    members = np.array(sorted(cohort), dtype=np.int64)
    n = members.size
    if p >= 1.0:
        return {int(u): [int(v) for v in members if v != u] for u in members}
    rows, cols = [], []
    block = max(1, 4_000_000 // max(n, 1))  # bounds the memory of one block of pair hashes
    for start in range(0, n, block):
        i = np.arange(start, min(start + block, n))[:, None]
        j = np.arange(n)[None, :]
        upper = j > i  # each unordered pair once
        ii, jj = np.broadcast_to(i, upper.shape)[upper], np.broadcast_to(j, upper.shape)[upper]
        linked = _edge_uniform(seed, members[ii], members[jj]) < p
        rows.append(ii[linked])
        cols.append(jj[linked])
    a, b = np.concatenate(rows), np.concatenate(cols)
    src, dst = np.concatenate([a, b]), np.concatenate([b, a])
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    bounds = np.searchsorted(src, np.arange(n + 1))
    return {int(members[k]): members[dst[bounds[k]:bounds[k + 1]]].tolist() for k in range(n)}


def survivors_problem(graph: dict[int, list[int]], survivors: list[int], min_neighbours: int) -> str:
    """Why unmasking these survivors could reveal more than their total ("" when it cannot, by the graph):
    a survivor left with too few surviving neighbours, or survivors split into separately summable groups."""
    index = {u: k for k, u in enumerate(survivors)}
    rows = np.repeat(np.arange(len(survivors)), [len(graph[u]) for u in survivors])
    cols = np.array([index.get(v, -1) for u in survivors for v in graph[u]], dtype=np.int64)
    alive = cols >= 0
    rows, cols = rows[alive], cols[alive]
    degree = np.bincount(rows, minlength=len(survivors))
    thin = [survivors[k] for k in np.flatnonzero(degree < min_neighbours)]
    if thin:
        return f"survivors {thin[:10]} kept fewer than {min_neighbours} surviving neighbours"
    matrix = csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(survivors), len(survivors)))
    parts, _ = connected_components(matrix, directed=False)
    if parts > 1:
        return f"the survivors' mask graph falls into {parts} separate groups"
    return ""


def committee(members: list[int], size: int, seed: int) -> list[int]:
    """`size` members drawn without replacement from the public seed, sorted."""
    members = sorted(members)
    if not 1 <= size <= len(members):
        raise ValueError(f"committee size {size} must be in [1, {len(members)}]")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_COMMITTEE_KEY,)))
    return sorted(members[i] for i in rng.choice(len(members), size=size, replace=False))
