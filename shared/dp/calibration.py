"""Per-client Skellam noise shares so the decoded sum keeps its target noise despite dropouts and colluders.

The target is Skellam(mu_total) on the sum with mu_total = (z * Delta_2)^2 / 2 (variance (z * Delta_2)^2, z the
noise multiplier). Dropped clients add nothing, and colluders can subtract the noise they added themselves;
so each of the n clients adds mu_total / (n - max_dropouts - max_colluders), and any round with more than
max_dropouts dropouts is refused. The sum of independent Skellam shares is exactly Skellam, so the
guarantee is the mechanism's own, not an approximation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedrec.shared.dp.errors import DPError
from fedrec.shared.dp.skellam import DP_FRAC_BITS, Sensitivity, check_headroom, sensitivity


def colluders_for(fraction: float, n_clients: int) -> int:
    """Number of colluding clients assumed for a colluder fraction (rounded up: the pessimistic side)."""
    if not 0 <= fraction < 1:
        raise DPError(f"colluder fraction must be in [0, 1), got {fraction}")
    return math.ceil(fraction * n_clients - 1e-12)


@dataclass(frozen=True)
class NoisePlan:
    """Everything a client needs to noise its vector, and the server to check a round keeps the guarantee."""

    noise_multiplier: float
    clip: float
    dimension: int
    n_clients: int
    max_dropouts: int
    max_colluders: int
    frac_bits: int = DP_FRAC_BITS

    def __post_init__(self):
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise DPError(f"noise multiplier must be positive, got {self.noise_multiplier}")
        if self.max_dropouts < 0 or self.max_colluders < 0:
            raise DPError("dropout and colluder bounds must be >= 0")
        if self.honest_survivors < 1:
            raise DPError(
                f"{self.n_clients} clients with up to {self.max_dropouts} dropouts and {self.max_colluders} colluders "
                "leave no honest survivor to carry the noise"
            )
        sensitivity(self.clip, self.dimension, self.frac_bits)  # validates clip and dimension

    @property
    def honest_survivors(self) -> int:
        """Worst-case number of clients whose noise remains in the decoded sum."""
        return self.n_clients - self.max_dropouts - self.max_colluders

    @property
    def sensitivity(self) -> Sensitivity:
        return sensitivity(self.clip, self.dimension, self.frac_bits)

    @property
    def total_mu(self) -> float:
        """Skellam parameter the accountant assumes for the sum (variance 2 * total_mu, integer units)."""
        return (self.noise_multiplier * self.sensitivity.l2) ** 2 / 2

    @property
    def client_mu(self) -> float:
        """Each client's share."""
        return self.total_mu / self.honest_survivors

    def noise_std(self) -> float:
        """Standard deviation of the noise on one decoded float coordinate when every client survives."""
        return math.sqrt(2 * self.client_mu * self.n_clients) / 2.0**self.frac_bits

    def check_round(self, n_survivors: int) -> None:
        """Refuse to decode a round whose survivors are too few for the announced guarantee."""
        if n_survivors < self.n_clients - self.max_dropouts:
            raise DPError(
                f"only {n_survivors} of {self.n_clients} clients survived; the noise is calibrated for at most "
                f"{self.max_dropouts} dropouts, so this round must not be decoded"
            )

    def check_headroom(self, value_bound: float) -> float:
        """Refuse a plan whose sum could wrap modulo 2^64 (value_bound bounds |coordinate| of the float sum)."""
        return check_headroom(self.n_clients, value_bound, self.client_mu, self.dimension, self.frac_bits)
