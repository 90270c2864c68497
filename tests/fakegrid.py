"""An in-process stand-in for Flower's Grid: real ClientApps and Messages, no Ray, with injectable faults."""

from __future__ import annotations

import copy

from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedrec.client.app import build_client_app
from fedrec.shared.config import FedrecConfig


def node_ids(num_nodes: int) -> list[int]:
    return [101 + k * ((2**64 - 1000) // num_nodes) for k in range(num_nodes)]


class FakeGrid:
    """Delivers each message to an in-process ClientApp with its own persistent Context, like a SuperNode."""

    def __init__(self, config: FedrecConfig, num_nodes: int, fail: dict[int, set[str]] | None = None,
                 node_configs: list[dict] | None = None):
        # Flower stamps messages with the running task's identity; outside a real run we set one.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1
        self.app = build_client_app(config)
        # Ids spread over the whole 64-bit range, as Flower's are, so that id handling is tested as in a real run.
        self.node_ids = node_ids(num_nodes)
        # Simulation nodes get a partition of the dataset; `node_configs` gives them files as `fedrec client` does.
        node_configs = node_configs or [{"partition-id": k, "num-partitions": num_nodes} for k in range(num_nodes)]
        self.contexts = {
            node: Context(run_id=1, node_id=node, node_config=node_configs[k], state=RecordDict(), run_config={})
            for k, node in enumerate(self.node_ids)
        }
        self.fail = fail or {}  # node id -> set of "<task>" or "<stage>" on which it drops (no reply)
        self.sent: list[Message] = []
        self.received: list[Message] = []

    def get_node_ids(self):
        return list(self.contexts)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            self.sent.append(message)
            config = message.content.config_records["fedrec.config"]
            node = message.metadata.dst_node_id
            if {config["task"], config["stage"], f"{config['stage']}@{config['round']}"} & self.fail.get(node, set()):
                continue  # the node dropped out: no reply
            # A copy, as the network would give, so that no client can touch the server's arrays.
            reply = self.app(copy.deepcopy(message), self.contexts[node])
            replies.append(reply)
        self.received.extend(replies)
        return replies
