"""The server's exchange loop polls for replies without crowding out the engine that delivers them."""

from __future__ import annotations

from types import SimpleNamespace

from fedrec.server import aggregation


class SlowPullGrid:
    """A grid whose every pull costs `pull_seconds` of a fake clock; all replies arrive at `ready_at`."""

    def __init__(self, clock, pull_seconds: float, ready_at: float):
        self.clock, self.pull_seconds, self.ready_at, self.pulls = clock, pull_seconds, ready_at, 0

    def push_messages(self, messages):
        return [f"m{k}" for k, _ in enumerate(messages)]

    def pull_messages(self, ids):
        self.pulls += 1
        self.clock.now += self.pull_seconds
        self.clock.cpu += self.pull_seconds * self.clock.cpu_share
        if self.clock.now < self.ready_at:
            return []
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=i)) for i in ids]


class FakeClock:
    def __init__(self, cpu_share: float = 1.0):
        self.now, self.cpu, self.cpu_share, self.sleeps = 0.0, 0.0, cpu_share, []

    def thread_time(self):
        return self.cpu

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def run(monkeypatch, pull_seconds: float, ready_at: float = 2.0, cpu_share: float = 1.0):
    clock = FakeClock(cpu_share)
    monkeypatch.setattr(aggregation, "time", clock)
    grid = SlowPullGrid(clock, pull_seconds, ready_at)
    replies = aggregation.send_and_receive(grid, [object()] * 3, timeout=60.0)
    return grid, clock, replies


def test_a_costly_pull_is_followed_by_a_pause_ten_times_as_long(monkeypatch):
    """With 943 replies outstanding a pull took several ms under the LinkState's lock and the GIL; polling
    every 5 to 20 ms then took much of the server process from the engine's workers."""
    grid, clock, replies = run(monkeypatch, pull_seconds=0.008)
    assert len(replies) == 3
    assert min(clock.sleeps) >= aggregation.POLL_COST_RATIO * 0.008 - 1e-12
    assert grid.pulls <= 2.0 / (aggregation.POLL_COST_RATIO * 0.008) + 2  # about 25 pulls, not 100 or more


def test_a_cheap_pull_keeps_the_short_poll(monkeypatch):
    """Replies still come in within a few ms of arriving when pulling is cheap (small cohorts, deployment)."""
    grid, clock, replies = run(monkeypatch, pull_seconds=0.0001, ready_at=0.05)
    assert len(replies) == 3
    assert clock.sleeps[0] == aggregation.POLL_FIRST_SECONDS
    assert max(clock.sleeps) <= aggregation.POLL_MAX_SECONDS
    assert clock.now < 0.05 + aggregation.POLL_MAX_SECONDS + 0.001


def test_a_pull_that_waits_on_the_network_keeps_the_short_poll(monkeypatch):
    """A deployment's pull is a network round trip: slow, but it costs the server's CPU nothing."""
    grid, clock, replies = run(monkeypatch, pull_seconds=0.05, ready_at=1.0, cpu_share=0.0)
    assert len(replies) == 3
    assert max(clock.sleeps) <= aggregation.POLL_MAX_SECONDS
