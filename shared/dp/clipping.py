"""Per-user L2 clipping: the unit of privacy is the user, so a client clips each user's contribution, then sums.

All functions are vectorised over ratings (numpy / scipy.sparse); none loops over users or ratings.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fedrec.shared.dp.errors import DPError


def clip_factors(norms: np.ndarray, clip: float) -> np.ndarray:
    """min(1, clip / norm) per user (1 for a zero norm)."""
    if not (np.isfinite(clip) and clip > 0):
        raise DPError(f"clip norm must be a positive number, got {clip}")
    norms = np.asarray(norms, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(norms))
    if bad.size:  # a NaN/inf contribution would otherwise be scaled by NaN and poison the whole sum
        raise DPError(f"user {int(bad[0])}'s contribution is not finite ({bad.size} such users); nothing was summed")
    with np.errstate(over="ignore"):  # clip / tiny is inf for an empty contribution: its factor is 1
        return np.minimum(1.0, clip / np.maximum(norms, np.finfo(np.float64).tiny))


def clip_and_sum(contributions, clip: float) -> np.ndarray:
    """Sum over rows (users) of a users x coordinates matrix (dense or scipy.sparse), each row clipped to L2 <= clip."""
    if sp.issparse(contributions):
        rows = sp.csr_matrix(contributions, dtype=np.float64)
        norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
        return np.asarray(rows.T @ clip_factors(norms, clip)).ravel()
    rows = np.asarray(contributions, dtype=np.float64)
    if rows.ndim != 2:
        raise DPError(f"contributions must be a users x coordinates matrix, got shape {rows.shape}")
    return clip_factors(np.linalg.norm(rows, axis=1), clip) @ rows


def clip_scatter_sum(owners: np.ndarray, targets: np.ndarray, rows: np.ndarray, clip: float,
                     n_owners: int, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of entry rows into output rows `targets`, every owner's (user's) entries jointly clipped to L2 <= clip.

    Entry e belongs to user owners[e] and adds rows[e] (width w) to output row targets[e]; a user's
    contribution is the n_targets x w matrix of its entries, and its Frobenius norm is clipped. Returns
    (n_targets x w sum, per-owner norms before clipping).
    """
    owners = np.asarray(owners, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    if not (owners.shape == targets.shape == rows.shape[:1]):
        raise DPError(f"owners {owners.shape}, targets {targets.shape} and rows {rows.shape} do not line up")
    for name, index, limit in (("owner", owners, n_owners), ("target", targets, n_targets)):
        if index.size and (index.min() < 0 or index.max() >= limit):
            raise DPError(f"{name} index out of range [0, {limit}): {int(index.min())}..{int(index.max())}")
    # Entries of one user on one target add up before the norm is taken: merge duplicates first.
    keys, inverse = np.unique(owners * n_targets + targets, return_inverse=True)
    merged = sp.csr_matrix((np.ones(len(owners)), (inverse.ravel(), np.arange(len(owners)))),
                           shape=(len(keys), len(owners))) @ rows
    norms = np.sqrt(np.bincount(keys // n_targets, weights=np.einsum("ew,ew->e", merged, merged), minlength=n_owners))
    weights = clip_factors(norms, clip)[keys // n_targets]
    scatter = sp.csr_matrix((weights, (keys % n_targets, np.arange(len(keys)))), shape=(n_targets, len(keys)))
    return np.asarray(scatter @ merged), norms


def item_gradient_rows(users, items, errors, p, q, bi, reg: float, bias_reg: float) -> np.ndarray:
    """Per-rating item-side gradient rows [reg q_i - e_ui p_u, bias_reg b_i - e_ui] (the terms of mf's item gradient)."""
    e = np.asarray(errors, dtype=np.float64)[:, None]
    grad_q = reg * q[items].astype(np.float64) - e * p[users]
    grad_bi = bias_reg * bi[items].astype(np.float64)[:, None] - e
    return np.hstack([grad_q, grad_bi])


def split_clips(clip: float, factor_share: float | None) -> tuple[float, float]:
    """(factor part clip, bias part clip) of a split training clip: their squares add up to clip^2."""
    if factor_share is None or not 0 < factor_share < 1:
        raise DPError(f"factor_share must be in (0, 1), got {factor_share}")
    return clip * np.sqrt(factor_share), clip * np.sqrt(1.0 - factor_share)


def clipped_item_gradient(users, items, errors, p, q, reg: float, clip: float, bi=None, bias_reg: float = 0.0,
                          n_users: int | None = None, factor_share: float | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item-side gradient sum (q part n_items x k, b_i part n_items) with each user's contribution clipped to `clip`.

    users/items/errors are per rating (errors e = r - r(u,i), as in fedrec.shared.mf.residuals); p is the
    user factor matrix indexed by `users`, q and bi the item side. Unclipped (clip = inf is refused; use a huge
    clip) it equals mf.loss_and_gradients' item gradient. Also returns the per-user norms before clipping.
    With `factor_share` s (and k > 0), a user's q part is clipped to clip * sqrt(s) and its b_i part, on its own,
    to clip * sqrt(1 - s): the whole still has norm <= clip (so the accounting is unchanged), but a fixed
    share of it, hence of the signal-to-noise ratio, goes to each part instead of wherever the norm happens to be.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n_items, k = q.shape
    bi = np.zeros(n_items) if bi is None else bi
    n_users = int(users.max(initial=-1) + 1) if n_users is None else n_users
    rows = item_gradient_rows(users, items, errors, p, q, bi, reg, bias_reg)
    if factor_share is None or k == 0:  # biases only: nothing to split, the bias part keeps the whole clip
        total, norms = clip_scatter_sum(users, items, rows, clip, n_users, n_items)
        return total[:, :k], total[:, k], norms
    factor_clip, bias_clip = split_clips(clip, factor_share)
    total_q, norms_q = clip_scatter_sum(users, items, rows[:, :k], factor_clip, n_users, n_items)
    total_b, norms_b = clip_scatter_sum(users, items, rows[:, k:], bias_clip, n_users, n_items)
    return total_q, total_b[:, 0], np.hypot(norms_q, norms_b)
