"""Client side of secure aggregation: one method per stage, over state that round-trips a flat dict.

The caller must persist to_state() BEFORE sending an unmask reply: the record of which shares were
revealed is what stops a server from collecting both secrets of a client across two requests.
"""

import hashlib
import secrets

import numpy as np

from fedrec.shared.secagg import aead, committee, fixedpoint, keys, prg, shamir
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggRefusal

_INT_LISTS = ("members", "cohort", "neighbours", "committee", "key_ids", "rev_s_from", "rev_s_gen",
              "rev_b_from", "rev_b_gen")


class SecAggClient:
    """One client's secure-aggregation state; secrets never leave it except as sealed shares."""

    def __init__(self) -> None:
        self.run_id, self.cohort_id, self.index = b"", -1, 0
        self.c_sk = self.s_sk = None
        self.s_gen = 0  # generation of s_sk: a fresh s key is made for every masked input (see masked_input)
        self.members: list[int] = []  # candidates named at share-keys time
        self.cohort: list[int] = []  # members named in the last masked-input request
        self.neighbours: list[int] = []
        self.committee: list[int] = []
        self.threshold, self.frac_bits, self.bound = 0, fixedpoint.DEFAULT_FRAC_BITS, 0.0
        self.seal_keys: dict[int, bytes] = {}  # peer index -> AEAD key (cached ECDH of c keys)
        self.revealed_s: set[tuple[int, int]] = set()  # (client, s generation) whose s share we opened
        self.revealed_b: set[tuple[int, int]] = set()  # (client, s generation used) whose b share we opened

    # ----- stage 1
    def advertise(self, req: dict) -> dict:
        """Start a new cohort: forget everything, make the c and s key pairs, return their public keys."""
        self.__init__()
        self.run_id, self.cohort_id, self.index = bytes(req[M.RUN_ID]), int(req[M.COHORT_ID]), int(req[M.INDEX])
        self.c_sk, self.s_sk = keys.generate(), keys.generate()
        return {M.STAGE: M.ADVERTISE, M.COHORT_ID: self.cohort_id, M.INDEX: self.index,
                M.C_PK: keys.public_raw(self.c_sk), M.S_PK: keys.public_raw(self.s_sk)}

    # ----- stage 2
    def share_keys(self, req: dict) -> dict:
        """Record the graph and committee; return the s private key's shares sealed for the committee."""
        self._check(req, M.SHARE_KEYS)
        members, com, t = list(req[M.MEMBERS]), list(req[M.COMMITTEE]), int(req[M.THRESHOLD])
        if self.index not in members or not set(com) <= set(members):
            raise SecAggRefusal(f"client {self.index}: inconsistent member or committee list")
        # A strict majority is what makes two disjoint quorums (one for s_u, one for b_u) impossible.
        if not len(com) // 2 < t <= len(com):
            raise SecAggRefusal(f"threshold {t} must be a strict majority of the committee of {len(com)}")
        peers = dict(zip(req[M.PEER_IDS], req[M.PEER_C_PK]))
        needed = set(members) if self.index in com else set(com)
        if not needed <= peers.keys():
            raise SecAggRefusal(f"client {self.index}: c keys missing for {sorted(needed - peers.keys())}")
        info = keys.share_info(self.run_id, self.cohort_id)
        self.seal_keys = {int(v): keys.agree(self.c_sk, peers[v], info) for v in sorted(needed)}
        self.members, self.committee, self.threshold = members, com, t
        self.neighbours = sorted(int(v) for v in req[M.NEIGHBOURS] if v in members and v != self.index)
        self.frac_bits, self.bound = int(req[M.FRAC_BITS]), float(req[M.BOUND])
        s_ct = self._seal_shares(keys.private_raw(self.s_sk), aead.NO_ROUND, self.s_gen, "s")
        return {M.STAGE: M.SHARE_KEYS, M.COHORT_ID: self.cohort_id, M.INDEX: self.index,
                M.SHARE_TO: list(com), M.S_SHARE_CT: s_ct}

    # ----- stage 3
    def masked_input(self, req: dict, x: np.ndarray) -> dict:
        """Return y = encode(x) + PRG(b) ± pairwise masks, sealed shares of b and of the next s key."""
        self._check(req, M.MASKED_INPUT)
        if not self.seal_keys:
            raise SecAggRefusal(f"client {self.index}: masked input requested before setup finished")
        members, r = [int(v) for v in req[M.MEMBERS]], int(req[M.ROUND])
        if self.index not in members or not set(members) <= set(self.members):
            raise SecAggRefusal(f"client {self.index}: round {r} member list is not within the cohort")
        pks = dict(zip(req[M.NEIGHBOUR_IDS], req[M.NEIGHBOUR_S_PK]))
        nbrs = [v for v in self.neighbours if v in members]
        if missing := [v for v in nbrs if v not in pks]:
            raise SecAggRefusal(f"client {self.index}: no s key for neighbours {missing}")
        y = fixedpoint.encode(x, self.frac_bits, self.bound)  # may raise SecAggRangeError: state unchanged
        b = secrets.token_bytes(prg.SEED_BYTES)
        y += prg.expand(b, y.size)  # uint64 arithmetic wraps mod 2^64
        for v in nbrs:
            k = keys.agree(self.s_sk, pks[v], keys.pair_info(self.run_id, self.cohort_id, r, self.index, v))
            if self.index < v:
                y += prg.expand(k, y.size)
            else:
                y -= prg.expand(k, y.size)
        # Why a fresh s key every round (a change to the design sketch): s keys are revealed when a
        # client is declared dropped, and with one s key per cohort that would also give the server
        # the pairwise masks of every EARLIER round, whose self-masks it already learnt because the
        # client survived them: it could read all of that client's past inputs. With one s key per
        # round, revealing it exposes no other round. The cost is deg key agreements per round.
        nxt = keys.generate()
        b_ct = self._seal_shares(b, r, self.s_gen, "b")
        s_ct = self._seal_shares(keys.private_raw(nxt), aead.NO_ROUND, self.s_gen + 1, "s")
        gen, self.s_sk, self.s_gen, self.cohort = self.s_gen, nxt, self.s_gen + 1, members
        return {M.STAGE: M.MASKED_INPUT, M.COHORT_ID: self.cohort_id, M.ROUND: r, M.INDEX: self.index,
                M.MASKED: y, M.S_GEN: gen, M.NEXT_S_PK: keys.public_raw(nxt), M.B_COMMIT: hashlib.sha256(b).digest(),
                M.SHARE_TO: list(self.committee), M.B_SHARE_CT: b_ct, M.S_SHARE_CT: s_ct}

    # ----- stage 4
    def unmask(self, req: dict) -> dict:
        """As a committee member: open the requested shares, unless that would expose some input."""
        self._check(req, M.UNMASK)
        return committee.unmask(self, req)

    # ----- helpers
    def _check(self, req: dict, stage: str) -> None:
        if req.get(M.STAGE) != stage or int(req.get(M.COHORT_ID, -2)) != self.cohort_id:
            raise SecAggRefusal(f"client {self.index}: unexpected {req.get(M.STAGE)!r} request "
                                f"for cohort {req.get(M.COHORT_ID)} (in cohort {self.cohort_id})")

    def _seal_shares(self, secret: bytes, round_: int, gen: int, kind: str) -> list[bytes]:
        ys = shamir.split(secret, self.committee, self.threshold)
        return [aead.seal(self.seal_keys[j], shamir.share_to_bytes(y),
                          aead.share_ad(self.index, j, self.cohort_id, round_, gen, kind))
                for j, y in zip(self.committee, ys)]

    # ----- persistence
    def to_state(self) -> dict:
        """Flat dict of ints, floats, bytes and lists of them (private keys as raw bytes)."""
        return {
            "run_id": self.run_id, "cohort_id": self.cohort_id, "index": self.index,
            "c_sk": keys.private_raw(self.c_sk) if self.c_sk else b"",
            "s_sk": keys.private_raw(self.s_sk) if self.s_sk else b"", "s_gen": self.s_gen,
            "members": self.members, "cohort": self.cohort, "neighbours": self.neighbours,
            "committee": self.committee, "threshold": self.threshold, "frac_bits": self.frac_bits,
            "bound": self.bound, "key_ids": list(self.seal_keys), "keys": list(self.seal_keys.values()),
            "rev_s_from": [u for u, _ in sorted(self.revealed_s)], "rev_s_gen": [g for _, g in sorted(self.revealed_s)],
            "rev_b_from": [u for u, _ in sorted(self.revealed_b)], "rev_b_gen": [g for _, g in sorted(self.revealed_b)],
        }

    @classmethod
    def from_state(cls, d: dict) -> "SecAggClient":
        """Inverse of to_state."""
        c = cls()
        lists = {k: [int(v) for v in d[k]] for k in _INT_LISTS}
        c.run_id, c.cohort_id, c.index, c.s_gen = bytes(d["run_id"]), int(d["cohort_id"]), int(d["index"]), int(d["s_gen"])
        c.c_sk = keys.private_from_raw(d["c_sk"]) if d["c_sk"] else None
        c.s_sk = keys.private_from_raw(d["s_sk"]) if d["s_sk"] else None
        c.members, c.cohort, c.neighbours, c.committee = (lists[k] for k in ("members", "cohort", "neighbours", "committee"))
        c.threshold, c.frac_bits, c.bound = int(d["threshold"]), int(d["frac_bits"]), float(d["bound"])
        c.seal_keys = {k: bytes(v) for k, v in zip(lists["key_ids"], d["keys"])}
        c.revealed_s = set(zip(lists["rev_s_from"], lists["rev_s_gen"]))
        c.revealed_b = set(zip(lists["rev_b_from"], lists["rev_b_gen"]))
        return c
