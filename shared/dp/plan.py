"""A run's privacy plan: which sums it releases, each one's per-user clip, the one noise multiplier, the epsilon spent.

A run releases one statistics sum, one training sum per round and one evaluation sum per evaluation, each
clipped per user to its own L2 bound and noised with Skellam noise of the same multiplier z (noise std about
z times the clip). fedrec picks the smallest z whose composition over the planned releases spends at most
the budget. No amplification by sampling is claimed: the server chooses who takes part and sees it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedrec.shared.dp.accounting import Mechanism, composed_epsilon
from fedrec.shared.dp.errors import BudgetError
from fedrec.shared.dp.skellam import DP_FRAC_BITS, MAX_POISSON_MEAN, sensitivity
from fedrec.shared.federated import DP_EVAL_SCALARS, DP_STATS_SCALARS, released_factors, train_length

STATS, TRAIN, EVALUATE = "stats", "train", "evaluate"
MECHANISM = "skellam"


def stats_clip(rating_max: float) -> float:
    """A user's statistics contribution [its mean rating, 1] never exceeds this."""
    return math.sqrt(rating_max**2 + 1.0)


def evaluations_planned(rounds: int, eval_every: int) -> int:
    return sum(1 for r in range(1, rounds + 1) if r % eval_every == 0 or r == rounds)


@dataclass(frozen=True)
class DPPlan:
    """The noise multiplier and per-release clips of one run, and the accounting of what it has spent."""

    epsilon: float
    delta: float
    noise_multiplier: float
    clips: dict[str, float]
    dimensions: dict[str, int]
    planned: dict[str, int]

    def mechanism(self, release: str) -> Mechanism:
        # Clients divide each clipped vector by its clip before encoding (the server multiplies the sum back):
        # every release then has unit L2 sensitivity in the encoded domain, whatever the size of its values.
        return Mechanism(self.noise_multiplier, None, sensitivity(1.0, self.dimensions[release], DP_FRAC_BITS))

    def spent(self, counts: dict[str, int]) -> float:
        """Epsilon (at this plan's delta) after the given numbers of each release."""
        return composed_epsilon([(self.mechanism(name), counts.get(name, 0)) for name in self.clips], self.delta)

    def can_release(self, counts: dict[str, int], release: str) -> bool:
        """Whether one more `release` stays within the budget (a small slack covers the bisection's rounding)."""
        after = {**counts, release: counts.get(release, 0) + 1}
        return self.spent(after) <= self.epsilon * (1 + 1e-6)

    def summary(self, rounds: int, sampling_rate: float) -> dict:
        """The results JSON's `dp` object."""
        return {"epsilon": self.epsilon, "delta": self.delta, "noise_multiplier": self.noise_multiplier,
                "clip": self.clips[TRAIN], "eval_clip": self.clips[EVALUATE], "stats_clip": self.clips[STATS],
                "rounds": rounds, "sampling_rate": sampling_rate, "mechanism": MECHANISM,
                "amplification": "none (the server chooses and sees the participants)",
                "releases_planned": dict(self.planned), "unit": "user"}


def plan_run(config, n_items: int, n_users: int | None) -> DPPlan:
    """The smallest noise multiplier spending at most config.dp.epsilon over the run's planned releases."""
    dp, fed = config.dp, config.federated
    if dp.delta is not None:
        delta = dp.delta
    elif n_users:
        delta = 1.0 / n_users
    else:
        raise BudgetError("dp.delta must be set when the number of users is unknown (a deployed server): "
                          "pass --dp-delta, for example 1e-5")
    clips = {STATS: stats_clip(config.data.rating_max or 5.0), TRAIN: dp.clip, EVALUATE: dp.eval_clip}
    dimensions = {STATS: len(DP_STATS_SCALARS), TRAIN: train_length(n_items, released_factors(config)),
                  EVALUATE: len(DP_EVAL_SCALARS)}
    planned = {STATS: 1, TRAIN: fed.rounds, EVALUATE: evaluations_planned(fed.rounds, fed.eval_every)}

    def spent(z: float) -> float:
        return DPPlan(dp.epsilon, delta, z, clips, dimensions, planned).spent(planned)

    low, high = 1e-2, 1.0
    while spent(high) > dp.epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise BudgetError(f"epsilon {dp.epsilon} at delta {delta:.3g} cannot cover {planned[TRAIN]} rounds and "
                              f"{planned[EVALUATE]} evaluations with any usable noise; raise the budget or plan "
                              "fewer rounds or evaluations (--eval-every)")
    while high / low > 1.001:  # invariant: spent(low) > epsilon >= spent(high)
        mid = math.sqrt(low * high)
        low, high = (low, mid) if spent(mid) <= dp.epsilon else (mid, high)
    # Each client's share must be a Poisson mean numpy can draw, and the sum must not wrap modulo 2^64.
    worst = max((high * sensitivity(1.0, dimensions[r], DP_FRAC_BITS).l2) ** 2 / 2 for r in clips)
    if not worst <= MAX_POISSON_MEAN:
        raise BudgetError(f"epsilon {dp.epsilon} at delta {delta:.3g} cannot cover {planned[TRAIN]} rounds and "
                          f"{planned[EVALUATE]} evaluations: it needs a noise multiplier of {high:.3g}, more than the "
                          "fixed-point sum can carry; raise the budget or plan fewer rounds or evaluations")
    return DPPlan(dp.epsilon, delta, high, clips, dimensions, planned)


def privacy_level(config) -> str:
    """What protects the clients in a run: "none", "secure-sum" or "secure-sum+dp"."""
    if not config.federated.secure:
        return "none"
    return "secure-sum+dp" if config.dp.epsilon is not None else "secure-sum"


def privacy_line(config, n_items: int, n_users: int | None) -> str:
    """The first line of every run: what protects the clients, so a secure sum is never mistaken for DP."""
    level = privacy_level(config)
    if level == "secure-sum+dp":
        plan = plan_run(config, n_items, n_users)
        return (f"privacy: secure-sum+dp (user-level epsilon {plan.epsilon:g} at delta {plan.delta:.3g}, noise "
                f"multiplier {plan.noise_multiplier:.3f}, clip {plan.clips[TRAIN]:g}, Skellam)")
    if level == "secure-sum":
        return "privacy: secure-sum (the server sees only sums; no differential privacy: see the README's threat model)"
    return "privacy: none (the server sees every client's vector)"
