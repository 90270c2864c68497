"""Setting up a cohort: the public graph seed a server derives when given none, and a client's refusal of a
share-keys request that leaves out a peer's key (found by mutation testing: both could break unnoticed, the
first with a crash of every server started without a seed, the second with a TypeError for a refusal)."""

import numpy as np
import pytest

from fedrec.shared.secagg import fixedpoint
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggRefusal
from fedrec.shared.secagg.inprocess import InProcessCohort
from fedrec.shared.secagg.server import SecAggServer


def test_without_a_seed_the_graph_seed_comes_from_the_run_and_cohort_ids():
    seeds = {(run, cohort): SecAggServer(run, cohort).seed for run in (b"run-a", b"run-b") for cohort in (0, 1, -1)}
    assert len(set(seeds.values())) == 6 and all(0 <= seed < 2**63 for seed in seeds.values())  # a signed int64
    assert SecAggServer(b"run-a", 1).seed == seeds[(b"run-a", 1)]  # every party can recompute it
    c = InProcessCohort(5, run_id=b"run-a", cohort_id=1)  # no seed given
    cohort = c.setup()
    xs = {i: np.full(4, float(i)) for i in cohort}
    assert np.abs(c.round(0, xs) - sum(xs.values())).max() <= fixedpoint.tolerance(5)


def test_a_client_refuses_share_keys_without_every_key_it_needs():
    c = InProcessCohort(5, seed=3)
    reqs = c.server.advertise_requests(sorted(c.states))
    for i, req in reqs.items():
        c.server.receive(c.call(i, lambda client, req=req: client.advertise(req)))
    requests = c.server.share_keys_requests()
    member = c.server.committee[0]  # a committee member needs every member's key
    req = requests[member]
    missing = [v for v in req[M.PEER_IDS] if v != member][0]
    keep = [k for k, v in enumerate(req[M.PEER_IDS]) if v != missing]
    req = {**req, M.PEER_IDS: [req[M.PEER_IDS][k] for k in keep], M.PEER_C_PK: [req[M.PEER_C_PK][k] for k in keep]}
    with pytest.raises(SecAggRefusal, match=rf"client {member}: c keys missing for \[{missing}\]"):
        c.call(member, lambda client: client.share_keys(req))


@pytest.mark.parametrize("cohort_id", [0, 2])
def test_a_request_without_a_cohort_id_is_refused(cohort_id):
    c = InProcessCohort(5, seed=3, cohort_id=cohort_id)
    reqs = c.server.advertise_requests(sorted(c.states))
    c.call(1, lambda client: client.advertise(reqs[1]))  # the client is in cohort `cohort_id`
    req = {k: v for k, v in reqs[1].items() if k != M.COHORT_ID}
    with pytest.raises(SecAggRefusal, match="unexpected 'share_keys' request for cohort None"):
        c.call(1, lambda client: client.share_keys({**req, M.STAGE: M.SHARE_KEYS}))


def test_a_client_refuses_share_keys_that_leave_it_out():
    c = InProcessCohort(5, seed=3)
    for i, req in c.server.advertise_requests(sorted(c.states)).items():
        c.server.receive(c.call(i, lambda client, req=req: client.advertise(req)))
    req = c.server.share_keys_requests()[2]
    with pytest.raises(SecAggRefusal, match="client 2: not in the member list"):
        c.call(2, lambda client: client.share_keys({**req, M.MEMBERS: [v for v in req[M.MEMBERS] if v != 2]}))


def test_a_client_refuses_a_masked_input_when_fewer_than_t_committee_members_are_left():
    c = InProcessCohort(10, seed=3)  # a committee of 7, threshold 4
    c.setup()
    committee, t = c.server.committee, c.server.plan.threshold
    left_out = committee[: len(committee) - t + 1]  # t - 1 committee members remain
    i = next(u for u in c.server.cohort if u not in left_out)
    req = c.server.masked_input_requests(0)[i]
    req = {**req, M.MEMBERS: [v for v in req[M.MEMBERS] if v not in left_out]}
    with pytest.raises(SecAggRefusal, match=f"fewer than {t} committee members are left in the cohort"):
        c.call(i, lambda client: client.masked_input(req, np.zeros(4)))


def test_a_client_refuses_a_masked_input_whose_member_list_names_a_stranger():
    """A round's member list must lie within the members of setup: a server that adds a client of its own
    (with a key it holds) is refused, even when it sends that stranger's key."""
    from fedrec.shared.secagg import keys

    c = InProcessCohort(10, seed=3)
    c.setup()
    i = c.server.cohort[0]
    req = c.server.masked_input_requests(0)[i]
    stranger = keys.public_raw(keys.generate())
    req = {**req, M.MEMBERS: list(req[M.MEMBERS]) + [11], M.NEIGHBOUR_IDS: list(req[M.NEIGHBOUR_IDS]) + [11],
           M.NEIGHBOUR_S_PK: list(req[M.NEIGHBOUR_S_PK]) + [stranger]}
    with pytest.raises(SecAggRefusal, match="member list is not within the cohort"):
        c.call(i, lambda client: client.masked_input(req, np.zeros(4)))
