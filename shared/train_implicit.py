"""Centralised implicit-feedback training (WRMF by ALS, or the federated item step) and its ranking evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fedrec.shared import metrics, mf, wrmf
from fedrec.shared.config import EvalConfig, ModelConfig, TrainConfig
from fedrec.shared.data.positives import positives
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.optim import Optimizer
from fedrec.shared.train import ITEM_STREAM, init_rng


def init_items(n_items: int, model: ModelConfig) -> np.ndarray:
    """The initial item factors: the same seeded draw as the explicit model's, in float64 (the solves are
    exact, and the server and a centralised run must start from the same numbers)."""
    return mf.init_item_side(n_items, model.factors, model.init_std, 0.0,
                             init_rng(model.seed, ITEM_STREAM)).q.astype(np.float64)


@dataclass
class ImplicitModel:
    """A fitted WRMF: user factors x (solved exactly at the final items), item factors y, and positives per item."""

    x: np.ndarray
    y: np.ndarray
    item_counts: np.ndarray

    def sides(self) -> tuple[mf.UserSide, mf.ItemSide]:
        """As the explicit model's sides without biases, so the shared ranking code scores x . y."""
        return (mf.UserSide(self.x, np.zeros(self.x.shape[0])),
                mf.ItemSide(self.y, np.zeros(self.y.shape[0]), 0.0))


def fit_implicit(train: Ratings, positive_threshold: float | None, model: ModelConfig, training: TrainConfig,
                 init_y: np.ndarray | None = None, on_epoch: Callable[[int, float], None] | None = None,
                 optimizer: Optimizer | None = None) -> ImplicitModel:
    """`training.epochs` epochs of ALS (users then items solved exactly, or by `cg_steps` conjugate-gradient
    steps from where the last epoch left them), or of the federated step (users solved exactly, one
    optimizer step on the item gradient). The returned users are solved at the final items.
    `on_epoch(epoch, loss per positive)`."""
    pos = positives(train, positive_threshold)
    r = wrmf.interaction_matrix(pos.users, pos.items, pos.n_users, pos.n_items)
    r_items = r.T.tocsr()
    y = init_items(pos.n_items, model) if init_y is None else np.array(init_y, dtype=np.float64)
    optimizer = optimizer or Optimizer(training.optimizer, training.lr)
    x = np.zeros((pos.n_users, model.factors))  # where conjugate gradients start the first epoch's users
    if training.implicit_solver == "cg":  # in float32, as `implicit`: an approximate solve needs no more
        x, y = x.astype(np.float32), y.astype(np.float32)
        r32, r_items32 = r.astype(np.float32), r_items.astype(np.float32)
    for epoch in range(training.epochs):
        if training.implicit_solver == "cg":
            x = wrmf.solve_rows_cg(r32, y, model.reg, model.alpha, x, training.cg_steps)
            y = wrmf.solve_rows_cg(r_items32, x, model.reg, model.alpha, y, training.cg_steps)
        elif training.implicit_solver == "als":
            x = wrmf.solve_rows(r, y, model.reg, model.alpha)
            y = wrmf.solve_rows(r_items, x, model.reg, model.alpha)
        else:
            x = wrmf.solve_rows(r, y, model.reg, model.alpha)
            gradient = wrmf.item_gradient_data(r, x, y, model.alpha) + model.reg * y
            optimizer.step({"q": y}, {"q": gradient})
        if on_epoch is not None:
            on_epoch(epoch + 1, wrmf.loss(r, x, y, model.reg, model.alpha) / max(len(pos), 1))
    # The users that go with the final items (with `cg`, by its steps from the last epoch's users).
    if training.implicit_solver == "cg":
        x = wrmf.solve_rows_cg(r32, y, model.reg, model.alpha, x, training.cg_steps).astype(np.float64)
        y = y.astype(np.float64)
    else:
        x = wrmf.solve_rows(r, y, model.reg, model.alpha)
    return ImplicitModel(x, y, np.bincount(pos.items, minlength=pos.n_items))


def ranking_sums(x: np.ndarray, y: np.ndarray, train: Ratings, test: Ratings, candidates: np.ndarray,
                 k: int) -> tuple[dict[str, float], np.ndarray]:
    """Ranking sums on held-out positives (every one relevant) for positive tables `train` and `test`."""
    user, item = (mf.UserSide(x, np.zeros(x.shape[0])), mf.ItemSide(y, np.zeros(y.shape[0]), 0.0))
    return metrics.ranking_sums(user, item, train.users, train.items, test.users, test.items, test.values,
                                candidate_items=candidates, k=k, relevant_threshold=0.5)


def evaluate_implicit(model: ImplicitModel, train: Ratings, test: Ratings, positive_threshold: float | None,
                      config: EvalConfig) -> dict[str, float]:
    """Precision, recall, NDCG and MAP at k, and catalogue coverage, on the held-out positives of `test`:
    candidates are the items with training positives minus the user's own."""
    pos_train, pos_test = positives(train, positive_threshold), positives(test, positive_threshold)
    sums, recommended = ranking_sums(model.x, model.y, pos_train, pos_test, model.item_counts > 0, config.top_k)
    return {**metrics.finalize_ranking(sums, recommended, config.top_k), "n_test": len(pos_test)}


def fit_and_evaluate_implicit(train: Ratings, test: Ratings, positive_threshold: float | None, model: ModelConfig,
                              training: TrainConfig, config: EvalConfig) -> dict[str, float]:
    """Fit, time the fit alone, and evaluate."""
    start = time.perf_counter()
    fitted = fit_implicit(train, positive_threshold, model, training)
    fit_seconds = time.perf_counter() - start
    return {**evaluate_implicit(fitted, train, test, positive_threshold, config), "fit_seconds": fit_seconds}


def popularity_reference(train: Ratings, test: Ratings, positive_threshold: float | None,
                         config: EvalConfig) -> dict[str, float]:
    """Recommend the items with the most training positives to everyone (the usual floor of a ranker)."""
    pos_train = positives(train, positive_threshold)
    counts = np.bincount(pos_train.items, minlength=pos_train.n_items).astype(np.float64)
    model = ImplicitModel(np.ones((train.n_users, 1)), counts[:, None] / max(counts.max(), 1.0), counts)
    return evaluate_implicit(model, train, test, positive_threshold, config)
