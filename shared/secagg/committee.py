"""A committee member's unmask duty: vet the server's request, then open the shares it asks for.

The refusals are what keep the server from learning an individual input:
- it must never obtain both the self-mask seed b_u^r and the s key that made u's pairwise masks of round r
  (a strict-majority threshold means two disjoint quorums cannot exist, so some honest member would be
  asked for both, and the persisted revealed_b / revealed_s records make it refuse the second; since a
  client's s-key generations only grow, revealed_b keeps the highest generation per client, and any s key
  up to it is refused: the record stays one entry per client however long the run);
- it must not unmask survivors whose masks no longer hide them: too few survivors, more dropouts than the
  announced bound, a survivor left with too few surviving neighbours, or survivors split into groups whose
  separate sums would each be revealed. The member recomputes the mask graph itself from the public seed.
"""

from __future__ import annotations

import logging

from fedrec.shared.secagg import aead, graph
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggTamperError

log = logging.getLogger(__name__)


def unmask(client, req: dict) -> dict:
    """The unmask reply of committee member `client` (a SecAggClient) to `req`; updates its revealed sets."""
    r, me = int(req[M.ROUND]), client.index
    if me not in client.committee:
        raise client.refuse("not on the committee")
    U, D = {int(u) for u in req[M.SURVIVORS]}, {int(d) for d in req[M.DROPPED]}
    b_req = [(int(u), int(g), bytes(ct)) for u, g, ct in zip(req[M.B_FROM], req[M.B_GEN], req[M.B_CT])]
    s_req = [(int(d), int(g), bytes(ct)) for d, g, ct in zip(req[M.S_FROM], req[M.S_GEN_OF], req[M.S_CT])]
    # A member that missed this round's masked-input request knows only the share-keys candidates.
    cohort = sorted(U | D)
    cohort_ok = cohort == client.cohort if client.cohort else set(cohort) <= set(client.members)
    problems = [
        (U & D, f"clients {sorted(U & D)[:10]} named both survived and dropped"),
        (not cohort_ok, "survivors and dropped do not make up the cohort"),
        (len(U) < max(client.threshold, client.policy.min_cohort),
         f"only {len(U)} survivors, need {max(client.threshold, client.policy.min_cohort)}"),
        (not {u for u, _, _ in b_req} <= U or not {d for d, _, _ in s_req} <= D,
         "b shares asked for non-survivors or s shares for non-dropped clients"),
        ({(u, g) for u, g, _ in b_req} & client.revealed_s, "b share asked of a client whose s key was revealed"),
        ([d for d, g, _ in s_req if g <= client.revealed_b.get(d, -1)],
         "s key asked of a client whose b share was revealed"),
    ]
    for bad, why in problems:
        if bad:
            raise client.refuse(f"refuses to unmask round {r}: {why}")
    plan = client.cohort_plan(cohort)
    if len(D) > plan.max_dropouts:
        raise client.refuse(f"refuses to unmask round {r}: {len(D)} dropouts exceed the bound of {plan.max_dropouts}")
    if b_req:  # revealing self-masks exposes the survivors' masked inputs to whatever masks remain
        mask_graph = graph.adjacency(cohort, plan.edge_probability, client.seed)
        if why := graph.survivors_problem(mask_graph, sorted(U), plan.min_neighbours):
            raise client.refuse(f"refuses to unmask round {r}: {why}")
    out = {M.STAGE: M.UNMASK, M.COHORT_ID: client.cohort_id, M.ROUND: r, M.INDEX: me}
    b_from, out[M.B_SHARE], out[M.REJECTED_B] = _open_all(client, b_req, r, "b")
    s_from, out[M.S_SHARE], out[M.REJECTED_S] = _open_all(client, s_req, aead.NO_ROUND, "s")
    out[M.B_FROM], out[M.S_FROM] = b_from, s_from
    return out


def _open_all(client, reqs, round_: int, kind: str) -> tuple[list[int], list[bytes], list[int]]:
    """Open each sealed share and record it as revealed; a share that fails authentication is listed, not
    fatal to the others."""
    ok_from, ok_share, rejected = [], [], []
    for sender, gen, ct in reqs:
        ad = aead.share_ad(sender, client.index, client.cohort_id, round_, gen, kind)
        try:
            if sender not in client.seal_keys:
                raise SecAggTamperError(f"{kind!r} share from unknown client {sender}", sender, client.index, kind)
            share = aead.open_(client.seal_keys[sender], ct, ad, sender=sender, receiver=client.index, kind=kind)
        except SecAggTamperError as e:
            log.warning("%s", e)
            rejected.append(sender)
            continue
        if kind == "b":
            client.revealed_b[sender] = max(gen, client.revealed_b.get(sender, -1))
        else:
            client.revealed_s.add((sender, gen))
        ok_from.append(sender)
        ok_share.append(share)
    return ok_from, ok_share, rejected
