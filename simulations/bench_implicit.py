"""Benchmark: fedrec's implicit-feedback WRMF against the `implicit` package's ALS, and federated-secure training.

One run, per dataset: MovieLens binarised at a positive threshold (4: interactions rated 4 or 5 are the
positives, the rest are dropped), fedrec's random 80/20 split (seed 42), and on it
- fedrec's centralised WRMF (ALS with exact solves, and ALS with conjugate-gradient steps) and `implicit`'s
  AlternatingLeastSquares (conjugate-gradient steps) minimising the same loss: the same factors,
  regularisation, iterations and CG steps, one thread each, and the same confidence of a positive, 1 + alpha
  (Hu et al.'s c = 1 + alpha r, fedrec's convention; `implicit` weights a positive by its `alpha` times the
  matrix value, so it is given alpha + 1). Fits interleaved with a different seed per repeat (after one
  untimed warm-up fit of each); only the fit is timed, wall and CPU seconds; all are scored by fedrec's
  metric code on the held-out positives (metrics are means over the repeats, `NDCG sd` their standard
  deviation, seconds the median);
- fedrec federated with secure aggregation (in-process Flower ClientApps, every client every round), users
  solved on the clients, from the seed-0 start: the item side stepped on the securely summed item gradients
  (`gradient`), and solved exactly from the securely summed normal equations (`als`, one round per ALS
  iteration). Each is compared with the centralised fit from the same start (seed 0) and with the mean.

`implicit` is optional (`pip install -e .[bench]`); without it only fedrec is measured, with a note.

    python -m simulations.bench_implicit [--data-dir DIR] [--repeats 10] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np

from fedrec.shared import atomic, wrmf
from fedrec.shared.config import FedrecConfig, load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.positives import check_positives, positives
from fedrec.shared.errors import FedrecError
from fedrec.shared.table import format_table
from fedrec.shared.threads import single_blas_thread
from fedrec.shared.train_implicit import ImplicitModel, evaluate_implicit, fit_implicit

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
DATASETS = ("ml-100k", "ml-latest-small")
WARMUP_SEED = 1_000_003  # distinct from the timed seeds 0..repeats-1
METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10", "coverage")
COLUMNS = [
    ("dataset", "dataset", ""),
    ("model", "model", ""),
    ("precision@10", "P@10", ".4f"),
    ("recall@10", "R@10", ".4f"),
    ("ndcg@10", "NDCG@10", ".4f"),
    ("ndcg_sd", "NDCG sd", ".4f"),
    ("map@10", "MAP@10", ".4f"),
    ("coverage", "coverage", ".3f"),
    ("fit_seconds", "fit s", ".2f"),
    ("cpu_seconds", "CPU s", ".2f"),
]


def _import_implicit() -> Any | None:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        print("bench_implicit: the `implicit` package is not installed, so only fedrec is measured. Install it "
              "with `pip install implicit==0.7.3` (or `pip install -e .[bench]`).", file=sys.stderr)
        return None
    return AlternatingLeastSquares


def _timed(fit: Callable[[], ImplicitModel]) -> tuple[ImplicitModel, float, float]:
    """The fitted model, its wall seconds and its CPU seconds (this process, every thread: a library that
    ran more threads than it was given would show it here)."""
    wall, cpu = time.perf_counter(), time.process_time()
    model = fit()
    return model, time.perf_counter() - wall, time.process_time() - cpu


def _implicit_package_fit(als_class, train_matrix, config: FedrecConfig, seed: int,
                          implicit_alpha: float | None = None) -> Callable[[], ImplicitModel]:
    model_config = config.model
    # `implicit`'s confidence of a positive is its alpha times the matrix value (1 here), fedrec's 1 + alpha.
    alpha = 1.0 + model_config.alpha if implicit_alpha is None else implicit_alpha
    with warnings.catch_warnings():  # its advice on BLAS threads is followed (main runs on single_blas_thread)
        warnings.simplefilter("ignore", RuntimeWarning)
        # One thread, as fedrec has (its default, 0, takes every core).
        als = als_class(factors=model_config.factors, regularization=model_config.reg, alpha=alpha,
                        iterations=config.train.epochs, random_state=seed, calculate_training_loss=False,
                        num_threads=1)
    als.cg_steps = config.train.cg_steps  # its default is 3, as fedrec's

    def fit() -> ImplicitModel:
        als.fit(train_matrix, show_progress=False)
        counts = np.asarray(train_matrix.sum(axis=0)).ravel()
        return ImplicitModel(np.asarray(als.user_factors, np.float64), np.asarray(als.item_factors, np.float64), counts)
    return fit


def _seeded(config: FedrecConfig, seed: int, solver: str = "als") -> FedrecConfig:
    return config.model_copy(update={"model": config.model.model_copy(update={"seed": seed}),
                                     "train": config.train.model_copy(update={"implicit_solver": solver})})


MODELS = {"fedrec WRMF (ALS)": "als", "fedrec WRMF (CG)": "cg", "implicit ALS": None}
"""The centralised rows: fedrec with exact solves, fedrec with conjugate-gradient steps, `implicit` (CG steps)."""


def _centralised(config: FedrecConfig, train, test, als_class, repeats: int,
                 implicit_alpha: float | None = None) -> tuple[list[dict], float]:
    """The centralised rows, and fedrec's exact-ALS NDCG@10 from seed 0 (the federated runs' start)."""
    threshold = config.data.positive_threshold
    pos = positives(train, threshold)
    matrix = wrmf.interaction_matrix(pos.users, pos.items, pos.n_users, pos.n_items)
    names = [name for name, solver in MODELS.items() if solver is not None or als_class is not None]

    def fit(name: str, seed: int) -> Callable[[], ImplicitModel]:
        if MODELS[name] is None:
            return _implicit_package_fit(als_class, matrix, config, seed, implicit_alpha)
        seeded = _seeded(config, seed, MODELS[name])
        return lambda: fit_implicit(train, threshold, seeded.model, seeded.train)

    for name in names:  # untimed warm-ups
        fit(name, WARMUP_SEED)()
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)  # each model goes first as often as the others: load drift hits all
        for name in names[shift:] + names[:shift]:
            model, seconds, cpu_seconds = _timed(fit(name, repeat))
            runs[name].append({**evaluate_implicit(model, train, test, threshold, config.eval),
                               "fit_seconds": seconds, "cpu_seconds": cpu_seconds})
    rows = [{"model": name, "repeats": len(found),
             **{key: statistics.fmean(run[key] for run in found) for key in METRICS},
             "ndcg_sd": statistics.stdev(run["ndcg@10"] for run in found) if len(found) > 1 else None,
             "fit_seconds": statistics.median(run["fit_seconds"] for run in found),
             "cpu_seconds": statistics.median(run["cpu_seconds"] for run in found),
             "ndcg_per_seed": [run["ndcg@10"] for run in found]}
            for name, found in runs.items()]
    return rows, runs["fedrec WRMF (ALS)"][0]["ndcg@10"]


def _federated(config: FedrecConfig, n_items: int, update: str, rounds: int) -> dict:
    from fedrec.server.federation import run_federation
    from fedrec.server.inprocess import InProcessGrid

    fed = config.federated.model_copy(update={"update": update, "rounds": rounds, "eval_every": rounds})
    config = config.model_copy(update={"federated": fed})
    # The messages are not kept: with `als` each round's vectors are hundreds of MB.
    result = run_federation(InProcessGrid(config, fed.num_clients, keep_messages=False), config, n_items)
    up = statistics.fmean(entry["bytes_up"] for entry in result["history"][:-1] or result["history"])
    return {"model": f"fedrec federated-secure {update} ({fed.num_clients} clients, {rounds} rounds)", "repeats": 1,
            **{key: result[key] for key in METRICS}, "ndcg_sd": None, "fit_seconds": result["wall_seconds"],
            "cpu_seconds": None, "bytes_up_per_round": up}


def bench(dataset: str, data_dir: Path, overrides: dict, repeats: int, als_class,
          federated: dict[str, int], implicit_alpha: float | None = None) -> list[dict]:
    """The rows of one dataset; `federated` maps each federated update to run to its number of rounds."""
    config = load_config(None, {"data.dataset": dataset, "data.data_dir": str(data_dir), "data.feedback": "implicit",
                                "data.positive_threshold": 4.0, "eval.coverage": True, **overrides})
    train, test = load_train_test(config)
    check_positives(train, config.data.positive_threshold)
    print(f"bench_implicit: {dataset}: {int((train.values >= 4).sum())} training and {int((test.values >= 4).sum())} "
          f"test positives, {train.n_users} users, {train.n_items} items", file=sys.stderr, flush=True)
    rows, seed0 = _centralised(config, train, test, als_class, repeats, implicit_alpha)
    for update, rounds in federated.items():
        rows.append({**_federated(config, train.n_items, update, rounds), "centralised_seed0_ndcg": seed0})
    return [{"dataset": dataset, **row} for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--repeats", type=int, default=10, help="centralised fits per library (default 10)")
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--reg", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--implicit-alpha", type=float, metavar="X",
                        help="`implicit`'s own alpha (default: --alpha + 1, the same confidence as fedrec's; "
                             "--implicit-alpha 10 with --alpha 10 is the mismatch earlier runs of this benchmark had)")
    parser.add_argument("--iterations", type=int, default=15, help="ALS iterations of both libraries")
    parser.add_argument("--rounds", type=int, default=60, help="federated rounds of the gradient update (als: --iterations)")
    parser.add_argument("--num-clients", type=int, default=10)
    parser.add_argument("--server-lr", type=float, default=0.05,
                        help="federated server Adam learning rate (default 0.05: 0.03 needs about 100 rounds on ml-latest-small)")
    parser.add_argument("--federated", nargs="*", default=["gradient", "als"], choices=["gradient", "als"],
                        help="federated runs (default both; none: `--federated` alone)")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    overrides = {"model.factors": args.factors, "model.reg": args.reg, "model.alpha": args.alpha,
                 "train.epochs": args.iterations, "federated.num_clients": args.num_clients,
                 "federated.server_lr": args.server_lr, "federated.secure": True}
    federated = {update: args.rounds if update == "gradient" else args.iterations for update in args.federated}
    als_class = _import_implicit()
    try:
        with single_blas_thread():  # both libraries fit on one BLAS thread (implicit asks for it; see shared/threads.py)
            rows = [row for dataset in args.datasets
                    for row in bench(dataset, args.data_dir, overrides, args.repeats, als_class, federated,
                                     args.implicit_alpha)]
    except FedrecError as exc:
        print(f"bench_implicit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_table(rows, COLUMNS, markdown=True))
    for dataset in args.datasets:
        found = {row["model"]: row for row in rows if row["dataset"] == dataset}
        central = found["fedrec WRMF (ALS)"]["ndcg@10"]
        notes = []
        if "implicit ALS" in found:
            theirs = found["implicit ALS"]
            for name in ("fedrec WRMF (ALS)", "fedrec WRMF (CG)"):
                ours = found[name]
                notes.append(f"{name.split('(')[1][:-1]}/implicit NDCG@10 {ours['ndcg@10'] / theirs['ndcg@10']:.3f}, "
                             f"fit time {ours['fit_seconds'] / theirs['fit_seconds']:.2f}x wall, "
                             f"{ours['cpu_seconds'] / theirs['cpu_seconds']:.2f}x CPU")
        for name, row in found.items():
            if name.startswith("fedrec federated-secure"):
                same_start = (row["ndcg@10"] - row["centralised_seed0_ndcg"]) / row["centralised_seed0_ndcg"]
                notes.append(f"{name.split(' (')[0].split()[-1]} vs centralised ALS NDCG@10 {same_start:+.2%} from the "
                             f"same start (seed 0), {(row['ndcg@10'] - central) / central:+.2%} against the mean, "
                             f"{row['bytes_up_per_round'] / 1e6:.1f} MB up per round")
        print(f"{dataset}: " + "; ".join(notes))
    if args.json is not None:
        atomic.write_json(args.json, {"rows": rows, "settings": vars(args) | {"data_dir": str(args.data_dir),
                                                                             "json": str(args.json)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
