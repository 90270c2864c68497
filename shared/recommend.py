"""Serving the trained model: top-N for one user with exact explanations, and fold-in of new feedback.

The item side (q, b_i, mu) is fixed. A user's side is the exact minimiser of that user's part of the
training loss (shared/mf.py) against it, a small ridge solve over the user's rated items R:

    x_u = (p_u, b_u) = A^-1 X^T y,   X = [Q_R 1],   y = r_R - mu - b_R,
    A = X^T X + n_u diag(reg, ..., reg, bias_reg)          (n_u = |R|, as the loss counts per rating)

so the score of an item i splits exactly into the model's own terms:

    score(u, i) = mu + b_u + b_i + p_u . q_i,   p_u . q_i = sum_(j in R) w_j(i) y_j,   w_j(i) = [q_i 0]^T A^-1 [q_j 1]

w_j(i) is how alike items i and j are in item-factor space (through the user's own regularised Gram
matrix) and y_j is how much the user liked j beyond its baseline. Each rated item's contribution
w_j(i) y_j is its exact share of the personal term; the parts add up to the score.
Serving with the re-solved user side (rather than the factors the federated optimiser stopped at) is what
makes that split exact; it is also what training converges to for a fixed item side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MIN_RIDGE = 1e-6
"""Ridge floor per rating, so that the solve stays well posed when reg or bias_reg is 0."""

EVENT_SCALE = {"purchase": 1.0, "click": 0.75, "skip": 0.25}
"""Implicit events as ratings: rating_min + fraction x (rating_max - rating_min). On 1..5: purchase 5,
click 4, skip 2. Every event weighs like one explicit rating (the training loss has no per-rating weights)."""


def event_rating(event: str, rating_min: float, rating_max: float) -> float:
    return float(rating_min + EVENT_SCALE[event] * (rating_max - rating_min))


@dataclass(frozen=True)
class ItemModel:
    """The final item side a client keeps, with what serving needs to use it the way training did."""

    q: np.ndarray
    bi: np.ndarray
    mu: float
    item_ids: np.ndarray
    known: np.ndarray
    """Items with training ratings anywhere in the federation (others were never trained: not recommended)."""
    reg: float
    bias_reg: float
    rating_min: float
    rating_max: float
    index_of: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_of", {str(item): k for k, item in enumerate(self.item_ids)})

    @property
    def factors(self) -> int:
        return int(self.q.shape[1])


@dataclass(frozen=True)
class UserFit:
    """One user's rated items, their re-solved side, and the solve's inverse (for explanations)."""

    items: np.ndarray
    values: np.ndarray
    p: np.ndarray
    bu: float
    fit_items: np.ndarray
    """The rated items the solve used (the known ones), and below their residuals y_j."""
    residuals: np.ndarray
    inverse: np.ndarray


def fold_in(model: ItemModel, items: np.ndarray, values: np.ndarray) -> UserFit:
    """Re-solve a user's (p_u, b_u) against the fixed item side from all of the user's ratings."""
    items = np.asarray(items, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    used = model.known[items]
    fit_items = items[used]
    k, n = model.factors, int(used.sum())
    if n == 0:  # cold start with nothing usable yet: the popularity baseline mu + b_i
        return UserFit(items, values, np.zeros(k), 0.0, fit_items, np.zeros(0), np.zeros((k + 1, k + 1)))
    design = np.empty((n, k + 1))
    design[:, :k] = model.q[fit_items]
    design[:, k] = 1.0
    residuals = values[used] - model.mu - model.bi[fit_items]
    ridge = np.full(k + 1, max(model.reg, MIN_RIDGE))
    ridge[k] = max(model.bias_reg, MIN_RIDGE)
    gram = design.T @ design
    gram[np.diag_indices(k + 1)] += n * ridge
    inverse = np.linalg.inv(gram)
    solution = inverse @ (design.T @ residuals)
    return UserFit(items, values, solution[:k], float(solution[k]), fit_items, residuals, inverse)


def scores(model: ItemModel, fit: UserFit) -> np.ndarray:
    """score(u, i) for every item: mu + b_u + b_i + p_u . q_i."""
    return model.mu + fit.bu + model.bi + model.q @ fit.p


def top_n(model: ItemModel, fit: UserFit, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(items, scores) of the n best known items the user has not rated, best first (ties: lower index)."""
    all_scores = scores(model, fit)
    masked = all_scores.copy()
    masked[~model.known] = -np.inf
    masked[fit.items] = -np.inf
    n = min(n, int(model.known.sum()) - int(np.unique(fit.items[model.known[fit.items]]).size))
    if n <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    best = np.argpartition(masked, len(masked) - n)[len(masked) - n:]
    # argpartition leaves ties at the cut arbitrary: take every item scoring at least the n-th, then order.
    tied = np.flatnonzero(masked >= masked[best].min())
    chosen = tied[np.lexsort((tied, -masked[tied]))[:n]]
    return chosen, all_scores[chosen]


def similarities(model: ItemModel, fit: UserFit, items: np.ndarray) -> np.ndarray:
    """(len(items) x len(fit.fit_items)): w_j(i) = [q_i 0]^T A^-1 [q_j 1] for each item i and rated item j."""
    k = model.factors
    if len(fit.fit_items) == 0:
        return np.zeros((len(items), 0))
    targets = np.zeros((len(items), k + 1))
    targets[:, :k] = model.q[items]
    rated = np.ones((len(fit.fit_items), k + 1))
    rated[:, :k] = model.q[fit.fit_items]
    return targets @ fit.inverse @ rated.T


def contributions(model: ItemModel, fit: UserFit, items: np.ndarray) -> np.ndarray:
    """(len(items) x len(fit.fit_items)): rated item j's exact share w_j(i) y_j of p_u . q_i for each item i."""
    return similarities(model, fit, items) * fit.residuals[None, :]


def explain(model: ItemModel, fit: UserFit, items: np.ndarray, reasons: int = 3) -> list[dict]:
    """Per item: the bias parts, the `reasons` rated items that pushed its score most, and the rest summed.

    global_mean + user_bias + item_bias + sum(because_you_rated contributions) + other_rated_items = score;
    each reason's contribution = similarity w_j(i) x liking y_j (the user's rating of j beyond mu + b_j), so
    a disliked item (y_j < 0) pushes up the items unlike it (w_j(i) < 0).
    """
    weights = similarities(model, fit, items)
    parts = weights * fit.residuals[None, :]
    rating_of = dict(zip(fit.items.tolist(), fit.values.tolist()))
    top = np.argsort(-parts, axis=1, kind="stable")[:, :reasons]
    shown = np.take_along_axis(parts, top, axis=1)
    shown_weights = np.take_along_axis(weights, top, axis=1)
    residuals = fit.residuals.tolist()
    rest = parts.sum(axis=1) - shown.sum(axis=1)
    names = model.item_ids[fit.fit_items].tolist()
    rated_items = fit.fit_items.tolist()
    return [
        {
            "global_mean": float(model.mu),
            "user_bias": float(fit.bu),
            "item_bias": float(model.bi[item]),
            "because_you_rated": [{"item": names[j], "your_rating": rating_of[rated_items[j]], "similarity": w,
                                   "liking": residuals[j], "contribution": c}
                                  for j, c, w in zip(top_row.tolist(), shown_row.tolist(), weight_row.tolist())],
            "other_rated_items": float(other),
        }
        for item, top_row, shown_row, weight_row, other in zip(items, top, shown, shown_weights, rest)
    ]


class Recommender:
    """A client's users' ratings over a fixed item side; user sides are solved on first use and on feedback."""

    def __init__(self, model: ItemModel, ratings: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.model = model
        self._ratings = {user: (np.asarray(i, np.int64), np.asarray(v, np.float64)) for user, (i, v) in ratings.items()}
        self._fits: dict[str, UserFit] = {}

    def __contains__(self, user: str) -> bool:
        return user in self._ratings

    @property
    def users(self) -> list[str]:
        return sorted(self._ratings)

    def fit(self, user: str) -> UserFit:
        fit = self._fits.get(user)
        if fit is None:
            # setdefault: a fold-in that finished meanwhile (from newer ratings) is kept, not overwritten.
            fit = self._fits.setdefault(user, fold_in(self.model, *self._ratings[user]))
        return fit

    def recommend(self, user: str, n: int, explain_items: bool = False, reasons: int = 3) -> list[dict]:
        fit = self.fit(user)
        items, item_scores = top_n(self.model, fit, n)
        rows = [{"item": str(self.model.item_ids[i]), "score": float(s)} for i, s in zip(items, item_scores)]
        if explain_items:
            for row, why in zip(rows, explain(self.model, fit, items, reasons)):
                row["explanation"] = why
        return rows

    def add(self, user: str, item: int, rating: float) -> UserFit:
        """Record one rating (replacing an earlier one of the same item) and fold it in at once.

        The new fit is swapped in as one assignment, so a concurrent reader sees the old or the new state.
        """
        items, values = self._ratings.get(user, (np.zeros(0, np.int64), np.zeros(0)))
        keep = items != item
        items, values = np.append(items[keep], item), np.append(values[keep], rating)
        fit = fold_in(self.model, items, values)
        self._ratings[user] = (items, values)
        self._fits[user] = fit
        return fit
