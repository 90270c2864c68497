"""Privacy accounting over rounds: Skellam RDP (closed form) or Gaussian (dp-accounting), optional Poisson sampling.

Skellam: the multi-dimensional Skellam mechanism whose two Poisson draws have mean mu each (variance 2 mu),
on a sum of integer L2/L1 sensitivity D2/D1, is (alpha, eps(alpha))-RDP for integer alpha > 1 with
(Agarwal, Kairouz & Liu, NeurIPS 2021, arXiv:2110.04995, Theorem 3.5 / Corollary 3.6, written there with the
variance 2 mu in place of mu)

    eps(alpha) = alpha D2^2 / (4 mu) + min( ((2 alpha - 1) D2^2 + 6 D1) / (16 mu^2), 3 D1 / (4 mu) ).

We use 2 alpha in place of 2 alpha - 1 (a larger, hence still valid, bound) and integer orders only. With
variance 2 mu = (z D2)^2 the first term is the Gaussian's alpha / (2 z^2); the second vanishes as mu grows,
which the tests check against dp-accounting's Gaussian.

Poisson sampling (only when `sampling_rate` is given: fedrec's server sees who took part, so sampling
amplifies only where it is really random and hidden): the Gaussian uses dp-accounting's exact
PoissonSampledDpEvent; Skellam uses the general upper bound of Zhu & Wang (ICML 2019, "Poisson subsampled
Renyi differential privacy", Theorem 5, the general upper bound) at integer orders, capped by the unsampled value.
RDP is converted to (epsilon, delta) by dp_accounting.rdp.compute_epsilon.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
import numpy as np
from scipy.special import gammaln, logsumexp

from fedrec.shared.dp.errors import BudgetError, DPError
from fedrec.shared.dp.skellam import Sensitivity

ORDERS = np.array(dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, dtype=np.float64)
INTEGER_ORDERS = np.arange(2, 257, dtype=np.float64)


def skellam_rdp(orders: np.ndarray, noise_multiplier: float, sens: Sensitivity) -> np.ndarray:
    """One release of Skellam noise with variance (noise_multiplier * l2)^2: RDP at each order (bound above)."""
    mu = (noise_multiplier * sens.l2) ** 2 / 2
    orders = np.asarray(orders, dtype=np.float64)
    tail = np.minimum((2 * orders * sens.l2**2 + 6 * sens.l1) / (16 * mu**2), 3 * sens.l1 / (4 * mu))
    return orders * sens.l2**2 / (4 * mu) + tail


def poisson_subsampled_rdp(rdp_int: np.ndarray, rate: float) -> np.ndarray:
    """Zhu & Wang (2019) Theorem 5 (general upper bound) at integer orders 2..A.

    rdp_int holds the base mechanism's RDP at the same orders (index 0 = order 2).
    """
    rdp_int = np.asarray(rdp_int, dtype=np.float64)
    alphas = np.arange(2, len(rdp_int) + 2)
    if rate >= 1:
        return rdp_int
    log_q, log_1q = math.log(rate), math.log1p(-rate)
    a = alphas[:, None].astype(np.float64)
    l = alphas[None, :].astype(np.float64)  # l = 2..A; terms with l > alpha are masked
    log_comb = gammaln(a + 1) - gammaln(l + 1) - gammaln(np.maximum(a - l, 0) + 1)
    terms = log_comb + l * log_q + (a - l) * log_1q + (l - 1) * rdp_int[None, :]
    terms = terms + np.where(l >= 3, math.log(3.0), 0.0)
    terms = np.where(l <= a, terms, -np.inf)
    first = (alphas - 1) * log_1q + np.log1p((alphas - 1) * rate)  # (1-q)^(a-1) (a q - q + 1)
    log_a = logsumexp(np.column_stack([first, terms]), axis=1)
    return np.minimum(log_a / (alphas - 1), rdp_int)


@dataclass(frozen=True)
class Mechanism:
    """One release per round: noise multiplier z (noise std / L2 sensitivity), Skellam if `sensitivity` is set."""

    noise_multiplier: float
    sampling_rate: float | None = None  # None: no amplification by sampling
    sensitivity: Sensitivity | None = None  # None: the Gaussian mechanism

    def __post_init__(self):
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise DPError(f"noise multiplier must be positive, got {self.noise_multiplier}")
        if self.sampling_rate is not None and not 0 < self.sampling_rate <= 1:
            raise DPError(f"sampling rate must be in (0, 1], got {self.sampling_rate}")

    @property
    def name(self) -> str:
        return "gaussian" if self.sensitivity is None else "skellam"

    def epsilon(self, rounds: int, delta: float) -> float:
        """Epsilon at `delta` after `rounds` releases."""
        if not 0 < delta < 1:
            raise DPError(f"delta must be in (0, 1), got {delta}")
        if rounds < 0:
            raise DPError(f"rounds must be >= 0, got {rounds}")
        if rounds == 0:
            return 0.0
        if self.sensitivity is None:
            event = dp_accounting.GaussianDpEvent(self.noise_multiplier)
            if self.sampling_rate is not None:
                event = dp_accounting.PoissonSampledDpEvent(self.sampling_rate, event)
            accountant = dp_accounting.rdp.RdpAccountant(list(ORDERS))
            accountant.compose(event, rounds)
            return float(accountant.get_epsilon(delta))
        rdp = skellam_rdp(INTEGER_ORDERS, self.noise_multiplier, self.sensitivity)  # the bound holds at integer orders
        if self.sampling_rate is not None:
            rdp = poisson_subsampled_rdp(rdp, self.sampling_rate)
        return float(dp_accounting.rdp.compute_epsilon(INTEGER_ORDERS, rounds * rdp, delta)[0])


def noise_for_epsilon(epsilon: float, delta: float, rounds: int, sampling_rate: float | None = None,
                      sensitivity: Sensitivity | None = None, max_noise: float = 1e4, rel_tol: float = 1e-4) -> float:
    """Smallest noise multiplier (to rel_tol, rounded up) whose `rounds` releases spend at most `epsilon` at `delta`."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise DPError(f"epsilon must be a positive number, got {epsilon}")
    if rounds < 1:
        raise DPError(f"rounds must be >= 1, got {rounds}")

    def spent(z: float) -> float:
        return Mechanism(z, sampling_rate, sensitivity).epsilon(rounds, delta)

    low, high = 1e-3, 1.0
    while spent(high) > epsilon:
        low, high = high, high * 4
        if high > max_noise:
            raise BudgetError(f"epsilon {epsilon} at delta {delta} over {rounds} rounds needs a noise multiplier "
                              f"above {max_noise}; raise epsilon or plan fewer rounds")
    if spent(low) <= epsilon:
        raise BudgetError(f"epsilon {epsilon} is met with almost no noise (multiplier < {low}); check the budget")
    while high / low > 1 + rel_tol:  # invariant: spent(low) > epsilon >= spent(high)
        mid = math.sqrt(low * high)
        low, high = (low, mid) if spent(mid) <= epsilon else (mid, high)
    return high


class Accountant:
    """Rounds spent under one mechanism and budget; refuses to spend past the budget; state saves to a dict."""

    def __init__(self, mechanism: Mechanism, delta: float, budget: float, rounds_spent: int = 0):
        self.mechanism, self.delta, self.budget = mechanism, float(delta), float(budget)
        self.rounds_spent = int(rounds_spent)
        if self.epsilon > self.budget:
            raise BudgetError(f"{self.rounds_spent} rounds already spend epsilon {self.epsilon:.4g} > budget {self.budget}")

    @property
    def epsilon(self) -> float:
        return self.mechanism.epsilon(self.rounds_spent, self.delta)

    def can_spend(self, rounds: int = 1) -> bool:
        return self.mechanism.epsilon(self.rounds_spent + rounds, self.delta) <= self.budget

    def spend(self, rounds: int = 1) -> float:
        """Record `rounds` more releases (before they happen); returns epsilon spent so far."""
        after = self.mechanism.epsilon(self.rounds_spent + rounds, self.delta)
        if after > self.budget:
            raise BudgetError(f"round {self.rounds_spent + rounds} would spend epsilon {after:.4g} > budget {self.budget}")
        self.rounds_spent += rounds
        return after

    def state_dict(self) -> dict:
        sens = self.mechanism.sensitivity
        return {
            "mechanism": self.mechanism.name, "noise_multiplier": self.mechanism.noise_multiplier,
            "sampling_rate": self.mechanism.sampling_rate, "delta": self.delta, "budget": self.budget,
            "rounds_spent": self.rounds_spent, "epsilon": self.epsilon,
            "sensitivity": None if sens is None else {"l2": sens.l2, "l1": sens.l1, "dimension": sens.dimension},
        }

    @classmethod
    def from_state(cls, state: dict) -> Accountant:
        """Rebuild a saved accountant (a resumed run continues the same count)."""
        try:
            sens = state["sensitivity"]
            if sens is not None:
                sens = Sensitivity(float(sens["l2"]), float(sens["l1"]), int(sens["dimension"]))
            mechanism = Mechanism(float(state["noise_multiplier"]), state["sampling_rate"], sens)
            if mechanism.name != state["mechanism"]:
                raise DPError(f"saved mechanism {state['mechanism']!r} does not match its parameters")
            return cls(mechanism, float(state["delta"]), float(state["budget"]), int(state["rounds_spent"]))
        except (KeyError, TypeError, ValueError) as error:
            raise DPError(f"saved accountant state is invalid: {error!r}") from None

    def check_matches(self, other: Accountant) -> None:
        """Refuse to resume under a different mechanism, delta or budget than the saved one."""
        if (self.mechanism, self.delta, self.budget) != (other.mechanism, other.delta, other.budget):
            raise DPError("the saved accountant was for a different mechanism, delta or budget; start a new run")
