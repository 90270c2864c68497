"""The in-process Grid (fedrec.server.inprocess) with faults named the way the tests name them."""

from __future__ import annotations

from fedrec.server.inprocess import InProcessGrid, spread_node_ids
from fedrec.shared.config import FedrecConfig

node_ids = spread_node_ids  # ids spread over the whole 64-bit range, as Flower's are


class FakeGrid(InProcessGrid):
    """`fail` maps a node id to the "<task>", "<stage>" or "<stage>@<round>" on which it drops (no reply)."""

    def __init__(self, config: FedrecConfig, num_nodes: int, fail: dict[int, set[str]] | None = None,
                 node_configs: list[dict] | None = None):
        self.fail = fail or {}
        super().__init__(config, num_nodes, self._drops, node_configs)

    def _drops(self, node: int, task: dict) -> bool:
        return bool({task["task"], task["stage"], f"{task['stage']}@{task['round']}"} & self.fail.get(node, set()))
