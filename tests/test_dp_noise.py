"""Skellam noise in the fixed-point domain: distribution, decoded noise after dropouts and colluders, headroom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedrec.shared.dp.calibration import NoisePlan, colluders_for
from fedrec.shared.dp.errors import DPError
from fedrec.shared.dp.skellam import (check_headroom, encode_noised, noise_tail, randomized_round, secure_rng,
                                      sensitivity, skellam_noise)
from fedrec.shared.secagg.fixedpoint import decode

FRAC = 16  # DP_FRAC_BITS, the encoding of every DP vector


def test_skellam_noise_has_the_skellam_distribution():
    """Small mu, where the integer lattice shows: empirical pmf against scipy's Skellam pmf, mean 0, variance 2 mu."""
    mu, n = 2.5, 400_000
    noise = skellam_noise(n, mu, np.random.default_rng(1))
    assert noise.dtype == np.int64
    values, counts = np.unique(noise, return_counts=True)
    total_variation = 0.5 * np.abs(counts / n - stats.skellam.pmf(values, mu, mu)).sum()
    assert total_variation < 0.005
    assert abs(noise.mean()) < 5 * np.sqrt(2 * mu / n)
    assert noise.var() == pytest.approx(2 * mu, rel=0.02)


def test_randomized_rounding_is_unbiased_and_lands_on_neighbours():
    y = np.full(200_000, 7.3)
    rounded = randomized_round(y, np.random.default_rng(2))
    assert set(np.unique(rounded)) == {7, 8}
    assert rounded.mean() == pytest.approx(7.3, abs=5 * np.sqrt(0.21 / len(y)))
    exact = np.arange(-5.0, 5.0)
    np.testing.assert_array_equal(randomized_round(exact, np.random.default_rng(3)), exact.astype(np.int64))


def test_rounding_growth_stays_within_the_sensitivity():
    """Neighbours x, x' = x + v with |v| = C, rounded with the same uniforms: |round(x) - round(x')| <= Delta_2."""
    rng = np.random.default_rng(4)
    dim, clip, frac = 64, 1.0, 0
    sens = sensitivity(clip, dim, frac)
    worst = 0.0
    for trial in range(300):
        x = rng.normal(0, 3, dim)
        v = rng.normal(0, 1, dim)
        v *= clip / np.linalg.norm(v)
        a = randomized_round(x * 2.0**frac, np.random.default_rng(trial))
        b = randomized_round((x + v) * 2.0**frac, np.random.default_rng(trial))
        worst = max(worst, float(np.linalg.norm(a - b)))
        assert np.abs(a - b).sum() <= sens.l1
    assert clip * 2.0**frac < worst <= sens.l2  # growth really happens, and the bound holds


def simulate_round(plan: NoisePlan, n_clients: int, dim: int, seed: int):
    """Each client encodes a grid-valued vector with its noise share; returns (uint64 vectors, int noises, float values)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-2**20, 2**20, (n_clients, dim)) / 2.0**FRAC  # on the grid: rounding is exact
    encoded = np.stack([encode_noised(v, plan.client_mu, np.random.default_rng([seed, c])) for c, v in enumerate(values)])
    noises = encoded.view(np.int64) - np.rint(values * 2.0**FRAC).astype(np.int64)
    return encoded, noises, values


@pytest.mark.parametrize("n_clients,dropouts,colluder_fraction", [(3, 0, 0.0), (10, 2, 0.1), (50, 10, 0.2)])
def test_decoded_noise_has_the_calibrated_distribution_after_dropouts_and_colluders(n_clients, dropouts, colluder_fraction):
    dim = 20_000
    colluders = colluders_for(colluder_fraction, n_clients)
    plan = NoisePlan(noise_multiplier=0.9, clip=0.5, dimension=dim, n_clients=n_clients,
                     max_dropouts=dropouts, max_colluders=colluders)
    target_var = (plan.noise_multiplier * plan.sensitivity.l2) ** 2
    encoded, noises, values = simulate_round(plan, n_clients, dim, seed=n_clients)
    survivors = np.arange(dropouts, n_clients)  # the first `dropouts` clients drop out
    plan.check_round(len(survivors))
    total = encoded[survivors].sum(axis=0, dtype=np.uint64)  # wraps mod 2^64 like the masked sum
    decoded_noise = decode(total, FRAC) * 2.0**FRAC - np.rint(values[survivors] * 2.0**FRAC).sum(axis=0)
    assert np.array_equal(decoded_noise, np.round(decoded_noise))  # integer noise, decoded exactly
    np.testing.assert_array_equal(decoded_noise.astype(np.int64), noises[survivors].sum(axis=0))
    se = np.sqrt(2 / dim)
    assert abs(decoded_noise.mean()) < 5 * np.sqrt(decoded_noise.var() / dim)
    assert decoded_noise.var() == pytest.approx(2 * plan.client_mu * len(survivors), rel=5 * se)
    assert decoded_noise.var() >= target_var * (1 - 5 * se)
    # Colluders subtract the noise they know: what remains is still the target (the worst case calibrated for).
    remaining = decoded_noise - noises[survivors[:colluders]].sum(axis=0)
    assert remaining.var() == pytest.approx(target_var, rel=5 * se)
    assert stats.kurtosis(remaining) == pytest.approx(0.0, abs=0.2)  # Gaussian-shaped at this scale


def test_plan_refuses_rounds_and_configurations_that_break_the_guarantee():
    plan = NoisePlan(1.0, 1.0, 100, n_clients=10, max_dropouts=3, max_colluders=2)
    assert plan.honest_survivors == 5 and plan.client_mu == pytest.approx(plan.total_mu / 5)
    plan.check_round(7)
    with pytest.raises(DPError, match="only 6 of 10"):
        plan.check_round(6)
    with pytest.raises(DPError, match="no honest survivor"):
        NoisePlan(1.0, 1.0, 100, n_clients=4, max_dropouts=2, max_colluders=2)
    for bad in (dict(noise_multiplier=0.0), dict(clip=-1.0), dict(dimension=0), dict(max_dropouts=-1)):
        with pytest.raises(DPError):
            NoisePlan(**{**dict(noise_multiplier=1.0, clip=1.0, dimension=10, n_clients=5, max_dropouts=0,
                                max_colluders=0), **bad})
    assert colluders_for(0.1, 10) == 1 and colluders_for(0.15, 10) == 2 and colluders_for(0.0, 10) == 0
    with pytest.raises(DPError):
        colluders_for(1.0, 10)


def test_noise_tail_bounds_the_sampled_maximum_and_headroom_refuses_wrapping():
    mu, dim = 1e6, 100_000
    sample = skellam_noise(dim, mu, np.random.default_rng(5))
    tail = noise_tail(mu, dim)
    assert np.abs(sample).max() < tail < 20 * np.sqrt(2 * mu)
    plan = NoisePlan(1.0, 1.0, 50_000, n_clients=1000, max_dropouts=100, max_colluders=100)
    assert plan.check_headroom(value_bound=1000 * 1.0) < 2**63
    with pytest.raises(DPError, match="2\\^63"):
        plan.check_headroom(value_bound=2.0**(63 - FRAC))
    # Values alone fit, values plus the noise tail do not: the noise is part of the check.
    near_limit = (2.0**63 - 1e7) / 2.0**FRAC
    check_headroom(10, near_limit, client_mu=0.0, dimension=10)
    with pytest.raises(DPError, match="2\\^63"):
        check_headroom(10, near_limit, client_mu=1e12, dimension=10)


def test_encode_refuses_bad_values_and_huge_noise():
    rng = np.random.default_rng(0)
    with pytest.raises(DPError, match="index 2"):
        encode_noised(np.array([0.0, 1.0, np.nan]), 10.0, rng)
    with pytest.raises(DPError, match="index 1"):
        encode_noised(np.array([0.0, 2.0**21]), 10.0, rng)
    with pytest.raises(DPError, match="mu"):
        skellam_noise(3, 2.0**63, rng)


def test_secure_rng_draws_fresh_streams():
    assert not np.array_equal(secure_rng().integers(0, 2**62, 8), secure_rng().integers(0, 2**62, 8))


def test_encode_without_a_generator_uses_fresh_randomness():
    x = np.zeros(64)
    assert not np.array_equal(encode_noised(x, 1e6), encode_noised(x, 1e6))


def test_large_skellam_means_are_drawn_exactly_and_plans_stay_in_the_exact_range():
    """numpy's Poisson sampler drifts above about 1e13 (variance 10% high at 3e14, 42% at 1e16: not the
    mechanism the accountant analyses). Large means are drawn as sums of exact parts, beyond-range means are
    refused, and the plans fedrec makes (DP vectors at DP_FRAC_BITS) need a single part even at epsilon 1."""
    from fedrec.shared.config import load_config
    from fedrec.shared.dp import skellam
    from fedrec.shared.dp.plan import plan_run
    from fedrec.shared.secagg.params import from_config

    rng = np.random.default_rng(5)
    mu = 30 * skellam.EXACT_POISSON_MEAN  # drawn in 30 parts
    noise = skellam.skellam_noise(200_000, mu, rng).astype(np.float64)
    assert noise.var() / (2 * mu) == pytest.approx(1.0, rel=0.015)
    with pytest.raises(DPError, match="outside"):
        skellam.skellam_noise(10, 1e16, rng)
    config = load_config(None, {"dp.epsilon": 1.0, "federated.num_clients": 10, "federated.rounds": 60,
                                "model.factors": 32})
    params = from_config(config)
    assert params.frac_bits == skellam.DP_FRAC_BITS
    dp = plan_run(config, 1682, 943)
    cohort = params.plan(10)
    share = NoisePlan(dp.noise_multiplier, 1.0, 1682 * 33, 10, cohort.max_dropouts, cohort.colluders, cohort.frac_bits)
    assert share.client_mu <= skellam.EXACT_POISSON_MEAN
