"""The server's last checks before it releases a sum: a reconstructed self-mask seed must match the dealer's
commitment and a reconstructed mask key its public key, or the round aborts naming the round and client; and
the public mask graph behaves as the analysis assumes (independent edges of probability p, one graph per seed).
Found by mutation testing: these aborts could lose their message and the graph's hash its mixing unnoticed."""

import hashlib

import numpy as np
import pytest

from fedrec.shared.secagg import fixedpoint, graph
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggAbort
from fedrec.shared.secagg.inprocess import InProcessCohort


def inputs(ids, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.uniform(-3, 3, 50) for i in ids}


def test_a_self_mask_seed_that_does_not_match_its_commitment_aborts_the_round():
    c = InProcessCohort(6, seed=3)
    cohort = c.setup()
    replies = c.masked_input(4, inputs(cohort), late=[2])  # client 2's reply is held back...
    assert c.server.receive({**replies[2], M.B_COMMIT: hashlib.sha256(b"another seed").digest()})  # ...and altered
    with pytest.raises(SecAggAbort, match="round 4: the reconstructed b_2 does not match its commitment"):
        c.unmask()
    assert c.server.needs_setup


def test_a_dropped_clients_key_that_does_not_match_its_public_key_aborts_the_round():
    c = InProcessCohort(10, seed=5)
    cohort = c.setup()
    replies = c.masked_input(0, inputs(cohort), late=[7])
    other = InProcessCohort(1).call(1, lambda client: client.advertise(
        {M.RUN_ID: b"x", M.COHORT_ID: 0, M.INDEX: 1, M.GRAPH_SEED: 0}))[M.S_PK]
    assert c.server.receive({**replies[7], M.NEXT_S_PK: other})  # announces a key it does not hold
    c.unmask()
    c.masked_input(1, inputs(cohort, 1), drop=[7])  # client 7 drops: its round-1 key is reconstructed
    with pytest.raises(SecAggAbort, match="round 1: the reconstructed s_7 does not match its public key"):
        c.unmask()


def test_the_in_process_round_leaves_out_the_clients_that_drop():
    c = InProcessCohort(10, seed=2)
    cohort = c.setup()
    xs = inputs(cohort)
    got = c.round(0, xs, drop_masked=[4])
    want = np.sum([xs[i] for i in cohort if i != 4], axis=0)
    assert np.abs(got - want).max() <= fixedpoint.tolerance(9)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8])
def test_graph_edges_are_independent_coin_flips_of_probability_p(p):
    """Density p at every level (the edge uniforms are uniform), degrees as spread as a binomial's (edges
    at one node are not tied together), and graphs of two seeds overlap as two independent draws (p^2)."""
    members = list(range(1, 301))
    pairs = 300 * 299 // 2
    a = graph.adjacency(members, p, seed=11)
    edges = {(u, v) for u, vs in a.items() for v in vs if u < v}
    sd = np.sqrt(p * (1 - p) / pairs)
    assert abs(len(edges) / pairs - p) < 5 * sd
    degrees = np.array([len(a[u]) for u in members])
    assert 0.7 < degrees.var() / (299 * p * (1 - p)) < 1.4
    for seed in (12, 11 + 2**40):  # a neighbouring seed, and one that differs only in high bits
        b = graph.adjacency(members, p, seed=seed)
        overlap = len(edges & {(u, v) for u, vs in b.items() for v in vs if u < v}) / pairs
        assert abs(overlap - p * p) < 5 * np.sqrt(p * p * (1 - p * p) / pairs)
