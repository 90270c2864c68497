"""An in-process Grid: real ClientApps and Messages without Ray or sockets, for audits and fast experiments.

Every node keeps its own Context, as a SuperNode does; `drops(node, task_config)` says whether a node stays
silent on a message (a dropout). It is the same training code path as Flower's engines, minus transport.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedrec.client.app import build_client_app
from fedrec.shared import protocol
from fedrec.shared.config import FedrecConfig


def spread_node_ids(num_nodes: int) -> list[int]:
    """Ids spread over the 64-bit range, as Flower's are."""
    return [101 + k * ((2**64 - 1000) // num_nodes) for k in range(num_nodes)]


class InProcessGrid:
    """Delivers each message to an in-process ClientApp; keeps what was sent and received (unless
    `keep_messages` is False: a benchmark with large vectors would hold every round's messages in memory)."""

    def __init__(self, config: FedrecConfig, num_nodes: int,
                 drops: Callable[[int, dict], bool] | None = None, node_configs: list[dict] | None = None,
                 keep_messages: bool = True):
        # Flower stamps messages with the running task's identity; outside a real run we set one.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
        self.app = build_client_app(config)
        self.node_ids = spread_node_ids(num_nodes)
        node_configs = node_configs or [{"partition-id": k, "num-partitions": num_nodes} for k in range(num_nodes)]
        self.contexts = {node: Context(run_id=1, node_id=node, node_config=node_configs[k], state=RecordDict(),
                                       run_config={}) for k, node in enumerate(self.node_ids)}
        self.drops = drops or (lambda node, task: False)
        self.keep_messages = keep_messages
        self.sent: list[Message] = []
        self.received: list[Message] = []
        self.exchanges: list[tuple[Message, Message]] = []  # (request, reply) pairs, in order

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None) -> list[Message]:
        replies = []
        for message in messages:
            if self.keep_messages:
                self.sent.append(message)
            node = message.metadata.dst_node_id
            if self.drops(node, dict(message.content.config_records[protocol.CONFIG])):
                continue
            # A copy, as the network would give, so that no client can touch the server's arrays.
            replies.append(self.app(copy.deepcopy(message), self.contexts[node]))
            if self.keep_messages:
                self.exchanges.append((message, replies[-1]))
        if self.keep_messages:
            self.received.extend(replies)
        return replies
