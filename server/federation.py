"""The server's training loop: sample clients, sum their vectors, step the item side, evaluate, record."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

import numpy as np
from flwr.serverapp import Grid
from flwr.superlink.grid.inmemory_grid import InMemoryGrid

from fedrec.server.aggregation import PlainSum, SumResult, VectorSum
from fedrec.server.state import Checkpoint, Saved
from fedrec.shared import federated, protocol
from fedrec.shared.config import FedrecConfig
from fedrec.shared.errors import FedrecError

log = logging.getLogger("fedrec.server")
NODE_WAIT_SECONDS = 120.0
SIMULATION_SETTLE_SECONDS = 1.0  # simulated nodes are registered together; a second with no change means all


def wait_for_nodes(grid: Grid, wanted: int, timeout: float = NODE_WAIT_SECONDS) -> list[int]:
    """In deployment clients connect over time; start once `wanted` are there. In a simulation the
    federation's nodes are all registered at its start and no more will come: use the nodes it has."""
    simulated = isinstance(grid, InMemoryGrid)
    deadline = time.monotonic() + timeout
    seen, settled_at = -1, time.monotonic()
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= wanted:
            return nodes
        if len(nodes) != seen:
            seen, settled_at = len(nodes), time.monotonic()
        if simulated and nodes and time.monotonic() - settled_at > SIMULATION_SETTLE_SECONDS:
            log.warning("the simulation federation has %d nodes, not federated.num_clients = %d: training with %d "
                        "(resize it with `flwr federation simulation-config <federation> <superlink> "
                        "--num-supernodes %d`)", len(nodes), wanted, len(nodes), wanted)
            return nodes
        if time.monotonic() > deadline:
            raise FedrecError(f"only {len(nodes)} of {wanted} clients connected within {timeout:g} s")
        time.sleep(0.1 if simulated else 0.5)


def sample_nodes(nodes: list[int], config: FedrecConfig, round_number: int) -> list[int]:
    fed = config.federated
    count = fed.clients_per_round or max(1, int(round(fed.fraction * len(nodes))))
    if count >= len(nodes):
        return list(nodes)
    rng = np.random.default_rng(np.random.SeedSequence([fed.seed, 0x5A3, round_number]))
    # Draw positions, not ids: Flower's node ids are 64-bit and numpy would turn a mix of them into floats.
    return [nodes[i] for i in sorted(rng.choice(len(nodes), size=count, replace=False))]


def make_aggregator(grid: Grid, config: FedrecConfig) -> VectorSum:
    if config.federated.secure:
        from fedrec.server.secure import SecureSum

        return SecureSum(grid, config)
    return PlainSum(grid, config.federated.timeout)


def run_federation(
    grid: Grid,
    config: FedrecConfig,
    n_items: int,
    on_round: Callable[[dict], None] | None = None,
    catalogue: list[str] | None = None,
    checkpoint: Checkpoint | None = None,
    resume: bool = False,
    run_id: str | None = None,
) -> dict:
    """Train for `federated.rounds` rounds; returns the results (final metrics and per-round history).

    The model after round m is evaluated at the start of round m+1: when every client takes part in that
    round, the evaluation sums ride on the training exchange (one secure sum instead of two); otherwise it
    is its own exchange with all clients. The last round is evaluated by a final exchange.
    """
    fed, k = config.federated, config.eval.top_k
    start = time.perf_counter()
    nodes = wait_for_nodes(grid, fed.num_clients)
    aggregator = make_aggregator(grid, config)
    # Every task message carries the settings clients must follow and, in deployment, the item catalogue.
    # The run identity lets a client tell this run (and its resumption) from any other: its saved user state
    # belongs to one run only.
    common = {protocol.SETTINGS: config.model_dump_json(include={"model", "federated", "eval"}),
              protocol.RUN_ID: run_id or secrets.token_hex(8), protocol.RESUMED: bool(resume)}
    if catalogue is not None:
        common[protocol.ITEMS] = list(catalogue)
    history: list[dict] = []
    first_round = 1
    if resume:
        saved = checkpoint.load()
        if saved.q.shape != (n_items, config.model.factors):
            raise FedrecError(f"cannot resume: the checkpoint holds {saved.q.shape[0]} items x {saved.q.shape[1]} "
                              f"factors, this run has {n_items} x {config.model.factors}")
        mu, known, history, first_round = saved.mu, saved.known, saved.history, saved.round + 1
        server = federated.ServerModel(n_items, config, mu)
        server.item.q[:], server.item.bi[:] = saved.q, saved.bi
        server.optimizer.load_state(saved.optimizer)
        log.info("resuming after round %d", saved.round)
    else:
        stats = aggregator.sum(nodes, {**common, "task": protocol.TASK_STATS, "round": 0}, {},
                               federated.stats_length(n_items), "0")
        if stats.total is None:
            raise FedrecError(f"no client answered the statistics round: {'; '.join(stats.failures)}")
        mu, item_known = federated.mean_and_known_items(stats.total)
        known = item_known.astype(np.uint8)
        server = federated.ServerModel(n_items, config, mu)
    train_length = federated.train_length(n_items, config.model.factors)
    eval_length = federated.eval_length(n_items)
    final: dict = {}

    def due(round_number: int) -> bool:
        return round_number >= 1 and (round_number % fed.eval_every == 0 or round_number == fed.rounds)

    def record(entry: dict, total: np.ndarray | None) -> None:
        if total is not None:
            final.update(federated.finalize_eval(total, k))
            entry.update({key: final[key] for key in ("rmse", "mae", f"ndcg@{k}")})
        if on_round is not None:
            on_round(entry)

    def evaluate(round_number: int) -> SumResult:
        return aggregator.sum(nodes, {**common, "task": protocol.TASK_EVALUATE, "round": round_number, "mu": mu},
                              {**server.item.arrays(), "known": known}, eval_length, f"{round_number}.eval")

    for round_number in range(first_round, fed.rounds + 1):
        round_start = time.perf_counter()
        # Clients that left are dropped from the round, and clients that (re)joined take part again.
        nodes = sorted(grid.get_node_ids()) or nodes
        sampled = sample_nodes(nodes, config, round_number)
        evaluate_previous = due(round_number - 1)
        piggyback = evaluate_previous and len(sampled) == len(nodes)
        exchanges: list[SumResult] = []
        if evaluate_previous and not piggyback:
            exchanges.append(evaluate(round_number - 1))
            record(history[-1], exchanges[-1].total)
        arrays = {**server.item.arrays(), **({"known": known} if piggyback else {})}
        train = aggregator.sum(
            sampled, {**common, "task": protocol.TASK_TRAIN, "round": round_number, "mu": mu, "evaluate": piggyback},
            arrays, train_length + (eval_length if piggyback else 0), str(round_number))
        exchanges.append(train)
        total = train.total
        if piggyback:
            record(history[-1], None if total is None else total[:eval_length])
            total = None if total is None else total[eval_length:]
        entry: dict = {"round": round_number, "clients": len(train.participants), "sampled": len(sampled)}
        if total is None or len(train.participants) < fed.min_clients:
            entry["skipped"] = f"{len(train.participants)} replies, fewer than min_clients = {fed.min_clients}"
            log.warning("round %d skipped: %s", round_number, entry["skipped"])
        else:
            entry.update(server.apply(total))
        if round_number == fed.rounds:
            exchanges.append(evaluate(round_number))
        entry["seconds"] = time.perf_counter() - round_start
        entry["bytes_up"] = sum(x.bytes_up for x in exchanges)
        entry["bytes_down"] = sum(x.bytes_down for x in exchanges)
        entry["failures"] = [f for x in exchanges for f in x.failures]
        history.append(entry)
        if checkpoint is not None:
            checkpoint.save(Saved(round_number, server.item.q, server.item.bi, mu, known,
                                  server.optimizer.state, history))
        if round_number == fed.rounds:
            record(entry, exchanges[-1].total)
        elif not due(round_number) and on_round is not None:
            on_round(entry)  # nothing more will be added to this round's entry
    if "rmse" not in final and history:  # resumed after the last round was trained but not yet evaluated
        record(history[-1], evaluate(history[-1]["round"]).total)
    return {
        **final,
        "wall_seconds": time.perf_counter() - start,
        "rounds": fed.rounds,
        "num_clients": len(nodes),
        "history": history,
        "item_model": {"q": server.item.q, "bi": server.item.bi, "mu": mu},
    }
