"""Benchmark: seconds per steady-state round, fedrec secure vs plain and Flower's SecAgg+ vs plain, in one run."""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedrec.shared import atomic
from fedrec.shared.config import load_config
from fedrec.shared.errors import FedrecError
from fedrec.shared.table import format_table
from fedrec.simulations.run import QUIET_ENVIRONMENT, simulate

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
FLOWER_BACKEND = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                  "init_args": {"num_cpus": 2, "logging_level": "ERROR", "log_to_driver": False}}
FACTORS = 32

COLUMNS = [
    ("n", "N", ""),
    ("fedrec_plain_s", "fedrec plain s/round", ".3f"),
    ("fedrec_secure_s", "fedrec secure s/round", ".3f"),
    ("fedrec_ratio", "secure/plain (median)", ".2f"),
    ("fedrec_ratios", "each repeat", ""),
    ("flower_plain_s", "Flower plain s/round", ".3f"),
    ("flower_secaggplus_s", "Flower SecAgg+ s/round", ".3f"),
    ("flower_ratio", "SecAgg+/plain", ".2f"),
]
DETAIL_COLUMNS = [
    ("n", "N", ""),
    ("fedrec_advertise_s", "secure advertise s (cold)", ".2f"),
    ("fedrec_share_keys_s", "secure share-keys s", ".2f"),
    ("fedrec_plain_first_s", "plain first exchange s (cold)", ".2f"),
    ("fedrec_secure_round1_extra_s", "secure round 1 - median s", ".3f"),
    ("fedrec_plain_mb_up", "plain MB up/round", ".2f"),
    ("fedrec_secure_mb_up", "secure MB up/round", ".2f"),
    ("fedrec_plain_mb_down", "plain MB down/round", ".2f"),
    ("fedrec_secure_mb_down", "secure MB down/round", ".2f"),
]


def quiet() -> None:
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("flwr", "ray"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextmanager
def timed_exchanges():
    """Record the seconds of every server-client exchange by group name ("0.advertise", "3.masked", ...).

    With all clients in every round the secure cohort is set up once, in the statistics sum before round 1,
    so no round's seconds include the key setup; it is timed here instead. The ServerApp runs in this process
    under run_simulation, so patching the module attributes reaches it.
    """
    from fedrec.server import aggregation, secure

    original = aggregation.exchange
    seconds: dict[str, float] = {}

    def exchange(grid, contents, group, timeout):
        start = time.perf_counter()
        try:
            return original(grid, contents, group, timeout)
        finally:
            seconds[group] = time.perf_counter() - start

    aggregation.exchange = secure.exchange = exchange
    try:
        yield seconds
    finally:
        aggregation.exchange = secure.exchange = original


def steady(values: list[float]) -> list[float]:
    # Rounds 2..R-1 only: round 1 pays the clients' cold start in Flower's runs (and any warm-up in fedrec's),
    # round R fedrec's final evaluation. Every run starts its own Ray, so wall times are never compared.
    return values[1:-1]


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def run_fedrec(n: int, rounds: int, secure: bool) -> dict[str, Any]:
    """One fedrec simulation on the default (ML-100K-sized) synthetic data; per-round seconds and bytes."""
    config = load_config(None, {"federated.num_clients": n, "federated.rounds": rounds, "federated.secure": secure,
                                "federated.eval_every": rounds + 1, "model.factors": FACTORS})
    with timed_exchanges() as exchanges:
        history = simulate(config)["history"]
    seconds = [entry["seconds"] for entry in history]
    median = statistics.median(steady(seconds))
    return {
        "seconds": seconds,
        "median_s": median,
        "exchanges": exchanges,
        "first_round_extra_s": seconds[0] - median,
        "mb_up": statistics.median(steady([e["bytes_up"] / 1e6 for e in history])),
        "mb_down": statistics.median(steady([e["bytes_down"] / 1e6 for e in history])),
        "failures": [f for entry in history for f in entry["failures"]],
        "clients": [entry["clients"] for entry in history],
    }


def run_flower(n: int, rounds: int, secure: bool, vector_length: int, num_shares: int, threshold: int) -> dict[str, Any]:
    """One Flower legacy-workflow simulation (SecAgg+ or plain FedAvg); per-round seconds.

    The vector is as long as fedrec's item side (items x (factors + 1)) and the clients only echo it back,
    so these times are protocol and transport only."""
    from flwr.simulation import run_simulation

    from fedrec.simulations.flower_secaggplus_app import build_apps

    seconds: list[float] = []
    server_app, client_app = build_apps(n, vector_length, rounds, secure, num_shares, threshold, seconds)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=n, backend_config=FLOWER_BACKEND)
    if len(seconds) != rounds:
        raise FedrecError(f"Flower {'SecAgg+' if secure else 'plain'} run with {n} clients finished "
                          f"{len(seconds)} of {rounds} rounds")
    return {"seconds": seconds, "median_s": statistics.median(steady(seconds))}


def bench_size(n: int, args: argparse.Namespace, vector_length: int) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    # fedrec plain and secure alternate, --repeats times, the order swapped every repeat, so that a busy
    # spell on a shared machine lands on both; the ratio reported is the median of the repeats' ratios.
    repeats: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        pair = {}
        for secure in ((False, True) if rep % 2 == 0 else (True, False)):
            label = f"fedrec_{'secure' if secure else 'plain'}"
            pair[label] = run_fedrec(n, args.rounds, secure)
            runs.setdefault(label, pair[label])  # the first repeat's run keeps its details
            print(f"N={n} repeat {rep + 1} {label}: {pair[label]['median_s']:.3f} s/round {_fmt(pair[label]['seconds'])}",
                  file=sys.stderr, flush=True)
        repeats.append({"plain_s": pair["fedrec_plain"]["median_s"], "secure_s": pair["fedrec_secure"]["median_s"],
                        "ratio": pair["fedrec_secure"]["median_s"] / pair["fedrec_plain"]["median_s"]})
    runs["fedrec_repeats"] = repeats
    if not args.skip_flower:
        for secure in (False, True):
            label = f"flower_{'secaggplus' if secure else 'plain'}"
            runs[label] = run_flower(n, args.rounds, secure, vector_length, args.num_shares, args.threshold)
            print(f"N={n} {label}: {runs[label]['median_s']:.3f} s/round {_fmt(runs[label]['seconds'])}", file=sys.stderr, flush=True)

    def median(label: str) -> float | None:
        return runs[label]["median_s"] if label in runs else None

    row = {"n": n, **{f"{label}_s": median(label) for label in ("flower_plain", "flower_secaggplus")}}
    row["fedrec_plain_s"] = statistics.median(r["plain_s"] for r in repeats)
    row["fedrec_secure_s"] = statistics.median(r["secure_s"] for r in repeats)
    row["fedrec_ratio"] = statistics.median(r["ratio"] for r in repeats)
    row["fedrec_ratios"] = " ".join(f"{r['ratio']:.2f}" for r in repeats)
    row["flower_ratio"] = ratio(row["flower_secaggplus_s"], row["flower_plain_s"])
    row["fedrec_advertise_s"] = runs["fedrec_secure"]["exchanges"]["0.advertise"]
    row["fedrec_share_keys_s"] = runs["fedrec_secure"]["exchanges"]["0.share-keys"]
    row["fedrec_plain_first_s"] = runs["fedrec_plain"]["exchanges"]["0"]
    row["fedrec_secure_round1_extra_s"] = runs["fedrec_secure"]["first_round_extra_s"]
    for mode in ("plain", "secure"):
        row[f"fedrec_{mode}_mb_up"] = runs[f"fedrec_{mode}"]["mb_up"]
        row[f"fedrec_{mode}_mb_down"] = runs[f"fedrec_{mode}"]["mb_down"]
    return {"summary": row, "runs": runs}


def bench_ml_latest(data_dir: Path, num_clients: int = 610) -> dict[str, Any]:
    """One client per user, every item dense in every vector, every client in every round."""
    config = load_config(None, {
        "data.dataset": "ml-latest-small", "data.data_dir": str(data_dir), "federated.num_clients": num_clients,
        "federated.secure": True, "federated.fraction": 1.0, "model.factors": FACTORS, "federated.rounds": 2,
        "federated.eval_every": 10,
        "federated.timeout": 3600.0,  # a 610-client exchange is slow on 2 cores; do not let the timeout cut it short
    })
    start = time.perf_counter()
    with timed_exchanges() as exchanges:
        result = simulate(config)
    rounds = [{key: entry[key] for key in ("round", "clients", "seconds", "bytes_up", "bytes_down", "failures")}
              for entry in result["history"]]
    for entry in rounds:
        entry["masked_s"], entry["unmask_s"] = exchanges[f"{entry['round']}.masked"], exchanges[f"{entry['round']}.unmask"]
    return {"rounds": rounds, "wall_s": time.perf_counter() - start, "exchanges": exchanges, "rmse": result.get("rmse"),
            "num_clients": result["num_clients"], "n_items": int(result["item_model"]["q"].shape[0])}


def _fmt(seconds: list[float]) -> str:
    return "[" + " ".join(f"{s:.2f}" for s in seconds) + "]"


def print_sizes(results: list[dict], args: argparse.Namespace, n_items: int, vector_length: int) -> None:
    print(f"\nMedian seconds per round over rounds 2..{args.rounds - 1} of {args.rounds} (fedrec: median over "
          f"{args.repeats} alternating plain/secure repeats; the ratio is the median of each repeat's ratio); synthetic data "
          f"(1000 users, {n_items} items, 100k ratings), {FACTORS} factors, all clients every round. Flower: legacy "
          f"DefaultWorkflow, FedAvg, float32 vector of {vector_length}, SecAgg+ with {args.num_shares} shares, "
          f"threshold {args.threshold}.\n")
    print(format_table([r["summary"] for r in results], COLUMNS, markdown=True))
    print("\nfedrec's key setup (advertise + share-keys) runs once, in the statistics sum before round 1. The first "
          "exchange of any run, plain or secure, also pays the clients' cold start (Ray actors, imports): (cold).\n")
    print(format_table([r["summary"] for r in results], DETAIL_COLUMNS, markdown=True))
    failures = sum(len(r["runs"][m]["failures"]) for r in results for m in ("fedrec_plain", "fedrec_secure"))
    if failures:
        print(f"\nWARNING: fedrec reported {failures} client failures; see the JSON output")


def print_ml_latest(ml: dict) -> None:
    ex = ml["exchanges"]
    print(f"\nml-latest-small, secure, {ml['num_clients']} clients (one per user), {ml['n_items']} items dense, "
          f"{FACTORS} factors:\n")
    print("| round | clients | seconds | masked exchange s | unmask exchange s | MB up | MB down | failures |")
    print("|---|---|---|---|---|---|---|---|")
    for e in ml["rounds"]:
        print(f"| {e['round']} | {e['clients']} | {e['seconds']:.1f} | {e['masked_s']:.1f} | {e['unmask_s']:.1f} "
              f"| {e['bytes_up'] / 1e6:.0f} | {e['bytes_down'] / 1e6:.0f} | {len(e['failures'])} |")
    rmse = f"{ml['rmse']:.4f}" if ml["rmse"] is not None else "-"
    print(f"\nKey setup before round 1: advertise {ex.get('0.advertise', 0):.1f} s (includes the clients' cold start), "
          f"share-keys {ex.get('0.share-keys', 0):.1f} s. Round 2 includes the final evaluation sum "
          f"({ex.get('2.eval.masked', 0) + ex.get('2.eval.unmask', 0):.1f} s). Wall {ml['wall_s']:.0f} s incl. Ray "
          f"start, data loading and the statistics sum; test RMSE {rmse}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100], metavar="N")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per run; rounds 2..R-1 are timed (default 6)")
    parser.add_argument("--num-shares", type=int, default=5, help="SecAgg+ shares per client (default 5)")
    parser.add_argument("--threshold", type=int, default=3, help="SecAgg+ reconstruction threshold (default 3)")
    parser.add_argument("--skip-flower", action="store_true", help="leave out Flower's SecAgg+ and plain runs")
    parser.add_argument("--skip-ml-latest", action="store_true", help="leave out the 610-client ml-latest-small run")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"MovieLens folder (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--repeats", type=int, default=1, help="fedrec plain/secure pairs per size, alternating (default 1)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every per-round time as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (round 1 and round R are not timed)")
    if min(args.sizes) <= args.num_shares and not args.skip_flower:
        parser.error("every size must exceed --num-shares for SecAgg+")
    quiet()
    n_items = load_config().synthetic.n_items
    vector_length = n_items * (FACTORS + 1)
    started = time.perf_counter()
    output: dict[str, Any] = {"rounds": args.rounds, "num_shares": args.num_shares, "threshold": args.threshold,
                              "vector_length": vector_length}
    try:
        output["results"] = [bench_size(n, args, vector_length) for n in args.sizes]
        print_sizes(output["results"], args, n_items, vector_length)  # printed now: the 610-client run is long
        if not args.skip_ml_latest:
            output["ml_latest_small"] = bench_ml_latest(args.data_dir)
            print_ml_latest(output["ml_latest_small"])
    except FedrecError as exc:
        print(f"bench_secagg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    finally:
        output["total_seconds"] = time.perf_counter() - started
        print(f"\ntotal benchmark time {output['total_seconds']:.0f} s")
        if args.json is not None:
            atomic.write_json(args.json, output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
