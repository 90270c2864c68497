"""Benchmark: CPU seconds per steady round of the real ClientApps and server, in one process, plain vs secure.

Run: python -m simulations.bench_round_cpu [--sizes 10 100] [--repeats 2]. The same code as a simulation
(run_federation, build_client_app, every client's state in its Context) on the in-process grid, so the time
is fedrec's own work, without Ray or Flower's engine, whose per-message cost dilutes secure-vs-plain ratios
in `bench_secagg`. CPU time (process_time) rather than wall time, because this machine is shared: it is
what a round costs whatever else runs. Plain and secure runs alternate; the ratio is the median of each
repeat's ratio. Rounds 2..R-1 are timed (round 1 of a secure run carries the key setup, round R the final
evaluation). Synthetic data of ML-100K size, k = 32, every client every round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from fedrec.server.federation import run_federation
from fedrec.server.inprocess import InProcessGrid
from fedrec.shared.config import load_config
from fedrec.shared.table import format_table


def run(n: int, rounds: int, secure: bool, factors: int) -> dict:
    config = load_config(None, {"federated.num_clients": n, "federated.rounds": rounds, "federated.secure": secure,
                                "federated.eval_every": rounds + 1, "model.factors": factors})
    marks = [time.process_time()]
    result = run_federation(InProcessGrid(config, n, keep_messages=False), config, config.synthetic.n_items,
                            on_round=lambda entry: marks.append(time.process_time()))
    cpu = [after - before for before, after in zip(marks, marks[1:])]
    return {"cpu_s": cpu, "median_s": statistics.median(cpu[1:-1]), "rmse": result["rmse"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], metavar="N")
    parser.add_argument("--rounds", type=int, default=6, help="rounds per run; 2..R-1 are timed (default 6)")
    parser.add_argument("--repeats", type=int, default=2, help="plain/secure pairs per size, alternating (default 2)")
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (round 1 and the last are not timed)")
    rows, runs = [], []
    for n in args.sizes:
        pairs = []
        for rep in range(args.repeats):
            order = (False, True) if rep % 2 == 0 else (True, False)
            pair = {secure: run(n, args.rounds, secure, args.factors) for secure in order}
            if not abs(pair[True]["rmse"] - pair[False]["rmse"]) <= 1e-6:  # the secure sum must be the plain sum
                raise SystemExit(f"secure and plain runs disagree at {n} clients: {pair[True]['rmse']} vs {pair[False]['rmse']}")
            pairs.append(pair)
            runs += [{"n": n, "repeat": rep + 1, "mode": "secure" if s else "plain", **pair[s]} for s in (False, True)]
        plain = statistics.median(p[False]["median_s"] for p in pairs)
        secure = statistics.median(p[True]["median_s"] for p in pairs)
        ratios = [p[True]["median_s"] / p[False]["median_s"] for p in pairs]
        rows.append({"n": n, "plain": plain, "secure": secure, "ratio": statistics.median(ratios),
                     "each": " ".join(f"{r:.2f}" for r in ratios), "per_client_extra_ms": 1000 * (secure - plain) / n})
    print(format_table(rows, [("n", "N", ""), ("plain", "plain CPU s/round", ".3f"), ("secure", "secure CPU s/round", ".3f"),
                              ("ratio", "secure/plain (median)", ".2f"), ("each", "each repeat", ""),
                              ("per_client_extra_ms", "secure extra ms per client", ".1f")], markdown=True))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
