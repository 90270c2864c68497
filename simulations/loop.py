"""`fedrec loop` / `python -m simulations.loop`: the closed loop of recommending, responding and training.

Each step, every policy shows its top N to every user of one shared world; simulated users respond (position
bias, a chance of no response); the clicks are validated and stored with that policy's data (on its clients,
for the federated policy); the learning policies train on the grown data. All policies face the same world
and the same response draws (common random numbers), so their differences are their own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fedrec.shared import atomic, cli, preflight
from fedrec.shared.config import FedrecConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.threads import single_blas_thread
from fedrec.shared.world import make_world, respond, step_metrics
from fedrec.simulations import report
from fedrec.simulations.compare import check_out_dir

RESPONSES, EXPLORATION = 1, 2  # SeedSequence keys of the loop's random streams
METRIC_KEYS = ("ctr", "regret", "ndcg", "coverage", "popular_share")


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    group = parser.add_argument_group("world")
    group.add_argument("--world", dest="loop.world", choices=["synthetic", "ml-100k", "ml-1m", "ml-latest-small"],
                       help="synthetic (default; size it with --set synthetic.n_users=...), or a MovieLens dataset "
                            "with a ground truth fitted to it")
    group.add_argument("--data-dir", dest="data.data_dir", metavar="DIR", help="MovieLens folder (for --world ml-*)")
    group.add_argument("--start-threshold", dest="loop.start_threshold", type=float, metavar="X",
                       help="starting interactions: the world dataset's ratings >= X (default 4)")
    group.add_argument("--position-bias", dest="loop.position_bias", type=float, metavar="P",
                       help="rank j is examined with probability 1/(1+j)^P (default 1)")
    group.add_argument("--no-response", dest="loop.no_response", type=float, metavar="F",
                       help="chance that a user ignores a step's list (default 0.2)")
    group = parser.add_argument_group("loop")
    group.add_argument("--steps", dest="loop.steps", type=int, metavar="S")
    group.add_argument("--rounds-per-step", dest="loop.rounds_per_step", type=int, metavar="R")
    group.add_argument("--warmup-rounds", dest="loop.warmup_rounds", type=int, metavar="R")
    group.add_argument("--top-n", dest="loop.top_n", type=int, metavar="N")
    group.add_argument("--explore", dest="loop.explore", choices=["none", "epsilon-greedy", "thompson"])
    group.add_argument("--epsilon", dest="loop.epsilon", type=float, metavar="E")
    group.add_argument("--thompson-scale", dest="loop.thompson_scale", type=float, metavar="S")
    group.add_argument("--seed", type=int, metavar="N",
                       help="seed of everything random: world, responses, exploration, initial factors, partition")
    group = parser.add_argument_group("model and federation")
    group.add_argument("--factors", dest="model.factors", type=int, metavar="K")
    group.add_argument("--reg", dest="model.reg", type=float, metavar="X")
    group.add_argument("--alpha", dest="model.alpha", type=float, metavar="X")
    group.add_argument("--num-clients", dest="federated.num_clients", type=int, metavar="N")
    group.add_argument("--server-lr", dest="federated.server_lr", type=float, metavar="X")
    group.add_argument("--secure", dest="federated.secure", action=argparse.BooleanOptionalAction, default=None,
                       help="secure aggregation of the federated policy's sums (default on)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder receiving report.md, loop.png and results.json")
    parser.add_argument("--json", type=Path, metavar="OUT", help="the per-step metrics of every policy as JSON")
    parser.set_defaults(handler=run, command_parser=parser)


def loop_config(args: argparse.Namespace) -> FedrecConfig:
    """The configuration with implicit feedback, and --seed spread over every seeded part of the loop."""
    if args.seed is not None:
        for key in ("loop.seed", "synthetic.seed", "model.seed", "federated.seed"):
            setattr(args, key, args.seed)
    setattr(args, "data.feedback", "implicit")
    return cli.config_from_args(args)


def check_loop(config: FedrecConfig, n_users: int, n_items: int, most_seen: int) -> None:
    """Settings that cannot work in this world are one error before anything runs."""
    loop, fed = config.loop, config.federated
    if config.data.positive_threshold is not None:
        raise ConfigError("data.positive_threshold: every interaction in the loop is a positive (a click); the "
                          "starting interactions are chosen with --start-threshold (loop.start_threshold)")
    preflight.check_federation(fed, n_users)
    if fed.secure and fed.num_clients < config.secagg.min_cohort:
        raise ConfigError(f"--num-clients {fed.num_clients}: secure aggregation needs at least secagg.min_cohort = "
                          f"{config.secagg.min_cohort} clients (or --no-secure)")
    needed = most_seen + loop.steps * loop.top_n + loop.top_n
    if needed > n_items:
        raise ConfigError(f"--top-n {loop.top_n} over {loop.steps} steps: a user who already has {most_seen} "
                          f"interactions could run out of the {n_items} items; use fewer steps or a smaller N")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_loop(config: FedrecConfig, folder: Path) -> dict:
    """Run every policy through the loop; returns {"policies": {name: [per-step metrics]}} plus timings."""
    from fedrec.simulations.loop_policies import make_policies

    loop = config.loop
    world = make_world(config)
    check_loop(config, world.n_users, world.n_items, int(np.bincount(world.start.users).max()))
    _say(f"[loop] {loop.world} world: {world.n_users} users, {world.n_items} items, {len(world.start)} starting "
         f"interactions; {loop.steps} steps of top-{loop.top_n}, {loop.rounds_per_step} rounds per step")
    policies = make_policies(world, config, folder)
    for policy in policies:
        policy.fit(loop.warmup_rounds)
    results: dict[str, list[dict]] = {policy.name: [] for policy in policies}
    regret = dict.fromkeys(results, 0.0)
    for step in range(1, loop.steps + 1):
        for index, policy in enumerate(policies):
            explore = np.random.default_rng(np.random.SeedSequence([loop.seed, step, EXPLORATION, index]))
            lists = policy.recommend(explore)
            clicks = respond(world, lists, np.random.default_rng(np.random.SeedSequence([loop.seed, step, RESPONSES])))
            metrics = step_metrics(world, lists, clicks, policy.seen)
            regret[policy.name] += metrics["regret"]
            results[policy.name].append({"step": step, **metrics, "regret": regret[policy.name]})
            users, slots = np.nonzero(clicks)
            policy.store(users, lists[users, slots])
            if step < loop.steps:  # the last step's clicks would train a model nobody uses
                policy.fit(loop.rounds_per_step)
        _say(f"[loop] step {step}/{loop.steps}: " + "  ".join(
            f"{name} ctr {entries[-1]['ctr']:.3f}" for name, entries in results.items()))
    return {"policies": results, "train_seconds": {policy.name: policy.train_seconds for policy in policies},
            "world": {"n_users": world.n_users, "n_items": world.n_items, "start": len(world.start)}}


def run(args: argparse.Namespace) -> int:
    config = loop_config(args)
    if args.json is not None:
        preflight.check_writable(args.json, "--json")
    if args.out is not None:
        check_out_dir(args.out)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedrec-loop-") as folder, single_blas_thread():
        outcome = run_loop(config, Path(folder))  # the folder holds the federated clients' files
    outcome["wall_seconds"] = time.perf_counter() - start
    outcome["command"] = report.command_line(args.command_parser, args, "fedrec loop")
    outcome["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from fedrec.simulations import loop_report

    print(loop_report.summary_table(outcome["policies"], markdown=False))
    outputs = {}
    if args.json is not None:
        outputs[args.json] = atomic.json_bytes({"policies": outcome["policies"]})
    if args.out is not None:
        outputs[args.out / "loop.png"] = loop_report.plot(outcome["policies"], config)
        outputs[args.out / "report.md"] = loop_report.render(outcome, config).encode("utf-8")
        outputs[args.out / "results.json"] = atomic.json_bytes({"policies": outcome["policies"]})
    atomic.write_files(outputs)  # all or none
    _say(f"[loop] done in {outcome['wall_seconds']:.1f} s" + (f"; wrote {', '.join(map(str, outputs))}" if outputs else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The same as `fedrec loop` (errors, Ctrl-C and SIGTERM handled by the one CLI)."""
    return cli.main(["loop", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
