"""Federated MF without Flower: what a client computes each round and how the server applies the sum.

Everything a client sends is one flat float vector, and the server only ever uses the SUM of those vectors
over clients (so the sum can be computed by secure aggregation). A server that records sums over rounds
with different participants can solve for any value a client sends unchanged each time, so a client sends
only what the server's next step needs, and every value that does not change is sent once:

- `stats` (once per run): [sum of training ratings, training ratings, test ratings, users with a relevant
  test rating, per-item training counts]; gives the global mean, the items the model knows, the item
  counts that normalise `delta` updates, and the denominators of every evaluation;
- `train`: the item-side update (q then b_i) and nothing else;
- `evaluate`: [squared error, absolute error, NDCG/precision/recall sums] and, only with
  `eval.coverage`, per-item recommendation counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedrec.shared import metrics, mf
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.dp.clipping import clip_and_sum, clipped_item_gradient
from fedrec.shared.optim import Optimizer, lr_factor
from fedrec.shared.train import ITEM_STREAM, USER_STREAM, init_rng

STATS_SCALARS = ("rating_sum", "train_n", "test_n", "ranked_users")
EVAL_SCALARS = ("sse", "sae", "ndcg", "precision", "recall")
# Under differential privacy: statistics per user are [mean rating, 1] (bounded without clipping anything; the
# item counts are not released: every catalogue item is trained), and evaluation per user is [squared error,
# absolute error, test ratings]; the ranking sums would drown in noise at any useful budget, so they are not
# released.
DP_STATS_SCALARS = ("mean_sum", "users")
DP_EVAL_SCALARS = ("sse", "sae", "n")


def stats_length(n_items: int) -> int:
    return len(STATS_SCALARS) + n_items


def train_length(n_items: int, factors: int) -> int:
    return n_items * factors + n_items


def released_factors(config: FedrecConfig) -> int:
    """Item-factor columns a train vector carries: none when the item factors are fixed public features
    (`model.item_features`: the server never updates them, so clients send only the item-bias part)."""
    return 0 if config.model.item_features is not None else config.model.factors


def eval_length(n_items: int, coverage: bool = False) -> int:
    return len(EVAL_SCALARS) + (n_items if coverage else 0)


@dataclass(frozen=True)
class Stats:
    """What the one statistics sum tells the server: public denominators for the whole run."""

    mu: float
    item_counts: np.ndarray
    test_n: float
    ranked_users: float

    @classmethod
    def from_total(cls, total: np.ndarray) -> Stats:
        scalars = dict(zip(STATS_SCALARS, total[: len(STATS_SCALARS)]))
        # Counts are integers summed exactly by the secure sum; rounding removes the fixed-point error.
        counts = np.rint(total[len(STATS_SCALARS):])
        return cls(float(scalars["rating_sum"] / max(scalars["train_n"], 1.0)), counts,
                   float(np.rint(scalars["test_n"])), float(np.rint(scalars["ranked_users"])))

    @classmethod
    def from_dp_total(cls, total: np.ndarray, n_items: int) -> Stats:
        """From the noised DP statistics sum: the mean of the users' mean ratings; every item counts as known
        (no counts are released, so `delta` updates are refused under DP)."""
        return cls(float(total[0] / max(total[1], 1.0)), np.ones(n_items), 0.0, 0.0)

    @property
    def known(self) -> np.ndarray:
        """Items with training ratings."""
        return self.item_counts > 0


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

    def stats(self, dp_clip: float | None = None) -> np.ndarray:
        if dp_clip is not None:
            return self._dp_stats(dp_clip)
        train, test = self.data.train, self.data.test
        counts = np.bincount(train.items, minlength=train.n_items)
        ranked = np.unique(test.users[test.values >= self.config.eval.relevant_threshold]).size
        return np.concatenate([[train.values.sum(), len(train), len(test), ranked], counts]).astype(np.float64)

    def _dp_stats(self, clip: float) -> np.ndarray:
        """Per user [mean rating, 1], each row clipped to `clip` (never binding on the rating scale), summed."""
        train = self.data.train
        n = np.bincount(train.users, minlength=train.n_users).astype(np.float64)
        active = n > 0
        means = np.bincount(train.users, train.values, train.n_users)[active] / n[active]
        return clip_and_sum(np.stack([means, np.ones(means.size)], axis=1), clip)

    def train(self, item: mf.ItemSide, dp_clip: float | None = None, factor_share: float | None = None) -> np.ndarray:
        """One round of local work at the received item side; returns the train vector (with `dp_clip`, the
        item gradient with each user's contribution clipped to that L2 norm, split between the factor and the
        bias part by `factor_share` when given)."""
        model, fed = self.config.model, self.config.federated
        fixed = model.item_features is not None  # public item factors: only the item-bias part is sent
        if dp_clip is not None or fed.update == "gradient":
            for _ in range(fed.local_epochs - 1):  # refine the user side against the fixed item side first
                _, _, user_grads, _ = mf.loss_and_gradients(self.ratings, self.user, item, model.reg, model.bias_reg)
                self.optimizer.step(self.user.arrays(), user_grads)
        if dp_clip is not None:
            _, _, user_grads, _ = mf.loss_and_gradients(self.ratings, self.user, item, model.reg, model.bias_reg)
            errors = mf.residuals(self.ratings, self.user, item)
            # With fixed item factors the factor part is not released: the bias part keeps the whole clip.
            p, q = (self.user.p[:, :0], item.q[:, :0]) if fixed else (self.user.p, item.q)
            grad_q, grad_bi, _ = clipped_item_gradient(self.ratings.users, self.ratings.items, errors, p,
                                                       q, model.reg, dp_clip, item.bi, model.bias_reg,
                                                       self.ratings.n_users, factor_share)
            self.optimizer.step(self.user.arrays(), user_grads)
            return np.concatenate([grad_q.ravel(), grad_bi]).astype(np.float64)
        if fed.update == "gradient":
            _, _, user_grads, item_grads = mf.loss_and_gradients(self.ratings, self.user, item, model.reg, model.bias_reg)
            self.optimizer.step(self.user.arrays(), user_grads)
            update = item_grads
            if fixed:
                update = {"q": np.zeros((item.q.shape[0], 0)), "bi": item_grads["bi"]}
        else:
            counts = self.ratings.item_counts.astype(np.float64)
            local = item.copy()
            local_opt = Optimizer(fed.client_optimizer, fed.client_lr)
            for _ in range(fed.local_epochs):
                _, _, user_grads, item_grads = mf.loss_and_gradients(self.ratings, self.user, local, model.reg, model.bias_reg)
                self.optimizer.step(self.user.arrays(), user_grads)
                if fixed:  # the public item factors stay as they are; only the biases move
                    local_opt.step({"bi": local.bi}, {"bi": item_grads["bi"]})
                else:
                    local_opt.step(local.arrays(), item_grads)
            # The count-weighted change: the server divides the sum by the run's item counts (sent once).
            update = {"q": counts[:, None] * (item.q - local.q), "bi": counts * (item.bi - local.bi)}
            if fixed:
                update["q"] = np.zeros((item.q.shape[0], 0))
        return np.concatenate([update["q"].ravel(), update["bi"]]).astype(np.float64)

    def evaluate(self, item: mf.ItemSide, item_known: np.ndarray, dp_clip: float | None = None) -> np.ndarray:
        """Error and ranking sums of this client's held-out ratings under its own user factors."""
        train, test = self.data.train, self.data.test
        user_known = self.ratings.user_counts > 0
        predictions = mf.predict(self.user, item, test.users, test.items, user_known, item_known,
                                 test.rating_min, test.rating_max)
        if dp_clip is not None:  # per user [squared error, absolute error, test ratings], clipped, summed
            diff = predictions.astype(np.float64) - test.values
            per_user = np.stack([np.bincount(test.users, diff * diff, test.n_users),
                                 np.bincount(test.users, np.abs(diff), test.n_users),
                                 np.bincount(test.users, minlength=test.n_users).astype(np.float64)], axis=1)
            return clip_and_sum(per_user, dp_clip)
        errors = metrics.error_sums(predictions, test.values)
        ranking, recommended = metrics.ranking_sums(
            self.user, item, train.users, train.items, test.users, test.items, test.values,
            candidate_items=item_known, k=self.config.eval.top_k, relevant_threshold=self.config.eval.relevant_threshold,
        )
        scalars = [errors["sse"], errors["sae"], ranking["ndcg"], ranking["precision"], ranking["recall"]]
        return np.concatenate([scalars, recommended if self.config.eval.coverage else []]).astype(np.float64)


class ServerModel:
    """The server's side: the item side and the server optimizer, updated from summed client vectors."""

    def __init__(self, n_items: int, config: FedrecConfig, mu: float, item_features: np.ndarray | None = None):
        """`item_features` (n_items x factors): the fixed public item factors `model.item_features` names."""
        model, fed = config.model, config.federated
        self.n_items, self.factors, self.update = n_items, model.factors, fed.update
        self.schedule, self.rounds = fed.server_lr_schedule, fed.rounds
        self.item = mf.init_item_side(n_items, model.factors, model.init_std, mu, init_rng(model.seed, ITEM_STREAM))
        self.fixed = model.item_features is not None
        if self.fixed:
            if item_features is None or item_features.shape != (n_items, model.factors):
                shape = None if item_features is None else item_features.shape
                raise ValueError(f"model.item_features needs a fixed {n_items} x {model.factors} factor matrix, got {shape}")
            self.item.q[:] = item_features
        factor_lr = {"q": fed.server_factor_lr} if fed.server_factor_lr is not None else None
        self.optimizer = Optimizer(fed.server_optimizer, fed.server_lr, key_lrs=factor_lr)

    def apply(self, total: np.ndarray, stats: Stats, share: float = 1.0) -> dict[str, float]:
        """Step the item side with the summed train vector. `share` is the fraction of all clients whose
        vectors are in the sum: in `delta` mode the expected item counts behind it are the run's counts
        times that share (exact when every client takes part, as FedAvg per item)."""
        n, k = self.n_items, 0 if self.fixed else self.factors
        q, bi = total[: n * k].reshape(n, k), total[n * k : n * k + n]
        if self.update == "delta":
            expected = stats.item_counts * share
            weight = np.where(expected > 0, 1.0 / np.maximum(expected, 1e-12), 0.0)
            q, bi = q * weight[:, None], bi * weight
        scale = lr_factor(self.schedule, self.optimizer.steps + 1, self.rounds)
        grads = {"bi": bi.astype(mf.FLOAT)} if self.fixed else {"q": q.astype(mf.FLOAT), "bi": bi.astype(mf.FLOAT)}
        self.optimizer.step(self.item.arrays(), grads, scale)
        return {}


def finalize_eval(total: np.ndarray, k: int, stats: Stats, share: float = 1.0) -> dict[str, float]:
    """Metrics from a summed evaluation vector; the denominators are the run's (from the stats sum), scaled
    by the share of clients in this sum when some are missing (an estimate, flagged by the caller)."""
    scalars = dict(zip(EVAL_SCALARS, total[: len(EVAL_SCALARS)]))
    errors = {"sse": scalars["sse"], "sae": scalars["sae"], "n": stats.test_n * share}
    ranking = {key: scalars[key] for key in ("ndcg", "precision", "recall")} | {"users": stats.ranked_users * share}
    recommended = total[len(EVAL_SCALARS):] if total.size > len(EVAL_SCALARS) else None
    return metrics.finalize(errors, ranking, recommended, k)


def finalize_dp_eval(total: np.ndarray) -> dict[str, float]:
    """RMSE and MAE from a noised DP evaluation sum (its own noised test count is the denominator)."""
    sse, sae, n = (float(v) for v in total[: len(DP_EVAL_SCALARS)])
    n = max(n, 1.0)
    return {"rmse": float(np.sqrt(max(sse, 0.0) / n)), "mae": max(sae, 0.0) / n}
