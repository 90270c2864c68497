"""Audit attacks: near-perfect on plain replies and plain sums, at or below the popularity guess under DP."""

from __future__ import annotations

import numpy as np
import pytest

from audit_sim import BIAS_REG, LEVELS, REG, simulate
from fedrec.shared import audit


@pytest.fixture(scope="module")
def plain():
    return simulate(seed=0)


@pytest.fixture(scope="module")
def private():
    return simulate(seed=0, dp_epsilon=8.0)


def test_scoring_against_brute_force_and_the_popularity_tie_break():
    rng = np.random.default_rng(0)
    rated = rng.random((6, 25)) < 0.3
    rated[:, 0], rated[:, 1] = True, False
    popularity = rng.permutation(25).astype(float)
    scores = rng.normal(0, 1, (6, 25))
    result = audit.score_attack(scores, rated, popularity)
    brute = np.mean([np.mean(s[r][:, None] > s[~r][None, :]) for s, r in zip(scores, rated)])
    assert result["auc"] == pytest.approx(brute)
    assert audit.score_attack(rated.astype(float), rated, popularity)["auc"] == 1.0
    assert audit.score_attack(rated.astype(float), rated, popularity)["precision"] == 1.0
    flat = audit.score_attack(np.zeros((6, 25)), rated, popularity)  # no evidence: the popularity guess exactly
    assert flat["auc"] == flat["popularity_auc"] and flat["precision"] == flat["popularity_precision"]
    brute_pop = np.mean([np.mean(popularity[r][:, None] > popularity[~r][None, :]) for r in rated])
    assert flat["popularity_auc"] == pytest.approx(brute_pop)
    missing = scores.copy()
    missing[2] = np.nan
    assert audit.score_attack(missing, rated, popularity)["clients"] == 5


def test_differencing_and_least_squares_are_exact_for_constant_vectors():
    """Values a client sends unchanged every round (counts, totals) are solved exactly from the sums."""
    rng = np.random.default_rng(1)
    vectors = rng.integers(0, 5, (8, 12)).astype(float)
    participation = rng.random((20, 8)) < 0.5
    participation[1] = participation[0]
    participation[1, np.flatnonzero(participation[0])[0]] = False  # a dropout
    sums = participation @ vectors
    np.testing.assert_allclose(audit.least_squares(sums, participation), vectors, atol=1e-9)
    diff = audit.differencing(sums, participation)
    dropped = np.flatnonzero(participation[0] != participation[1])[0]
    np.testing.assert_allclose(diff[dropped], vectors[dropped], atol=1e-9)
    never = [c for c in range(8) if np.all(np.isnan(diff[c]))]
    assert dropped not in never


def test_differencing_corrects_for_the_models_drift_as_a_server_would():
    """Every client's vector moves by the same step each round (the model's drift); client 2 drops at round 3.
    The plain difference of rounds 2 and 3 is off by the others' drift; the corrected one (drift measured over
    rounds 1 to 2, with the same participants) is client 2's round-2 vector exactly, for a join as well."""
    rng = np.random.default_rng(2)
    base, step = rng.normal(size=(5, 6)), rng.normal(size=6)
    participation = np.ones((4, 5), dtype=bool)
    participation[3, 2] = False
    sums = np.array([(base[p] + r * step).sum(axis=0) for r, p in enumerate(participation)])
    np.testing.assert_allclose(audit.differencing(sums, participation)[2], base[2] + 2 * step, atol=1e-9)
    joined = participation[::-1].copy()  # client 2 absent in round 0, back in round 1: no round before to measure drift
    joined = np.vstack([joined[:1], joined[:1], joined[1:]])  # rounds 0, 1 without it, 2.. with it
    sums = np.array([(base[p] + r * step).sum(axis=0) for r, p in enumerate(joined)])
    np.testing.assert_allclose(audit.differencing(sums, joined)[2], base[2] + 2 * step, atol=1e-9)


def test_plain_replies_reveal_rated_items_and_ratings(plain):
    n, k = plain.n_items, plain.factors
    clients = plain.rated.shape[0]
    first = np.array([plain.replies[np.flatnonzero(plain.participation[:, c])[0], c] for c in range(clients)])
    result = audit.score_attack(audit.rated_items_from_replies(first, n, k), plain.rated, plain.popularity)
    assert result["auc"] == 1.0 and result["precision"] == 1.0
    assert result["popularity_auc"] < 0.85
    estimates = np.full(plain.ratings.shape, np.nan)
    for c in range(clients):
        a, b = np.flatnonzero(plain.participation[:, c])[:2]
        estimates[c] = audit.recover_ratings((plain.replies[a, c], plain.replies[b, c]),
                                             (plain.items_sent[a], plain.items_sent[b]), plain.mu, REG, BIAS_REG, LEVELS)
    assert np.array_equal(~np.isnan(estimates), plain.rated)
    summary = audit.score_ratings(estimates, plain.ratings, np.full(plain.ratings.shape, plain.mu))
    assert summary["rmse"] < 1e-3 and summary["exact"] == 1.0  # every rating recovered
    assert summary["baseline_rmse"] > 0.8 and summary["baseline_exact"] < 0.5  # while the mean guess is far off


def test_recover_ratings_refuses_replies_of_different_clients(plain):
    c0, c1 = 0, 1
    a = np.flatnonzero(plain.participation[:, c0])[0]
    b = np.flatnonzero(plain.participation[:, c1])[0]
    with pytest.raises(ValueError, match="different items"):
        audit.recover_ratings((plain.replies[a, c0], plain.replies[b, c1]), (plain.items_sent[a], plain.items_sent[b]),
                              plain.mu, REG, BIAS_REG, LEVELS)


def sum_attacks(view):
    return audit.audit_sums(view.sums, view.participation, view.n_items, view.factors, view.rated, view.popularity)


def test_plain_sums_leak_more_than_popularity(plain):
    results = sum_attacks(plain)
    assert results["differencing"]["advantage_auc"] > 0.15
    assert results["least_squares"]["advantage_auc"] > 0.08
    assert results["support_intersection"]["advantage_auc"] > 0.02


def test_dp_sums_are_no_better_than_the_popularity_guess(private):
    assert private.noise_multiplier > 1.0
    for name, result in sum_attacks(private).items():
        assert result["advantage_auc"] <= 0.03, (name, result)
        assert result["precision"] <= result["popularity_precision"] + 0.05, (name, result)
    touched = audit.row_strength(private.sums, private.n_items, private.factors) != 0
    assert touched.all()  # noise on every coordinate: no zero row tells which items a cohort touched


def test_item_rows_checks_the_layout():
    with pytest.raises(ValueError, match="n_items"):
        audit.item_rows(np.zeros(10), 3, 2)


def test_support_intersection_discounts_items_present_without_the_client():
    """Item 0 is touched in every round (popular); client 0's item 1 only when it takes part: item 1 must rank first."""
    n_items, k = 3, 1
    participation = np.array([[1, 1], [0, 1], [1, 0], [0, 1]], dtype=bool)
    touched = np.array([[1, 1, 0], [1, 0, 1], [1, 1, 0], [1, 0, 0]], dtype=float)
    sums = np.concatenate([touched, touched], axis=1)  # q part (k = 1) then the b_i part
    scores = audit.support_intersection(sums, participation, n_items, k)
    rated = np.array([[False, True, False], [True, False, True]])
    result = audit.score_attack(scores[:1], rated[:1], popularity=np.array([10.0, 1.0, 2.0]))
    assert result["precision"] == 1.0 and result["popularity_precision"] == 0.0
