"""Federated implicit feedback (Federated Collaborative Filtering, Ammad-ud-din et al. 2019) without Flower.

Each round a client solves its users' factors exactly against the received item factors (they never leave
it) and sends the users' part of the item gradient, dense over the whole catalogue (every item is a
confidence-1 negative of every user); the server adds reg Y to the secure sum and steps the items. The
vector layouts, summed like the explicit model's:

- `stats` (once per run): [training positives, test positives, users with a test positive, per-item
  training positives]: the items the model knows and the evaluation's denominators;
- `train`: the item-gradient part (n_items x k, row-major);
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


def train_length(n_items: int, factors: int) -> int:
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
        return wrmf.item_gradient_data(self.matrix, x, y, self.config.model.alpha).ravel()

    def evaluate(self, item: mf.ItemSide, item_known: np.ndarray) -> np.ndarray:
        y = np.asarray(item.q, dtype=np.float64)
        sums, recommended = ranking_sums(self.solve_users(y), y, self.train_pos, self.test_pos, item_known,
                                         self.config.eval.top_k)
        scalars = [sums[key] for key in EVAL_SCALARS]
        return np.concatenate([scalars, recommended if self.config.eval.coverage else []]).astype(np.float64)


class ImplicitServerModel:
    """The server's side: the item factors and the server optimizer, stepped on the summed gradient + reg Y."""

    def __init__(self, n_items: int, config: FedrecConfig, mu: float = 0.0):
        self.n_items, self.factors, self.reg = n_items, config.model.factors, config.model.reg
        self.item = mf.ItemSide(init_items(n_items, config.model), np.zeros(n_items), 0.0)
        fed = config.federated  # the implicit item side is all factors: server_factor_lr is its rate when set
        self.optimizer = Optimizer(fed.server_optimizer, fed.server_factor_lr or fed.server_lr)
        self.schedule, self.rounds = fed.server_lr_schedule, fed.rounds

    def apply(self, total: np.ndarray, stats: Stats, share: float = 1.0) -> dict[str, float]:
        """With every client in the sum this is the exact WRMF item gradient; with a share of them, their
        part is scaled up to estimate the whole (the regulariser is the server's own, never scaled)."""
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
