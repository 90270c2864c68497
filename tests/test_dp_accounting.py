"""DP accounting: published Gaussian values, agreement with dp-accounting, Skellam's bound, calibration, resumable state."""

from __future__ import annotations

import json

import dp_accounting
import numpy as np
import pytest

from fedrec.shared.dp.accounting import (INTEGER_ORDERS, ORDERS, Accountant, Mechanism, composed_epsilon,
                                         noise_for_epsilon, poisson_subsampled_rdp, skellam_rdp)
from fedrec.shared.dp.errors import BudgetError, DPError
from fedrec.shared.dp.skellam import Sensitivity, sensitivity


def gaussian_rdp(z: float, orders, rate: float = 1.0) -> np.ndarray:
    accountant = dp_accounting.rdp.RdpAccountant(list(orders))
    event = dp_accounting.GaussianDpEvent(z)
    accountant.compose(event if rate == 1.0 else dp_accounting.PoissonSampledDpEvent(rate, event))
    return np.asarray(accountant.rdp)


def test_published_gaussian_value_opacus():
    """Noise 1.5, sampling 0.04, 2,250 steps, delta 1e-5: epsilon about 7.33 with RDP (as pinned in Opacus's tests)."""
    assert Mechanism(1.5, sampling_rate=0.04).epsilon(2250, 1e-5) == pytest.approx(7.33, abs=0.01)


def test_gaussian_without_sampling_matches_the_closed_form():
    """Unsampled Gaussian, R rounds: RDP R*alpha/(2 z^2); the classic conversion bounds our (tighter) epsilon."""
    z, rounds, delta = 2.0, 50, 1e-5
    eps = Mechanism(z).epsilon(rounds, delta)
    classic = min(rounds * a / (2 * z * z) + np.log(1 / delta) / (a - 1) for a in ORDERS if a > 1)
    assert 0.8 * classic < eps <= classic


def test_skellam_rdp_hand_value():
    """alpha 2, D2 = D1 = 1, mu = 1 (z = sqrt 2): 2/4 + min((2*2 + 6)/16, 3/4) = 1.125."""
    value = skellam_rdp(np.array([2.0]), np.sqrt(2.0), Sensitivity(l2=1.0, l1=1.0, dimension=1))
    assert value[0] == pytest.approx(1.125)


def test_skellam_agrees_with_the_package_gaussian_at_large_variance():
    """On fedrec's 2^24 grid the Skellam bound is dp-accounting's Gaussian to 1e-6; on a coarse grid it is larger."""
    sens = sensitivity(clip=1.0, dimension=5000)
    fine = skellam_rdp(INTEGER_ORDERS, 1.1, sens)
    np.testing.assert_allclose(fine, gaussian_rdp(1.1, INTEGER_ORDERS), rtol=1e-6)
    package = dp_accounting.rdp.RdpAccountant(list(INTEGER_ORDERS))
    package.compose(dp_accounting.GaussianDpEvent(1.1), 100)
    assert Mechanism(1.1, None, sens).epsilon(100, 1e-5) == pytest.approx(package.get_epsilon(1e-5), rel=1e-6)
    # In the useful range (epsilon <= ~16) integer orders cost under 1% against the package's full order grid.
    assert Mechanism(4.0, None, sens).epsilon(60, 1e-3) == pytest.approx(Mechanism(4.0).epsilon(60, 1e-3), rel=0.01)
    coarse = sensitivity(clip=1.0, dimension=5000, frac_bits=0)
    assert np.all(skellam_rdp(INTEGER_ORDERS, 1.1, coarse) > gaussian_rdp(1.1, INTEGER_ORDERS) * (1 + 1e-4))


def test_subsampled_bound_is_an_upper_bound_of_the_exact_sampled_gaussian_and_not_loose():
    """Zhu-Wang's general bound on the Gaussian's RDP: above dp-accounting's exact value, equal at order 2, within 4x."""
    orders = INTEGER_ORDERS[:62]
    for z, rate in [(1.0, 0.01), (1.5, 0.04), (0.8, 0.2), (3.0, 0.5)]:
        exact = gaussian_rdp(z, orders, rate)
        bound = poisson_subsampled_rdp(orders / (2 * z * z), rate)
        assert np.all(bound >= exact * (1 - 1e-9)), (z, rate)
        assert bound[0] == pytest.approx(exact[0], rel=1e-6), (z, rate)  # the bound is exact at order 2
        assert np.all(bound <= 4 * exact), (z, rate)
    base = INTEGER_ORDERS / 2
    np.testing.assert_array_equal(poisson_subsampled_rdp(base, 1.0), base)
    assert np.all(poisson_subsampled_rdp(base, 1e-3)[:10] < 1e-3 * base[:10])


def test_sampled_skellam_spends_less_than_unsampled_and_at_least_the_exact_gaussian():
    sens = sensitivity(clip=1.0, dimension=1000)
    sampled = Mechanism(1.5, 0.04, sens).epsilon(2250, 1e-5)
    assert Mechanism(1.5, 0.04).epsilon(2250, 1e-5) <= sampled < Mechanism(1.5, None, sens).epsilon(2250, 1e-5)


@pytest.mark.parametrize("sens", [None, sensitivity(1.0, 2000)])
@pytest.mark.parametrize("rate", [None, 0.1])
def test_noise_for_epsilon_is_the_smallest_noise_meeting_the_budget(sens, rate):
    epsilon, delta, rounds = 4.0, 1e-4, 60
    z = noise_for_epsilon(epsilon, delta, rounds, rate, sens)
    assert Mechanism(z, rate, sens).epsilon(rounds, delta) <= epsilon
    assert Mechanism(z * (1 - 2e-4), rate, sens).epsilon(rounds, delta) > epsilon


def test_noise_for_epsilon_is_monotone():
    delta = 1e-4
    by_eps = [noise_for_epsilon(e, delta, 50) for e in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(by_eps, by_eps[1:]))
    by_rounds = [noise_for_epsilon(4.0, delta, r) for r in (1, 10, 100)]
    assert all(a < b for a, b in zip(by_rounds, by_rounds[1:]))
    assert noise_for_epsilon(4.0, delta, 100, 0.05) < by_rounds[-1]


def test_unreachable_budget_and_bad_parameters_are_refused():
    with pytest.raises(BudgetError, match="needs a noise multiplier above"):
        noise_for_epsilon(1e-3, 1e-6, 1000, max_noise=100)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(DPError):
            noise_for_epsilon(bad, 1e-5, 10)
    with pytest.raises(DPError, match="delta"):
        Mechanism(1.0).epsilon(10, 0.0)
    with pytest.raises(DPError, match="sampling rate"):
        Mechanism(1.0, sampling_rate=1.5)


def test_accountant_never_spends_past_the_budget_and_resumes_from_its_state():
    sens = sensitivity(1.0, 100)
    mechanism = Mechanism(noise_for_epsilon(2.0, 1e-5, 20, None, sens), None, sens)
    accountant = Accountant({"train": mechanism}, delta=1e-5, budget=2.0)
    for _ in range(10):
        accountant.spend("train")
    state = json.loads(json.dumps(accountant.state_dict()))
    resumed = Accountant.from_state(state)
    resumed.check_matches(accountant)
    assert resumed.spent == {"train": 10} and resumed.epsilon == pytest.approx(accountant.epsilon)
    for _ in range(10):
        eps = resumed.spend("train")
    assert eps <= 2.0 and resumed.spent["train"] == 20
    assert not resumed.can_spend("train")
    with pytest.raises(BudgetError, match="release 21 of 'train'"):
        resumed.spend("train")
    assert resumed.spent["train"] == 20  # a refused release is not counted
    with pytest.raises(DPError, match="unknown release 'eval'"):
        resumed.spend("eval")
    with pytest.raises(DPError, match="different mechanisms"):
        Accountant({"train": Mechanism(mechanism.noise_multiplier)}, 1e-5, 2.0).check_matches(resumed)
    with pytest.raises(DPError, match="invalid"):
        Accountant.from_state({"spent": {"train": 3}})
    with pytest.raises(BudgetError):
        Accountant.from_state({**state, "spent": {"train": 1000}})


def test_composition_of_different_releases_agrees_with_dp_accounting():
    """A statistics release once plus R sampled training releases: the package's composed event gives the same epsilon."""
    stats, train = Mechanism(3.0), Mechanism(1.2, sampling_rate=0.1)
    package = dp_accounting.rdp.RdpAccountant(list(ORDERS))
    package.compose(dp_accounting.ComposedDpEvent([
        dp_accounting.GaussianDpEvent(3.0),
        dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(0.1, dp_accounting.GaussianDpEvent(1.2)), 40),
    ]))
    assert composed_epsilon([(stats, 1), (train, 40)], 1e-5) == pytest.approx(package.get_epsilon(1e-5), rel=1e-9)
    accountant = Accountant({"stats": stats, "train": train}, 1e-5, budget=100.0)
    accountant.spend("stats")
    accountant.spend("train", 40)
    assert accountant.epsilon == pytest.approx(package.get_epsilon(1e-5), rel=1e-9)
    # Charging the statistics release to the budget needs more noise on the training releases.
    sens = sensitivity(1.0, 500)
    alone = noise_for_epsilon(4.0, 1e-5, 40, None, sens)
    with_stats = noise_for_epsilon(4.0, 1e-5, 40, None, sens, also_spent=[(Mechanism(3.0, None, sens), 1)])
    assert with_stats > alone * 1.01
    assert composed_epsilon([(Mechanism(with_stats, None, sens), 40), (Mechanism(3.0, None, sens), 1)], 1e-5) <= 4.0


def test_subsampled_bound_hand_value():
    """Zhu-Wang Theorem 5 at alpha 3, q 0.1, eps(2) 0.5, eps(3) 0.8, written out term by term."""
    q, e2, e3 = 0.1, 0.5, 0.8
    a = (1 - q) ** 2 * (3 * q - q + 1) + 3 * q**2 * (1 - q) * np.exp(e2) + 3 * 1 * q**3 * np.exp(2 * e3)
    assert poisson_subsampled_rdp(np.array([e2, e3]), q)[1] == pytest.approx(np.log(a) / 2, rel=1e-12)
