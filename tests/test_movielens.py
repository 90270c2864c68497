"""Tests on the real MovieLens files in the shared folder (skipped when they are absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_dataset, load_train_test
from fedrec.shared.train import evaluate, fit

pytestmark = pytest.mark.movielens


@pytest.mark.parametrize(
    "name, n_ratings, n_users, n_items, scale",
    [("ml-100k", 100_000, 943, 1682, (1.0, 5.0)), ("ml-latest-small", 100_836, 610, 9724, (0.5, 5.0))],
)
def test_load(movielens_dir: Path, name: str, n_ratings: int, n_users: int, n_items: int, scale) -> None:
    if not (movielens_dir / name).is_dir():
        pytest.skip(f"{movielens_dir / name} is absent")
    ratings = load_dataset(load_config(None, {"data.dataset": name, "data.data_dir": str(movielens_dir)}))
    assert (len(ratings), ratings.n_users, ratings.n_items) == (n_ratings, n_users, n_items)
    assert (ratings.rating_min, ratings.rating_max) == scale
    assert ratings.values.min() == scale[0] and ratings.values.max() == scale[1]
    assert ratings.timestamps is not None
    assert np.all(ratings.user_counts() >= 20)  # every MovieLens user rated at least 20 movies


def test_default_baseline_on_ml_100k(movielens_dir: Path) -> None:
    if not (movielens_dir / "ml-100k").is_dir():
        pytest.skip(f"{movielens_dir / 'ml-100k'} is absent")
    config = load_config(None, {"data.dataset": "ml-100k", "data.data_dir": str(movielens_dir)})
    assert (config.data.split, config.data.test_fraction, config.data.seed) == ("random", 0.2, 42)
    train, test = load_train_test(config)
    assert (len(train), len(test)) == (80_000, 20_000)
    result = evaluate(fit(train, config.model, config.train), train, test, config.eval)
    assert result["rmse"] <= 0.925
    global_mean = np.sqrt(np.mean((train.values.mean() - test.values) ** 2))
    assert result["rmse"] < global_mean - 0.15
    assert result["ndcg@10"] > 0.02
