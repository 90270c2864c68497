"""Federated implicit feedback (Federated Collaborative Filtering, Ammad-ud-din et al. 2019) without Flower.

Each round a client solves its users' factors exactly against the received item factors (they never leave
it) and sends the users' part of the item gradient, dense over the whole catalogue (every item is a
confidence-1 negative of every user); the server adds reg Y to the secure sum and steps the items. With
`federated.update = "als"` it sends instead the users' part of every item's normal equations, and the server
solves the items exactly: with every client in the sum, a round is one epoch of centralised ALS. The
vector layouts, summed like the explicit model's:

- `stats` (once per run): [training positives, test positives, users with a test positive, per-item
  training positives]: the items the model knows and the evaluation's denominators;
- `train`: the item-gradient part (n_items x k, row-major); with `als`, [X^T X upper triangle (T values,
  T = k(k+1)/2), then per item: alpha sum x_u x_u^T upper triangle (T) and (1 + alpha) sum x_u (k)];
- `evaluate`: [NDCG, precision, recall, average-precision sums at k] and, only with `eval.coverage`,
  per-item recommendation counts.
"""

from __future__ import annotations

import numpy as np

from fedrec.shared import metrics, mf, wrmf
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.positives import positives
from fedrec.shared.federated import ClientData, Stats
from fedrec.shared.optim import Optimizer, lr_factor
from fedrec.shared.train_implicit import init_items, ranking_sums

STATS_SCALARS = ("train_n", "test_n", "ranked_users")
EVAL_SCALARS = ("ndcg", "precision", "recall", "map")


def stats_length(n_items: int) -> int:
    return len(STATS_SCALARS) + n_items


def train_length(n_items: int, factors: int, update: str = "gradient") -> int:
    if update == "als":
        return wrmf.triangle_size(factors) + n_items * (wrmf.triangle_size(factors) + factors)
    return n_items * factors


def eval_length(n_items: int, coverage: bool = False) -> int:
    return len(EVAL_SCALARS) + (n_items if coverage else 0)


def stats_from_total(total: np.ndarray) -> Stats:
    """The run's public denominators from the summed statistics (counts are exact integers in the sum)."""
    scalars = dict(zip(STATS_SCALARS, np.rint(total[: len(STATS_SCALARS)])))
    return Stats(0.0, np.rint(total[len(STATS_SCALARS):]), float(scalars["test_n"]), float(scalars["ranked_users"]))


class ImplicitClientTrainer:
    """A client's side: its positives; its users' factors are solved afresh each round, so nothing is kept."""

    def __init__(self, data: ClientData, config: FedrecConfig):
        threshold = config.data.positive_threshold
        self.config = config
        self.train_pos, self.test_pos = positives(data.train, threshold), positives(data.test, threshold)
        t = self.train_pos
        self.matrix = wrmf.interaction_matrix(t.users, t.items, t.n_users, t.n_items)

    def solve_users(self, y: np.ndarray) -> np.ndarray:
        model = self.config.model
        return wrmf.solve_rows(self.matrix, y, model.reg, model.alpha)

    def stats(self) -> np.ndarray:
        counts = np.bincount(self.train_pos.items, minlength=self.train_pos.n_items)
        ranked = np.unique(self.test_pos.users).size
        return np.concatenate([[len(self.train_pos), len(self.test_pos), ranked], counts]).astype(np.float64)

    def train(self, item: mf.ItemSide) -> np.ndarray:
        y = np.asarray(item.q, dtype=np.float64)
        x = self.solve_users(y)
        alpha = self.config.model.alpha
        if self.config.federated.update == "als":
            gram, item_grams, rhs = wrmf.item_normal_sums(self.matrix, x, alpha)
            return np.concatenate([gram, np.hstack([item_grams, rhs]).ravel()])
        return wrmf.item_gradient_data(self.matrix, x, y, alpha).ravel()

    def evaluate(self, item: mf.ItemSide, item_known: np.ndarray) -> np.ndarray:
        y = np.asarray(item.q, dtype=np.float64)
        sums, recommended = ranking_sums(self.solve_users(y), y, self.train_pos, self.test_pos, item_known,
                                         self.config.eval.top_k)
        scalars = [sums[key] for key in EVAL_SCALARS]
        return np.concatenate([scalars, recommended if self.config.eval.coverage else []]).astype(np.float64)


class ImplicitServerModel:
    """The server's side: the item factors and the server optimizer, stepped on the summed gradient + reg Y
    (or, with `als`, the items solved from the summed normal equations; the optimizer then stays unused)."""

    def __init__(self, n_items: int, config: FedrecConfig, mu: float = 0.0):
        self.n_items, self.factors, self.reg = n_items, config.model.factors, config.model.reg
        self.update = config.federated.update
        self.item = mf.ItemSide(init_items(n_items, config.model), np.zeros(n_items), 0.0)
        fed = config.federated  # the implicit item side is all factors: server_factor_lr is its rate when set
        self.optimizer = Optimizer(fed.server_optimizer, fed.server_factor_lr or fed.server_lr)
        self.schedule, self.rounds = fed.server_lr_schedule, fed.rounds

    def apply(self, total: np.ndarray, stats: Stats, share: float = 1.0) -> dict[str, float]:
        """With every client in the sum this is the exact WRMF item gradient (or ALS item step); with a share
        of them, their part is scaled up to estimate the whole (the regulariser is the server's own, never
        scaled)."""
        if self.update == "als":
            size, k = wrmf.triangle_size(self.factors), self.factors
            parts = total[: train_length(self.n_items, k, "als")] / max(share, 1e-12)
            per_item = parts[size:].reshape(self.n_items, size + k)
            solved = wrmf.solve_from_normal_sums(parts[:size], per_item[:, :size], per_item[:, size:], self.reg)
            # An item whose every liker sat this round out (sampling, a dropout) has no positive in the sum, and
            # its solve would be 0: it keeps its factors instead, until a round hears from its likers.
            unheard = (stats.item_counts > 0) & ~per_item[:, :size].any(axis=1)
            self.item.q[:] = np.where(unheard[:, None], self.item.q, solved)
            return {}
        gradient = total[: self.n_items * self.factors].reshape(self.n_items, self.factors) / max(share, 1e-12)
        scale = lr_factor(self.schedule, self.optimizer.steps + 1, self.rounds)
        self.optimizer.step({"q": self.item.q}, {"q": gradient + self.reg * self.item.q}, scale)
        return {}


def finalize_eval(total: np.ndarray, k: int, stats: Stats, share: float = 1.0) -> dict[str, float]:
    """Ranking metrics from a summed evaluation vector, over the run's users with a test positive (scaled by
    the share of clients in the sum when some are missing: an estimate, flagged by the caller)."""
    ranking = dict(zip(EVAL_SCALARS, total[: len(EVAL_SCALARS)])) | {"users": stats.ranked_users * share}
    recommended = total[len(EVAL_SCALARS):] if total.size > len(EVAL_SCALARS) else None
    return {**metrics.finalize_ranking(ranking, recommended, k), "n_test": int(stats.test_n)}
