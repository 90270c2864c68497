"""Benchmark: one client per user with clients sampled per round, plain vs secure, and the full evaluation.

    python -m simulations.bench_sampled [--data-dir DIR] [--rounds 6] [--repeats 1] [--loops fedrec flower]

ML-100K with one client per user (943 clients), 94 sampled a round, k = 32, gradient updates; rounds 2..R-1
are timed (round 1 pays the clients' cold start, round R the evaluation of all 943 clients, timed on its
own). A secure sampled round forms a new cohort every round (advertise, share keys, masked input, unmask).
`--loops` compares Flower's own message loop in the simulation engine ("flower": one pass over the stored
messages per node, every 0.1 s) with fedrec's (simulations/vce_queue.py, the default); plain and secure,
and the two loops, alternate in every repeat so that a busy spell on a shared machine lands on all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from fedrec.shared.config import load_config
from fedrec.shared.table import format_table
from fedrec.simulations import vce_queue
from fedrec.simulations.bench_secagg import DEFAULT_DATA_DIR, quiet, timed_exchanges
from fedrec.simulations.run import simulate

COLUMNS = [
    ("loop", "message loop", ""),
    ("mode", "sum", ""),
    ("median_s", "median s/round (2..R-1)", ".2f"),
    ("eval_s", "evaluation of all clients s", ".1f"),
    ("mb_up_per_client", "MB up per client per round", ".3f"),
    ("rounds", "every round s", ""),
]


def run(data_dir: Path, num_clients: int, per_round: int, rounds: int, secure: bool) -> dict[str, Any]:
    """One simulation; the seconds of each round, and of the final evaluation's exchanges on their own."""
    config = load_config(None, {
        "data.dataset": "ml-100k", "data.data_dir": str(data_dir), "federated.num_clients": num_clients,
        "federated.clients_per_round": per_round, "federated.rounds": rounds, "federated.eval_every": rounds,
        "federated.secure": secure, "model.factors": 32, "federated.timeout": 3600.0,
    })
    with timed_exchanges() as exchanges:
        history = simulate(config)["history"]
    seconds = [entry["seconds"] for entry in history]
    return {
        "rounds": seconds,
        "median_s": statistics.median(seconds[1:-1]),
        "eval_s": sum(s for group, s in exchanges.items() if group.startswith(f"{rounds}.eval")),
        "mb_up_per_client": statistics.median(e["bytes_up"] / e["clients"] / 1e6 for e in history[1:-1]),
        "failures": [f for entry in history for f in entry["failures"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--num-clients", type=int, default=943)
    parser.add_argument("--clients-per-round", type=int, default=94)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--loops", nargs="+", choices=["fedrec", "flower"], default=["fedrec"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (round 1 and the last are not timed)")
    quiet()
    from flwr.server.superlink.fleet.vce import vce_api

    flower_loop = vce_api.add_messages_to_queue
    install = vce_queue.install
    start = time.perf_counter()
    runs: list[dict[str, Any]] = []
    settings = [(loop, secure) for loop in args.loops for secure in (False, True)]
    for rep in range(args.repeats):
        for loop, secure in settings if rep % 2 == 0 else settings[::-1]:
            # simulate() installs fedrec's loop; for "flower" it is kept from doing so, and Flower's restored.
            vce_api.add_messages_to_queue = flower_loop
            vce_queue.install = install if loop == "fedrec" else (lambda: False)
            try:
                result = run(args.data_dir, args.num_clients, args.clients_per_round, args.rounds, secure)
            finally:
                vce_queue.install = install
            result.update(loop=loop, mode="secure" if secure else "plain", repeat=rep + 1)
            runs.append(result)
            print(f"repeat {rep + 1} {loop} {result['mode']}: {result['median_s']:.2f} s/round, evaluation "
                  f"{result['eval_s']:.1f} s {[round(s, 2) for s in result['rounds']]}", file=sys.stderr, flush=True)
    rows = []
    for loop, secure in settings:
        mine = [r for r in runs if r["loop"] == loop and r["mode"] == ("secure" if secure else "plain")]
        rows.append({"loop": loop, "mode": mine[0]["mode"], "median_s": statistics.median(r["median_s"] for r in mine),
                     "eval_s": statistics.median(r["eval_s"] for r in mine),
                     "mb_up_per_client": mine[0]["mb_up_per_client"],
                     "rounds": "; ".join(" ".join(f"{s:.1f}" for s in r["rounds"]) for r in mine)})
    print(f"ML-100K, {args.num_clients} clients (one per user), {args.clients_per_round} sampled a round, k = 32, "
          f"{args.rounds} rounds, evaluation of all clients after the last; medians over {args.repeats} repeat(s)")
    print(format_table(rows, COLUMNS, markdown=True))
    for loop in args.loops:
        plain, secure = (next(r for r in rows if r["loop"] == loop and r["mode"] == m) for m in ("plain", "secure"))
        print(f"{loop} loop: secure/plain per steady round {secure['median_s'] / plain['median_s']:.2f}")
    print(f"total benchmark time {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=2))
    return 1 if any(r["failures"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
