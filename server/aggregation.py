"""The one narrow interface the server aggregates through: the sum of vectors from a set of clients."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from fedrec.shared import protocol

log = logging.getLogger("fedrec.server")
# Flower 1.42's send_and_receive sleeps a fixed 3 s (deployment) or 0.1 s (simulation) between pulls; fedrec
# polls every 5 ms, backing off to 20 ms, so an exchange ends within about 20 ms of its last reply (a pull is
# one cheap call to the SuperLink, or a dictionary look-up in simulation). A secure round has two exchanges
# to a plain round's one, so this latency counts twice in it.
POLL_FIRST_SECONDS, POLL_MAX_SECONDS, POLL_GROWTH = 0.005, 0.02, 1.25
# In simulation a pull checks every outstanding message under the LinkState's lock, holding the GIL that the
# engine's workers need to hand messages to the clients: wait at least this many times the CPU time the last
# pull took, so that polling takes at most about a tenth of the server process. CPU time, not wall time: a
# deployment's pull waits on the network, which costs the process nothing.
POLL_COST_RATIO = 10.0


@dataclass
class SumResult:
    """The sum over the clients that took part, and what the exchange cost."""

    total: np.ndarray | None
    participants: list[int]
    bytes_up: int = 0
    bytes_down: int = 0
    failures: list[str] = field(default_factory=list)


class VectorSum(Protocol):
    def sum(self, node_ids: list[int], config: dict, arrays: dict[str, np.ndarray], length: int, group: str) -> SumResult: ...


def _value_bytes(value: object) -> int:
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, list):
        return sum(map(_value_bytes, value))
    return 8


def record_bytes(content: RecordDict) -> int:
    """Payload bytes of a message: array buffers plus config values (protocol framing excluded)."""
    total = 0
    for record in content.values():
        if isinstance(record, ArrayRecord):
            total += sum(len(array.data) for array in record.values())
        else:
            total += sum(map(_value_bytes, record.values()))
    return total


def item_record(arrays: dict[str, np.ndarray]) -> ArrayRecord | None:
    """The model arrays as one record, serialised once and shared by every message of an exchange."""
    if not arrays:
        return None
    return ArrayRecord({key: Array(np.ascontiguousarray(value)) for key, value in arrays.items()})


def build_content(config: dict, arrays: dict[str, np.ndarray] | ArrayRecord | None) -> RecordDict:
    records = {protocol.CONFIG: ConfigRecord(config)}
    record = arrays if isinstance(arrays, ArrayRecord) or arrays is None else item_record(arrays)
    if record is not None:
        records[protocol.ITEM] = record
    return RecordDict(records)


def read_vector(reply: Message, length: int, dtype: type = np.float64) -> np.ndarray:
    """The reply's vector, checked: a malformed client message is rejected with a reason, never summed.
    A float64 vector may come as float32 (client/app.py's wire_vector, when that is exact): it is widened."""
    if reply.has_error():
        raise ValueError(f"client error: {reply.error.reason}")
    if protocol.REPLY not in reply.content.array_records or "vector" not in reply.content.array_records[protocol.REPLY]:
        raise ValueError("reply has no vector")
    vector = reply.content.array_records[protocol.REPLY]["vector"].numpy()
    if dtype == np.float64 and vector.dtype == np.float32:
        vector = vector.astype(np.float64)  # a client sends float32 only when it holds the values exactly
    if vector.dtype != dtype or vector.shape != (length,):
        raise ValueError(f"reply vector has dtype {vector.dtype} and shape {vector.shape}, expected {np.dtype(dtype)} ({length},)")
    if vector.dtype.kind == "f" and not np.isfinite(vector).all():
        raise ValueError("reply vector has NaN or infinite values")
    return vector


def exchange(grid: Grid, contents: dict[int, RecordDict], group: str, timeout: float) -> tuple[dict[int, Message], int]:
    """Send one message per node and collect the replies by node id; returns (replies, bytes sent)."""
    messages = [
        Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN, group_id=group)
        for node, content in contents.items()
    ]
    replies = send_and_receive(grid, messages, timeout)
    return {reply.metadata.src_node_id: reply for reply in replies}, sum(map(record_bytes, contents.values()))


def send_and_receive(grid: Grid, messages: list[Message], timeout: float) -> list[Message]:
    """Push the messages, then pull replies with a short, growing poll until all are in or the time is up."""
    if not hasattr(grid, "push_messages"):  # a stand-in grid without Flower's push/pull interface
        return list(grid.send_and_receive(messages, timeout=timeout))
    waiting = set(grid.push_messages(messages))
    deadline, pause, replies = time.monotonic() + timeout, POLL_FIRST_SECONDS, []
    while waiting:
        started = time.thread_time()
        pulled = list(grid.pull_messages(waiting))
        spent = time.thread_time() - started
        replies += pulled
        waiting -= {reply.metadata.reply_to_message_id for reply in pulled}
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            break
        time.sleep(min(max(pause, POLL_COST_RATIO * spent), left))
        pause = min(pause * POLL_GROWTH, POLL_MAX_SECONDS)
    return replies


class PlainSum:
    """Sums the clients' vectors in the clear: the server sees every client's vector (no secure aggregation)."""

    def __init__(self, grid: Grid, timeout: float):
        self.grid, self.timeout = grid, timeout

    def sum(self, node_ids: list[int], config: dict, arrays: dict[str, np.ndarray], length: int, group: str) -> SumResult:
        content = build_content({**config, "stage": protocol.STAGE_PLAIN}, arrays)
        replies, bytes_down = exchange(self.grid, {node: content for node in node_ids}, group, self.timeout)
        result = SumResult(total=None, participants=[], bytes_down=bytes_down)
        total = np.zeros(length, dtype=np.float64)
        for node in sorted(replies):  # a fixed order makes the float sum reproducible
            reply = replies[node]
            result.bytes_up += record_bytes(reply.content) if reply.has_content() else 0
            try:
                total += read_vector(reply, length)
            except ValueError as exc:
                result.failures.append(f"node {node}: {exc}")
                log.warning("left out node %s this round: %s", node, exc)
                continue
            result.participants.append(node)
        missing = set(node_ids) - set(replies)
        result.failures += [f"node {node}: no reply within {self.timeout:g} s" for node in sorted(missing)]
        result.total = total if result.participants else None
        return result
