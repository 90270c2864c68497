"""A simulation's local Ray passes each message inline (the item model is above Ray's 100 KiB default); a cluster
fedrec only joins keeps its own settings."""

from __future__ import annotations

import flwr.simulation
import pytest

from fedrec.shared.config import FedrecConfig
from fedrec.simulations import ray_cluster, run


class Started(Exception):
    pass


@pytest.fixture
def backend_config(monkeypatch):
    seen = {}

    def run_simulation(**kwargs):
        seen.update(kwargs["backend_config"])
        raise Started

    monkeypatch.setattr(flwr.simulation, "run_simulation", run_simulation)
    monkeypatch.setattr(ray_cluster, "connect", lambda address: None)
    return seen


def test_local_ray_passes_a_message_with_the_ml100k_model_inline(backend_config):
    with pytest.raises(Started):
        run.simulate(FedrecConfig(), n_items=1682)
    inline = backend_config["init_args"]["_system_config"]["max_direct_call_object_size"]
    assert inline >= 1682 * 33 * 4 + 1682  # q and b_i as float32, the known-items mask: one evaluation message


def test_an_existing_cluster_is_not_reconfigured(backend_config):
    with pytest.raises(Started):
        run.simulate(FedrecConfig(), n_items=1682, ray_address="127.0.0.1:6379")
    assert "_system_config" not in backend_config["init_args"]  # Ray refuses it when joining a cluster
