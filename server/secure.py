"""Secure aggregation behind the same narrow interface as the plain sum: the server learns only the sum."""

from __future__ import annotations

import logging
import os

import numpy as np
from flwr.app import ArrayRecord, RecordDict
from flwr.serverapp import Grid

from fedrec.server.aggregation import SumResult, build_content, exchange, item_record, record_bytes
from fedrec.shared.config import FedrecConfig
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.errors import SecAggAbort
from fedrec.shared.secagg.params import from_config
from fedrec.shared.secagg.records import payload_records, read_payload
from fedrec.shared.secagg.server import SecAggServer

log = logging.getLogger("fedrec.server")


def secagg_content(task_config: dict, payload: dict, item_arrays: dict[str, np.ndarray] | ArrayRecord | None) -> RecordDict:
    """A message carrying one secure-aggregation stage (and, for the masked input, the task to compute)."""
    content = build_content({**task_config, "stage": f"secagg.{payload[M.STAGE]}"}, item_arrays)
    for name, record in payload_records(payload).items():
        content[name] = record
    return content


class SecureSum:
    """Sums vectors with fedrec's secure aggregation; keys are agreed once per set of clients (a cohort)."""

    def __init__(self, grid: Grid, config: FedrecConfig):
        self.grid, self.timeout = grid, config.federated.timeout
        self.params = from_config(config)
        self.run_id = os.urandom(16)
        self.cohort_id = 0
        self.server: SecAggServer | None = None
        self.index_of: dict[int, int] = {}
        self.node_of: dict[int, int] = {}
        self.sum_number = 0  # every secure sum in a cohort gets its own number, so masks are never reused

    def _stage(self, requests: dict[int, dict], task_config: dict, item_arrays: dict, group: str, result: SumResult) -> None:
        """Send one stage's requests, feed the replies to the protocol server, count the bytes."""
        model = item_record(item_arrays)  # one copy of the model for every message, as in the plain sum
        contents = {self.node_of[i]: secagg_content(task_config, req, model) for i, req in requests.items()}
        replies, sent = exchange(self.grid, contents, group, self.timeout)
        result.bytes_down += sent
        for node in sorted(replies):
            reply = replies[node]
            result.bytes_up += record_bytes(reply.content) if reply.has_content() else 0
            if reply.has_error():
                result.failures.append(f"node {node}: client error: {reply.error.reason}")
                continue
            try:
                payload = read_payload(reply.content)
            except (KeyError, ValueError, TypeError) as exc:
                result.failures.append(f"node {node}: malformed secure-aggregation reply ({exc})")
                continue
            if payload.get(M.INDEX) != self.index_of.get(node) or not self.server.receive(payload):
                result.failures.append(f"node {node}: {payload.get(M.STAGE)} reply rejected")
        missing = set(contents) - set(replies)
        result.failures += [f"node {node}: no reply within {self.timeout:g} s" for node in sorted(missing)]

    def _setup(self, node_ids: list[int], group: str, result: SumResult) -> None:
        self.cohort_id += 1
        self.sum_number = 0
        self.index_of = {node: k + 1 for k, node in enumerate(sorted(node_ids))}
        self.node_of = {k: node for node, k in self.index_of.items()}
        self.server = SecAggServer(self.run_id, self.cohort_id, self.params)
        setup = {"task": "setup", "round": 0}
        self._stage(self.server.advertise_requests(sorted(self.node_of)), setup, {}, f"{group}.advertise", result)
        self._stage(self.server.share_keys_requests(), setup, {}, f"{group}.share-keys", result)
        cohort = self.server.finish_setup()
        log.info("secure aggregation: cohort %d of %d clients set up", self.cohort_id, len(cohort))

    def sum(self, node_ids: list[int], config: dict, arrays: dict[str, np.ndarray], length: int, group: str) -> SumResult:
        result = SumResult(total=None, participants=[])
        try:
            members = {self.node_of[i] for i in self.server.cohort} if self.server else set()
            if self.server is None or self.server.needs_setup or members != set(node_ids):
                self._setup(node_ids, group, result)
            self.sum_number += 1
            requests = self.server.masked_input_requests(self.sum_number)
            self._stage(requests, config, arrays, f"{group}.masked", result)
            unmask = {"task": "unmask", "round": config.get("round", 0)}
            requests = self.server.unmask_requests()
            while requests:  # reserve committee members are asked only when good shares fall short
                self._stage(requests, unmask, {}, f"{group}.unmask", result)
                requests = self.server.more_unmask_requests()
            total = self.server.aggregate()
        except SecAggAbort as exc:
            result.failures.append(f"secure aggregation aborted: {exc}")
            log.error("secure aggregation aborted, this exchange is dropped: %s", exc)
            return result
        if total.shape != (length,):
            result.failures.append(f"secure sum has length {total.shape[0]}, expected {length}")
            return result
        result.total = total
        result.participants = [self.node_of[i] for i in self.server.survivors]
        return result
