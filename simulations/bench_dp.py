"""Benchmark: test RMSE against the DP budget, full model and biases-only, same split, same settings.

Run: python -m simulations.bench_dp [--data-dir DIR] [--epsilons 1 2 4 8 16] [--num-clients 10] [--rounds 60]
     [--json FILE] [--plot FILE.png]

Each run trains in-process with the real ClientApps and secure aggregation (server/inprocess.py), every
client every round, evaluation only after the last round (each evaluation is a release that costs budget).
The test RMSE reported is measured exactly, by the benchmark, from the final item side and each client's own
user factors (a measurement of the simulation, not a release: the run's own DP evaluation is a noised
estimate). The noise comes from the OS's randomness, as in production, so runs differ: each cell is the mean over
--repeats runs, with its standard deviation. "none" is the same run without DP. `--set key=value` changes the
settings of every run (for example a tuning split: --set data.seed=7).

One client per user (943 clients) with secure aggregation costs minutes per round in process. Two
benchmark-only options make it affordable (simulations/noised_sum.py): --unmasked-sum decodes the same sums
without the pairwise masks (bit-identical without DP, tests/test_noised_sum.py), and --noise-cohort N makes
the --num-clients clients add, between them, the noise shares of an N-client cohort; since every user is
clipped on its own, the decoded sum then has the distribution of the N-client one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from fedrec.shared import atomic
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.table import format_table

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"


def exact_metrics(grid, config, item_model: dict, n_items: int) -> dict:
    """Test RMSE and MAE of the final model over every client's held-out ratings, with its own user factors."""
    import numpy as np

    from fedrec.client.data import partition_data
    from fedrec.client.state import UserStateStore
    from fedrec.shared import metrics, mf
    from fedrec.shared.federated import ClientTrainer

    item = mf.ItemSide(item_model["q"], item_model["bi"], float(item_model["mu"]))
    known = np.ones(n_items, dtype=bool)
    sums = {"sse": 0.0, "sae": 0.0, "n": 0.0}
    for k, node in enumerate(grid.node_ids):
        data = partition_data(config, k, len(grid.node_ids))
        state = UserStateStore(grid.contexts[node], None, None).latest()
        trainer = ClientTrainer(data, config, k, state)
        test = data.test
        predictions = mf.predict(trainer.user, item, test.users, test.items, trainer.ratings.user_counts > 0, known,
                                 test.rating_min, test.rating_max)
        for key, value in metrics.error_sums(predictions, test.values).items():
            sums[key] += value
    return {"rmse": float(np.sqrt(sums["sse"] / sums["n"])), "mae": sums["sae"] / sums["n"]}


def one_run(epsilon: float | None, factors: int, args: argparse.Namespace) -> dict:
    from fedrec.server.federation import run_federation
    from fedrec.server.inprocess import InProcessGrid

    overrides = {"data.dataset": args.dataset, "data.data_dir": args.data_dir, "federated.num_clients": args.num_clients,
                 "federated.rounds": args.rounds, "federated.eval_every": args.rounds, "model.factors": factors,
                 "dp.epsilon": epsilon, "dp.delta": args.delta}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    config = load_config(None, overrides)
    train, _ = load_train_test(config)
    start = time.perf_counter()
    grid = InProcessGrid(config, args.num_clients)
    aggregator = None
    if args.unmasked_sum:
        from fedrec.simulations.noised_sum import UnmaskedSum

        aggregator = UnmaskedSum(grid, config, noise_cohort=args.noise_cohort)
    result = run_federation(grid, config, train.n_items, n_users=train.n_users, aggregator=aggregator)
    exact = exact_metrics(grid, config, result["item_model"], train.n_items)
    dp = result.get("dp") or {}
    return {"epsilon": "none" if epsilon is None else epsilon, "factors": factors, "rmse": exact["rmse"],
            "mae": exact["mae"], "released_rmse": result["rmse"],
            "noise_multiplier": dp.get("noise_multiplier"), "delta": dp.get("delta"),
            "epsilon_spent": dp.get("epsilon_spent"), "seconds": time.perf_counter() - start}


def plot(rows: list[dict], path: Path) -> None:
    """Test RMSE against epsilon (log scale), one line per factor count with its sd as error bars; each
    model's non-private RMSE as a dotted line of the same colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)  # headless, no pyplot global state
    axes = figure.add_subplot()
    for factors in dict.fromkeys(r["factors"] for r in rows):
        private = [r for r in rows if r["factors"] == factors and r["epsilon"] != "none"]
        label = f"k = {factors}" + (" (biases only)" if factors == 0 else "")
        line = axes.errorbar([r["epsilon"] for r in private], [r["rmse"] for r in private],
                             yerr=[r["rmse_std"] or 0.0 for r in private], marker="o", capsize=3, label=label)
        for r in rows:
            if r["factors"] == factors and r["epsilon"] == "none":
                axes.axhline(r["rmse"], color=line.lines[0].get_color(), linestyle=":", linewidth=1)
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.set_xlabel("epsilon (user-level, delta 1/users); dotted: the same model without DP")
    axes.set_ylabel("test RMSE")
    axes.legend()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.bench_dp", description=__doc__)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--factors", type=int, nargs="+", default=[32, 0])
    parser.add_argument("--num-clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--delta", type=float, default=None, help="default 1 / number of users")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--unmasked-sum", action="store_true",
                        help="benchmark only: decode the same (noised) sums without the pairwise masks "
                             "(simulations/noised_sum.py), which makes one client per user affordable")
    parser.add_argument("--noise-cohort", type=int, metavar="N",
                        help="benchmark only, with --unmasked-sum: the --num-clients clients together add the noise "
                             "shares of an N-client cohort (N = 943: one client per user, see simulations/noised_sum.py)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path, help="write a PNG of test RMSE against epsilon")
    args = parser.parse_args(argv)
    if args.noise_cohort is not None and not args.unmasked_sum:
        parser.error("--noise-cohort needs --unmasked-sum")
    rows = []
    for epsilon in [*args.epsilons, None]:
        for factors in args.factors:
            runs = [one_run(epsilon, factors, args) for _ in range(args.repeats if epsilon is not None else 1)]
            rmses = [run["rmse"] for run in runs]
            rows.append({**runs[0], "rmse": statistics.mean(rmses), "mae": statistics.mean(r["mae"] for r in runs),
                         "rmse_std": statistics.stdev(rmses) if len(rmses) > 1 else None, "repeats": len(runs),
                         "rmse_runs": rmses,
                         "seconds": statistics.median(r["seconds"] for r in runs)})
            print(f"epsilon {rows[-1]['epsilon']}, k = {factors}: RMSE {rows[-1]['rmse']:.4f} "
                  f"(runs {', '.join(f'{r:.4f}' for r in rmses)}; {rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    baseline = {r["factors"]: r["rmse"] for r in rows if r["epsilon"] == "none"}
    for r in rows:
        r["vs_nonprivate"] = r["rmse"] / baseline[r["factors"]] - 1
    columns = [("epsilon", "epsilon", ""), ("factors", "k", ""), ("rmse", "test RMSE (mean)", ".4f"),
               ("rmse_std", "sd", ".4f"), ("repeats", "runs", ""),
               ("vs_nonprivate", "vs same model without DP", "+.1%"), ("mae", "MAE", ".4f"),
               ("released_rmse", "RMSE the run released", ".4f"),
               ("noise_multiplier", "noise multiplier", ".3f"), ("delta", "delta", ".2g"),
               ("epsilon_spent", "epsilon spent", ".3f"), ("seconds", "s", ".0f")]
    print(format_table(rows, columns, markdown=True))
    if args.json:
        atomic.write_json(args.json, rows)
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
