"""Server-side unmasking: gather the committee's plaintext shares and strip the masks from the sum."""

import hashlib

import numpy as np

from fedrec.shared.secagg import keys, prg, shamir
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggAbort


def collect_shares(replies: dict[int, dict], survivors: list[int], dropped: list[int]):
    """Shamir points per needed secret {(client, "b"|"s"): {holder: y}} and the rejected (sender, holder, kind)."""
    pts = {(u, "b"): {} for u in survivors} | {(d, "s"): {} for d in dropped}
    rejected = []
    for j, rep in replies.items():
        rejected += [(int(u), j, "b") for u in rep[M.REJECTED_B]] + [(int(u), j, "s") for u in rep[M.REJECTED_S]]
        for kind, frm, shares in (("b", M.B_FROM, M.B_SHARE), ("s", M.S_FROM, M.S_SHARE)):
            for u, share in zip(rep[frm], rep[shares]):
                try:
                    pts[(int(u), kind)][j] = shamir.share_from_bytes(bytes(share))
                except (KeyError, ValueError):  # a share nobody asked for, or not a field element
                    rejected.append((int(u), j, kind))
    return pts, rejected


def unmasked_total(masked: dict[int, np.ndarray], b_commit: dict[int, bytes], pts: dict, threshold: int,
                   graph: dict[int, list[int]], s_pk: dict[int, bytes], run_id: bytes, cohort_id: int,
                   round_: int) -> np.ndarray:
    """Sum of the survivors' y minus their self-masks and the pairwise masks left unmatched by the dropped."""
    length = next(iter(masked.values())).size
    total = np.zeros(length, dtype=np.uint64)
    for u, y in masked.items():
        b = _combine(pts, u, "b", threshold, round_)
        # Without this check a committee member sending a wrong plaintext share would silently corrupt
        # the sum; the hash of a 256-bit random seed reveals nothing about it.
        if hashlib.sha256(b).digest() != b_commit[u]:
            raise SecAggAbort(f"round {round_}: the reconstructed b_{u} does not match its commitment")
        total += y
        total -= prg.expand(b, length)
    for (d, kind), points in pts.items():
        if kind != "s":
            continue
        sk = keys.private_from_raw(_combine(pts, d, "s", threshold, round_))
        if keys.public_raw(sk) != s_pk[d]:  # a free integrity check of the reconstruction
            raise SecAggAbort(f"round {round_}: the reconstructed s_{d} does not match its public key")
        for v in graph[d]:
            if v in masked:  # v added +PRG(k) if v < d, else -PRG(k): take it back out
                k = keys.agree(sk, s_pk[v], keys.pair_info(run_id, cohort_id, round_, d, v))
                if v < d:
                    total -= prg.expand(k, length)
                else:
                    total += prg.expand(k, length)
    return total


def _combine(pts: dict, u: int, kind: str, threshold: int, round_: int) -> bytes:
    try:
        return shamir.combine(list(pts[(u, kind)].items()), threshold)
    except SecAggAbort as e:  # say which secret: a committee member sent a wrong plaintext share
        raise SecAggAbort(f"round {round_}: cannot reconstruct {kind}_{u}: {e}") from None
