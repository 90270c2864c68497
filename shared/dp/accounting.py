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

    def rdp(self, orders: np.ndarray) -> np.ndarray:
        """RDP of one release at `orders` (Skellam: integer orders 2, 3, ... only, where its bound is stated)."""
        if self.sensitivity is None:
            event = dp_accounting.GaussianDpEvent(self.noise_multiplier)
            if self.sampling_rate is not None:
                event = dp_accounting.PoissonSampledDpEvent(self.sampling_rate, event)
            accountant = dp_accounting.rdp.RdpAccountant(list(orders))
            accountant.compose(event)
            return np.asarray(accountant.rdp, dtype=np.float64)
        if not np.array_equal(orders, np.arange(2, len(orders) + 2)):
            raise DPError("the Skellam bound is used at the integer orders 2, 3, ... only")
        rdp = skellam_rdp(orders, self.noise_multiplier, self.sensitivity)
        return rdp if self.sampling_rate is None else poisson_subsampled_rdp(rdp, self.sampling_rate)

    def epsilon(self, rounds: int, delta: float) -> float:
        """Epsilon at `delta` after `rounds` releases."""
        return composed_epsilon([(self, rounds)], delta)

    def state_dict(self) -> dict:
        sens = self.sensitivity
        return {"mechanism": self.name, "noise_multiplier": self.noise_multiplier, "sampling_rate": self.sampling_rate,
                "sensitivity": None if sens is None else {"l2": sens.l2, "l1": sens.l1, "dimension": sens.dimension}}

    @classmethod
    def from_state(cls, state: dict) -> Mechanism:
        sens = state["sensitivity"]
        if sens is not None:
            sens = Sensitivity(float(sens["l2"]), float(sens["l1"]), int(sens["dimension"]))
        rate = state["sampling_rate"]
        mechanism = cls(float(state["noise_multiplier"]), None if rate is None else float(rate), sens)
        if mechanism.name != state["mechanism"]:
            raise DPError(f"saved mechanism {state['mechanism']!r} does not match its parameters")
        return mechanism


def composed_epsilon(releases, delta: float) -> float:
    """Epsilon at `delta` of the composition of releases [(mechanism, count), ...] (RDP adds up order by order)."""
    if not 0 < delta < 1:
        raise DPError(f"delta must be in (0, 1), got {delta}")
    releases = list(releases)
    if any(count < 0 for _, count in releases):
        raise DPError(f"release counts must be >= 0, got {[count for _, count in releases]}")
    releases = [(mechanism, count) for mechanism, count in releases if count > 0]
    if not releases:
        return 0.0
    orders = ORDERS if all(m.sensitivity is None for m, _ in releases) else INTEGER_ORDERS
    total = sum(count * mechanism.rdp(orders) for mechanism, count in releases)
    return float(dp_accounting.rdp.compute_epsilon(orders, total, delta)[0])


def noise_for_epsilon(epsilon: float, delta: float, rounds: int, sampling_rate: float | None = None,
                      sensitivity: Sensitivity | None = None, also_spent=(), max_noise: float = 1e4,
                      rel_tol: float = 1e-4) -> float:
    """Smallest noise multiplier (to rel_tol, rounded up) whose `rounds` releases spend at most `epsilon` at `delta`.

    also_spent: other releases [(mechanism, count), ...] charged to the same budget (e.g. a statistics round).
    """
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise DPError(f"epsilon must be a positive number, got {epsilon}")
    if rounds < 1:
        raise DPError(f"rounds must be >= 1, got {rounds}")
    also_spent = list(also_spent)

    def spent(z: float) -> float:
        return composed_epsilon([(Mechanism(z, sampling_rate, sensitivity), rounds), *also_spent], delta)

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
    """Releases spent per named mechanism (e.g. "stats", "train") under one budget; never spends past it.

    Spend BEFORE a release is decoded: a refused spend leaves the count unchanged. The state is a plain
    dict (JSON-safe), so a resumed run continues the same count.
    """

    def __init__(self, mechanisms: dict[str, Mechanism], delta: float, budget: float,
                 spent: dict[str, int] | None = None):
        if not mechanisms:
            raise DPError("an accountant needs at least one mechanism")
        if not (math.isfinite(budget) and budget > 0):
            raise DPError(f"the epsilon budget must be a positive number, got {budget}")
        self.mechanisms, self.delta, self.budget = dict(mechanisms), float(delta), float(budget)
        self.spent = {name: 0 for name in self.mechanisms}
        for name, count in (spent or {}).items():
            self._check_name(name)
            self.spent[name] = int(count)
        if self.epsilon > self.budget:
            raise BudgetError(f"releases {self.spent} already spend epsilon {self.epsilon:.4g} > budget {self.budget}")

    def _check_name(self, name: str) -> None:
        if name not in self.mechanisms:
            raise DPError(f"unknown release {name!r}; the accountant knows {sorted(self.mechanisms)}")

    def _epsilon(self, spent: dict[str, int]) -> float:
        return composed_epsilon([(self.mechanisms[name], count) for name, count in spent.items()], self.delta)

    @property
    def epsilon(self) -> float:
        return self._epsilon(self.spent)

    def epsilon_after(self, name: str, count: int = 1) -> float:
        self._check_name(name)
        return self._epsilon({**self.spent, name: self.spent[name] + count})

    def can_spend(self, name: str, count: int = 1) -> bool:
        return self.epsilon_after(name, count) <= self.budget

    def spend(self, name: str, count: int = 1) -> float:
        """Record `count` more releases of `name` (before they are decoded); returns epsilon spent so far."""
        after = self.epsilon_after(name, count)
        if after > self.budget:
            raise BudgetError(f"release {self.spent[name] + count} of {name!r} would spend epsilon {after:.4g} "
                              f"> budget {self.budget}")
        self.spent[name] += count
        return after

    def state_dict(self) -> dict:
        return {"delta": self.delta, "budget": self.budget, "epsilon": self.epsilon, "spent": dict(self.spent),
                "mechanisms": {name: m.state_dict() for name, m in self.mechanisms.items()}}

    @classmethod
    def from_state(cls, state: dict) -> Accountant:
        """Rebuild a saved accountant (a resumed run continues the same counts)."""
        try:
            mechanisms = {name: Mechanism.from_state(m) for name, m in state["mechanisms"].items()}
            return cls(mechanisms, float(state["delta"]), float(state["budget"]), dict(state["spent"]))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise DPError(f"saved accountant state is invalid: {error!r}") from None

    def check_matches(self, other: Accountant) -> None:
        """Refuse to resume under different mechanisms, delta or budget than the saved ones."""
        if (self.mechanisms, self.delta, self.budget) != (other.mechanisms, other.delta, other.budget):
            raise DPError("the saved accountant was for different mechanisms, delta or budget; start a new run")
