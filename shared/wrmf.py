"""Implicit-feedback MF (WRMF, Hu, Koren and Volinsky 2008): loss, exact row solves and item gradients, vectorised.

Every user-item pair takes part. A positive (user u interacted with item i) has preference 1 and confidence
c = 1 + alpha; every other pair has preference 0 and confidence 1:

    L = 1/2 sum_(u,i) c_ui (p_ui - x_u . y_i)^2 + reg/2 (|X|^2 + |Y|^2).

The sum over all pairs never materialises: its preference-0, confidence-1 part is sum_i y_i^T (X^T X) y_i,
and the positives correct it. For fixed items, each user's x_u is a ridge solve (and vice versa):

    x_u = (Y^T Y + alpha sum_(i in I_u) y_i y_i^T + reg I)^-1 (1 + alpha) sum_(i in I_u) y_i,

and the item gradient at the solved users is Y (X^T X) + E^T X + reg Y, with E_ui = alpha s_ui - (1 + alpha)
on positives (s = x_u . y_i). The data part is a sum over users, so over clients: the federated item gradient
(Ammad-ud-din et al. 2019) is the secure sum of the clients' parts, dense over the catalogue, plus reg Y.
So are the item solve's normal equations (X^T X, and per item alpha sum x_u x_u^T and (1 + alpha) sum x_u over
its positive users): summed over clients they give the server the exact ALS item step (`item_normal_sums`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp

GATHER_CHUNK_VALUES = 4_000_000
"""Largest block of gathered factors (rows x padded positives x k) `gram_rows` builds at once: about 32 MB."""
MIN_RIDGE = 1e-9
"""Added to reg so that a solve stays well posed when reg is 0."""


def interaction_matrix(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """The 0/1 positives matrix (users x items); a pair given twice is still one positive."""
    matrix = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _padded_blocks(positives: sp.csr_matrix, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, column index (rows x cap)) for the rows with positives, bucketed by their count rounded up to a
    power of two `cap` and cut into blocks of bounded size: a loop over ~log2(max count) buckets, never over
    rows or positives. Padding slots point one past the last column, at the zero row `_with_zero_row` adds."""
    counts = np.diff(positives.indptr)
    caps = np.left_shift(1, np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64))
    for cap in np.unique(caps[counts > 0]):
        bucket = np.flatnonzero((caps == cap) & (counts > 0))
        per_block = max(1, GATHER_CHUNK_VALUES // (int(cap) * k))
        slots = np.arange(cap)
        for start in range(0, bucket.size, per_block):
            rows = bucket[start : start + per_block]
            valid = slots < counts[rows][:, None]
            where = np.where(valid, positives.indptr[rows][:, None] + slots, 0)
            yield rows, np.where(valid, positives.indices[where], positives.shape[1])


def _with_zero_row(factors: np.ndarray) -> np.ndarray:
    """The factors and one zero row after them, so that gathering padding slots gives zeros without a
    masking pass (a plain gather is several times faster than gather-then-multiply)."""
    return np.vstack([factors, np.zeros((1, factors.shape[1]))])


def gram_rows(positives: sp.csr_matrix, factors: np.ndarray) -> np.ndarray:
    """sum_(j positive in row r) f_j f_j^T for every row r: (rows x k x k), one batched product per block."""
    n_rows, k = positives.shape[0], factors.shape[1]
    grams = np.zeros((n_rows, k, k))
    padded = _with_zero_row(factors)
    for rows, columns in _padded_blocks(positives, k):
        gathered = padded[columns]  # (rows, cap, k), padding rows zero
        grams[rows] = np.matmul(gathered.transpose(0, 2, 1), gathered)
    return grams


def solve_rows(positives: sp.csr_matrix, factors: np.ndarray, reg: float, alpha: float,
               return_systems: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The exact minimiser of L over every row's vector for fixed `factors` (the other side); with
    `return_systems`, also each row's system matrix A (its posterior precision, for Thompson sampling).

    A_r = B + alpha F_r^T F_r with B = F^T F + reg I shared by all rows. A row with fewer positives than k
    is solved through the Woodbury identity, x = B^-1 b - W^T (I / alpha + W F_r^T)^-1 W b with W = F_r B^-1
    (a cap x cap system instead of k x k: the long tail of rows with few positives costs little); the
    others by a batched dense solve. Both are exact up to floating point."""
    n_rows, k = positives.shape[0], factors.shape[1]
    base = factors.T @ factors
    base[np.arange(k), np.arange(k)] += reg + MIN_RIDGE
    rhs = (1.0 + alpha) * np.asarray(positives @ factors)
    if return_systems:
        systems = gram_rows(positives, factors)
        systems *= alpha
        systems += base
        return np.linalg.solve(systems, rhs[..., None])[..., 0], systems
    base_inverse_factors = _with_zero_row(np.linalg.solve(base, factors.T).T)  # row j: B^-1 f_j (B is symmetric)
    padded = _with_zero_row(factors)
    solved = np.zeros((n_rows, k))  # a row without positives has b = 0, so x = 0
    for rows, columns in _padded_blocks(positives, k):
        f = padded[columns]  # (rows, cap, k), padding rows zero
        b = rhs[rows]
        if columns.shape[1] < k:
            w = base_inverse_factors[columns]
            small = np.matmul(w, f.transpose(0, 2, 1))
            small[:, np.arange(columns.shape[1]), np.arange(columns.shape[1])] += 1.0 / alpha
            correction = np.linalg.solve(small, np.matmul(w, b[..., None]))
            solved[rows] = (np.linalg.solve(base, b.T).T - np.matmul(w.transpose(0, 2, 1), correction)[..., 0])
        else:
            systems = alpha * np.matmul(f.transpose(0, 2, 1), f) + base
            solved[rows] = np.linalg.solve(systems, b[..., None])[..., 0]
    return solved


def solve_rows_cg(positives: sp.csr_matrix, factors: np.ndarray, reg: float, alpha: float, start: np.ndarray,
                  steps: int) -> np.ndarray:
    """`steps` conjugate-gradient steps on every row's system A_r x = b_r of `solve_rows`, from `start`
    (Takacs, Pilaszy and Tikk 2011; the `implicit` package's default solver, there 3 steps). An approximate
    solve, cheaper than the exact one: A_r v is B v + alpha sum_(j in r) (f_j . v) f_j, one pass over the
    positives (no k x k system per row is ever built), and all rows step together. It computes in the
    factors' dtype (float32 factors halve the memory traffic, which is most of its cost)."""
    k, dtype = factors.shape[1], factors.dtype
    base = factors.T @ factors
    base[np.arange(k), np.arange(k)] += reg + MIN_RIDGE
    rows = np.repeat(np.arange(positives.shape[0]), np.diff(positives.indptr))
    gathered = factors[positives.indices]  # nnz x k, the same for every step
    weights = positives.astype(dtype, copy=True)  # 0/1 now; its values are rewritten in place at every product
    rhs = (1.0 + alpha) * (weights @ factors)

    def times_systems(v: np.ndarray) -> np.ndarray:
        weights.data[:] = np.einsum("nk,nk->n", np.take(v, rows, axis=0), gathered)
        return v @ base + alpha * (weights @ factors)

    x = np.array(start, dtype=dtype)
    residual = rhs - times_systems(x)
    direction = residual.copy()
    norm = np.einsum("nk,nk->n", residual, residual)
    for _ in range(steps):
        moved = times_systems(direction)
        curvature = np.einsum("nk,nk->n", direction, moved)
        # A row already solved (zero residual, e.g. no positives from a zero start) takes no step.
        step = np.divide(norm, curvature, out=np.zeros_like(norm), where=norm > 1e-20)
        x += step[:, None] * direction
        residual -= step[:, None] * moved
        new_norm = np.einsum("nk,nk->n", residual, residual)
        direction = residual + np.divide(new_norm, norm, out=np.zeros_like(norm), where=norm > 1e-20)[:, None] * direction
        norm = new_norm
    return x


def positive_scores(positives: sp.csr_matrix, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x_u . y_i for every positive, in the matrix's data order."""
    rows = np.repeat(np.arange(positives.shape[0]), np.diff(positives.indptr))
    return np.einsum("nk,nk->n", x[rows], y[positives.indices])


def loss(positives: sp.csr_matrix, x: np.ndarray, y: np.ndarray, reg: float, alpha: float) -> float:
    """L above (all pairs, without building them)."""
    s = positive_scores(positives, x, y)
    everything = float(np.sum((x.T @ x) * (y.T @ y)))  # sum over all pairs of s^2
    correction = float(np.sum((1.0 + alpha) * (1.0 - s) ** 2 - s * s))
    return 0.5 * (everything + correction) + 0.5 * reg * (float(np.sum(x * x)) + float(np.sum(y * y)))


def item_gradient_data(positives: sp.csr_matrix, x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """The users' part of dL/dY (without reg Y): Y (X^T X) + E^T X. Dense over every item, because every
    item is a (confidence-1) negative of every user."""
    s = positive_scores(positives, x, y)
    errors = sp.csr_matrix((alpha * s - (1.0 + alpha), positives.indices, positives.indptr), shape=positives.shape)
    return y @ (x.T @ x) + np.asarray(errors.T @ x)


def user_gradient(positives: sp.csr_matrix, x: np.ndarray, y: np.ndarray, reg: float, alpha: float) -> np.ndarray:
    """dL/dX (zero at the exact user solve): X (Y^T Y) + E Y + reg X."""
    s = positive_scores(positives, x, y)
    errors = sp.csr_matrix((alpha * s - (1.0 + alpha), positives.indices, positives.indptr), shape=positives.shape)
    return x @ (y.T @ y) + np.asarray(errors @ y) + reg * x


def triangle_size(k: int) -> int:
    """Values in the upper triangle (diagonal included) of a symmetric k x k matrix."""
    return k * (k + 1) // 2


def item_normal_sums(positives: sp.csr_matrix, x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """These users' parts of the item solve's normal equations: (X^T X upper triangle, per item the upper
    triangle of alpha sum_(u positive on i) x_u x_u^T (n_items x k(k+1)/2), per item (1 + alpha) sum x_u
    (n_items x k)). Each is a sum over users, so the clients' parts add up to the whole federation's.
    One sparse product over the positives, with each user's outer product flattened to its triangle."""
    upper, lower = np.triu_indices(x.shape[1])
    outer = x[:, upper] * x[:, lower]  # users x k(k+1)/2
    by_item = positives.T.tocsr()
    return outer.sum(axis=0), alpha * np.asarray(by_item @ outer), (1.0 + alpha) * np.asarray(by_item @ x)


def solve_from_normal_sums(gram: np.ndarray, item_grams: np.ndarray, rhs: np.ndarray, reg: float) -> np.ndarray:
    """Every item's exact solve from summed normal equations, (X^T X + G_i + reg I) y_i = b_i with the sums of
    `item_normal_sums` (G_i = alpha sum x_u x_u^T, b_i = (1 + alpha) sum x_u, triangles unpacked), as
    `solve_rows` on the items (an item without positives has b_i = 0, so y_i = 0). Blocks bound the memory."""
    k = rhs.shape[1]
    upper, lower = np.triu_indices(k)
    base = np.zeros((k, k))
    base[upper, lower] = base[lower, upper] = gram
    base[np.arange(k), np.arange(k)] += reg + MIN_RIDGE
    solved = np.zeros_like(rhs)
    per_block = max(1, GATHER_CHUNK_VALUES // (k * k))
    for start in range(0, rhs.shape[0], per_block):
        block = slice(start, start + per_block)
        systems = np.broadcast_to(base, (item_grams[block].shape[0], k, k)).copy()
        systems[:, upper, lower] += item_grams[block]
        systems[:, lower, upper] = systems[:, upper, lower]  # mirror: the diagonal is written once above
        solved[block] = np.linalg.solve(systems, rhs[block][..., None])[..., 0]
    return solved
