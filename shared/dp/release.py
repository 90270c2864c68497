"""A DP release end to end: a client's clipped, rounded and noised item gradient, and the server's checked decode."""

from __future__ import annotations

import numpy as np

from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.dp.clipping import clipped_item_gradient
from fedrec.shared.dp.errors import DPError
from fedrec.shared.dp.skellam import encode_noised
from fedrec.shared.secagg.fixedpoint import decode


def noised_item_gradient(users, items, errors, p, q, bi, reg: float, bias_reg: float, plan: NoisePlan,
                         rng: np.random.Generator | None = None, n_users: int | None = None) -> tuple[np.ndarray, dict]:
    """The client's uint64 vector [q gradient (n_items x k, row-major), b_i gradient], per-user clipped to plan.clip,
    randomly rounded to 2^-frac_bits and carrying its Skellam share; mask it and send it.

    rng: seeded only in tests (default: fresh OS randomness). Also returns {users, users_clipped} for logs.
    """
    grad_q, grad_bi, norms = clipped_item_gradient(users, items, errors, p, q, reg, plan.clip, bi, bias_reg, n_users)
    vector = np.concatenate([grad_q.ravel(), grad_bi])
    if vector.size != plan.dimension:
        raise DPError(f"the item gradient has {vector.size} coordinates but the noise plan was made for {plan.dimension}")
    active = norms > 0
    return encode_noised(vector, plan.client_mu, rng, plan.frac_bits), {
        "users": int(active.sum()), "users_clipped": int((norms > plan.clip).sum())}


def decode_sum(total: np.ndarray, plan: NoisePlan, n_survivors: int) -> np.ndarray:
    """The server's float sum of the survivors' vectors, refused when too few survived for the announced noise."""
    plan.check_round(n_survivors)
    return decode(total, plan.frac_bits)
