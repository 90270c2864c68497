"""`fedrec audit` / `python -m simulations.audit`: attack what a curious server holds, plain, secure-sum and DP.

On the same data and schedule (clients sampled per round, one client dropping out of every K-th round), it
trains three times in-process with the real ClientApps and the real protocol, records exactly what the server
holds (every decoded sum and who took part; in plain mode also every client's own vector and the item side
sent), and runs the attacks of shared/audit.py, each scored against a guess from public item popularity:
rated-item inference and FedMF rating recovery (Chai et al. 2020) from individual plain replies; differencing
of sums whose participants differ by one client; least squares over sampled rounds; intersection of non-zero
supports. It prints a table and writes audit.json and audit.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fedrec.shared import atomic, audit, cli, protocol
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.partition import partition_users
from fedrec.shared.dp.plan import privacy_level
from fedrec.shared.errors import ConfigError
from fedrec.shared.table import format_table

MODES = ("plain", "secure-sum", "secure-sum+dp")
# Differencing needs sums over the same clients but one (every client every round, with dropouts); least
# squares and support intersection need varied participants (clients sampled per round).
SCHEDULES = {"all clients, dropouts": ("differencing", "rated_items_from_replies", "rating_recovery"),
             "sampled": ("least_squares", "support_intersection")}
DEFAULTS = {"synthetic.n_users": 100, "synthetic.n_items": 100, "synthetic.n_ratings": 2500, "model.factors": 4,
            "federated.rounds": 30, "federated.clients_per_round": 10}


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    cli.add_data_options(parser)
    cli.add_model_options(parser)
    cli.add_dp_options(parser)
    group = parser.add_argument_group("audit")
    group.add_argument("--num-clients", dest="federated.num_clients", type=int, metavar="N",
                       help="clients (default: one per user, the FedMF setting)")
    group.add_argument("--clients-per-round", dest="federated.clients_per_round", type=int, metavar="N")
    group.add_argument("--rounds", dest="federated.rounds", type=int, metavar="R")
    group.add_argument("--dropout-every", type=int, default=3, metavar="K",
                       help="one sampled client drops out of every K-th round's training sum (default 3)")
    group.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder receiving audit.json and audit.png")
    parser.set_defaults(handler=run)


def _config(args: argparse.Namespace) -> FedrecConfig:
    overrides = {**DEFAULTS, **cli._parse_set(args.set)}
    overrides.update({k: v for k, v in vars(args).items() if "." in k and v is not None})
    if overrides.get("data.train") is not None:
        overrides.setdefault("data.dataset", None)
    if overrides.get("dp.epsilon") is None:
        overrides["dp.epsilon"] = 8.0
    overrides["federated.eval_every"] = overrides["federated.rounds"]  # only the final evaluation
    from fedrec.shared.config import load_config

    return load_config(args.config, overrides)


def _mode_config(config: FedrecConfig, mode: str, num_clients: int, sampled: bool = True) -> FedrecConfig:
    tree = config.model_dump()
    tree["federated"].update(num_clients=num_clients, secure=mode != "plain")
    if not sampled:
        tree["federated"]["clients_per_round"] = None
    tree["dp"]["epsilon"] = config.dp.epsilon if mode == "secure-sum+dp" else None
    tree["secagg"]["require_secure"] = mode != "plain"
    return FedrecConfig.model_validate(tree)


def truth(config: FedrecConfig, num_clients: int):
    """Per client: which items it rated and its ratings (NaN elsewhere); the true item popularity."""
    train, _ = load_train_test(config)
    owner = partition_users(train.user_counts(), num_clients, config.federated.partition, config.federated.seed)
    rated = np.zeros((num_clients, train.n_items), dtype=bool)
    rated[owner[train.users], train.items] = True
    ratings = np.full((num_clients, train.n_items), np.nan)
    ratings[owner[train.users], train.items] = train.values  # one user per client: its ratings
    return train, rated, ratings, rated.sum(0).astype(np.float64)


def run_mode(config: FedrecConfig, mode: str, num_clients: int, dropout_every: int, n_items: int, n_users: int,
             sampled: bool) -> dict:
    """Train in-process and keep what the server holds."""
    from fedrec.server.federation import run_federation
    from fedrec.server.inprocess import InProcessGrid

    cfg = _mode_config(config, mode, num_clients, sampled)
    held: dict = {"rounds": [], "sums": []}

    def observe(group: str, task: dict, result) -> None:
        if task.get("task") == protocol.TASK_TRAIN and result.total is not None:
            held["rounds"].append((int(task["round"]), sorted(result.participants)))
            held["sums"].append(np.array(result.total, dtype=np.float64))

    dropping: dict[int, int] = {}

    def drops(node: int, task: dict) -> bool:
        if task.get("task") != protocol.TASK_TRAIN or task.get("stage") not in (protocol.STAGE_PLAIN, "secagg.masked_input"):
            return False
        r = int(task["round"])
        if r % dropout_every or r < 2:
            return False
        # A different client each time (the first asked in round r after a round-dependent offset).
        order = sorted(grid.contexts)
        dropping.setdefault(r, order[(r * 7919) % len(order)])
        return dropping[r] == node

    grid = InProcessGrid(cfg, num_clients, drops)
    start = time.perf_counter()
    result = run_federation(grid, cfg, n_items, n_users=n_users, on_sum=observe)
    index = {node: k for k, node in enumerate(grid.node_ids)}
    participation = np.zeros((len(held["rounds"]), num_clients), dtype=bool)
    for row, (_, parts) in enumerate(held["rounds"]):
        participation[row, [index[p] for p in parts]] = True
    out = {"mode": mode, "privacy": privacy_level(cfg), "rmse": result["rmse"], "seconds": time.perf_counter() - start,
           "dp": result.get("dp"), "participation": participation, "sums": np.stack(held["sums"])}
    if mode == "plain":  # every client's own train vectors, with the item side each was computed at
        replies: dict[int, list] = {}
        for request, reply in grid.exchanges:
            task = request.content.config_records[protocol.CONFIG]
            if task["task"] != protocol.TASK_TRAIN or reply.has_error():
                continue
            arrays = request.content.array_records[protocol.ITEM]
            replies.setdefault(index[request.metadata.dst_node_id], []).append(
                (reply.content.array_records[protocol.REPLY]["vector"].numpy(), (arrays["q"].numpy(), arrays["bi"].numpy())))
        out["replies"] = replies
    return out


def attack(held: dict, config: FedrecConfig, rated: np.ndarray, ratings: np.ndarray, popularity: np.ndarray,
           n_items: int, mu: float) -> dict:
    k = config.model.factors
    scores = audit.audit_sums(held["sums"], held["participation"], n_items, k, rated, popularity)
    if "replies" in held:
        first = np.full((rated.shape[0], held["sums"].shape[1]), np.nan)
        for client, seen in held["replies"].items():
            first[client] = seen[0][0]
        scores["rated_items_from_replies"] = audit.score_attack(
            audit.rated_items_from_replies(np.nan_to_num(first), n_items, k) + np.where(np.isnan(first[:, :1]), np.nan, 0),
            rated, popularity)
        estimates = np.full(rated.shape, np.nan)
        for client, seen in held["replies"].items():
            if len(seen) >= 2:
                try:
                    estimates[client] = audit.recover_ratings((seen[0][0], seen[1][0]), (seen[0][1], seen[1][1]), mu,
                                                              config.model.reg, config.model.bias_reg, np.arange(1.0, 6.0))
                except ValueError:
                    pass
        scores["rating_recovery"] = audit.score_ratings(estimates, ratings, np.full(rated.shape, mu))
    return scores


COLUMNS = [("mode", "mode", ""), ("attack", "attack", ""), ("clients", "clients", ""), ("auc", "attack AUC", ".3f"),
           ("popularity_auc", "popularity AUC", ".3f"), ("advantage_auc", "advantage", "+.3f"),
           ("precision", "attack prec@|rated|", ".3f"), ("popularity_precision", "popularity prec", ".3f")]


def rows(report: dict) -> list[dict]:
    out = []
    for mode, entry in report["modes"].items():
        for name, score in entry["attacks"].items():
            if name != "rating_recovery":
                out.append({"mode": mode, "attack": name, **score})
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = ["rated_items_from_replies", "differencing", "least_squares", "support_intersection"]
    fig, ax = plt.subplots(figsize=(8, 4))
    for offset, (mode, entry) in enumerate(report["modes"].items()):
        values = [entry["attacks"].get(a, {}).get("advantage_auc", np.nan) for a in attacks]
        ax.bar(np.arange(len(attacks)) + 0.27 * (offset - 1), values, width=0.27, label=mode)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(attacks)), [a.replace("_", " ") for a in attacks], fontsize=8)
    ax.set_ylabel("AUC above the popularity guess")
    ax.set_title("What a curious server learns of which items each client rated")
    ax.legend()
    fig.tight_layout()
    buffer = path.with_suffix(".tmp.png")
    fig.savefig(buffer, dpi=110)
    plt.close(fig)
    buffer.replace(path)


def audit_run(config: FedrecConfig, dropout_every: int, out_dir: Path) -> dict:
    train, rated, ratings, popularity = truth(config, config.federated.num_clients)
    n = config.federated.num_clients
    mu = float(train.values.mean())
    report = {"config": config.model_dump(mode="json"), "dropout_every": dropout_every, "modes": {}}
    for mode in MODES:
        entry = {"attacks": {}, "runs": {}}
        for schedule, attacks in SCHEDULES.items():
            sampled = schedule == "sampled"
            per_round = config.federated.clients_per_round if sampled else n
            print(f"[audit] {mode}, {schedule}: {n} clients, {per_round or n} a round, {config.federated.rounds} rounds",
                  file=sys.stderr, flush=True)
            held = run_mode(config, mode, n, dropout_every, train.n_items, train.n_users, sampled)
            scores = attack(held, config, rated, ratings, popularity, train.n_items, mu)
            entry["attacks"].update({name: scores[name] for name in attacks if name in scores})
            entry["runs"][schedule] = {"privacy": held["privacy"], "rmse": held["rmse"], "seconds": held["seconds"],
                                       "dp": held["dp"]}
        report["modes"][mode] = entry
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out_dir / "audit.json", report)
    plot(report, out_dir / "audit.png")
    return report


def run(args: argparse.Namespace) -> int:
    if args.dropout_every < 2:
        raise ConfigError(f"--dropout-every must be at least 2, got {args.dropout_every}")
    config = _config(args)
    if args.__dict__.get("federated.num_clients") is None:  # one client per user
        tree = config.model_dump()
        tree["federated"]["num_clients"] = load_train_test(config)[0].n_users
        config = FedrecConfig.model_validate(tree)
    report = audit_run(config, args.dropout_every, args.out)
    print(format_table(rows(report), COLUMNS))
    for mode, entry in report["modes"].items():
        if "rating_recovery" in entry["attacks"]:
            r = entry["attacks"]["rating_recovery"]
            print(f"{mode}: FedMF rating recovery from two replies per client: RMSE {r['rmse']:.3f} "
                  f"(guessing the mean: {r['baseline_rmse']:.3f}), exact {r['exact']:.1%} of {r['ratings']} ratings")
    print(f"wrote {args.out}/audit.json and audit.png", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.audit", description=__doc__)
    register(parser)
    args = parser.parse_args(argv)
    from fedrec.shared.errors import FedrecError

    try:
        return args.handler(args)
    except FedrecError as exc:
        print(f"fedrec: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
