"""Server-side unmasking: check every opened share against its dealer's digest, strip the masks from the sum."""

from __future__ import annotations

import hashlib

import numpy as np

from fedrec.shared.secagg import aead, keys, prg, shamir
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggAbort


def collect_shares(replies: dict[int, dict], survivors: list[int], dropped: list[int],
                   digests: dict[tuple[int, str, int], bytes], cohort_id: int, round_: int,
                   b_gen: dict[int, int], d_gen: dict[int, int]):
    """Good Shamir points per needed secret {(client, "b"|"s"): {holder: y}}, and the (dealer, holder, kind)
    of every share that was refused, unreadable, not asked for or not the one its dealer committed to."""
    pts = {(u, "b"): {} for u in survivors} | {(d, "s"): {} for d in dropped}
    rejected = []
    for j, rep in replies.items():
        rejected += [(int(u), j, "b") for u in rep[M.REJECTED_B]] + [(int(u), j, "s") for u in rep[M.REJECTED_S]]
        for kind, frm, shares in (("b", M.B_FROM, M.B_SHARE), ("s", M.S_FROM, M.S_SHARE)):
            for u, share in zip(rep[frm], rep[shares]):
                u, share = int(u), bytes(share)
                ad = (aead.share_ad(u, j, cohort_id, round_, b_gen.get(u, -1), "b") if kind == "b"
                      else aead.share_ad(u, j, cohort_id, aead.NO_ROUND, d_gen.get(u, -1), "s"))
                try:
                    if (u, kind) not in pts or aead.share_digest(share, ad) != digests.get((u, kind, j)):
                        raise ValueError("not the committed share")
                    shamir.share_values(share)  # well formed
                    pts[(u, kind)][j] = share
                except ValueError:
                    rejected.append((u, j, kind))
    return pts, rejected


def unmasked_total(masked: dict[int, np.ndarray], b_commit: dict[int, bytes], pts: dict, threshold: int,
                   graph: dict[int, list[int]], s_pk: dict[int, bytes], run_id: bytes, cohort_id: int,
                   round_: int) -> np.ndarray:
    """Sum of the survivors' y minus their self-masks and the pairwise masks left unmatched by the dropped."""
    length = next(iter(masked.values())).size
    total = np.zeros(length, dtype=np.uint64)
    combiner = shamir.Combiner(threshold)
    for u, y in masked.items():
        b = _combine(combiner, pts, u, "b", round_)
        # Shares were checked one by one; this catches a dealer whose shares do not fit its own seed.
        if hashlib.sha256(b).digest() != b_commit[u]:
            raise SecAggAbort(f"round {round_}: the reconstructed b_{u} does not match its commitment")
        total += y
        prg.apply(total, b, -1)
    for (d, kind), points in pts.items():
        if kind != "s":
            continue
        sk = keys.private_from_raw(_combine(combiner, pts, d, "s", round_))
        if keys.public_raw(sk) != s_pk[d]:  # a free integrity check of the reconstruction
            raise SecAggAbort(f"round {round_}: the reconstructed s_{d} does not match its public key")
        for v in graph[d]:
            if v in masked:  # v added +PRG(k) if v < d, else -PRG(k): take it back out
                k = keys.agree(sk, s_pk[v], keys.pair_info(run_id, cohort_id, round_, d, v))
                prg.apply(total, k, -1 if v < d else +1)
    return total


def _combine(combiner, pts: dict, u: int, kind: str, round_: int) -> bytes:
    try:
        return combiner.combine(sorted(pts[(u, kind)].items()))
    except SecAggAbort as e:
        raise SecAggAbort(f"round {round_}: cannot reconstruct {kind}_{u}: {e}") from None
