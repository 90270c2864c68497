"""A DP release end to end: clients with several users each, their noised vectors summed mod 2^64 and decoded."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.shared import mf
from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.dp.clipping import clipped_item_gradient
from fedrec.shared.dp.errors import DPError
from fedrec.shared.dp.release import decode_sum, noised_item_gradient

N_ITEMS, K, CLIP, REG, BIAS_REG = 200, 4, 0.5, 0.1, 0.01


def client(seed: int, n_users: int = 6):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), 8)
    items = np.concatenate([rng.choice(N_ITEMS, 8, replace=False) for _ in range(n_users)])
    errors = rng.normal(0, 1.5, len(users))
    return users, items, errors, rng.normal(0, 0.5, (n_users, K))


def test_decoded_sum_is_the_clipped_sum_plus_the_calibrated_noise():
    item = mf.init_item_side(N_ITEMS, K, 0.1, 3.5, np.random.default_rng(0))
    n_clients, dropped = 12, 2
    plan = NoisePlan(1.3, CLIP, N_ITEMS * (K + 1), n_clients, max_dropouts=2, max_colluders=1, frac_bits=24)
    vectors, expected, clipped = [], np.zeros(plan.dimension), 0
    for c in range(n_clients):
        users, items, errors, p = client(c)
        vector, info = noised_item_gradient(users, items, errors, p, item.q, item.bi, REG, BIAS_REG, plan,
                                            np.random.default_rng([7, c]))
        assert vector.dtype == np.uint64 and info["users"] == 6
        clipped += info["users_clipped"]
        vectors.append(vector)
        if c >= dropped:
            gq, gbi, _ = clipped_item_gradient(users, items, errors, p, item.q, REG, CLIP, item.bi, BIAS_REG)
            expected += np.concatenate([gq.ravel(), gbi])
    assert clipped > 20  # most users are clipped at this C
    total = np.sum(vectors[dropped:], axis=0, dtype=np.uint64)
    noise = decode_sum(total, plan, n_clients - dropped) - expected
    std = np.sqrt(2 * plan.client_mu * (n_clients - dropped)) / 2.0**24
    assert std >= plan.noise_multiplier * CLIP  # at least the target noise on every coordinate
    assert abs(noise.mean()) < 5 * std / np.sqrt(plan.dimension)
    assert noise.std() == pytest.approx(std, rel=5 * np.sqrt(2 / plan.dimension))
    with pytest.raises(DPError, match="only 9 of 12"):
        decode_sum(np.sum(vectors[3:], axis=0, dtype=np.uint64), plan, n_clients - 3)


def test_plan_for_another_layout_is_refused():
    item = mf.init_item_side(N_ITEMS, K, 0.1, 3.5, np.random.default_rng(0))
    plan = NoisePlan(1.0, CLIP, N_ITEMS * K, 5, 0, 0)
    users, items, errors, p = client(0)
    with pytest.raises(DPError, match="noise plan was made for"):
        noised_item_gradient(users, items, errors, p, item.q, item.bi, REG, BIAS_REG, plan)
