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
from fedrec.shared import federated, federated_implicit, protocol
from fedrec.shared.config import FedrecConfig
from fedrec.shared.dp.plan import plan_run, privacy_level
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


class _Observed:
    """An aggregator that shows every result to an observer before the server uses it."""

    def __init__(self, inner: VectorSum, observer: Callable[[str, dict, SumResult], None]):
        self.inner, self.observer = inner, observer

    def sum(self, node_ids, config, arrays, length, group) -> SumResult:
        result = self.inner.sum(node_ids, config, arrays, length, group)
        self.observer(group, config, result)
        return result


def item_features_for(config: FedrecConfig, n_items: int, catalogue: list[str] | None) -> np.ndarray | None:
    """The fixed public item factors `model.item_features` names, in the run's item order: the catalogue's
    (deployment), or in simulation the item list of the data being simulated (public: its size fixes the layout)."""
    if config.model.item_features is None:
        return None
    from fedrec.shared.data.item_features import features_for
    from fedrec.shared.data.load import load_train_test

    ids = list(catalogue) if catalogue is not None else load_train_test(config)[0].item_ids
    if len(ids) != n_items:
        raise FedrecError(f"model.item_features: the item list has {len(ids)} items, the run {n_items}")
    return features_for(config, ids)


def _server_model(n_items: int, config: FedrecConfig, mu: float, item_features: np.ndarray | None = None):
    if config.data.feedback == "implicit":
        return federated_implicit.ImplicitServerModel(n_items, config)
    return federated.ServerModel(n_items, config, mu, item_features)


def run_federation(
    grid: Grid,
    config: FedrecConfig,
    n_items: int,
    on_round: Callable[[dict], None] | None = None,
    catalogue: list[str] | None = None,
    checkpoint: Checkpoint | None = None,
    resume: bool = False,
    n_users: int | None = None,
    on_sum: Callable[[str, dict, SumResult], None] | None = None,
    run_id: str | None = None,
    warm_start: dict | None = None,
    aggregator: VectorSum | None = None,
) -> dict:
    """Train for `federated.rounds` rounds; returns the results (final metrics and per-round history).

    The model after round m is evaluated at the start of round m+1: when every client takes part in that
    round (and without differential privacy), the evaluation sums ride on the training exchange (one secure
    sum instead of two); otherwise it is its own exchange with all clients. The last round is evaluated by a
    final exchange. With `dp.epsilon` every sum is a counted release: the run never decodes one past the budget.
    `warm_start` ({"q", "bi", "optimizer"}, as a result's `item_model`) starts a new run from a trained item
    side and server optimizer instead of fresh ones (the closed loop trains on grown data this way).
    With `data.feedback = "implicit"` the vectors are those of shared/federated_implicit.py.
    """
    fed, k = config.federated, config.eval.top_k
    start = time.perf_counter()
    dp = plan_run(config, n_items, n_users) if config.dp.epsilon is not None else None
    implicit = config.data.feedback == "implicit"
    layout = federated_implicit if implicit else federated
    item_features = item_features_for(config, n_items, catalogue)  # None unless model.item_features is set
    nodes = wait_for_nodes(grid, fed.num_clients)
    aggregator = aggregator or make_aggregator(grid, config)  # a stand-in sum: benchmarks only
    if on_sum is not None:  # an observer of every decoded sum (what the server holds), e.g. `fedrec audit`
        aggregator = _Observed(aggregator, on_sum)
    # Every task message carries the settings clients must follow and, in deployment, the item catalogue.
    # The run identity lets a client tell this run (and its resumption) from any other: its saved user state
    # belongs to one run only.
    settings = {"model": True, "federated": True, "eval": True, "dp": True, "data": {"feedback", "positive_threshold"}}
    common = {protocol.SETTINGS: config.model_dump_json(include=settings),
              protocol.RUN_ID: run_id or secrets.token_hex(8), protocol.RESUMED: bool(resume)}
    if catalogue is not None:
        common[protocol.ITEMS] = list(catalogue)
    releases: dict[str, int] = {}

    def task(kind: str, **fields) -> dict:
        extra = {protocol.DP_NOISE: dp.noise_multiplier, protocol.DP_CLIP: dp.clips[kind]} if dp else {}
        if dp and kind == protocol.TASK_TRAIN and config.dp.factor_share is not None:
            extra[protocol.DP_FACTOR_SHARE] = config.dp.factor_share  # a split of the same clip
        return {**common, "task": kind, **fields, **extra}

    def released(kind: str, result: SumResult) -> None:
        if dp is not None and result.total is not None:
            releases[kind] = releases.get(kind, 0) + 1
            result.total = result.total * dp.clips[kind]  # clients sent their vectors in units of the clip

    def budget_allows(kind: str) -> bool:
        return dp is None or dp.can_release(releases, kind)

    history: list[dict] = []
    first_round = 1
    if resume:
        saved = checkpoint.load()
        if saved.q.shape != (n_items, config.model.factors):
            raise FedrecError(f"cannot resume: the checkpoint holds {saved.q.shape[0]} items x {saved.q.shape[1]} "
                              f"factors, this run has {n_items} x {config.model.factors}")
        stats, history, first_round = saved.stats, saved.history, saved.round + 1
        if dp is not None:  # the same accountant continues: count what was already released
            releases = dict(history[-1].get("releases", {})) if history else {}
        server = _server_model(n_items, config, stats.mu, item_features)
        server.item.q[:], server.item.bi[:] = saved.q, saved.bi
        server.optimizer.load_state(saved.optimizer)
        log.info("resuming after round %d", saved.round)
    else:
        # Everything constant about a client (its counts and sizes) is summed once, here, and never again.
        length = len(federated.DP_STATS_SCALARS) if dp else layout.stats_length(n_items)
        result = aggregator.sum(nodes, task(protocol.TASK_STATS, round=0), {}, length, "0")
        released(protocol.TASK_STATS, result)
        if result.total is None:
            raise FedrecError(f"no client answered the statistics round: {'; '.join(result.failures)}")
        if len(result.participants) < len(nodes):
            log.warning("statistics round: %d of %d clients answered; the missing clients' data is not counted "
                        "in the mean or the evaluation denominators", len(result.participants), len(nodes))
        if dp is not None:
            stats = federated.Stats.from_dp_total(result.total, n_items)
        elif implicit:
            stats = federated_implicit.stats_from_total(result.total)
        else:
            stats = federated.Stats.from_total(result.total)
        server = _server_model(n_items, config, stats.mu, item_features)
        if warm_start is not None:
            server.item.q[:], server.item.bi[:] = warm_start["q"], warm_start["bi"]
            server.optimizer.load_state(warm_start["optimizer"])
    mu, known = stats.mu, stats.known.astype(np.uint8)
    train_length = (federated_implicit.train_length(n_items, config.model.factors, fed.update) if implicit
                    else federated.train_length(n_items, federated.released_factors(config)))
    eval_length = len(federated.DP_EVAL_SCALARS) if dp else layout.eval_length(n_items, config.eval.coverage)
    final: dict = {}

    def due(round_number: int) -> bool:
        return round_number >= 1 and (round_number % fed.eval_every == 0 or round_number == fed.rounds)

    def record(entry: dict, total: np.ndarray | None, answered: int = 0) -> None:
        if total is not None:
            if dp is not None:  # the noised sums carry their own denominators
                final.update(federated.finalize_dp_eval(total))
            else:  # denominators from the statistics sum; with clients missing they are scaled (an estimate)
                final.update(layout.finalize_eval(total, k, stats, answered / len(nodes)))
            entry.update({key: final[key] for key in ("rmse", "mae", f"ndcg@{k}", f"map@{k}") if key in final})
            if answered < len(nodes):
                entry["eval_partial"] = f"{answered} of {len(nodes)} clients"
        if dp is not None:
            entry["epsilon"], entry["releases"] = dp.spent(releases), dict(releases)
        if on_round is not None:
            on_round(entry)

    def evaluate(round_number: int) -> SumResult:
        if not budget_allows(protocol.TASK_EVALUATE):
            return SumResult(total=None, participants=[], failures=["evaluation skipped: it would exceed the DP budget"])
        result = aggregator.sum(nodes, task(protocol.TASK_EVALUATE, round=round_number, mu=mu),
                                {**server.item.arrays(), "known": known}, eval_length, f"{round_number}.eval")
        released(protocol.TASK_EVALUATE, result)
        return result

    for round_number in range(first_round, fed.rounds + 1):
        round_start = time.perf_counter()
        # Clients that left are dropped from the round, and clients that (re)joined take part again.
        nodes = sorted(grid.get_node_ids()) or nodes
        sampled = sample_nodes(nodes, config, round_number)
        evaluate_previous = due(round_number - 1)
        piggyback = evaluate_previous and len(sampled) == len(nodes) and dp is None
        exchanges: list[SumResult] = []
        if evaluate_previous and not piggyback:
            exchanges.append(evaluate(round_number - 1))
            record(history[-1], exchanges[-1].total, len(exchanges[-1].participants))
        if not budget_allows(protocol.TASK_TRAIN):
            raise FedrecError(f"round {round_number} would exceed the privacy budget of epsilon {dp.epsilon}; "
                              "the run stops here (a resumed run continues the same accountant)")
        arrays = {**server.item.arrays(), **({"known": known} if piggyback else {})}
        train = aggregator.sum(
            sampled, task(protocol.TASK_TRAIN, round=round_number, mu=mu, evaluate=piggyback),
            arrays, train_length + (eval_length if piggyback else 0), str(round_number))
        released(protocol.TASK_TRAIN, train)
        exchanges.append(train)
        total = train.total
        if piggyback:
            record(history[-1], None if total is None else total[:eval_length], len(train.participants))
            total = None if total is None else total[eval_length:]
        entry: dict = {"round": round_number, "clients": len(train.participants), "sampled": len(sampled)}
        if total is None or len(train.participants) < fed.min_clients:
            entry["skipped"] = f"{len(train.participants)} replies, fewer than min_clients = {fed.min_clients}"
            log.warning("round %d skipped: %s", round_number, entry["skipped"])
        else:
            entry.update(server.apply(total, stats, len(train.participants) / len(nodes)))
        if round_number == fed.rounds:
            exchanges.append(evaluate(round_number))
        entry["seconds"] = time.perf_counter() - round_start
        entry["bytes_up"] = sum(x.bytes_up for x in exchanges)
        entry["bytes_down"] = sum(x.bytes_down for x in exchanges)
        entry["failures"] = [f for x in exchanges for f in x.failures]
        if dp is not None:
            entry["epsilon"], entry["releases"] = dp.spent(releases), dict(releases)
        history.append(entry)
        if checkpoint is not None:
            checkpoint.save(Saved(round_number, server.item.q, server.item.bi, stats, server.optimizer.state, history))
        if round_number == fed.rounds:
            record(entry, exchanges[-1].total, len(exchanges[-1].participants))
        elif not due(round_number) and on_round is not None:
            on_round(entry)  # nothing more will be added to this round's entry
    if not final and history:  # resumed after the last round was trained but not yet evaluated
        last = evaluate(history[-1]["round"])
        record(history[-1], last.total, len(last.participants))
    sampling_rate = len(sample_nodes(nodes, config, 1)) / max(len(nodes), 1)
    return {
        **final,
        "privacy": privacy_level(config),
        **({"dp": {**dp.summary(fed.rounds, sampling_rate), "epsilon_spent": dp.spent(releases)}} if dp else {}),
        "wall_seconds": time.perf_counter() - start,
        "rounds": fed.rounds,
        "num_clients": len(nodes),
        "history": history,
        "item_model": {"q": server.item.q, "bi": server.item.bi, "mu": mu, "optimizer": server.optimizer.state},
    }
