"""Top-N lists over unseen items, with the two kinds of exploration the closed loop offers."""

from __future__ import annotations

import numpy as np


def top_n(scores: np.ndarray, seen: np.ndarray, n: int) -> np.ndarray:
    """Each row's n highest-scoring unseen items, best first (users x n); ties go to the lower item index."""
    masked = np.where(seen, -np.inf, scores)
    top = np.argpartition(-masked, n - 1, axis=1)[:, :n]
    order = np.lexsort((top, -np.take_along_axis(masked, top, 1)), axis=1)
    return np.take_along_axis(top, order, 1)


def epsilon_greedy(lists: np.ndarray, seen: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """Each slot replaced, with probability epsilon, by a random unseen item not already in the list."""
    n = lists.shape[1]
    blocked = seen.copy()
    np.put_along_axis(blocked, lists, True, 1)
    randoms = top_n(rng.random(seen.shape), blocked, n)  # n distinct random unseen items outside the list
    return np.where(rng.random(lists.shape) < epsilon, randoms, lists)


def thompson_users(x: np.ndarray, precision: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """User factors drawn from N(x_u, scale^2 A_u^-1), A_u the WRMF system (posterior precision) of each user:
    with A = L L^T, x + scale L^-T z has exactly that covariance."""
    chol = np.linalg.cholesky(precision)
    z = rng.standard_normal(x.shape)
    return x + scale * np.linalg.solve(np.swapaxes(chol, 1, 2), z[..., None])[..., 0]
