"""`python -m simulations.run` / `fedrec simulate`: federated MF on Flower's simulation engine, one command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fedrec.shared import atomic, cli, metrics, preflight
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.positives import check_positives
from fedrec.shared.dp.plan import privacy_line
from fedrec.shared.errors import ConfigError, FedrecError

QUIET_ENVIRONMENT = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
    "RAY_DEDUP_LOGS": "0",
}


def add_federated_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("federation")
    group.add_argument("--num-clients", dest="federated.num_clients", type=int, metavar="N")
    group.add_argument("--rounds", dest="federated.rounds", type=int, metavar="R")
    group.add_argument("--partition", dest="federated.partition", choices=["iid", "activity"])
    group.add_argument("--fraction", dest="federated.fraction", type=float, metavar="F",
                       help="fraction of clients sampled per round")
    group.add_argument("--clients-per-round", dest="federated.clients_per_round", type=int, metavar="N")
    group.add_argument("--min-clients", dest="federated.min_clients", type=int, metavar="N")
    group.add_argument("--timeout", dest="federated.timeout", type=float, metavar="SECONDS")
    group.add_argument("--update", dest="federated.update", choices=["gradient", "delta", "als"],
                       help="what clients send: item gradient (default), local change (delta), or with implicit "
                            "feedback each item's normal-equation sums (als: the server solves the items exactly)")
    group.add_argument("--local-epochs", dest="federated.local_epochs", type=int, metavar="E")
    group.add_argument("--client-optimizer", dest="federated.client_optimizer", choices=["adam", "sgd", "adagrad"])
    group.add_argument("--client-lr", dest="federated.client_lr", type=float, metavar="X")
    group.add_argument("--server-optimizer", dest="federated.server_optimizer", choices=["adam", "sgd", "adagrad"])
    group.add_argument("--server-lr", dest="federated.server_lr", type=float, metavar="X")
    group.add_argument("--eval-every", dest="federated.eval_every", type=int, metavar="R")
    group.add_argument("--sampling-seed", dest="federated.seed", type=int, metavar="N")
    group.add_argument("--secure", dest="federated.secure", action=argparse.BooleanOptionalAction, default=None,
                       help="secure aggregation of the clients' vectors")
    cli.add_dp_options(parser)


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    cli.add_data_options(parser)
    cli.add_model_options(parser)
    add_federated_options(parser)
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument("--model-out", type=Path, default=Path("fedrec-item-model.npz"), metavar="FILE.npz",
                        help="where to save the final item side (q, bi, mu); default %(default)s")
    parser.add_argument("--ray-address", metavar="HOST:PORT",
                        help="run on an existing Ray cluster (the address `ray start --head` prints) instead of "
                             "a fresh local Ray; every node needs fedrec installed and the data (see README)")
    parser.add_argument("--client-state-dir", type=Path, metavar="DIR",
                        help="keep each simulated client's state (user factors, final model, feedback) in DIR/client-K/, "
                             "so that `fedrec serve --state-dir DIR/client-K` can serve its users")
    parser.set_defaults(handler=run)


def _quiet_flower() -> None:
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


RAY_INLINE_ARGUMENT_BYTES = 1 << 20  # Ray's default is 100 KiB


def simulate(config: FedrecConfig, on_round=None, n_items: int | None = None, client_state_dir: Path | None = None,
             ray_address: str | None = None) -> dict:
    """Run the federation on Flower's simulation engine and return the server's results; with `ray_address`,
    on that existing Ray cluster instead of a fresh local Ray."""
    _quiet_flower()
    from flwr.simulation import run_simulation

    from fedrec.simulations import vce_queue

    vce_queue.install()  # Flower's engine polls its messages once per node; one pass per poll instead

    from fedrec.client.app import build_client_app
    from fedrec.server.app import build_server_app

    n_users = None
    if n_items is None or (config.dp.epsilon is not None and config.dp.delta is None):
        train = load_train_test(config)[0]  # fails early, before Ray starts, on bad data
        n_items, n_users = train.n_items, train.n_users
    if config.dp.epsilon is not None:  # an impossible budget is refused before Ray starts
        from fedrec.shared.dp.plan import plan_run

        plan_run(config, n_items, n_users)
    init_args = {"logging_level": "ERROR", "log_to_driver": False}
    if ray_address is None:
        init_args["num_cpus"] = os.cpu_count() or 2
        # Ray moves a task's arguments above 100 KiB through its shared-memory object store (a put and a get
        # per message), and every message here carries the item model (222 kB at ML-100K with k = 32): passing
        # them inline in the task is cheaper (README, "One client per user"). Only for the Ray that fedrec
        # starts; an existing cluster keeps its own settings.
        init_args["_system_config"] = {"max_direct_call_object_size": RAY_INLINE_ARGUMENT_BYTES}
    else:
        from fedrec.simulations import ray_cluster

        ray_cluster.connect(ray_address)  # a bad address is one error here, not a hang inside Flower's thread
    holder: dict = {}
    start = time.perf_counter()
    run_simulation(
        server_app=build_server_app(config, n_items, on_round, holder.update, n_users),
        client_app=build_client_app(config, client_state_dir.resolve() if client_state_dir is not None else None),
        num_supernodes=config.federated.num_clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": init_args,
        },
    )
    if "history" not in holder:
        raise FedrecError("the federated run failed before finishing (see the log above)")
    holder["wall_seconds"] = time.perf_counter() - start  # Ray start included
    return holder


def _print_round(entry: dict) -> None:
    note = f"  SKIPPED: {entry['skipped']}" if "skipped" in entry else ""
    eps = f"  epsilon {entry['epsilon']:.2f}" if "epsilon" in entry else ""
    print(f"round {entry['round']:4d}  clients {entry['clients']:4d}  {metrics.round_metric(entry)}{eps}  "
          f"{entry['seconds']:6.2f} s  up {entry['bytes_up'] / 1e6:8.2f} MB  down {entry['bytes_down'] / 1e6:8.2f} MB{note}",
          file=sys.stderr, flush=True)


def prepare_client_state(root: Path, num_clients: int) -> None:
    """DIR/client-K/ for every simulated client, made before Ray starts. Saved user state from another run
    (or another model size) is not reused: the clients start those users fresh (client/state.py)."""
    for k in range(num_clients):
        folder = root / f"client-{k}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--client-state-dir: cannot make {folder}: {exc.strerror}") from None


def run(args: argparse.Namespace) -> int:
    config = cli.config_from_args(args)
    # Everything that can fail is checked before Ray starts: outputs, data, client counts.
    if args.json is not None:
        preflight.check_writable(args.json, "--json")
    preflight.check_writable(args.model_out, "--model-out")
    if args.ray_address is not None:
        cli.parse_address(args.ray_address, "--ray-address")  # the form now; reachability once the data is read
    train, test = load_train_test(config)
    fed = config.federated
    preflight.check_federation(fed, train.n_users)
    if config.data.feedback == "implicit":
        check_positives(train, config.data.positive_threshold)
    print(privacy_line(config, train.n_items, train.n_users), file=sys.stderr)
    print(f"{len(train)} training and {len(test)} test ratings, {train.n_users} users, {train.n_items} items; "
          f"{fed.num_clients} clients, {fed.rounds} rounds, {'secure' if fed.secure else 'plain'} aggregation",
          file=sys.stderr)
    if args.client_state_dir is not None and config.data.feedback == "implicit":
        raise ConfigError("--client-state-dir keeps state for serving the explicit model; serving an implicit "
                          "(WRMF) model is not implemented, so there is no client state to keep")
    if args.client_state_dir is not None:
        prepare_client_state(args.client_state_dir, fed.num_clients)
    result = simulate(config, _print_round, n_items=train.n_items, client_state_dir=args.client_state_dir,
                      ray_address=args.ray_address)
    item = result.pop("item_model")
    outputs = {args.model_out: atomic.npz_bytes(q=item["q"], bi=item["bi"], mu=np.float64(item["mu"]))}
    if args.json is not None:
        outputs[args.json] = atomic.json_bytes({**result, "n_train": len(train), "n_test": len(test),
                                                "config": config.model_dump(mode="json")})
    atomic.write_files(outputs)  # both or neither
    dp_text = f"  epsilon spent {result['dp']['epsilon_spent']:.3f} of {result['dp']['epsilon']:g}" if "dp" in result else ""
    dp_note = " (ranking not released under DP)" if "dp" in result else ""
    print(f"final: {metrics.headline(result, config.eval.top_k)}{dp_note}{dp_text}  "
          f"wall {result['wall_seconds']:.1f} s; item model saved to {args.model_out}")
    if args.client_state_dir is not None:
        print(f"each client's state and final model: {args.client_state_dir}/client-K/ "
              f"(serve one with `fedrec serve --state-dir {args.client_state_dir}/client-0`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The same as `fedrec simulate` (errors, Ctrl-C and SIGTERM handled by the one CLI)."""
    return cli.main(["simulate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
