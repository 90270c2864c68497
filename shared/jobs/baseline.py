"""`fedrec baseline`: the centralised MF on pooled data, beside the global-mean and biases-only references."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedrec.shared import atomic, cli
from fedrec.shared.data.load import load_train_test
from fedrec.shared.table import format_table
from fedrec.shared.train import fit_and_evaluate, global_mean_reference

COLUMNS = [
    ("name", "model", ""),
    ("rmse", "RMSE", ".4f"),
    ("mae", "MAE", ".4f"),
    ("precision@10", "P@10", ".4f"),
    ("recall@10", "R@10", ".4f"),
    ("ndcg@10", "NDCG@10", ".4f"),
    ("coverage", "coverage", ".3f"),
    ("fit_seconds", "fit s", ".2f"),
]


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    cli.add_data_options(parser)
    cli.add_model_options(parser)
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", dest="train.epochs", type=int, metavar="N")
    group.add_argument("--lr", dest="train.lr", type=float, metavar="X")
    group.add_argument("--optimizer", dest="train.optimizer", choices=["adam", "sgd", "adagrad"])
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = cli.config_from_args(args)
    train, test = load_train_test(config)
    print(f"{len(train)} training and {len(test)} test ratings, {train.n_users} users, {train.n_items} items",
          file=sys.stderr)
    result = fit_and_evaluate(train, test, config.model, config.train, config.eval)
    biases = fit_and_evaluate(train, test, config.model.model_copy(update={"factors": 0}), config.train, config.eval)
    mean = global_mean_reference(train, test, config.eval)
    rows = [{"name": "global mean", **mean}, {"name": "biases only", **biases},
            {"name": f"MF (k={config.model.factors})", **result}]
    k = config.eval.top_k  # COLUMNS name the default @10; show the configured list length instead
    columns = [(key.replace("@10", f"@{k}"), header.replace("@10", f"@{k}"), fmt) for key, header, fmt in COLUMNS]
    print(format_table(rows, columns))
    if args.json is not None:
        atomic.write_json(args.json, {
            **result,
            "n_train": len(train),
            "n_test": len(test),
            "references": {"global_mean": mean, "biases_only": biases},
            "config": config.model_dump(mode="json"),
        })
    return 0
