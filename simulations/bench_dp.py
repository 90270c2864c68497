"""Benchmark: test RMSE against the DP budget, full model and biases-only, same split, same settings.

Run: python -m simulations.bench_dp [--data-dir DIR] [--epsilons 1 2 4 8 16] [--num-clients 10] [--rounds 60]

Each run trains in-process with the real ClientApps and secure aggregation (server/inprocess.py), every
client every round, evaluation only after the last round (each evaluation is a release that costs budget).
Nothing is tuned: both models use fedrec's default settings; "none" is the same run without DP.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fedrec.shared import atomic
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.table import format_table

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"


def one_run(epsilon: float | None, factors: int, args: argparse.Namespace) -> dict:
    from fedrec.server.federation import run_federation
    from fedrec.server.inprocess import InProcessGrid

    overrides = {"data.dataset": args.dataset, "data.data_dir": args.data_dir, "federated.num_clients": args.num_clients,
                 "federated.rounds": args.rounds, "federated.eval_every": args.rounds, "model.factors": factors,
                 "dp.epsilon": epsilon, "dp.delta": args.delta}
    config = load_config(None, overrides)
    train, _ = load_train_test(config)
    start = time.perf_counter()
    result = run_federation(InProcessGrid(config, args.num_clients), config, train.n_items, n_users=train.n_users)
    dp = result.get("dp") or {}
    return {"epsilon": "none" if epsilon is None else epsilon, "factors": factors, "rmse": result["rmse"],
            "mae": result["mae"], "noise_multiplier": dp.get("noise_multiplier"), "delta": dp.get("delta"),
            "epsilon_spent": dp.get("epsilon_spent"), "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.bench_dp", description=__doc__)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--factors", type=int, nargs="+", default=[32, 0])
    parser.add_argument("--num-clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--delta", type=float, default=None, help="default 1 / number of users")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for epsilon in [*args.epsilons, None]:
        for factors in args.factors:
            rows.append(one_run(epsilon, factors, args))
            print(f"epsilon {rows[-1]['epsilon']}, k = {factors}: RMSE {rows[-1]['rmse']:.4f} "
                  f"({rows[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    baseline = {r["factors"]: r["rmse"] for r in rows if r["epsilon"] == "none"}
    for r in rows:
        r["vs_nonprivate"] = r["rmse"] / baseline[r["factors"]] - 1
    columns = [("epsilon", "epsilon", ""), ("factors", "k", ""), ("rmse", "test RMSE", ".4f"),
               ("vs_nonprivate", "vs same model without DP", "+.1%"), ("mae", "MAE", ".4f"),
               ("noise_multiplier", "noise multiplier", ".3f"), ("delta", "delta", ".2g"),
               ("epsilon_spent", "epsilon spent", ".3f"), ("seconds", "s", ".0f")]
    print(format_table(rows, columns, markdown=True))
    if args.json:
        atomic.write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
