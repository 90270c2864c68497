"""Client side of secure aggregation: one method per stage, over state that round-trips a flat dict.

The client trusts the server with nothing it can check itself: it derives the committee, the threshold
and its own mask neighbours from the announced parameters and the public seed, holds them to its own
policy, and refuses any request that would let its input (or a peer's) be read.

The caller must persist to_state() BEFORE sending an unmask reply: the record of which shares were
revealed is what stops a server from collecting both secrets of a client across two requests.
"""

from __future__ import annotations

import hashlib
import secrets

import numpy as np

from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.dp.skellam import encode_noised
from fedrec.shared.secagg import aead, committee, fixedpoint, graph, keys, prg, shamir
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggRefusal
from fedrec.shared.secagg.params import ClientPolicy, CohortPlan, SecAggParams

_INT_LISTS = ("members", "cohort", "committee", "key_ids", "rev_s_from", "rev_s_gen", "rev_b_from", "rev_b_gen")


def noised_encoding(x: np.ndarray, noise: tuple[float, float], plan: CohortPlan) -> np.ndarray:
    """x / clip randomly rounded onto the grid plus this client's Skellam share, before masking (uint64).

    noise = (noise multiplier, clip); the share is sized so that the sum over the plan's cohort keeps the full
    noise when it loses the announced dropouts and colluders (who know, and could subtract, their own shares).
    """
    # In units of the clip, so that one user moves the encoded vector by at most 2^frac_bits (the server
    # multiplies the decoded sum back by the clip).
    x = np.asarray(x, dtype=np.float64) / noise[1]
    share = NoisePlan(noise[0], 1.0, x.size, plan.n, plan.max_dropouts, plan.colluders, plan.frac_bits)
    fixedpoint.check_range(x, plan.frac_bits, plan.bound)  # the same range check as without noise
    return encode_noised(x, share.client_mu, frac_bits=plan.frac_bits, bound=plan.bound)


class SecAggClient:
    """One client's secure-aggregation state; secrets never leave it except as sealed shares."""

    def __init__(self, policy: ClientPolicy | None = None) -> None:
        self.policy = policy or ClientPolicy()
        self.run_id, self.cohort_id, self.index, self.seed = b"", -1, 0, 0
        self.c_sk = self.s_sk = None
        self.s_gen = 0  # generation of s_sk: a fresh s key is made for every masked input (see masked_input)
        self.params = SecAggParams()
        self.members: list[int] = []  # candidates named at share-keys time
        self.cohort: list[int] = []  # members named in the last masked-input request
        self.committee: list[int] = []
        self.threshold = 0
        self.seal_keys: dict[int, bytes] = {}  # peer index -> AEAD key (cached ECDH of c keys)
        self.revealed_s: set[tuple[int, int]] = set()  # (client, s generation) whose s share we opened
        self.revealed_b: dict[int, int] = {}  # client -> highest s generation used in a round whose b share we opened

    def refuse(self, why: str) -> SecAggRefusal:
        return SecAggRefusal(f"client {self.index}: {why}")

    # ----- stage 1
    def advertise(self, req: dict) -> dict:
        """Start a new cohort: forget everything, make the c and s key pairs, return their public keys."""
        self.__init__(self.policy)
        self.run_id, self.cohort_id, self.index = bytes(req[M.RUN_ID]), int(req[M.COHORT_ID]), int(req[M.INDEX])
        self.seed = int(req[M.GRAPH_SEED])
        self.c_sk, self.s_sk = keys.generate(), keys.generate()
        return {M.STAGE: M.ADVERTISE, M.COHORT_ID: self.cohort_id, M.INDEX: self.index,
                M.C_PK: keys.public_raw(self.c_sk), M.S_PK: keys.public_raw(self.s_sk)}

    # ----- stage 2
    def share_keys(self, req: dict) -> dict:
        """Check the announced parameters and committee; return the s private key's shares for the committee."""
        self._check(req, M.SHARE_KEYS)
        members, com, t = sorted(int(v) for v in req[M.MEMBERS]), [int(v) for v in req[M.COMMITTEE]], int(req[M.THRESHOLD])
        params = SecAggParams.from_payload(req)
        if weaker := params.at_least_as_strong_as(self.policy.minimum):
            raise self.refuse(f"announced parameters too weak: {weaker}")
        if self.index not in members:
            raise self.refuse("not in the member list")
        if len(members) < self.policy.min_cohort:
            raise self.refuse(f"cohort of {len(members)} is below this client's minimum of {self.policy.min_cohort}")
        plan = params.plan(len(members))
        # The committee and threshold are public functions of the seed and the members: recompute, never trust.
        if com != graph.committee(members, plan.committee_size, self.seed) or t != plan.threshold:
            raise self.refuse(f"committee of {len(com)} with threshold {t} does not match the announced "
                              f"parameters ({plan.committee_size}, {plan.threshold})")
        peers = dict(zip(req[M.PEER_IDS], req[M.PEER_C_PK]))
        needed = set(members) if self.index in com else set(com)
        if not needed <= peers.keys():
            raise self.refuse(f"c keys missing for {sorted(needed - peers.keys())[:10]}")
        info = keys.share_info(self.run_id, self.cohort_id)
        self.seal_keys = {int(v): keys.agree(self.c_sk, peers[v], info) for v in sorted(needed)}
        self.members, self.committee, self.threshold, self.params = members, com, t, params
        s_ct, s_hash = self._seal_shares(keys.private_raw(self.s_sk), aead.NO_ROUND, self.s_gen, "s")
        return {M.STAGE: M.SHARE_KEYS, M.COHORT_ID: self.cohort_id, M.INDEX: self.index,
                M.SHARE_TO: list(com), M.S_SHARE_CT: s_ct, M.S_SHARE_HASH: s_hash}

    def cohort_plan(self, cohort: list[int]) -> CohortPlan:
        return self.params.plan(len(cohort))

    # ----- stage 3
    def masked_input(self, req: dict, x: np.ndarray, noise: tuple[float, float] | None = None) -> dict:
        """Return y = encode(x) + PRG(b) ± pairwise masks, sealed shares of b and of the next s key.

        With `noise` = (noise multiplier, clip), x / clip is randomly rounded and this client adds its share of
        Skellam noise, sized so that the sum keeps the full noise when the cohort loses its announced
        dropouts and colluders (who know, and could subtract, their own shares)."""
        self._check(req, M.MASKED_INPUT)
        if not self.seal_keys:
            raise self.refuse("masked input requested before setup finished")
        cohort, r = sorted(int(v) for v in req[M.MEMBERS]), int(req[M.ROUND])
        if self.index not in cohort or not set(cohort) <= set(self.members):
            raise self.refuse(f"round {r} member list is not within the cohort")
        if len(cohort) < self.policy.min_cohort:
            raise self.refuse(f"cohort of {len(cohort)} is below this client's minimum of {self.policy.min_cohort}")
        if self.cohort and cohort != self.cohort:
            raise self.refuse(f"round {r} names a different cohort than earlier rounds")
        plan = self.cohort_plan(cohort)
        if sum(j in cohort for j in self.committee) < self.threshold:
            raise self.refuse(f"fewer than {self.threshold} committee members are left in the cohort")
        nbrs = graph.neighbours_of(self.index, cohort, plan.edge_probability, self.seed)
        if len(nbrs) < plan.min_neighbours:
            raise self.refuse(f"only {len(nbrs)} mask neighbours, need {plan.min_neighbours}")
        pks = dict(zip((int(v) for v in req[M.NEIGHBOUR_IDS]), req[M.NEIGHBOUR_S_PK]))
        if missing := [v for v in nbrs if v not in pks]:
            raise self.refuse(f"no s key for neighbours {missing[:10]}")
        if noise is None:
            y = fixedpoint.encode(x, plan.frac_bits, plan.bound)  # may raise SecAggRangeError: state unchanged
        else:
            y = noised_encoding(x, noise, plan)
        b = secrets.token_bytes(prg.SEED_BYTES)
        prg.apply(y, b, +1)  # uint64 arithmetic wraps mod 2^64
        for v in nbrs:
            k = keys.agree(self.s_sk, pks[v], keys.pair_info(self.run_id, self.cohort_id, r, self.index, v))
            prg.apply(y, k, +1 if self.index < v else -1)
        # A fresh s key every round: s keys are revealed when a client is declared dropped, and with one s
        # key per cohort that would also give the server the pairwise masks of every EARLIER round, whose
        # self-masks it already learnt because the client survived them. With one s key per round,
        # revealing it exposes no other round. The cost is one key agreement per neighbour per round.
        nxt = keys.generate()
        b_ct, b_hash = self._seal_shares(b, r, self.s_gen, "b")
        s_ct, s_hash = self._seal_shares(keys.private_raw(nxt), aead.NO_ROUND, self.s_gen + 1, "s")
        gen, self.s_sk, self.s_gen, self.cohort = self.s_gen, nxt, self.s_gen + 1, cohort
        return {M.STAGE: M.MASKED_INPUT, M.COHORT_ID: self.cohort_id, M.ROUND: r, M.INDEX: self.index,
                M.MASKED: y, M.S_GEN: gen, M.NEXT_S_PK: keys.public_raw(nxt), M.B_COMMIT: hashlib.sha256(b).digest(),
                M.SHARE_TO: list(self.committee), M.B_SHARE_CT: b_ct, M.B_SHARE_HASH: b_hash,
                M.S_SHARE_CT: s_ct, M.S_SHARE_HASH: s_hash}

    # ----- stage 4
    def unmask(self, req: dict) -> dict:
        """As a committee member: open the requested shares, unless that would expose some input."""
        self._check(req, M.UNMASK)
        return committee.unmask(self, req)

    # ----- helpers
    def _check(self, req: dict, stage: str) -> None:
        if req.get(M.STAGE) != stage or int(req.get(M.COHORT_ID, -2)) != self.cohort_id:
            raise self.refuse(f"unexpected {req.get(M.STAGE)!r} request for cohort {req.get(M.COHORT_ID)} "
                              f"(in cohort {self.cohort_id})")

    def _seal_shares(self, secret: bytes, round_: int, gen: int, kind: str) -> tuple[list[bytes], list[bytes]]:
        shares = shamir.split(secret, self.committee, self.threshold)
        sealed, digests = [], []
        for j, plain in zip(self.committee, shares):
            ad = aead.share_ad(self.index, j, self.cohort_id, round_, gen, kind)
            sealed.append(aead.seal(self.seal_keys[j], plain, ad))
            digests.append(aead.share_digest(plain, ad))
        return sealed, digests

    # ----- persistence
    def to_state(self) -> dict:
        """Flat dict of ints, floats, bytes and lists of them (private keys as raw bytes)."""
        return {
            "run_id": self.run_id, "cohort_id": self.cohort_id, "index": self.index, "seed": self.seed,
            "c_sk": keys.private_raw(self.c_sk) if self.c_sk else b"",
            "s_sk": keys.private_raw(self.s_sk) if self.s_sk else b"", "s_gen": self.s_gen,
            **self.params.to_payload(),
            "members": self.members, "cohort": self.cohort,
            "committee": self.committee, "threshold": self.threshold,
            "key_ids": list(self.seal_keys), "keys": list(self.seal_keys.values()),
            "rev_s_from": [u for u, _ in sorted(self.revealed_s)], "rev_s_gen": [g for _, g in sorted(self.revealed_s)],
            "rev_b_from": sorted(self.revealed_b), "rev_b_gen": [self.revealed_b[u] for u in sorted(self.revealed_b)],
        }

    @classmethod
    def from_state(cls, d: dict, policy: ClientPolicy | None = None) -> SecAggClient:
        """Inverse of to_state; the policy is the client's own, never part of the saved protocol state."""
        c = cls(policy)
        lists = {k: [int(v) for v in d[k]] for k in _INT_LISTS}
        c.run_id, c.cohort_id, c.index, c.s_gen = bytes(d["run_id"]), int(d["cohort_id"]), int(d["index"]), int(d["s_gen"])
        c.seed = int(d["seed"])
        c.c_sk = keys.private_from_raw(d["c_sk"]) if d["c_sk"] else None
        c.s_sk = keys.private_from_raw(d["s_sk"]) if d["s_sk"] else None
        c.params = SecAggParams.from_payload(d)
        c.members, c.cohort, c.committee = (lists[k] for k in ("members", "cohort", "committee"))
        c.threshold = int(d["threshold"])
        c.seal_keys = {k: bytes(v) for k, v in zip(lists["key_ids"], d["keys"])}
        c.revealed_s = set(zip(lists["rev_s_from"], lists["rev_s_gen"]))
        c.revealed_b = dict(zip(lists["rev_b_from"], lists["rev_b_gen"]))
        return c
