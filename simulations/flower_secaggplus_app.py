"""Flower's own SecAgg+ (legacy workflow) and its plain counterpart, with trivial client work, for timing rounds."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Context
from flwr.client import NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import LegacyContext, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid, ServerApp

NOISE_STD = 1e-3  # small, so the running mean stays far inside SecAgg+'s clipping range (+-8)


class EchoClient(NumPyClient):
    """Returns the received vector plus small noise: the round time is then almost all protocol and transport."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def fit(self, parameters, config):
        noisy = [(p + self.rng.normal(0.0, NOISE_STD, p.shape)).astype(np.float32) for p in parameters]
        return noisy, 1, {}


class TimedFedAvg(FedAvg):
    """FedAvg that records when each fit round starts (configure_fit) and ends (aggregate_fit returns)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.starts: list[float] = []
        self.ends: list[float] = []

    def configure_fit(self, server_round, parameters, client_manager):
        self.starts.append(time.perf_counter())
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        aggregated = super().aggregate_fit(server_round, results, failures)
        self.ends.append(time.perf_counter())
        return aggregated


def build_apps(num_clients: int, vector_length: int, rounds: int, secure: bool, num_shares: int, threshold: int,
               history: list[float]) -> tuple[ServerApp, ClientApp]:
    """A (ServerApp, ClientApp) pair; after the run `history` holds the seconds of every fit round."""

    def client_fn(context: Context):
        return EchoClient(int(context.node_config["partition-id"])).to_client()

    # The mod is the only client-side difference between the two variants.
    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod] if secure else [])
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = TimedFedAvg(
            fraction_fit=1.0, min_fit_clients=num_clients, min_available_clients=num_clients,
            fraction_evaluate=0.0,  # no federated evaluation: a round is one fit exchange, as in fedrec's train rounds
            initial_parameters=ndarrays_to_parameters([np.zeros(vector_length, dtype=np.float32)]),
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
        fit_workflow = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold) if secure else None
        DefaultWorkflow(fit_workflow=fit_workflow)(grid, legacy)
        history.extend(end - start for start, end in zip(strategy.starts, strategy.ends))

    return server_app, client_app
