"""An object a receiver asks for a moment too early is fetched again within milliseconds, not after Flower's 1 s."""

from __future__ import annotations

import time

import pytest
from flwr.supercore.inflatable import inflatable_utils
from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

from fedrec.shared.flower_waits import shorten_object_pull_retries


@pytest.fixture
def restore_flower_defaults():
    saved = {f: dict(f.__kwdefaults__) for f in (inflatable_utils.pull_objects,
                                                 inflatable_utils.pull_and_inflate_object_from_tree)}
    yield
    for function, defaults in saved.items():
        function.__kwdefaults__.clear()
        function.__kwdefaults__.update(defaults)


def _seconds_until_second_try() -> float:
    """Run Flower's own pull loop on an object that is missing at the first try; time the retry."""
    tries: list[float] = []

    def pull(object_id: str) -> bytes:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise ObjectUnavailableError(object_id)  # its sender is still pushing it
        return b"content"

    assert inflatable_utils.pull_objects(["id"], pull) == {"id": b"content"}
    return tries[1] - tries[0]


def test_flowers_own_retry_waits_about_a_second(restore_flower_defaults):
    # What the fix is for: without it, each lost race costs 0.8 s or more (1 s with 20% jitter).
    assert _seconds_until_second_try() >= 0.75


def test_a_missing_object_is_retried_within_milliseconds(restore_flower_defaults):
    shorten_object_pull_retries()
    assert _seconds_until_second_try() < 0.5  # 10 ms asked; generous for a loaded machine, well below 0.8


def test_the_total_patience_is_flowers(restore_flower_defaults):
    defaults = inflatable_utils.pull_objects.__kwdefaults__
    patience = defaults["max_tries_per_object"] * defaults["backoff_cap"]
    shorten_object_pull_retries()
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        shortened = function.__kwdefaults__
        assert shortened["initial_backoff"] == 0.01 and shortened["backoff_cap"] == 0.5
        assert shortened["max_tries_per_object"] * shortened["backoff_cap"] == pytest.approx(patience)


def test_flowers_waits_are_kept_when_asked(restore_flower_defaults, monkeypatch):
    monkeypatch.setenv("FEDREC_PULL_RETRY", "flower")  # bench_deployment --pull-retries flower
    shorten_object_pull_retries()
    assert inflatable_utils.pull_objects.__kwdefaults__["initial_backoff"] == 1
