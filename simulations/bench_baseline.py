"""Benchmark: fedrec's centralised MF baseline against Surprise's SVD on the same MovieLens train/test split.

Both models see the very same split (fedrec's loader and its random 80/20 split, seed 42). Repeats are
interleaved (fedrec, Surprise, Surprise, fedrec, ...) with a different model seed each time, so that drift in
machine load hits both sides alike, after one untimed warm-up fit of each. Only the fit is timed.
Surprise (scikit-surprise) is optional.

    python -m simulations.bench_baseline [--data-dir DIR] [--repeats 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import FedrecError
from fedrec.shared.table import format_table
from fedrec.shared.train import evaluate, fit

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "movielens"
DATASETS = ("ml-100k", "ml-latest-small")
WARMUP_SEED = 1_000_003  # distinct from the timed seeds 0..repeats-1

COLUMNS = [
    ("dataset", "dataset", ""),
    ("n_train", "train", ""),
    ("n_test", "test", ""),
    ("fedrec_fit_s", "fedrec fit s", ".3f"),
    ("surprise_fit_s", "Surprise SVD fit s", ".3f"),
    ("fit_ratio", "fedrec/Surprise", ".2f"),
    ("fedrec_rmse", "fedrec RMSE", ".4f"),
    ("surprise_rmse", "Surprise RMSE", ".4f"),
    ("fedrec_mae", "fedrec MAE", ".4f"),
    ("surprise_mae", "Surprise MAE", ".4f"),
    ("fedrec_ndcg@10", "fedrec NDCG@10", ".4f"),
]


def _import_surprise() -> Any | None:
    try:
        import surprise
    except ImportError:
        print(
            "bench_baseline: scikit-surprise is not installed, so only fedrec is measured. "
            "Install it with `pip install scikit-surprise` (or `pip install -e .[bench]`).",
            file=sys.stderr,
        )
        return None
    return surprise


def _write_tsv(ratings: Ratings, path: Path) -> None:
    users = ratings.user_ids[ratings.users]
    items = ratings.item_ids[ratings.items]
    values = np.char.mod("%.10g", ratings.values)
    path.write_text("".join(f"{u}\t{i}\t{r}\n" for u, i, r in zip(users, items, values)), encoding="utf-8")


class SurpriseRunner:
    """Surprise's default SVD on fedrec's train split, evaluated on fedrec's test split."""

    def __init__(self, surprise: Any, train: Ratings, test: Ratings, workdir: Path):
        train_file, test_file = workdir / "train.tsv", workdir / "test.tsv"
        _write_tsv(train, train_file)
        _write_tsv(test, test_file)
        reader = surprise.Reader(line_format="user item rating", sep="\t", rating_scale=(train.rating_min, train.rating_max))
        data = surprise.Dataset.load_from_folds([(str(train_file), str(test_file))], reader)
        self.trainset, self.testset = next(surprise.model_selection.PredefinedKFold().split(data))
        if self.trainset.n_ratings != len(train) or len(self.testset) != len(test):
            raise RuntimeError("Surprise read a different number of ratings than fedrec's split holds")
        self.surprise = surprise

    def run(self, seed: int) -> dict[str, float]:
        algo = self.surprise.SVD(random_state=seed)  # default settings otherwise
        start = time.perf_counter()
        algo.fit(self.trainset)
        fit_seconds = time.perf_counter() - start
        predictions = algo.test(self.testset)
        errors = np.array([p.est - p.r_ui for p in predictions])
        return {"fit_seconds": fit_seconds, "rmse": float(np.sqrt(np.mean(errors**2))), "mae": float(np.abs(errors).mean())}


def run_fedrec(train: Ratings, test: Ratings, config, seed: int) -> dict[str, float]:
    model_config = config.model.model_copy(update={"seed": seed})
    start = time.perf_counter()
    model = fit(train, model_config, config.train)
    fit_seconds = time.perf_counter() - start
    return {**evaluate(model, train, test, config.eval), "fit_seconds": fit_seconds}


def bench_dataset(name: str, data_dir: Path, repeats: int, surprise: Any | None) -> dict[str, Any]:
    config = load_config(None, {"data.dataset": name, "data.data_dir": str(data_dir)})
    train, test = load_train_test(config)
    runs: dict[str, list[dict[str, float]]] = {"fedrec": [], "surprise": []}
    with tempfile.TemporaryDirectory(prefix="fedrec-bench-") as workdir:
        runner = SurpriseRunner(surprise, train, test, Path(workdir)) if surprise is not None else None
        # One untimed warm-up fit of each, so first-call costs (imports, caches, page faults) are not measured.
        run_fedrec(train, test, config, seed=WARMUP_SEED)
        if runner is not None:
            runner.run(seed=WARMUP_SEED)
        for repeat in range(repeats):
            order = ["fedrec", "surprise"] if repeat % 2 == 0 else ["surprise", "fedrec"]
            for side in order:
                if side == "fedrec":
                    runs["fedrec"].append(run_fedrec(train, test, config, seed=repeat))
                elif runner is not None:
                    runs["surprise"].append(runner.run(seed=repeat))
            print(f"{name}: repeat {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)

    def median(side: str, key: str) -> float | None:
        values = [run[key] for run in runs[side]]
        return statistics.median(values) if values else None

    row: dict[str, Any] = {
        "dataset": name,
        "n_train": len(train),
        "n_test": len(test),
        "fedrec_fit_s": median("fedrec", "fit_seconds"),
        "surprise_fit_s": median("surprise", "fit_seconds"),
        "fedrec_rmse": median("fedrec", "rmse"),
        "surprise_rmse": median("surprise", "rmse"),
        "fedrec_mae": median("fedrec", "mae"),
        "surprise_mae": median("surprise", "mae"),
        "fedrec_ndcg@10": median("fedrec", f"ndcg@{config.eval.top_k}"),
    }
    row["fit_ratio"] = row["fedrec_fit_s"] / row["surprise_fit_s"] if row["surprise_fit_s"] else None
    return {"summary": row, "runs": runs, "fedrec_config": config.model_dump(mode="json")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"MovieLens folder (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME")
    parser.add_argument("--repeats", type=int, default=5, help="fits per model and dataset (default 5)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write summaries and every run as JSON")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    surprise = _import_surprise()
    try:
        results = [bench_dataset(name, args.data_dir, args.repeats, surprise) for name in args.datasets]
    except FedrecError as exc:
        print(f"bench_baseline: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"\nMedian of {args.repeats} interleaved fits per model; same random 80/20 split (seed 42) for both; "
          f"fit time only. fedrec: defaults of shared.config; Surprise: SVD() defaults.\n")
    print(format_table([r["summary"] for r in results], COLUMNS, markdown=True))
    if args.json is not None:
        atomic.write_json(args.json, {
            "repeats": args.repeats,
            "surprise_version": getattr(surprise, "__version__", None),
            "numpy_version": np.__version__,
            "results": results,
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
