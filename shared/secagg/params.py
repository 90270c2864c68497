"""Public secure-aggregation parameters; None means "the default for this many clients"."""

import dataclasses
from dataclasses import dataclass

from fedrec.shared.errors import ConfigError
from fedrec.shared.secagg import fixedpoint, graph


@dataclass(frozen=True)
class SecAggParams:
    """Parameters the server chooses and announces; resolve() fills in the defaults for n clients."""

    frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS
    """Fractional bits of the fixed-point encoding (quantisation step 2^-frac_bits)."""
    bound: float | None = None
    """Largest |value| a client may send; None: fixedpoint.max_bound(n, frac_bits)."""
    degree: int | None = None
    """Neighbours per client in the pairwise-mask graph; None: graph.default_degree(n)."""
    committee_size: int | None = None
    """Clients holding the shares of everyone's secrets; None: graph.default_committee_size(n)."""
    threshold: int | None = None
    """Shares needed to reconstruct a secret; None: a strict majority of the committee."""

    def resolve(self, n: int) -> "SecAggParams":
        """A copy with every default filled in for a cohort of n clients, checked for consistency."""
        if n < 1:
            raise ConfigError("secure aggregation needs at least one client")
        size = self.committee_size if self.committee_size is not None else graph.default_committee_size(n)
        size = min(size, n)
        out = dataclasses.replace(
            self,
            bound=self.bound if self.bound is not None else fixedpoint.max_bound(n, self.frac_bits),
            degree=self.degree if self.degree is not None else graph.default_degree(n),
            committee_size=size,
            threshold=self.threshold if self.threshold is not None else graph.default_threshold(size),
        )
        if out.bound > fixedpoint.max_bound(n, out.frac_bits):
            raise ConfigError(
                f"secagg bound {out.bound} is too large for {n} clients with {out.frac_bits} fractional "
                f"bits: the sum could overflow (max {fixedpoint.max_bound(n, out.frac_bits):.6g})"
            )
        if not 1 <= out.threshold <= size:
            raise ConfigError(f"secagg threshold {out.threshold} must be in [1, committee size {size}]")
        return out
