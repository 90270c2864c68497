"""The simulation engine's single-pass message loop hands out what Flower's per-node loop would."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from fedrec.simulations import vce_queue


class FakeState:
    """The parts of Flower's InMemoryLinkState the loop uses; `expired` ids are dropped by the check."""

    def __init__(self, messages: list[tuple[str, int, str]], expired: set[str] = frozenset()):
        self.lock = threading.RLock()
        self.message_ins_store = {
            mid: SimpleNamespace(id=mid, metadata=SimpleNamespace(dst_node_id=node, delivered_at=delivered))
            for mid, node, delivered in messages
        }
        self.expired, self.checked = set(expired), []

    def _check_stored_messages(self, message_ids: set[str]) -> None:
        self.checked.append(set(message_ids))
        for mid in message_ids & self.expired:
            del self.message_ins_store[mid]


def test_each_node_gets_its_oldest_undelivered_message_once_and_it_is_marked_delivered():
    state = FakeState([("a1", 1, ""), ("b1", 2, ""), ("a2", 1, ""), ("c1", 3, "2026-01-01"), ("d1", 4, "")])
    taken = vce_queue.take_undelivered(state, {1, 2, 3})
    assert [m.id for m in taken] == ["a1", "b1"]  # a2 waits for a later poll; c1 delivered; node 4 unknown
    assert all(m.metadata.delivered_at for m in taken)
    assert state.checked == [{"a1", "b1", "a2", "d1"}]  # every undelivered message checked, in one call
    assert [m.id for m in vce_queue.take_undelivered(state, {1, 2, 3})] == ["a2"]
    assert vce_queue.take_undelivered(state, {1, 2, 3}) == []


def test_messages_the_linkstate_finds_invalid_are_never_handed_out():
    state = FakeState([("old", 1, ""), ("new", 1, ""), ("x", 2, "")], expired={"old", "x"})
    assert [m.id for m in vce_queue.take_undelivered(state, {1, 2})] == ["new"]
    assert set(state.message_ins_store) == {"new"}


def test_install_replaces_flowers_loop_once_and_keeps_it_for_other_linkstates(monkeypatch):
    from flwr.server.superlink.fleet.vce import vce_api

    calls = []
    monkeypatch.setattr(vce_api, "add_messages_to_queue", lambda *args: calls.append(args))
    assert vce_queue.install() and vce_queue.install()  # a second install does not wrap twice
    patched = vce_api.add_messages_to_queue
    assert patched.fedrec_single_pass
    other = object()  # no lock or message store: Flower's own loop runs
    patched(other, None, {1: 0}, threading.Event())
    assert calls == [(other, None, {1: 0}, calls[0][3])]

    state, queue, stop = FakeState([("m", 7, "")]), [], threading.Event()
    feeder = threading.Thread(target=patched, args=(state, SimpleNamespace(put=queue.append), {7: 0}, stop))
    feeder.start()
    for _ in range(500):
        if queue:
            break
        stop.wait(0.01)
    stop.set()
    feeder.join(timeout=5)
    assert [m.id for m in queue] == ["m"] and not feeder.is_alive()
