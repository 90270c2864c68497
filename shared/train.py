"""Centralised training of the biased MF on pooled ratings, and its evaluation: the baseline of fedrec."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedrec.shared import metrics, mf
from fedrec.shared.config import EvalConfig, ModelConfig, TrainConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import ConfigError
from fedrec.shared.optim import Optimizer

USER_STREAM, ITEM_STREAM = 1, 2  # SeedSequence keys: user and item factors draw from independent streams


def init_rng(seed: int, stream: int, *extra: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, *extra]))


@dataclass
class MFModel:
    """A fitted model: both sides plus what it saw in training (to fall back on unknown users and items)."""

    user: mf.UserSide
    item: mf.ItemSide
    user_counts: np.ndarray
    item_counts: np.ndarray
    rating_min: float
    rating_max: float

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return mf.predict(
            self.user, self.item, users, items,
            self.user_counts > 0, self.item_counts > 0, self.rating_min, self.rating_max,
        )


def fit(
    train: Ratings,
    model_config: ModelConfig,
    train_config: TrainConfig,
    init: tuple[mf.UserSide, mf.ItemSide] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    item_features: np.ndarray | None = None,
) -> MFModel:
    """Full-batch training: each epoch is one step of the optimizer on the whole training loss. With
    `model.item_features` the item factors are `item_features` (n_items x factors) and never change."""
    fixed = model_config.item_features is not None
    if fixed and (item_features is None or item_features.shape != (train.n_items, model_config.factors)):
        raise ConfigError(f"model.item_features needs its {train.n_items} x {model_config.factors} feature matrix "
                          "(fedrec.shared.data.item_features.features_for)")
    data = mf.RatingData(train.users, train.items, train.values, train.n_users, train.n_items)
    if init is None:
        mu = float(train.values.mean())
        user = mf.init_user_side(train.n_users, model_config.factors, model_config.init_std, init_rng(model_config.seed, USER_STREAM))
        item = mf.init_item_side(train.n_items, model_config.factors, model_config.init_std, mu, init_rng(model_config.seed, ITEM_STREAM))
    else:
        user, item = init
    if fixed:
        item.q[:] = item_features
    user_opt = Optimizer(train_config.optimizer, train_config.lr)
    item_opt = Optimizer(train_config.optimizer, train_config.lr)
    for epoch in range(train_config.epochs):
        _, sse, user_grads, item_grads = mf.loss_and_gradients(data, user, item, model_config.reg, model_config.bias_reg)
        user_opt.step(user.arrays(), user_grads)
        item_opt.step(item.arrays(), {"bi": item_grads["bi"]} if fixed else item_grads)
        if on_epoch is not None:
            on_epoch(epoch + 1, float(np.sqrt(sse / max(len(data), 1))))
    return MFModel(user, item, data.user_counts, data.item_counts, train.rating_min, train.rating_max)


def evaluate(model: MFModel, train: Ratings, test: Ratings, config: EvalConfig) -> dict[str, float]:
    """RMSE, MAE, top-k ranking metrics and coverage of `model` on `test`."""
    errors = metrics.error_sums(model.predict(test.users, test.items), test.values)
    ranking, recommended = metrics.ranking_sums(
        model.user, model.item, train.users, train.items, test.users, test.items, test.values,
        candidate_items=model.item_counts > 0, k=config.top_k, relevant_threshold=config.relevant_threshold,
    )
    return metrics.finalize(errors, ranking, recommended, config.top_k)


def fit_and_evaluate(
    train: Ratings, test: Ratings, model_config: ModelConfig, train_config: TrainConfig, eval_config: EvalConfig,
    item_features: np.ndarray | None = None,
) -> dict[str, float]:
    """Fit, time the fit alone, and evaluate."""
    start = time.perf_counter()
    model = fit(train, model_config, train_config, item_features=item_features)
    fit_seconds = time.perf_counter() - start
    return {**evaluate(model, train, test, eval_config), "fit_seconds": fit_seconds}


def global_mean_reference(train: Ratings, test: Ratings, eval_config: EvalConfig) -> dict[str, float]:
    """Predict the training mean for every rating (no scores, so its ranking metrics are zero)."""
    errors = metrics.error_sums(np.full(len(test), train.values.mean()), test.values)
    empty = dict.fromkeys(metrics.RANKING_SUM_KEYS, 0.0)
    return metrics.finalize(errors, empty, np.zeros(train.n_items), eval_config.top_k)
