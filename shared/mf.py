"""Biased matrix factorisation: a user side and an item side, with vectorised loss, gradients and predictions.

r(u,i) = mu + b_u + b_i + p_u . q_i. The user side (p, b_u) never has to leave the holder of the user's
ratings; the item side (q, b_i, mu) is what a federation shares. The loss is a sum over ratings,

    L = 1/2 sum_(u,i) [ (r_ui - r(u,i))^2 + reg (|p_u|^2 + |q_i|^2) + bias_reg (b_u^2 + b_i^2) ],

so that the loss (and the item gradient) of a set of users is exactly the sum of its parts: the federated
item gradient is the sum of the clients' item gradients, with nothing left for the server to add.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

FLOAT = np.float32


@dataclass
class UserSide:
    """Per-user parameters: factors p (n_users x k) and biases b_u."""

    p: np.ndarray
    bu: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {"p": self.p, "bu": self.bu}


@dataclass
class ItemSide:
    """Per-item parameters q (n_items x k) and b_i, and the global mean mu (fixed, not trained)."""

    q: np.ndarray
    bi: np.ndarray
    mu: float

    def arrays(self) -> dict[str, np.ndarray]:
        return {"q": self.q, "bi": self.bi}

    def copy(self) -> ItemSide:
        return ItemSide(self.q.copy(), self.bi.copy(), self.mu)


def init_user_side(n_users: int, factors: int, init_std: float, rng: np.random.Generator) -> UserSide:
    return UserSide(
        p=(rng.standard_normal((n_users, factors)) * init_std).astype(FLOAT),
        bu=np.zeros(n_users, dtype=FLOAT),
    )


def init_item_side(n_items: int, factors: int, init_std: float, mu: float, rng: np.random.Generator) -> ItemSide:
    return ItemSide(
        q=(rng.standard_normal((n_items, factors)) * init_std).astype(FLOAT),
        bi=np.zeros(n_items, dtype=FLOAT),
        mu=float(mu),
    )


RESIDUAL_CHUNK = 32_768
"""Ratings per block when computing residuals: the gathered factor rows (block x k) stay in cache, where
gathering all of them at once allocates two (ratings x k) arrays (2.6 GB for 10M ratings at k = 32) and was
ten times slower at that size."""


class RatingData:
    """Training ratings laid out once for fast gradients: one sparse matrix by user, and its transpose by item."""

    def __init__(self, users: np.ndarray, items: np.ndarray, values: np.ndarray, n_users: int, n_items: int):
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        keys = users * max(n_items, 1) + items
        if keys.size and np.all(keys[1:] >= keys[:-1]):
            order = None  # already by user, then item (as the synthetic data and its splits come)
        else:
            order = np.argsort(keys, kind="stable")  # the same order as lexsort((items, users)), in one key
        del keys
        pick = (lambda a: a) if order is None else (lambda a: a[order])
        self.users = np.ascontiguousarray(pick(users), dtype=np.int64)
        self.items = np.ascontiguousarray(pick(items), dtype=np.int64)
        self.values = np.ascontiguousarray(pick(np.asarray(values)), dtype=np.float64)
        self.n_users, self.n_items = n_users, n_items
        self.user_counts = np.bincount(self.users, minlength=n_users)
        self.item_counts = np.bincount(self.items, minlength=n_items)
        # Residuals are written into this matrix's data array each step; sparse products then do the
        # scatter-adds of the gradients in C, about ten times faster than numpy's add.at or reduceat. Its
        # transpose shares that data array, so the item-side product needs no reordered copy of it; both
        # products add each row's terms in user order, as a matrix by item built by a stable sort would.
        self._by_user = sp.csr_matrix(
            (np.zeros(len(self.users), FLOAT), self.items, np.concatenate([[0], np.cumsum(self.user_counts)])),
            shape=(n_users, n_items),
        )

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def centred(self, mu: float) -> np.ndarray:
        """r - mu for every rating, kept for the next call with the same mu (every epoch of a fit)."""
        if getattr(self, "_centred_mu", None) != mu:
            self._centred, self._centred_mu = self.values - mu, mu
        return self._centred

    def residual_products(self, residuals: np.ndarray, user: UserSide, item: ItemSide) -> tuple[np.ndarray, np.ndarray]:
        """(sum_i e_ui q_i per user, sum_u e_ui p_u per item) for per-rating residuals e."""
        self._by_user.data = residuals
        return self._by_user @ item.q, self._by_user.T @ user.p


def residuals(data: RatingData, user: UserSide, item: ItemSide) -> np.ndarray:
    """e = r - r(u,i) for every training rating (unclipped, as in the loss), a block of ratings at a time."""
    out = np.empty(len(data), dtype=FLOAT)
    centred = data.centred(item.mu)
    for start in range(0, len(data), RESIDUAL_CHUNK):
        block = slice(start, start + RESIDUAL_CHUNK)
        users, items = data.users[block], data.items[block]
        # np.take gathers rows several times faster than fancy indexing, with the same values.
        dots = np.einsum("nk,nk->n", np.take(user.p, users, axis=0), np.take(item.q, items, axis=0))
        out[block] = centred[block] - np.take(user.bu, users) - np.take(item.bi, items) - dots
    return out


def loss_and_gradients(
    data: RatingData, user: UserSide, item: ItemSide, reg: float, bias_reg: float
) -> tuple[float, float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(loss, sum of squared errors, user-side gradients, item-side gradients) of the loss above."""
    e = residuals(data, user, item)
    eq, ep = data.residual_products(e, user, item)
    nu = data.user_counts.astype(FLOAT)
    ni = data.item_counts.astype(FLOAT)
    user_grads = {
        "p": reg * nu[:, None] * user.p - eq,
        "bu": bias_reg * nu * user.bu - np.bincount(data.users, e, data.n_users).astype(FLOAT),
    }
    item_grads = {
        "q": reg * ni[:, None] * item.q - ep,
        "bi": bias_reg * ni * item.bi - np.bincount(data.items, e, data.n_items).astype(FLOAT),
    }
    sse = float(np.dot(e, e))
    penalty = reg * (float(nu @ np.einsum("uk,uk->u", user.p, user.p)) + float(ni @ np.einsum("ik,ik->i", item.q, item.q)))
    penalty += bias_reg * (float(nu @ (user.bu * user.bu)) + float(ni @ (item.bi * item.bi)))
    return 0.5 * (sse + penalty), sse, user_grads, item_grads


def predict(
    user: UserSide,
    item: ItemSide,
    users: np.ndarray,
    items: np.ndarray,
    user_known: np.ndarray,
    item_known: np.ndarray,
    rating_min: float,
    rating_max: float,
) -> np.ndarray:
    """Clipped predictions; a user or item without training ratings contributes no learned term."""
    uk = user_known[users]
    ik = item_known[items]
    dots = np.einsum("nk,nk->n", user.p[users], item.q[items]).astype(np.float64)
    estimate = item.mu + np.where(uk, user.bu[users], 0.0) + np.where(ik, item.bi[items], 0.0)
    estimate += np.where(uk & ik, dots, 0.0)
    return np.clip(estimate, rating_min, rating_max)


def score_all_items(user: UserSide, item: ItemSide, users: np.ndarray) -> np.ndarray:
    """Ranking scores of every item for each of `users` (len(users) x n_items); the user bias is omitted."""
    return user.p[users] @ item.q.T + item.bi[None, :]
