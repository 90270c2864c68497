"""The numbers behind the guarantees: mask-graph density, committee size and threshold from the stated bounds.

Model (after Bell et al., "Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020):
a cohort of n clients, of which at most a fraction gamma collude with the server and at most a fraction
delta drop out, independently of the public graph. The server learns more than the total of the honest
survivors only if (a) the honest survivors' part of the mask graph is disconnected (then each component's
sum is revealed), or (b) the colluders hold t or more shares of some client's secrets. Both are held below
2^-sigma (half the budget each):

(a) the graph is Erdos-Renyi G(n, p); the honest survivors, at least h = n - floor(delta n) - floor(gamma n)
    of them, induce G(h, p), which is disconnected with probability at most
    sum_{s=1}^{h/2} C(h, s) (1 - p)^{s (h - s)} (a component of size s has no edge to the rest);
(b) the committee of m is drawn at random from the cohort; colluders in it follow a hypergeometric law;
    the threshold is a strict majority (so a server that asks different members for different secrets of
    one client never gets both) and m is the smallest committee whose colluders reach t with probability
    at most 2^-sigma; when no committee smaller than n does, every client is on it and the colluder count
    floor(gamma n) < t holds with certainty.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy.special import gammaln
from scipy.stats import hypergeom

LN2 = math.log(2.0)


def log_disconnect_bound(h: int, p: float) -> float:
    """Natural log of the union bound on P(G(h, p) is disconnected)."""
    if h <= 1:
        return -math.inf
    if p >= 1.0:
        return -math.inf
    s = np.arange(1, h // 2 + 1, dtype=np.float64)
    log_choose = gammaln(h + 1) - gammaln(s + 1) - gammaln(h - s + 1)
    terms = log_choose + s * (h - s) * math.log1p(-p)
    top = terms.max()
    return float(top + math.log(np.exp(terms - top).sum()))


@lru_cache(maxsize=256)
def edge_probability(honest_survivors: int, security_bits: int) -> float:
    """Smallest edge probability keeping G(honest_survivors, p) connected but with probability 2^-(sigma+1);
    1.0 (the complete graph) when that is as dense as the complete graph anyway."""
    target = -(security_bits + 1) * LN2
    if honest_survivors <= 2 or log_disconnect_bound(honest_survivors, 1.0 - 1e-12) > target:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection: the bound falls as p grows
        mid = (lo + hi) / 2
        if log_disconnect_bound(honest_survivors, mid) <= target:
            hi = mid
        else:
            lo = mid
    # Beyond about 0.9 the graph is nearly complete; the complete graph is simpler to check and costs little more.
    return 1.0 if hi > 0.9 else hi


def majority(m: int) -> int:
    """Strict-majority threshold of a committee of m."""
    return m // 2 + 1


@lru_cache(maxsize=256)
def committee_size(n: int, colluders: int, security_bits: int) -> int:
    """Smallest committee (odd size, strict-majority threshold) whose colluders reach the threshold with
    probability at most 2^-sigma; n (everyone) if no smaller committee does."""
    target = 2.0 ** -security_bits

    def safe(m: int) -> bool:
        return float(hypergeom.sf(majority(m) - 1, n, colluders, m)) <= target

    if colluders == 0:
        return min(n, 2 * math.ceil(math.log2(max(n, 2))) + 1)  # no colluders: a small committee suffices
    odd = [m for m in range(1, n, 2)]
    lo, hi = 0, len(odd)  # first odd m that is safe (the tail falls as m grows, for gamma < 1/2)
    while lo < hi:
        mid = (lo + hi) // 2
        if safe(odd[mid]):
            hi = mid
        else:
            lo = mid + 1
    return odd[lo] if lo < len(odd) else n


def min_surviving_neighbours(n: int, colluders: int, security_bits: int, complete: bool) -> int:
    """Surviving neighbours each survivor must keep: one more than every colluder with the complete graph;
    otherwise enough that all of them being colluders has probability at most 2^-sigma for that survivor."""
    if complete or colluders == 0:
        return colluders + 1
    probable = math.ceil(security_bits / -math.log2(colluders / n))
    return min(colluders, probable) + 1
