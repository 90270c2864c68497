"""One pass over Flower's stored messages per poll in the simulation engine, in place of one pass per node.

Flower 1.42's simulation engine (flwr/server/superlink/fleet/vce/vce_api.py, `add_messages_to_queue`) feeds
its workers by calling `state.get_message_ins(node_id, limit=1)` for every node, every 0.1 s, and the
in-memory LinkState answers each call by checking every stored message (expiry, federation) under its lock.
A poll therefore costs nodes x messages checks: about 10,000 at 100 clients and 900,000 at 943, so the
server spent most of a 943-client evaluation waiting for that loop, and the loop, holding the LinkState's
lock, delayed the replies too. This module's loop checks every stored message once per poll (with the
LinkState's own check), hands each node at most one undelivered message, as Flower's does, marks them
delivered the way `get_message_ins` does, and polls every POLL_SECONDS; a poll that finds nothing new
reads one field per stored message.

`install()` replaces the loop in Flower's module; Flower's own loop is kept for any LinkState that is not
the in-memory one, and nothing is patched if the module no longer looks as expected (a Flower upgrade).
"""

from __future__ import annotations

import logging
import threading
from queue import Queue

log = logging.getLogger("fedrec.simulation")

POLL_SECONDS = 0.01


def take_undelivered(state, node_ids) -> list:
    """The oldest undelivered message of every node in `node_ids`, marked delivered; expired or invalid
    undelivered messages are dropped by the LinkState's own check, as `get_message_ins` does (delivered ones
    are left to the checks Flower makes when their replies are stored and pulled)."""
    from flwr.supercore.date import now

    taken: dict[int, object] = {}
    with state.lock:
        waiting = {mid for mid, message in state.message_ins_store.items() if message.metadata.delivered_at == ""}
        if not waiting:
            return []
        state._check_stored_messages(waiting)  # one check of the undelivered messages, one clock read
        for message in state.message_ins_store.values():
            metadata = message.metadata
            node = metadata.dst_node_id
            if metadata.delivered_at == "" and node not in taken and node in node_ids:
                taken[node] = message
        delivered_at = now().isoformat()
        for message in taken.values():
            message.metadata.delivered_at = delivered_at
    return list(taken.values())


def _fits(state) -> bool:
    return all(hasattr(state, name) for name in ("lock", "message_ins_store", "_check_stored_messages"))


def install() -> bool:
    """Replace Flower's feeding loop with the single-pass one; False (nothing changed) if Flower differs."""
    from flwr.server.superlink.fleet.vce import vce_api

    original = getattr(vce_api, "add_messages_to_queue", None)
    if original is None or getattr(original, "fedrec_single_pass", False):
        return original is not None

    def add_messages_to_queue(state, queue: Queue, nodes_mapping, f_stop: threading.Event) -> None:
        if not _fits(state):
            log.info("simulation: LinkState %s is not the in-memory one; Flower's message loop kept",
                     type(state).__name__)
            return original(state, queue, nodes_mapping, f_stop)
        node_ids = set(nodes_mapping.keys())
        while not f_stop.is_set():
            for message in take_undelivered(state, node_ids):
                queue.put(message)
            f_stop.wait(POLL_SECONDS)

    add_messages_to_queue.fedrec_single_pass = True
    vce_api.add_messages_to_queue = add_messages_to_queue
    return True
