"""The safeguards of secure aggregation, each tested by playing the server that would profit from its absence.

Each test fails if its safeguard is removed: the graph drawn over the cohort that finished key sharing, the
surviving-neighbourhood and connectivity checks (server and committee), the self-mask, the binding of
sealed shares to their generation, cohort and kind, and a fresh mask key every round.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.shared.secagg import aead, fixedpoint, graph, keys, prg
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg import server as server_module
from fedrec.shared.secagg.errors import SecAggAbort, SecAggRefusal
from fedrec.shared.secagg.inprocess import InProcessCohort
from fedrec.shared.secagg.params import ClientPolicy, SecAggParams

L = 2000
# Bounds that give a sparse graph at a few dozen clients, so that a thin neighbourhood can be made on purpose.
SPARSE = SecAggParams(dropout_bound=0.45, colluder_fraction=0.1, security_bits=10)
SPARSE_POLICY = ClientPolicy(minimum=SPARSE)


def inputs(ids, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.uniform(-3, 3, L) for i in ids}


def sparse_cohort(n=40, seed=11):
    c = InProcessCohort(n, params=SPARSE, seed=seed, policy=SPARSE_POLICY)
    return c, c.setup()


def test_sparse_parameters_really_give_a_sparse_graph():
    c, cohort = sparse_cohort()
    degrees = [len(c.server.graph[u]) for u in cohort]
    assert c.server.cohort_plan.edge_probability < 0.6 and max(degrees) < len(cohort) - 1


def test_graph_is_drawn_over_the_clients_that_finished_key_sharing():
    """Clients lost during key sharing thin nobody's neighbourhood: the graph is drawn after them."""
    c = InProcessCohort(40, params=SPARSE, seed=11, policy=SPARSE_POLICY)
    drop = list(range(2, 20, 2))  # nine clients leave during key sharing
    cohort = c.setup(drop_share_keys=drop)
    assert set(cohort).isdisjoint(drop)
    plan = c.server.cohort_plan
    assert plan.n == len(cohort)
    for u in cohort:
        assert set(c.server.graph[u]) <= set(cohort)
        assert len(c.server.graph[u]) >= plan.min_neighbours
    xs = inputs(cohort)
    got = c.round(0, xs)
    assert np.abs(got - sum(xs.values())).max() <= fixedpoint.tolerance(len(cohort))


def _thinnest(c, cohort):
    return min(cohort, key=lambda u: len(c.server.graph[u]))


def _drop_neighbours_of(c, cohort, u):
    """Enough of u's neighbours to leave it below the required surviving neighbourhood, within the dropout bound."""
    plan = c.server.cohort_plan
    drop = c.server.graph[u][: len(c.server.graph[u]) - plan.min_neighbours + 1]
    assert 0 < len(drop) <= plan.max_dropouts
    return drop


def test_server_aborts_when_a_survivor_is_left_with_too_few_surviving_neighbours():
    c, cohort = sparse_cohort()
    u = _thinnest(c, cohort)
    c.masked_input(0, inputs(cohort), drop=_drop_neighbours_of(c, cohort, u))
    with pytest.raises(SecAggAbort, match=f"survivors \\[.*{u}.*\\] kept fewer than"):
        c.server.unmask_requests()
    assert c.server.needs_setup


class _Unchecked:
    """The graph module as seen by a server that skips its own survivor checks."""

    def __getattr__(self, name):
        return getattr(graph, name)

    @staticmethod
    def survivors_problem(*args):
        return ""


def test_committee_refuses_what_a_careless_server_would_unmask(monkeypatch):
    """A server that skips its check still gets no self-mask: every committee member refuses, so the thin
    survivor's input (masked only by the few neighbours it has left) can never be read."""
    c, cohort = sparse_cohort()
    u = _thinnest(c, cohort)
    xs = inputs(cohort)
    c.masked_input(0, xs, drop=_drop_neighbours_of(c, cohort, u))
    monkeypatch.setattr(server_module, "graph", _Unchecked())
    reqs = c.server.unmask_requests()
    for j, req in reqs.items():
        with pytest.raises(SecAggRefusal, match="kept fewer than"):
            c.call(j, lambda cl, req=req: cl.unmask(req))


def test_committee_refuses_when_survivors_split_into_separately_summable_groups(monkeypatch):
    """With survivors in two unconnected groups, each group's sum would come out: members refuse."""
    # A hand-made split: the server's graph and the clients' graph are the same public function, so we
    # replace that function for both with one where {1..5} and {6..10} are only joined through client 11.
    groups = {u: [v for v in range(1, 11) if v != u and (v <= 5) == (u <= 5)] + [11] for u in range(1, 11)}
    groups[11] = list(range(1, 11))
    monkeypatch.setattr(graph, "adjacency", lambda cohort, p, seed: {u: groups[u] for u in cohort})
    monkeypatch.setattr(graph, "neighbours_of", lambda u, cohort, p, seed: groups[u])
    c = InProcessCohort(11, seed=1, params=SecAggParams(colluder_fraction=0.1, dropout_bound=0.1),
                        policy=ClientPolicy(minimum=SecAggParams(colluder_fraction=0.1, dropout_bound=0.1)))
    cohort = c.setup()
    c.masked_input(0, inputs(cohort), drop=[11])  # the bridge drops: two groups of five are left
    with pytest.raises(SecAggAbort, match="2 separate groups"):
        c.server.unmask_requests()
    monkeypatch.setattr(server_module, "graph", _Unchecked())
    c2 = InProcessCohort(11, seed=1, params=c.server.params, policy=c.policy)
    cohort = c2.setup()
    c2.masked_input(0, inputs(cohort), drop=[11])
    j, req = next(iter(c2.server.unmask_requests().items()))
    with pytest.raises(SecAggRefusal, match="2 separate groups"):
        c2.call(j, lambda cl: cl.unmask(req))


def test_client_refuses_to_send_a_masked_input_with_too_few_neighbours(monkeypatch):
    """Even if the server let a cohort through in which a client has too few neighbours, that client sends nothing."""
    c, cohort = sparse_cohort()
    u = _thinnest(c, cohort)
    need = c.server.cohort_plan.min_neighbours
    monkeypatch.setattr(graph, "neighbours_of", lambda v, cohort, p, seed: list(range(1, need)) if v == u else [])
    req = c.server.masked_input_requests(0)[u]
    with pytest.raises(SecAggRefusal, match=f"only {need - 1} mask neighbours, need {need}"):
        c.call(u, lambda cl: cl.masked_input(req, np.zeros(L)))


def test_self_mask_protects_a_late_client_whose_mask_key_was_revealed():
    """Client 6 is declared dropped, so the server learns its s key; its masked input then arrives late.
    Stripping every pairwise mask with that key leaves encode(x_6) + PRG(b_6): b_6 was never revealed."""
    c = InProcessCohort(10, seed=4)
    cohort = c.setup()
    xs = inputs(cohort)
    s_pk = dict(c.server._s_pk)  # the round's public s keys (what the server relayed)
    replies = c.masked_input(0, xs, late=[6])
    c.unmask()
    d = 6
    # What the server now holds: the reconstructed s key of the "dropped" client.
    from fedrec.shared.secagg import shamir
    pts, _ = c.server._collect()
    s_d = keys.private_from_raw(shamir.Combiner(c.server.plan.threshold).combine(sorted(pts[(d, "s")].items())))
    assert keys.public_raw(s_d) == s_pk[d]
    y = replies[d][M.MASKED].copy()
    for v in c.server.graph[d]:
        k = keys.agree(s_d, s_pk[v], keys.pair_info(c.server.run_id, c.server.cohort_id, 0, d, v))
        if d < v:
            y -= prg.expand(k, L)
        else:
            y += prg.expand(k, L)
    encoded = fixedpoint.encode(xs[d], c.server.plan.frac_bits, c.server.plan.bound)
    assert np.mean(y == encoded) < 0.01
    # Still uniform over 64 bits: the self-mask is all that is left on it.
    assert 2.0**62 < np.median(y.astype(np.float64)) < 3 * 2.0**62


@pytest.mark.parametrize("field", ["sender", "receiver", "cohort", "round", "gen", "kind"])
def test_sealed_shares_are_bound_to_every_field(field):
    base = dict(sender=3, receiver=5, cohort_id=7, round_=2, gen=1, kind="b")
    changed = dict(base, **{{"cohort": "cohort_id", "round": "round_"}.get(field, field): {
        "sender": 4, "receiver": 6, "cohort": 8, "round": 3, "gen": 2, "kind": "s"}[field]})
    key = bytes(32)
    ct = aead.seal(key, b"share", aead.share_ad(**base))
    assert aead.share_ad(**base) != aead.share_ad(**changed)
    with pytest.raises(Exception, match="failed authentication"):
        aead.open_(key, ct, aead.share_ad(**changed))


def test_a_share_asked_for_under_a_false_generation_is_not_opened():
    """The server asks for a survivor's s key under the generation of its b share: the seal does not open,
    so the never-both-secrets record cannot be sidestepped by relabelling."""
    c = InProcessCohort(10, seed=7)
    cohort = c.setup()
    c.masked_input(0, inputs(cohort))
    reqs = c.server.unmask_requests()
    j, req = next(iter(reqs.items()))
    u = req[M.SURVIVORS][0]
    sealed_s_of_next_gen = c.server._s_ct[(u, j)]  # the s key u will use in round 1 (generation 1)
    evil = {**req, M.S_FROM: [u], M.S_GEN_OF: [0], M.S_CT: [sealed_s_of_next_gen],
            M.SURVIVORS: [v for v in req[M.SURVIVORS] if v != u], M.DROPPED: [u],
            M.B_FROM: [], M.B_GEN: [], M.B_CT: []}
    reply = c.call(j, lambda cl: cl.unmask(evil))
    assert reply[M.S_SHARE] == [] and reply[M.REJECTED_S] == [u]


def test_every_round_uses_fresh_mask_keys():
    c = InProcessCohort(6, seed=3)
    cohort = c.setup()
    seen_pk, seen_commit = {u: [c.server._s_pk[u]] for u in cohort}, []
    for r in range(3):
        replies = c.masked_input(r, inputs(cohort, seed=r))
        c.unmask()
        for u in cohort:
            seen_pk[u].append(bytes(replies[u][M.NEXT_S_PK]))
            seen_commit.append(bytes(replies[u][M.B_COMMIT]))
            assert bytes(replies[u][M.NEXT_S_PK]) == c.server._s_pk[u]
    for u in cohort:
        assert len(set(seen_pk[u])) == 4  # generation 0 and one new key per round
    assert len(set(seen_commit)) == len(seen_commit)  # a new self-mask seed every round


def test_a_member_lists_a_bad_or_unknown_share_and_still_opens_the_others():
    c = InProcessCohort(10, seed=7)
    cohort = c.setup()
    c.masked_input(0, inputs(cohort))
    j, req = next(iter(c.server.unmask_requests().items()))
    first, second = req[M.B_FROM][:2]
    sealed = [bytes(ct) for ct in req[M.B_CT]]
    sealed[0] = sealed[0][:-1] + bytes([sealed[0][-1] ^ 1])  # fails authentication

    def without_second_key(client):
        del client.seal_keys[second]  # a member that holds no key of that client
        return client.unmask({**req, M.B_CT: sealed})

    reply = c.call(j, without_second_key)
    assert reply[M.REJECTED_B] == [first, second] and reply[M.B_FROM] == list(req[M.B_FROM][2:])


def test_an_older_b_share_opened_again_does_not_lower_the_never_both_record():
    """After a replayed round-0 request the member still knows it opened u's round-1 b share, and refuses
    u's s key of generation 1."""
    c = InProcessCohort(10, seed=7)
    cohort = c.setup()
    c.masked_input(0, inputs(cohort))
    round_0 = c.server.unmask_requests()
    c.unmask(requests=round_0)
    c.masked_input(1, inputs(cohort, seed=1))
    c.unmask()
    j, req = next(iter(round_0.items()))
    c.call(j, lambda cl: cl.unmask(req))
    u = req[M.B_FROM][0]
    evil = {**req, M.ROUND: 1, M.SURVIVORS: [v for v in req[M.SURVIVORS] if v != u], M.DROPPED: [u],
            M.B_FROM: [], M.B_GEN: [], M.B_CT: [], M.S_FROM: [u], M.S_GEN_OF: [1], M.S_CT: [bytes(48)]}
    with pytest.raises(SecAggRefusal, match="b share was revealed"):
        c.call(j, lambda cl: cl.unmask(evil))


def test_setup_aborts_when_the_drawn_graph_leaves_a_client_too_few_neighbours(monkeypatch):
    """A client with fewer than the required neighbours would refuse every masked input: the server stops at
    setup (a new draw is needed) and starts no round."""
    real = graph.adjacency
    victim = 5

    def thin(cohort, p, seed):  # the public graph with all but one of the victim's edges removed
        g = real(cohort, p, seed)
        keep = g[victim][:1]
        return {u: ([v for v in nb if v in keep] if u == victim else
                    [v for v in nb if v != victim or u in keep]) for u, nb in g.items()}

    monkeypatch.setattr(graph, "adjacency", thin)
    c = InProcessCohort(10, seed=1)
    with pytest.raises(SecAggAbort, match="mask neighbours"):
        c.setup()
    assert c.server.needs_setup
    with pytest.raises(SecAggAbort, match="needs a new setup"):
        c.server.masked_input_requests(0)
