"""`python -m simulations.secagg_plan [--sizes ...]`: the secure-aggregation numbers for given cohort sizes.

For each cohort size: colluders and dropouts withstood, the mask graph's edge probability and mean degree,
the surviving neighbours required before unmasking, the committee and its threshold, and the log2 of the
bound on the honest survivors' graph being disconnected (the README's threat-model table).
"""

from __future__ import annotations

import argparse
import math

from fedrec.shared.secagg import analysis
from fedrec.shared.secagg.params import SecAggParams
from fedrec.shared.table import format_table


def rows(params: SecAggParams, sizes: list[int]) -> list[dict]:
    out = []
    for n in sizes:
        plan = params.plan(n)
        honest = n - plan.colluders - plan.max_dropouts
        bound = analysis.log_disconnect_bound(honest, plan.edge_probability) / math.log(2)
        out.append({"n": n, "colluders": plan.colluders, "dropouts": plan.max_dropouts,
                    "p": plan.edge_probability, "degree": plan.edge_probability * (n - 1),
                    "min_neighbours": plan.min_neighbours, "committee": plan.committee_size,
                    "threshold": plan.threshold, "log2_disconnect": "complete" if plan.edge_probability >= 1 else f"{bound:.1f}"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.secagg_plan", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10, 30, 100, 300, 1000, 6040])
    parser.add_argument("--dropout-bound", type=float, default=SecAggParams.dropout_bound)
    parser.add_argument("--colluder-fraction", type=float, default=SecAggParams.colluder_fraction)
    parser.add_argument("--security-bits", type=int, default=SecAggParams.security_bits)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    params = SecAggParams(dropout_bound=args.dropout_bound, colluder_fraction=args.colluder_fraction,
                          security_bits=args.security_bits)
    columns = [("n", "cohort", ""), ("colluders", "colluders", ""), ("dropouts", "dropouts", ""),
               ("p", "edge prob.", ".3f"), ("degree", "mean degree", ".1f"),
               ("min_neighbours", "surviving nbrs needed", ""), ("committee", "committee", ""),
               ("threshold", "threshold", ""), ("log2_disconnect", "log2 P(honest split)", "")]
    print(format_table(rows(params, args.sizes), columns, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
