"""Federated MF without Flower: what a client computes each round and how the server applies the sum.

Everything a client sends is one flat float vector, and the server only ever uses the SUM of those vectors
over clients (so the sum can be computed by secure aggregation). Three tasks produce vectors:

- `stats`: [sum of ratings, number of ratings, per-item rating counts]; gives the global mean and the
  items the model knows;
- `train`: [item-side update (q then b_i), per-item counts used, squared error, ratings used];
- `evaluate`: [squared error, absolute error, count, NDCG/precision/recall sums, ranked users,
  per-item recommendation counts].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrec.shared import metrics, mf
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.optim import Optimizer
from fedrec.shared.train import ITEM_STREAM, USER_STREAM, init_rng

EVAL_SCALARS = ("sse", "sae", "n", "ndcg", "precision", "recall", "users")


def stats_length(n_items: int) -> int:
    return 2 + n_items


def train_length(n_items: int, factors: int) -> int:
    return n_items * factors + n_items + n_items + 2


def eval_length(n_items: int) -> int:
    return len(EVAL_SCALARS) + n_items


@dataclass
class ClientData:
    """One client's private ratings, with its users renumbered 0..n_local-1 (items keep global ids)."""

    train: Ratings
    test: Ratings

    @classmethod
    def from_partition(cls, train: Ratings, test: Ratings, users: np.ndarray) -> ClientData:
        """Keep the ratings of `users` (global indices) and renumber them locally."""
        local = np.full(train.n_users, -1, dtype=np.int64)
        local[users] = np.arange(len(users))
        parts = []
        for ratings in (train, test):
            mine = ratings.subset(local[ratings.users] >= 0)
            parts.append(
                Ratings(local[mine.users], mine.items, mine.values, mine.timestamps,
                        ratings.user_ids[users], ratings.item_ids, ratings.rating_min, ratings.rating_max)
            )
        return cls(*parts)


class ClientTrainer:
    """A client's side of federated MF: its users' parameters and optimizer state never leave it."""

    def __init__(self, data: ClientData, config: FedrecConfig, client_seed: int, state: dict[str, np.ndarray] | None = None):
        self.data = data
        self.config = config
        train = data.train
        self.ratings = mf.RatingData(train.users, train.items, train.values, train.n_users, train.n_items)
        fed = config.federated
        self.optimizer = Optimizer(fed.client_optimizer, fed.client_lr)
        if state is None:
            rng = init_rng(config.model.seed, USER_STREAM, client_seed)
            self.user = mf.init_user_side(train.n_users, config.model.factors, config.model.init_std, rng)
        else:
            self.user = mf.UserSide(state["p"], state["bu"])
            self.optimizer.load_state({key[4:]: value for key, value in state.items() if key.startswith("opt.")})

    def state(self) -> dict[str, np.ndarray]:
        """What the client keeps between rounds (its own persistent state, never sent)."""
        return {**self.user.arrays(), **{f"opt.{key}": value for key, value in self.optimizer.state.items()}}

    def stats(self) -> np.ndarray:
        counts = np.bincount(self.data.train.items, minlength=self.data.train.n_items)
        return np.concatenate([[self.data.train.values.sum(), len(self.data.train)], counts]).astype(np.float64)

    def train(self, item: mf.ItemSide) -> np.ndarray:
        """One round of local work at the received item side; returns the train vector."""
        model, fed = self.config.model, self.config.federated
        counts = self.ratings.item_counts.astype(np.float64)
        if fed.update == "gradient":
            for _ in range(fed.local_epochs - 1):  # refine the user side against the fixed item side first
                _, _, user_grads, _ = mf.loss_and_gradients(self.ratings, self.user, item, model.reg, model.bias_reg)
                self.optimizer.step(self.user.arrays(), user_grads)
            _, sse, user_grads, item_grads = mf.loss_and_gradients(self.ratings, self.user, item, model.reg, model.bias_reg)
            self.optimizer.step(self.user.arrays(), user_grads)
            update = item_grads
        else:
            local = item.copy()
            local_opt = Optimizer(fed.client_optimizer, fed.client_lr)
            for epoch in range(fed.local_epochs):
                _, step_sse, user_grads, item_grads = mf.loss_and_gradients(self.ratings, self.user, local, model.reg, model.bias_reg)
                if epoch == 0:
                    sse = step_sse  # the error of the received model, comparable with gradient mode
                self.optimizer.step(self.user.arrays(), user_grads)
                local_opt.step(local.arrays(), item_grads)
            # The count-weighted change, so that the server's sum divided by the summed counts is FedAvg per item.
            update = {"q": counts[:, None] * (item.q - local.q), "bi": counts * (item.bi - local.bi)}
        return np.concatenate([update["q"].ravel(), update["bi"], counts, [sse, len(self.ratings)]]).astype(np.float64)

    def evaluate(self, item: mf.ItemSide, item_known: np.ndarray) -> np.ndarray:
        """Error and ranking sums of this client's held-out ratings under its own user factors."""
        train, test = self.data.train, self.data.test
        user_known = self.ratings.user_counts > 0
        predictions = mf.predict(self.user, item, test.users, test.items, user_known, item_known,
                                 test.rating_min, test.rating_max)
        errors = metrics.error_sums(predictions, test.values)
        ranking, recommended = metrics.ranking_sums(
            self.user, item, train.users, train.items, test.users, test.items, test.values,
            candidate_items=item_known, k=self.config.eval.top_k, relevant_threshold=self.config.eval.relevant_threshold,
        )
        scalars = [errors["sse"], errors["sae"], errors["n"], ranking["ndcg"], ranking["precision"],
                   ranking["recall"], ranking["users"]]
        return np.concatenate([scalars, recommended]).astype(np.float64)


class ServerModel:
    """The server's side: the item side and the server optimizer, updated from summed client vectors."""

    def __init__(self, n_items: int, config: FedrecConfig, mu: float):
        model, fed = config.model, config.federated
        self.n_items, self.factors, self.update = n_items, model.factors, fed.update
        self.item = mf.init_item_side(n_items, model.factors, model.init_std, mu, init_rng(model.seed, ITEM_STREAM))
        self.optimizer = Optimizer(fed.server_optimizer, fed.server_lr)

    def apply(self, total: np.ndarray) -> dict[str, float]:
        """Step the item side with the summed train vector; returns the round's training RMSE."""
        n, k = self.n_items, self.factors
        q, bi = total[: n * k].reshape(n, k), total[n * k : n * k + n]
        counts, sse, used = total[n * k + n : n * k + 2 * n], total[-2], total[-1]
        if self.update == "delta":
            # Sum of count-weighted changes over the summed counts: the per-item FedAvg step, read as a gradient.
            weight = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
            q, bi = q * weight[:, None], bi * weight
        self.optimizer.step(self.item.arrays(), {"q": q.astype(mf.FLOAT), "bi": bi.astype(mf.FLOAT)})
        return {"train_rmse": float(np.sqrt(sse / max(used, 1.0))), "ratings_used": float(used)}


def mean_and_known_items(total_stats: np.ndarray) -> tuple[float, np.ndarray]:
    """The global mean rating and the mask of items with training ratings, from the summed stats vector."""
    return float(total_stats[0] / max(total_stats[1], 1.0)), total_stats[2:] > 0


def finalize_eval(total: np.ndarray, k: int) -> dict[str, float]:
    scalars = dict(zip(EVAL_SCALARS, total[: len(EVAL_SCALARS)]))
    errors = {key: scalars[key] for key in ("sse", "sae", "n")}
    ranking = {key: scalars[key] for key in metrics.RANKING_SUM_KEYS}
    return metrics.finalize(errors, ranking, total[len(EVAL_SCALARS) :], k)
