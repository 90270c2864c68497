"""In-process driver of the protocol (no network) for tests, benchmarks and simulations.

Clients are kept as their persisted flat state between messages, as the Flower layer will keep them,
so every run also exercises SecAggClient.to_state / from_state.
"""

from collections.abc import Callable, Iterable

import numpy as np

from fedrec.shared.secagg.client import SecAggClient
from fedrec.shared.secagg.params import ClientPolicy, SecAggParams
from fedrec.shared.secagg.server import SecAggServer


class InProcessCohort:
    """n clients with indices 1..n and one server; `drop` arguments name clients that do not reply."""

    def __init__(self, n: int, params: SecAggParams | None = None, run_id: bytes = b"test-run",
                 cohort_id: int = 0, seed: int | None = None, policy: ClientPolicy | None = None):
        self.server = SecAggServer(run_id, cohort_id, params, seed)
        self.policy = policy or ClientPolicy()
        self.states: dict[int, dict] = {i: SecAggClient().to_state() for i in range(1, n + 1)}

    def call(self, i: int, method: Callable[[SecAggClient], dict]) -> dict:
        """Run one client step on the client restored from its state, then persist the state again."""
        client = SecAggClient.from_state(self.states[i], self.policy)
        reply = method(client)
        self.states[i] = client.to_state()
        return reply

    def _stage(self, reqs: dict[int, dict], step, drop: Iterable[int]) -> None:
        drop = set(drop)
        for i, req in reqs.items():
            if i not in drop:
                self.server.receive(self.call(i, lambda c, req=req: step(c, req)))

    def setup(self, drop_advertise=(), drop_share_keys=()) -> list[int]:
        """Stages 1-2; returns the cohort."""
        reqs = self.server.advertise_requests(sorted(self.states))
        self._stage(reqs, SecAggClient.advertise, drop_advertise)
        self._stage(self.server.share_keys_requests(), SecAggClient.share_keys, drop_share_keys)
        return self.server.finish_setup()

    def masked_input(self, round_: int, xs: dict[int, np.ndarray], drop=(), late=()) -> dict[int, dict]:
        """Stage 3. Clients in `drop` never see the request; those in `late` answer but their reply is
        not delivered: it is returned (with the delivered ones) for late-delivery tests."""
        replies = {}
        for i, req in self.server.masked_input_requests(round_).items():
            if i not in set(drop):
                replies[i] = self.call(i, lambda c, req=req: c.masked_input(req, xs[i]))
                if i not in set(late):
                    self.server.receive(replies[i])
        return replies

    def unmask(self, drop=(), edit: Callable[[int, dict], dict] | None = None,
               requests: dict[int, dict] | None = None, tamper: Callable[[int, dict], dict] | None = None) -> np.ndarray:
        """Stage 4 and the aggregate; `edit` may alter each request before its committee member sees it,
        `tamper` each reply before the server sees it; `requests` are those of server.unmask_requests() if
        the caller already asked for them. Asks reserve members for as long as the server wants more."""
        reqs = requests if requests is not None else self.server.unmask_requests()
        while reqs:
            for j, req in reqs.items():
                if j not in set(drop):
                    req = edit(j, req) if edit else req
                    reply = self.call(j, lambda c, req=req: c.unmask(req))
                    self.server.receive(tamper(j, reply) if tamper else reply)
            reqs = self.server.more_unmask_requests()
        return self.server.aggregate()

    def round(self, round_: int, xs: dict[int, np.ndarray], drop_masked=(), drop_unmask=()) -> np.ndarray:
        """Stages 3-4: the decoded float64 sum of the survivors' inputs."""
        self.masked_input(round_, xs, drop_masked)
        return self.unmask(drop_unmask)
