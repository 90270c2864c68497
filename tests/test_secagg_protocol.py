"""End-to-end tests of the secure-aggregation protocol with in-process clients (no network)."""

import logging

import numpy as np
import pytest

from fedrec.shared.secagg import fixedpoint, graph, shamir
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.client import SecAggClient
from fedrec.shared.secagg.errors import SecAggAbort, SecAggRangeError, SecAggRefusal
from fedrec.shared.secagg.inprocess import InProcessCohort
from fedrec.shared.secagg.params import ClientPolicy, SecAggParams

L = 1000


def inputs(ids, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    return {i: rng.uniform(-scale, scale, L) for i in ids}


def assert_sum(got, xs, ids):
    want = np.sum([xs[i] for i in sorted(ids)], axis=0)
    assert np.abs(got - want).max() <= fixedpoint.tolerance(len(ids)) + 1e-12


def committee_of(members, seed):
    """The committee the server will pick for these members (public, seeded)."""
    return graph.committee(members, SecAggParams().plan(len(members)).committee_size, seed)


@pytest.mark.parametrize("n", [3, 10, 40])
def test_secure_sum_equals_plain_sum(n):
    c = InProcessCohort(n, seed=n)
    cohort = c.setup()
    assert cohort == list(range(1, n + 1))
    for r in range(2):  # a second round exercises the per-round s-key rotation
        xs = inputs(cohort, seed=r)
        assert_sum(c.round(r, xs), xs, cohort)
    assert not c.server.needs_setup


@pytest.mark.parametrize("stage", ["advertise", "share_keys", "masked_input", "unmask", "all"])
def test_dropouts_give_exact_sum_of_stage3_survivors(stage):
    n, seed = 16, 5
    members = list(range(1, n + 1))
    drop_adv = [4] if stage in ("advertise", "all") else []
    com = committee_of([m for m in members if m not in drop_adv], seed)
    outside = [m for m in members if m not in com and m not in drop_adv]
    drop_sk = [outside[0]] if stage in ("share_keys", "all") else []
    # At stage 3, one ordinary client and one committee member (which still answers the unmask).
    drop_mi = [outside[1], com[0]] if stage in ("masked_input", "all") else []
    drop_un = com[-2:] if stage in ("unmask", "all") else []
    c = InProcessCohort(n, seed=seed)
    cohort = c.setup(drop_advertise=drop_adv, drop_share_keys=drop_sk)
    assert cohort == [m for m in members if m not in drop_adv + drop_sk]
    xs = inputs(cohort)
    c.masked_input(7, xs, drop=drop_mi)
    got = c.unmask(drop=drop_un)
    survivors = [m for m in cohort if m not in drop_mi]
    assert c.server.survivors == survivors and c.server.dropped == sorted(drop_mi)
    assert_sum(got, xs, survivors)
    assert c.server.needs_setup == bool(drop_mi)
    if drop_mi:
        with pytest.raises(SecAggAbort, match="needs a new setup"):
            c.server.masked_input_requests(8)


def test_new_cohort_after_dropout_works():
    c = InProcessCohort(10, seed=1)
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs, drop=[3])
    assert_sum(c.unmask(), xs, [m for m in cohort if m != 3])
    c2 = InProcessCohort(10, seed=1, cohort_id=1)
    c2.states = c.states  # same clients, new cohort: advertise resets their state
    cohort2 = c2.setup()
    xs2 = inputs(cohort2, seed=9)
    assert_sum(c2.round(1, xs2), xs2, cohort2)


def test_too_few_committee_members_at_unmask_aborts():
    c = InProcessCohort(10, seed=2)
    c.setup()
    com, t = c.server.committee, c.server.plan.threshold
    c.masked_input(0, inputs(c.server.cohort))
    with pytest.raises(SecAggAbort, match=f"fewer than t={t} good shares"):
        c.unmask(drop=com[: len(com) - t + 1])  # reserve members are asked too, but too few are left
    assert c.server.needs_setup


def test_too_few_committee_members_at_setup_aborts():
    members = list(range(1, 11))
    com = committee_of(members, 3)
    t = SecAggParams().plan(10).threshold
    c = InProcessCohort(10, seed=3)
    with pytest.raises(SecAggAbort, match="setup failed"):
        c.setup(drop_share_keys=com[: len(com) - t + 1])


def test_setup_completes_with_exactly_t_clients_all_on_the_committee():
    members = list(range(1, 11))
    com = committee_of(members, 3)
    t = SecAggParams().plan(10).threshold
    c = InProcessCohort(10, seed=3)
    drop = [u for u in members if u not in com] + com[: len(com) - t]
    cohort = c.setup(drop_share_keys=drop)
    assert cohort == sorted(com[len(com) - t:])
    xs = inputs(cohort)  # a round with exactly t masked inputs (no dropout allowed in a cohort of 4) opens
    assert_sum(c.round(0, xs), xs, cohort)


def test_no_round_before_setup_and_no_index_outside_the_field():
    server = InProcessCohort(3, seed=1).server
    with pytest.raises(SecAggAbort, match="needs a new setup before round 0"):
        server.masked_input_requests(0)
    with pytest.raises(ValueError, match="client indices"):
        server.advertise_requests([1, 2, shamir.PRIME])  # x = p is x = 0: it would reveal the secret
    c = InProcessCohort(4, seed=1)
    c.round(0, inputs(c.setup()))
    c.server.advertise_requests([1, 2, 3, 4])  # a new setup begins: no round until it is finished
    with pytest.raises(SecAggAbort, match="needs a new setup before round 1"):
        c.server.masked_input_requests(1)


def test_unmasking_asks_t_plus_spare_members_and_no_more_when_all_answer():
    c = InProcessCohort(10, seed=3)  # a committee of 7, threshold 4: two spares, one in reserve
    cohort = c.setup()
    for r in range(2):
        xs = inputs(cohort, seed=r)
        c.masked_input(r, xs)
        reqs = c.server.unmask_requests()
        assert len(reqs) == c.server.plan.threshold + 2 < len(c.server.committee)
        answering = list(reqs)[: len(reqs) - r]  # in round 1 one spare does not answer
        for j in answering:
            c.server.receive(c.call(j, lambda cl, req=reqs[j]: cl.unmask(req)))
        if r == 1:  # every secret still has t shares: nobody from the reserve is asked
            assert c.server.more_unmask_requests() == {}
        assert_sum(c.server.aggregate(), xs, cohort)  # round 0: aggregate closes the unmask stage itself


def test_committee_members_that_missed_the_masked_input_help_unmask():
    """Fewer than t committee members survive the masked input: the one that missed it (alive again at the
    unmask) holds the survivors' b shares and a share of its own s key, and must be asked, or no secret has t
    shares. 10 candidates, committee 7, threshold 4: three committee members drop at share keys (cohort of 7,
    four committee members, one dropout allowed), one more at the masked input."""
    members = list(range(1, 11))
    com = committee_of(members, 3)
    t = SecAggParams().plan(10).threshold
    c = InProcessCohort(10, seed=3)
    cohort = c.setup(drop_share_keys=com[: len(com) - t])
    left = com[len(com) - t:]
    assert cohort == [m for m in members if m not in com[: len(com) - t]] and len(left) == t
    xs = inputs(cohort)
    c.masked_input(0, xs, drop=[left[0]])
    reqs = c.server.unmask_requests()
    assert sorted(reqs) == sorted(left)  # the three surviving members and the dropped one, nobody outside
    assert_sum(c.unmask(requests=reqs), xs, [m for m in cohort if m != left[0]])


def test_a_reserve_member_is_asked_when_the_first_batch_leaves_a_secret_one_share_short():
    c = InProcessCohort(10, seed=3)  # a committee of 7, threshold 4: six asked, one in reserve
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs)
    reqs = c.server.unmask_requests()
    reserve = [j for j in c.server.committee if j not in reqs]
    assert len(reserve) == 1
    asked = []
    got = c.unmask(drop=list(reqs)[:3], requests=reqs, edit=lambda j, req: asked.append(j) or req)
    assert_sum(got, xs, cohort)
    assert reserve[0] in asked


def test_too_few_survivors_at_masked_input_aborts():
    c = InProcessCohort(5, seed=3)
    cohort = c.setup()
    c.masked_input(0, inputs(cohort), drop=cohort[: len(cohort) - c.server.plan.threshold + 1])
    with pytest.raises(SecAggAbort, match="masked inputs"):
        c.server.unmask_requests()


def test_more_dropouts_than_the_bound_abort_before_anything_is_revealed():
    c = InProcessCohort(10, seed=3)  # a fifth may drop: 2 of 10
    cohort = c.setup()
    c.masked_input(0, inputs(cohort), drop=[2, 5, 7])
    with pytest.raises(SecAggAbort, match="3 dropouts exceed the bound of 2"):
        c.server.unmask_requests()
    assert c.server.needs_setup


def test_late_masked_input_is_discarded():
    c = InProcessCohort(10, seed=4)
    cohort = c.setup()
    xs = inputs(cohort)
    replies = c.masked_input(0, xs, late=[6])
    reqs = c.server.unmask_requests()
    assert 6 in c.server.dropped
    assert c.server.receive(replies[6]) is False
    assert_sum(c.unmask(requests=reqs), xs, [m for m in cohort if m != 6])


def test_unknown_duplicate_and_wrong_stage_replies_ignored():
    c = InProcessCohort(4, seed=1)
    reqs = c.server.advertise_requests([1, 2, 3])
    r1 = c.call(1, lambda cl: cl.advertise(reqs[1]))
    assert not c.server.receive({**r1, M.INDEX: 4})  # not a candidate
    # Before r1 itself is received, so that neither is ignored only as a duplicate.
    assert not c.server.receive({**r1, M.STAGE: M.UNMASK})
    assert not c.server.receive({**r1, M.COHORT_ID: 9})
    assert c.server.receive(r1) and not c.server.receive(r1)  # duplicate


def test_replies_with_malformed_keys_or_unparallel_share_lists_are_discarded():
    c = InProcessCohort(4, seed=1)
    reqs = c.server.advertise_requests([1, 2, 3, 4])
    r1 = c.call(1, lambda cl: cl.advertise(reqs[1]))
    for key in (M.C_PK, M.S_PK):  # a public key a byte short
        assert not c.server.receive({**r1, key: bytes(r1[key])[:-1]}), key
    assert c.server.receive(r1)
    c = InProcessCohort(10, seed=2)
    cohort = c.setup()
    c.masked_input(0, inputs(cohort), drop=[4])
    reqs = c.server.unmask_requests()
    j = next(iter(reqs))
    reply = c.call(j, lambda cl: cl.unmask(reqs[j]))
    assert reply[M.B_SHARE] and reply[M.S_SHARE]
    for key in (M.B_SHARE, M.S_SHARE):  # one list one share short, the other parallel
        assert not c.server.receive({**reply, key: list(reply[key])[:-1]}), key
    assert c.server.receive(reply)


def test_tampered_share_is_rejected_named_and_the_rest_used(caplog):
    c = InProcessCohort(10, seed=6)
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs)
    victim_holder = c.server.committee[0]
    sender = None

    def tamper(j, req):
        nonlocal sender
        if j != victim_holder:
            return req
        cts = list(req[M.B_CT])
        cts[1] = cts[1][:-1] + bytes([cts[1][-1] ^ 1])
        sender = req[M.B_FROM][1]
        return {**req, M.B_CT: cts}

    with caplog.at_level(logging.WARNING):
        got = c.unmask(edit=tamper)
    assert_sum(got, xs, cohort)
    assert c.server.rejected == [(sender, victim_holder, "b")]
    assert f"'b' share from client {sender} to client {victim_holder} failed" in caplog.text


def _round_with_unmask_request(seed=7, late=()):
    c = InProcessCohort(10, seed=seed)
    cohort = c.setup()
    s_ct = dict(c.server._s_ct)  # the sealed s shares of generation 0, as a server would keep them
    replies = c.masked_input(0, inputs(cohort), late=late)
    reqs = c.server.unmask_requests()
    j = c.server.committee[0]
    return c, j, reqs[j], s_ct, replies


def test_refuses_both_secrets_of_one_client_b_then_s():
    c, j, req, s_ct, _ = _round_with_unmask_request()
    c.call(j, lambda cl: cl.unmask(req))  # reveals every b share (gen 0)
    d = req[M.SURVIVORS][2]
    evil = {**req, M.SURVIVORS: [u for u in req[M.SURVIVORS] if u != d], M.DROPPED: [d],
            M.B_FROM: [], M.B_GEN: [], M.B_CT: [], M.S_FROM: [d], M.S_GEN_OF: [0], M.S_CT: [s_ct[(d, j)]]}
    with pytest.raises(SecAggRefusal, match="b share was revealed"):
        c.call(j, lambda cl: cl.unmask(evil))


def test_refuses_an_older_s_key_after_later_b_shares_and_keeps_one_record_per_client():
    """After three rounds a member has opened b shares of generations 0, 1 and 2 of every survivor. The
    generation-0 s key of one of them (which made that client's round-0 pairwise masks) is still refused,
    and the member's record of what it revealed holds one entry per client, not one per round."""
    c = InProcessCohort(10, seed=7)
    cohort = c.setup()
    s_ct = dict(c.server._s_ct)  # generation-0 sealed s shares
    for r in range(3):
        c.round(r, inputs(cohort, seed=r))
    j = c.server.committee[0]
    state = c.states[j]
    assert len(state["rev_b_from"]) == len(set(state["rev_b_from"])) == len(cohort)
    assert set(state["rev_b_gen"]) == {2}
    reqs = c.server.masked_input_requests(3)
    d = cohort[2]
    evil = {M.STAGE: M.UNMASK, M.COHORT_ID: c.server.cohort_id, M.ROUND: 3,
            M.SURVIVORS: [u for u in cohort if u != d], M.DROPPED: [d], M.B_FROM: [], M.B_GEN: [], M.B_CT: [],
            M.S_FROM: [d], M.S_GEN_OF: [0], M.S_CT: [s_ct[(d, j)]]}
    assert reqs  # the server is in round 3; the member is asked out of turn
    with pytest.raises(SecAggRefusal, match="b share was revealed"):
        c.call(j, lambda cl: cl.unmask(evil))


def test_refuses_both_secrets_of_one_client_s_then_b():
    c, j, req, _, replies = _round_with_unmask_request(late=[5])
    assert req[M.DROPPED] == [5]
    c.call(j, lambda cl: cl.unmask(req))  # reveals the s share of client 5 (gen 0)
    k = c.server.committee.index(j)
    evil = {**req, M.SURVIVORS: sorted(req[M.SURVIVORS] + [5]), M.DROPPED: [],
            M.B_FROM: [5], M.B_GEN: [0], M.B_CT: [replies[5][M.B_SHARE_CT][k]], M.S_FROM: [], M.S_GEN_OF: [], M.S_CT: []}
    with pytest.raises(SecAggRefusal, match="s key was revealed"):
        c.call(j, lambda cl: cl.unmask(evil))


def test_refuses_inconsistent_unmask_requests():
    c, j, req, _, _ = _round_with_unmask_request()
    U, t = req[M.SURVIVORS], c.server.plan.threshold
    cases = {
        "named both": {**req, M.DROPPED: [U[0]]},
        f"need {t}": {**req, M.SURVIVORS: U[: t - 1], M.DROPPED: U[t - 1:], M.B_FROM: [], M.B_GEN: [], M.B_CT: []},
        "make up the cohort": {**req, M.SURVIVORS: U[1:], M.B_FROM: [], M.B_GEN: [], M.B_CT: []},
        "non-survivors": {**req, M.SURVIVORS: U[1:], M.DROPPED: [U[0]]},
    }
    for why, evil in cases.items():
        with pytest.raises(SecAggRefusal, match=why):
            c.call(j, lambda cl: cl.unmask(evil))
    outsider = next(u for u in U if u not in c.server.committee)
    with pytest.raises(SecAggRefusal, match="not on the committee"):
        c.call(outsider, lambda cl: cl.unmask(req))


def _share_keys_requests(c):
    reqs = c.server.advertise_requests(sorted(c.states))
    for i, req in reqs.items():
        c.server.receive(c.call(i, lambda cl, req=req: cl.advertise(req)))
    return c.server.share_keys_requests()


@pytest.mark.parametrize("edit, why", [
    (lambda req: {**req, M.COMMITTEE: [req[M.COMMITTEE][0]], M.THRESHOLD: 1}, "does not match the announced"),
    (lambda req: {**req, M.THRESHOLD: req[M.THRESHOLD] - 1}, "does not match the announced"),
    (lambda req: {**req, "param.colluder_fraction": 0.1}, "colluder fraction 0.1 is below"),
    (lambda req: {**req, "param.security_bits": 20}, "below this client's 2\\^-40"),
])
def test_client_rejects_a_committee_or_bounds_weaker_than_announced_or_its_own(edit, why):
    c = InProcessCohort(10, seed=1)
    reqs = _share_keys_requests(c)
    with pytest.raises(SecAggRefusal, match=why):
        c.call(1, lambda cl: cl.share_keys(edit(reqs[1])))


def test_client_refuses_a_cohort_below_its_minimum():
    c = InProcessCohort(4, seed=1, policy=ClientPolicy(min_cohort=5))
    reqs = _share_keys_requests(c)
    with pytest.raises(SecAggRefusal, match="cohort of 4 is below this client's minimum of 5"):
        c.call(1, lambda cl: cl.share_keys(reqs[1]))


def test_out_of_range_input_raises_with_index_locally_and_keeps_state():
    c = InProcessCohort(3, seed=1, params=SecAggParams(bound=10.0))
    c.setup()
    req = c.server.masked_input_requests(0)[1]
    x = np.zeros(L)
    x[123] = -10.5
    before = c.states[1]
    with pytest.raises(SecAggRangeError, match="-10.5 at index 123") as err:
        c.call(1, lambda cl: cl.masked_input(req, x))
    assert c.states[1] == before
    assert not any(ch.isdigit() for ch in err.value.public())  # what the server may be told: no value, no index


def test_state_round_trips_and_is_flat():
    c = InProcessCohort(5, seed=1)
    c.setup()
    c.round(0, inputs(c.server.cohort))
    for i, state in c.states.items():
        for k, v in state.items():
            assert isinstance(v, (int, float, str, bytes)) or (
                isinstance(v, list) and all(isinstance(e, (int, bytes)) for e in v)), (k, v)
        assert SecAggClient.from_state(state).to_state() == state
        assert state["s_gen"] == 1 and len(state["s_sk"]) == 32


def test_malformed_masked_inputs_are_discarded():
    c = InProcessCohort(10, seed=1)
    cohort = c.setup()
    xs = inputs(cohort)
    replies = c.masked_input(0, xs, late=[2, 3])
    assert not c.server.receive({**replies[2], M.MASKED: replies[2][M.MASKED][:-1]})  # wrong length
    assert not c.server.receive({**replies[3], M.MASKED: replies[3][M.MASKED].astype(np.float64)})
    assert not c.server.receive({k: v for k, v in replies[3].items() if k != M.B_SHARE_CT})
    assert not c.server.receive({k: v for k, v in replies[3].items() if k != M.B_SHARE_HASH})
    # Each field checked on its own: one list one short, one key a byte short, another committee, an old key.
    for key in (M.S_SHARE_HASH, M.B_SHARE_HASH, M.S_SHARE_CT, M.B_SHARE_CT):
        assert not c.server.receive({**replies[3], key: list(replies[3][key])[:-1]}), key
    for key in (M.NEXT_S_PK, M.B_COMMIT):
        assert not c.server.receive({**replies[3], key: bytes(replies[3][key])[:-1]}), key
    assert not c.server.receive({**replies[3], M.SHARE_TO: list(reversed(replies[3][M.SHARE_TO]))})
    assert not c.server.receive({**replies[3], M.S_GEN: replies[3][M.S_GEN] + 1})
    assert c.server.receive(replies[3])
    assert_sum(c.unmask(), xs, [m for m in cohort if m != 2])


def _lying(members: set, kind: str):
    """Committee members in `members` return valid field elements that are not their shares."""
    key = M.S_SHARE if kind == "s" else M.B_SHARE

    def tamper(j, reply):
        if j in members and reply[key]:
            return {**reply, key: [bytes(65) + bytes([1 + k % 200]) for k, _ in enumerate(reply[key])]}
        return reply
    return tamper


@pytest.mark.parametrize("kind", ["s", "b"])
def test_wrong_plaintext_shares_are_skipped_and_the_sum_is_still_right(kind):
    c = InProcessCohort(16, seed=2)
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs, drop=[4])
    liars = set(c.server.committee[:3])
    got = c.unmask(tamper=_lying(liars, kind))
    assert_sum(got, xs, [m for m in cohort if m != 4])
    assert {j for _, j, k in c.server.rejected if k == kind} == liars & set(c.server._unmask_replies)


@pytest.mark.parametrize("kind", ["s", "b"])
def test_too_many_wrong_shares_abort(kind):
    c = InProcessCohort(10, seed=2)
    cohort = c.setup()
    c.masked_input(0, inputs(cohort), drop=[4])
    com, t = c.server.committee, c.server.plan.threshold
    with pytest.raises(SecAggAbort, match=f"fewer than t={t} good shares"):
        c.unmask(tamper=_lying(set(com[: len(com) - t + 1]), kind))


def test_shares_of_secrets_nobody_asked_for_are_rejected_and_the_sum_is_still_right():
    """A member's reply that adds a b share "from" a dropped client and an s share "from" a survivor (secrets the
    server never asked for, with no dealer digest) has both listed as rejected; the sum still opens."""
    c = InProcessCohort(10, seed=2)
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs, drop=[4])
    liar, survivor = c.server.committee[0], next(m for m in cohort if m != 4)

    def tamper(j, reply):
        if j != liar:
            return reply
        share = bytes(reply[M.B_SHARE][0])  # a well-formed share, for the wrong secret
        return {**reply, M.B_FROM: list(reply[M.B_FROM]) + [4], M.B_SHARE: list(reply[M.B_SHARE]) + [share],
                M.S_FROM: list(reply[M.S_FROM]) + [survivor], M.S_SHARE: list(reply[M.S_SHARE]) + [share]}

    got = c.unmask(tamper=tamper)
    assert_sum(got, xs, [m for m in cohort if m != 4])
    assert sorted(c.server.rejected) == sorted([(4, liar, "b"), (survivor, liar, "s")])


def test_an_s_share_a_member_cannot_open_is_listed_and_the_sum_is_still_right():
    """A dropped client's sealed s share that fails authentication at one member is listed by the server
    as (dealer, member, "s"); the other members' shares still remove the dropped client's masks."""
    c = InProcessCohort(10, seed=6)
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs, drop=[4])
    holder = c.server.committee[0]

    def tamper(j, req):
        if j != holder:
            return req
        cts = [bytes(ct) for ct in req[M.S_CT]]
        cts[0] = cts[0][:-1] + bytes([cts[0][-1] ^ 1])
        return {**req, M.S_CT: cts}

    assert_sum(c.unmask(edit=tamper), xs, [m for m in cohort if m != 4])
    assert c.server.rejected == [(4, holder, "s")]


def test_a_well_formed_share_of_another_secret_is_rejected_by_its_digest():
    """A member that swaps two survivors' (well-formed, 36-byte) b shares in its reply: each fails the
    digest its dealer published, both are listed, and the other members' shares give the right sum."""
    c = InProcessCohort(10, seed=2)
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs)
    liar = c.server.committee[0]
    swapped = []

    def tamper(j, reply):
        if j != liar:
            return reply
        shares = [bytes(s) for s in reply[M.B_SHARE]]
        shares[0], shares[1] = shares[1], shares[0]
        swapped.extend(reply[M.B_FROM][:2])
        return {**reply, M.B_SHARE: shares}

    assert_sum(c.unmask(tamper=tamper), xs, cohort)
    assert sorted(c.server.rejected) == sorted((u, liar, "b") for u in swapped) and len(swapped) == 2


def test_no_reserve_member_is_asked_when_every_secret_has_exactly_t_shares():
    """Of the t + 2 members asked, only t answer: every secret has exactly t shares, enough, so nobody from the
    reserve is asked to reveal more."""
    c = InProcessCohort(10, seed=3)  # a committee of 7, threshold 4
    cohort = c.setup()
    xs = inputs(cohort)
    c.masked_input(0, xs)
    reqs = c.server.unmask_requests()
    t = c.server.plan.threshold
    assert len(reqs) == t + 2 and c.server._reserve
    for j in list(reqs)[:t]:
        c.server.receive(c.call(j, lambda cl, req=reqs[j]: cl.unmask(req)))
    assert c.server.more_unmask_requests() == {}
    assert_sum(c.server.aggregate(), xs, cohort)
