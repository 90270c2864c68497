"""A committee member's unmask duty: vet the server's request, then open the shares it asks for.

The refusals are what keep the server from learning an individual input: it must never obtain both the
self-mask seed b_u^r and the s key that made u's pairwise masks of round r. Requiring a strict-majority
threshold (checked at setup) means two disjoint quorums cannot exist, so some honest member would be
asked for both, and the persisted revealed_b / revealed_s sets make it refuse the second.
"""

import logging

from fedrec.shared.secagg import aead
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggRefusal, SecAggTamperError

log = logging.getLogger(__name__)


def unmask(client, req: dict) -> dict:
    """The unmask reply of committee member `client` (a SecAggClient) to `req`; updates its revealed sets."""
    r, me = int(req[M.ROUND]), client.index
    if me not in client.committee:
        raise SecAggRefusal(f"client {me} is not on the committee")
    U, D = set(req[M.SURVIVORS]), set(req[M.DROPPED])
    b_req = [(int(u), int(g), bytes(ct)) for u, g, ct in zip(req[M.B_FROM], req[M.B_GEN], req[M.B_CT])]
    s_req = [(int(d), int(g), bytes(ct)) for d, g, ct in zip(req[M.S_FROM], req[M.S_GEN_OF], req[M.S_CT])]
    # A member that missed this round's masked-input request only knows the share-keys candidates
    # (some of which may have left the cohort at share-keys time), so it can only check inclusion.
    cohort_ok = (U | D) == set(client.cohort) if client.cohort else (U | D) <= set(client.members)
    problems = [
        (U & D, f"clients {sorted(U & D)} named both survived and dropped"),
        (len(U) < client.threshold, f"only {len(U)} survivors, need {client.threshold}"),
        (not cohort_ok, "survivors and dropped do not make up the cohort"),
        (not {u for u, _, _ in b_req} <= U or not {d for d, _, _ in s_req} <= D,
         "b shares asked for non-survivors or s shares for non-dropped clients"),
        ({(u, g) for u, g, _ in b_req} & client.revealed_s, "b share asked of a client whose s key was revealed"),
        ({(d, g) for d, g, _ in s_req} & client.revealed_b, "s key asked of a client whose b share was revealed"),
    ]
    for bad, why in problems:
        if bad:
            raise SecAggRefusal(f"client {me} refuses to unmask round {r}: {why}")
    out = {M.STAGE: M.UNMASK, M.COHORT_ID: client.cohort_id, M.ROUND: r, M.INDEX: me}
    b_from, out[M.B_SHARE], out[M.REJECTED_B] = _open_all(client, b_req, r, "b", client.revealed_b)
    s_from, out[M.S_SHARE], out[M.REJECTED_S] = _open_all(client, s_req, aead.NO_ROUND, "s", client.revealed_s)
    out[M.B_FROM], out[M.S_FROM] = b_from, s_from
    return out


def _open_all(client, reqs, round_: int, kind: str, revealed: set) -> tuple[list[int], list[bytes], list[int]]:
    """Open each sealed share; a share that fails authentication is listed, not fatal to the others."""
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
        revealed.add((sender, gen))
        ok_from.append(sender)
        ok_share.append(share)
    return ok_from, ok_share, rejected
