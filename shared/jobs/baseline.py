"""`fedrec baseline`: the centralised MF on pooled data, beside the global-mean and biases-only references."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedrec.shared import atomic, cli
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.positives import check_positives
from fedrec.shared.table import format_table
from fedrec.shared.data.item_features import features_for
from fedrec.shared.train import fit_and_evaluate, global_mean_reference
from fedrec.shared.train_implicit import fit_and_evaluate_implicit, popularity_reference

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
IMPLICIT_COLUMNS = [
    ("name", "model", ""),
    ("precision@10", "P@10", ".4f"),
    ("recall@10", "R@10", ".4f"),
    ("ndcg@10", "NDCG@10", ".4f"),
    ("map@10", "MAP@10", ".4f"),
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
    group.add_argument("--implicit-solver", dest="train.implicit_solver", choices=["als", "cg", "gradient"],
                       help="implicit feedback: alternating exact solves (default), alternating conjugate-gradient "
                            "steps (cg, --cg-steps per row and epoch), or the federated item step")
    group.add_argument("--cg-steps", dest="train.cg_steps", type=int, metavar="N")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = cli.config_from_args(args)
    train, test = load_train_test(config)
    print(f"{len(train)} training and {len(test)} test ratings, {train.n_users} users, {train.n_items} items",
          file=sys.stderr)
    if config.data.feedback == "implicit":
        threshold = config.data.positive_threshold
        check_positives(train, threshold)
        result = fit_and_evaluate_implicit(train, test, threshold, config.model, config.train, config.eval)
        popular = popularity_reference(train, test, threshold, config.eval)
        references = {"popularity": popular}
        rows = [{"name": "popularity", **popular},
                {"name": f"WRMF {config.train.implicit_solver} (k={config.model.factors})", **result}]
        table_columns = IMPLICIT_COLUMNS
    else:
        result = fit_and_evaluate(train, test, config.model, config.train, config.eval,
                                  features_for(config, train.item_ids))
        biases_only = config.model.model_copy(update={"factors": 0, "item_features": None})
        biases = fit_and_evaluate(train, test, biases_only, config.train, config.eval)
        mean = global_mean_reference(train, test, config.eval)
        references = {"global_mean": mean, "biases_only": biases}
        rows = [{"name": "global mean", **mean}, {"name": "biases only", **biases},
                {"name": f"MF (k={config.model.factors})", **result}]
        table_columns = COLUMNS
    k = config.eval.top_k  # COLUMNS name the default @10; show the configured list length instead
    columns = [(key.replace("@10", f"@{k}"), header.replace("@10", f"@{k}"), fmt) for key, header, fmt in table_columns]
    print(format_table(rows, columns))
    if args.json is not None:
        atomic.write_json(args.json, {
            **result,
            "n_train": len(train),
            "n_test": len(test),
            "references": references,
            "config": config.model_dump(mode="json"),
        })
    return 0
