"""Server side of secure aggregation: builds each stage's requests, collects replies, unmasks the sum."""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from fedrec.shared.secagg import fixedpoint, graph, reconstruct, shamir
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggAbort
from fedrec.shared.secagg.params import CohortPlan, SecAggParams

log = logging.getLogger(__name__)
UNMASK_SPARE = 2  # committee members asked beyond the threshold; more are asked only if shares fall short


class SecAggServer:
    """One cohort's server state. Call, in order: advertise_requests, share_keys_requests, finish_setup,
    then per round masked_input_requests, unmask_requests (then more_unmask_requests until it returns
    nothing), aggregate; feed every reply to receive().

    A new cohort (when needs_setup is set, or the set of clients changes) is a new SecAggServer with a
    new cohort_id; clients reset their own state when they receive its advertise request.
    """

    def __init__(self, run_id: bytes, cohort_id: int, params: SecAggParams | None = None, seed: int | None = None):
        self.run_id, self.cohort_id, self.params = bytes(run_id), int(cohort_id), params or SecAggParams()
        self.params.check()
        # The graph and committee seed is public (63 bits, to travel as a signed int); by default derived
        # from the run and cohort ids.
        self.seed = seed if seed is not None else int.from_bytes(
            hashlib.sha256(self.run_id + cohort_id.to_bytes(8, "big", signed=True)).digest()[:8], "big") >> 1
        self.needs_setup = True
        self.cohort: list[int] = []
        self.committee: list[int] = []
        self.survivors: list[int] = []
        self.dropped: list[int] = []
        self.rejected: list[tuple[int, int, str]] = []  # (sender, committee member, kind) of bad shares
        self.plan: CohortPlan | None = None  # for the share-keys members: committee and threshold
        self.cohort_plan: CohortPlan | None = None  # for the cohort that finished setup: graph and bounds
        self.graph: dict[int, list[int]] = {}
        self.round, self._length, self._s_gen = -1, None, {}
        self._stage, self._expected, self._replies = "", set(), {}
        self._unmask_replies: dict[int, dict] = {}
        self._reserve: list[int] = []

    @property
    def threshold(self) -> int:
        return self.plan.threshold

    # ----- reply collection
    def receive(self, reply: dict) -> bool:
        """Accept a reply of the open stage from an expected client; ignore (False) late, unknown, duplicate."""
        idx = reply.get(M.INDEX)
        if (reply.get(M.STAGE) != self._stage or reply.get(M.COHORT_ID) != self.cohort_id
                or idx not in self._expected or idx in self._replies
                or (self._stage in (M.MASKED_INPUT, M.UNMASK) and reply.get(M.ROUND) != self.round)):
            log.debug("ignoring %s reply of client %s (open stage %s)", reply.get(M.STAGE), idx, self._stage)
            return False
        try:
            problem = M.reply_problem(reply, self.committee, self._s_gen, self._length)
        except (KeyError, TypeError, ValueError) as e:
            problem = f"malformed ({type(e).__name__})"
        if problem:
            log.warning("discarding %s reply of client %s: %s", self._stage, idx, problem)
            return False
        if reply[M.STAGE] == M.MASKED_INPUT:
            self._length = reply[M.MASKED].size
        self._replies[idx] = reply
        return True

    def _open(self, stage: str, expected) -> None:
        self._stage, self._expected, self._replies = stage, set(expected), {}

    def _close(self, stage: str) -> dict[int, dict]:
        if self._stage != stage:
            raise RuntimeError(f"secagg server: expected open stage {stage!r}, have {self._stage!r}")
        self._stage = ""
        return self._replies

    # ----- setup
    def advertise_requests(self, indices: list[int]) -> dict[int, dict]:
        """Stage 1 requests for the candidate clients (indices 1..n, also their Shamir x-coordinates)."""
        if any(not 1 <= i < shamir.PRIME for i in indices):
            raise ValueError(f"client indices must be in [1, {shamir.PRIME}) (they are Shamir x-coordinates)")
        self.needs_setup = True
        self._open(M.ADVERTISE, indices)
        return {i: {M.STAGE: M.ADVERTISE, M.RUN_ID: self.run_id, M.COHORT_ID: self.cohort_id, M.INDEX: i,
                    M.GRAPH_SEED: self.seed} for i in indices}

    def share_keys_requests(self) -> dict[int, dict]:
        """Close stage 1; choose the committee among the clients that replied; stage 2 requests."""
        adv = self._close(M.ADVERTISE)
        members = sorted(adv)
        if not members:
            raise SecAggAbort(f"cohort {self.cohort_id}: no client answered the advertise request")
        self.plan = p = self.params.plan(len(members))
        self.committee = graph.committee(members, p.committee_size, self.seed)
        self._c_pk = {u: bytes(adv[u][M.C_PK]) for u in members}
        self._s_pk = {u: bytes(adv[u][M.S_PK]) for u in members}
        self._open(M.SHARE_KEYS, members)
        reqs = {}
        for u in members:
            peers = members if u in self.committee else self.committee
            reqs[u] = {M.STAGE: M.SHARE_KEYS, M.COHORT_ID: self.cohort_id, M.MEMBERS: members,
                       M.COMMITTEE: self.committee, M.THRESHOLD: p.threshold, **self.params.to_payload(),
                       M.PEER_IDS: list(peers), M.PEER_C_PK: [self._c_pk[v] for v in peers]}
        return reqs

    def finish_setup(self) -> list[int]:
        """Close stage 2; the mask graph is drawn over the clients that finished it (the cohort).
        SecAggAbort if fewer than t committee members are in it."""
        replies = self._close(M.SHARE_KEYS)
        t, alive = self.plan.threshold, [j for j in self.committee if j in replies]
        if len(alive) < t or len(replies) < t:
            raise SecAggAbort(f"cohort {self.cohort_id}: setup failed, {len(alive)} of {len(self.committee)} "
                              f"committee members and {len(replies)} clients completed it, need {t}")
        self.cohort = sorted(replies)
        self.cohort_plan = self.params.plan(len(self.cohort))
        self.graph = graph.adjacency(self.cohort, self.cohort_plan.edge_probability, self.seed)
        thin = [u for u in self.cohort if len(self.graph[u]) < self.cohort_plan.min_neighbours]
        if thin:  # those clients would refuse every masked input: better a new draw now
            raise SecAggAbort(f"cohort {self.cohort_id}: clients {thin[:10]} have fewer than "
                              f"{self.cohort_plan.min_neighbours} mask neighbours")
        self._s_pk = {u: self._s_pk[u] for u in self.cohort}
        self._s_gen = {u: 0 for u in self.cohort}
        self._s_ct = {(u, j): bytes(ct) for u in self.cohort for j, ct in zip(self.committee, replies[u][M.S_SHARE_CT])}
        self._s_hash = {(u, j, 0): bytes(h) for u in self.cohort for j, h in zip(self.committee, replies[u][M.S_SHARE_HASH])}
        self.needs_setup = False
        return self.cohort

    # ----- rounds
    def masked_input_requests(self, round_: int) -> dict[int, dict]:
        """Stage 3 requests for every cohort member, with its neighbours' current s public keys."""
        if self.needs_setup:
            raise SecAggAbort(f"cohort {self.cohort_id} needs a new setup before round {round_}")
        self.round, self._length, self._round_s_pk = int(round_), None, dict(self._s_pk)
        self._open(M.MASKED_INPUT, self.cohort)
        reqs = {}
        for u in self.cohort:
            nb = self.graph[u]
            reqs[u] = {M.STAGE: M.MASKED_INPUT, M.COHORT_ID: self.cohort_id, M.ROUND: self.round,
                       M.MEMBERS: self.cohort, M.NEIGHBOUR_IDS: nb, M.NEIGHBOUR_S_PK: [self._s_pk[v] for v in nb]}
        return reqs

    def unmask_requests(self) -> dict[int, dict]:
        """Close stage 3 (later masked inputs are ignored); check that unmasking reveals only the total; name
        U and D; requests for the first t + UNMASK_SPARE live committee members (the rest are kept in reserve)."""
        replies = self._close(M.MASKED_INPUT)
        U = sorted(replies)
        D = sorted(set(self.cohort) - set(U))
        problem = ""
        if len(U) < self.plan.threshold:
            problem = f"only {len(U)} masked inputs, need {self.plan.threshold}"
        elif len(D) > self.cohort_plan.max_dropouts:
            problem = f"{len(D)} dropouts exceed the bound of {self.cohort_plan.max_dropouts} for {len(self.cohort)} clients"
        else:
            problem = graph.survivors_problem(self.graph, U, self.cohort_plan.min_neighbours)
        if problem:
            self.needs_setup = True
            raise SecAggAbort(f"round {self.round}: {problem}; nothing is unmasked")
        self.survivors, self.dropped, self.rejected = U, D, []
        self._masked = {u: replies[u][M.MASKED] for u in U}
        self._b_commit = {u: bytes(replies[u][M.B_COMMIT]) for u in U}
        self._b_gen = {u: int(replies[u][M.S_GEN]) for u in U}
        self._d_gen = {d: self._s_gen[d] for d in D}
        self._b_ct = {(u, j): bytes(ct) for u in U for j, ct in zip(self.committee, replies[u][M.B_SHARE_CT])}
        self._b_hash = {(u, j): bytes(h) for u in U for j, h in zip(self.committee, replies[u][M.B_SHARE_HASH])}
        for u in U:  # survivors move to the s key they made for the next round
            gen = self._s_gen[u] + 1
            self._s_pk[u], self._s_gen[u] = bytes(replies[u][M.NEXT_S_PK]), gen
            self._s_ct.update({(u, j): bytes(ct) for j, ct in zip(self.committee, replies[u][M.S_SHARE_CT])})
            self._s_hash.update({(u, j, gen): bytes(h) for j, h in zip(self.committee, replies[u][M.S_SHARE_HASH])})
        for d in D:
            del self._s_pk[d]
        # The spec starts a new cohort after any dropout; with per-round s keys this is stricter than
        # needed, but it also redraws the committee and graph for the smaller cohort.
        self.needs_setup = bool(D)
        # Survivors first: they are known to be alive.
        live = [j for j in self.committee if j in U] + [j for j in self.committee if j in D]
        first = self.plan.threshold + UNMASK_SPARE
        self._reserve = live[first:]
        self._unmask_replies = {}
        return self._unmask_batch(live[:first])

    def _unmask_batch(self, holders: list[int]) -> dict[int, dict]:
        U, D = self.survivors, self.dropped
        reqs = {j: {M.STAGE: M.UNMASK, M.COHORT_ID: self.cohort_id, M.ROUND: self.round,
                    M.SURVIVORS: U, M.DROPPED: D,
                    M.B_FROM: U, M.B_GEN: [self._b_gen[u] for u in U], M.B_CT: [self._b_ct[(u, j)] for u in U],
                    M.S_FROM: D, M.S_GEN_OF: [self._d_gen[d] for d in D], M.S_CT: [self._s_ct[(d, j)] for d in D]}
                for j in holders}
        self._open(M.UNMASK, reqs)
        return reqs

    def _digests(self) -> dict[tuple[int, str, int], bytes]:
        """The dealers' digest of every share the open unmask may return: (dealer, kind, holder) -> digest."""
        out = {(u, "b", j): self._b_hash[(u, j)] for u in self.survivors for j in self.committee}
        out.update({(d, "s", j): self._s_hash[(d, j, self._d_gen[d])] for d in self.dropped for j in self.committee})
        return out

    def more_unmask_requests(self) -> dict[int, dict]:
        """Close the open unmask batch; if some secret still lacks t good shares, requests for reserve members
        (an empty dict when none are needed or none are left)."""
        self._unmask_replies.update(self._close(M.UNMASK))
        pts, _ = self._collect()
        need = max((self.plan.threshold - len(p) for p in pts.values()), default=0)
        if need <= 0 or not self._reserve:
            return {}
        batch, self._reserve = self._reserve[: need + UNMASK_SPARE], self._reserve[need + UNMASK_SPARE:]
        return self._unmask_batch(batch)

    def _collect(self):
        return reconstruct.collect_shares(self._unmask_replies, self.survivors, self.dropped, self._digests(),
                                          self.cohort_id, self.round, self._b_gen, self._d_gen)

    def aggregate(self) -> np.ndarray:
        """Close stage 4; reconstruct the survivors' self-masks and the dropped s keys from every good share
        (bad ones are spotted by the dealers' digests and skipped); the float64 sum."""
        if self._stage == M.UNMASK:  # not yet closed by more_unmask_requests
            self._unmask_replies.update(self._close(M.UNMASK))
        replies, t, r = self._unmask_replies, self.plan.threshold, self.round
        pts, self.rejected = self._collect()
        short = [f"{kind}_{u} ({len(p)})" for (u, kind), p in pts.items() if len(p) < t]
        if short:
            self.needs_setup = True
            raise SecAggAbort(f"round {r}: fewer than t={t} good shares for {', '.join(short[:10])}; {len(replies)} "
                              f"committee members answered; bad shares from {sorted({j for _, j, _ in self.rejected})}")
        if self.rejected:
            log.warning("round %d: skipped %d bad shares from committee members %s", r, len(self.rejected),
                        sorted({j for _, j, _ in self.rejected}))
        try:
            total = reconstruct.unmasked_total(self._masked, self._b_commit, pts, t, self.graph, self._round_s_pk,
                                               self.run_id, self.cohort_id, r)
        except SecAggAbort:
            self.needs_setup = True
            raise
        return fixedpoint.decode(total, self.plan.frac_bits)
