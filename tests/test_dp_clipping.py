"""Per-user clipping: exact without clipping, bounded influence of any one user, and a per-user reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from fedrec.shared import mf
from fedrec.shared.dp.clipping import clip_and_sum, clip_scatter_sum, clipped_item_gradient
from fedrec.shared.dp.errors import DPError

REG, BIAS_REG = 0.1, 0.05


def problem(seed: int = 0, n_users: int = 12, n_items: int = 15, k: int = 3):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.4
    users, items = np.nonzero(mask)
    values = rng.integers(1, 6, len(users)).astype(float)
    user = mf.UserSide(rng.normal(0, 0.5, (n_users, k)).astype(mf.FLOAT), rng.normal(0, 0.3, n_users).astype(mf.FLOAT))
    item = mf.ItemSide(rng.normal(0, 0.5, (n_items, k)).astype(mf.FLOAT), rng.normal(0, 0.3, n_items).astype(mf.FLOAT), 3.5)
    return users, items, values, user, item


def gradient(users, items, values, user, item, clip, n_users):
    data = mf.RatingData(users, items, values, n_users, item.q.shape[0])
    errors = mf.residuals(data, user, item)
    return clipped_item_gradient(data.users, data.items, errors, user.p, item.q, REG, clip, bi=item.bi,
                                 bias_reg=BIAS_REG, n_users=n_users)


def test_unclipped_sum_equals_the_mf_item_gradient():
    users, items, values, user, item = problem()
    data = mf.RatingData(users, items, values, 12, 15)
    _, _, _, item_grads = mf.loss_and_gradients(data, user, item, REG, BIAS_REG)
    q, bi, norms = gradient(users, items, values, user, item, clip=1e9, n_users=12)
    np.testing.assert_allclose(q, item_grads["q"], atol=1e-5)
    np.testing.assert_allclose(bi, item_grads["bi"], atol=1e-5)
    assert norms.shape == (12,) and np.all(norms > 0)


def test_clipping_matches_a_per_user_reference():
    users, items, values, user, item = problem(1)
    clip = 1.0
    q, bi, norms = gradient(users, items, values, user, item, clip, n_users=12)
    expected = np.zeros((15, 4))
    for u in range(12):  # the reference loops over users on purpose
        mine = users == u
        data = mf.RatingData(np.zeros(mine.sum(), int), items[mine], values[mine], 1, 15)
        one = mf.UserSide(user.p[u : u + 1], user.bu[u : u + 1])
        _, _, _, g = mf.loss_and_gradients(data, one, item, REG, BIAS_REG)
        contribution = np.hstack([g["q"], g["bi"][:, None]])
        norm = np.linalg.norm(contribution)
        assert norms[u] == pytest.approx(norm, rel=1e-5)
        expected += contribution * min(1.0, clip / norm)
    assert np.sum(norms > clip) >= 3  # clipping is really exercised
    np.testing.assert_allclose(np.hstack([q, bi[:, None]]), expected, atol=1e-5)


@pytest.mark.parametrize("clip", [0.3, 2.0])
def test_one_users_influence_on_the_sum_is_within_the_clip(clip):
    """Replace one user's ratings arbitrarily (or remove the user): the sum moves by at most clip (2 clip to replace)."""
    users, items, values, user, item = problem(2)
    q0, bi0, _ = gradient(users, items, values, user, item, clip, 12)
    base = np.hstack([q0, bi0[:, None]])
    rng = np.random.default_rng(7)
    for victim in range(12):
        keep = users != victim
        new_items = rng.choice(15, 10, replace=False)
        u2 = np.concatenate([users[keep], np.full(10, victim)])
        i2 = np.concatenate([items[keep], new_items])
        v2 = np.concatenate([values[keep], rng.choice([1.0, 5.0], 10) * 100])  # wild ratings
        user2 = mf.UserSide(user.p.copy(), user.bu.copy())
        user2.p[victim] *= 50  # and a wild user vector
        q, bi, _ = gradient(u2, i2, v2, user2, item, clip, 12)
        assert np.linalg.norm(np.hstack([q, bi[:, None]]) - base) <= 2 * clip * (1 + 1e-6)
        q, bi, _ = gradient(users[keep], items[keep], values[keep], user, item, clip, 12)
        assert np.linalg.norm(np.hstack([q, bi[:, None]]) - base) <= clip * (1 + 1e-6)


def test_clip_and_sum_dense_and_sparse_agree():
    rng = np.random.default_rng(3)
    dense = rng.normal(0, 1, (20, 30)) * (rng.random((20, 30)) < 0.3)
    norms = np.linalg.norm(dense, axis=1)
    expected = (dense * np.minimum(1, 1.5 / np.maximum(norms, 1e-300))[:, None]).sum(axis=0)
    np.testing.assert_allclose(clip_and_sum(dense, 1.5), expected)
    np.testing.assert_allclose(clip_and_sum(sp.csr_matrix(dense), 1.5), expected)


def test_scatter_merges_a_users_entries_on_one_target_before_the_norm():
    """Two entries (3,0) and (-3,0) of one user on one target cancel: norm 0, nothing clipped away elsewhere."""
    total, norms = clip_scatter_sum([0, 0, 0], [1, 1, 2], np.array([[3.0, 0], [-3.0, 0], [0, 4.0]]), 2.0, 1, 3)
    assert norms[0] == pytest.approx(4.0)
    np.testing.assert_allclose(total, [[0, 0], [0, 0], [0, 2.0]])
    with pytest.raises(DPError, match="line up"):
        clip_scatter_sum([0], [1, 2], np.ones((2, 1)), 1.0, 1, 3)
    with pytest.raises(DPError, match="out of range"):
        clip_scatter_sum([0, 1], [1, 3], np.ones((2, 1)), 1.0, 2, 3)
    with pytest.raises(DPError, match="clip"):
        clip_and_sum(np.ones((2, 2)), 0.0)
    with pytest.raises(DPError, match="user 1's contribution is not finite"):
        clip_and_sum(np.array([[1.0, 0.0], [np.inf, 0.0]]), 1.0)
