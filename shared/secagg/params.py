"""Announced secure-aggregation parameters, and the cohort plan every party derives from them on its own."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from fedrec.shared.errors import ConfigError
from fedrec.shared.secagg import analysis, fixedpoint


@dataclass(frozen=True)
class SecAggParams:
    """What the server announces. Clients check these against their own policy, then derive the plan."""

    frac_bits: int = fixedpoint.DEFAULT_FRAC_BITS
    """Fractional bits of the fixed-point encoding (quantisation step 2^-frac_bits)."""
    bound: float | None = None
    """Largest |value| a client may send; None: fixedpoint.max_bound(n, frac_bits)."""
    dropout_bound: float = 0.2
    """Largest fraction of a cohort that may drop out of one exchange; more dropouts abort it."""
    colluder_fraction: float = 1 / 3
    """Largest fraction of a cohort that may collude with the server (must be below 1/2)."""
    security_bits: int = 40
    """The graph and committee fail (reveal more than the sum) with probability at most 2^-security_bits."""

    def check(self) -> None:
        if not 0.0 <= self.dropout_bound < 0.5:
            raise ConfigError(f"secagg dropout bound {self.dropout_bound} must be in [0, 0.5)")
        if not 0.0 <= self.colluder_fraction < 0.5:
            raise ConfigError(f"secagg colluder fraction {self.colluder_fraction} must be in [0, 0.5)")
        if not 1 <= self.security_bits <= 128:
            raise ConfigError(f"secagg security bits {self.security_bits} must be in [1, 128]")

    def plan(self, n: int) -> CohortPlan:
        """Everything derived for a cohort of n clients (the same on every client and on the server)."""
        self.check()
        if n < 1:
            raise ConfigError("secure aggregation needs at least one client")
        colluders, max_dropouts = math.floor(self.colluder_fraction * n), math.floor(self.dropout_bound * n)
        honest_survivors = n - colluders - max_dropouts
        p = analysis.edge_probability(honest_survivors, self.security_bits)
        committee = min(n, analysis.committee_size(n, colluders, self.security_bits))
        threshold = analysis.majority(committee)
        bound = self.bound if self.bound is not None else fixedpoint.max_bound(n, self.frac_bits)
        if bound > fixedpoint.max_bound(n, self.frac_bits):
            raise ConfigError(
                f"secagg bound {bound} is too large for {n} clients with {self.frac_bits} fractional "
                f"bits: the sum could overflow (max {fixedpoint.max_bound(n, self.frac_bits):.6g})")
        return CohortPlan(
            n=n, colluders=colluders, max_dropouts=max_dropouts, edge_probability=p,
            min_neighbours=analysis.min_surviving_neighbours(n, colluders, self.security_bits, p >= 1.0),
            committee_size=committee, threshold=threshold, frac_bits=self.frac_bits, bound=bound)

    def at_least_as_strong_as(self, policy: SecAggParams) -> str:
        """Why these announced parameters are weaker than a client's policy ("" when they are not)."""
        if self.colluder_fraction < policy.colluder_fraction:
            return f"colluder fraction {self.colluder_fraction:g} is below this client's {policy.colluder_fraction:g}"
        if self.dropout_bound < policy.dropout_bound:
            return f"dropout bound {self.dropout_bound:g} is below this client's {policy.dropout_bound:g}"
        if self.security_bits < policy.security_bits:
            return f"security of 2^-{self.security_bits} is below this client's 2^-{policy.security_bits}"
        return ""

    def to_payload(self) -> dict:
        return {f"param.{k}": (-1.0 if v is None else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_payload(cls, payload: dict) -> SecAggParams:
        bound = float(payload["param.bound"])
        return cls(frac_bits=int(payload["param.frac_bits"]), bound=None if bound < 0 else bound,
                   dropout_bound=float(payload["param.dropout_bound"]),
                   colluder_fraction=float(payload["param.colluder_fraction"]),
                   security_bits=int(payload["param.security_bits"]))


@dataclass(frozen=True)
class CohortPlan:
    """Derived for one cohort size: who masks with whom, who holds shares, and what may be lost."""

    n: int
    colluders: int
    """floor(colluder_fraction * n): the colluders the plan must withstand."""
    max_dropouts: int
    """floor(dropout_bound * n): more dropouts in one exchange abort it."""
    edge_probability: float
    """Of each pair being neighbours in the mask graph (1.0: the complete graph)."""
    min_neighbours: int
    """Surviving neighbours every survivor must keep before any self-mask is revealed."""
    committee_size: int
    threshold: int
    frac_bits: int
    bound: float


@dataclass(frozen=True)
class ClientPolicy:
    """A client's own privacy policy: the server's settings never override it."""

    require_secure: bool = True
    """Refuse to send a vector that is not masked (a `plain` request gets an error reply)."""
    min_cohort: int = 3
    """Smallest cohort, and smallest set of survivors, this client's vector may be summed in."""
    minimum: SecAggParams = SecAggParams()
    """The weakest announced bounds this client accepts (colluder fraction, dropout bound, security bits)."""


def from_config(config) -> SecAggParams:
    """The parameters a server announces, from a FedrecConfig."""
    from fedrec.shared.dp.skellam import DP_FRAC_BITS

    s = config.secagg
    dp = getattr(getattr(config, "dp", None), "epsilon", None) is not None
    return SecAggParams(dropout_bound=s.dropout_bound, colluder_fraction=s.colluder_fraction,
                        security_bits=s.security_bits,
                        frac_bits=DP_FRAC_BITS if dp else fixedpoint.DEFAULT_FRAC_BITS)


def policy_from_config(config) -> ClientPolicy:
    """A client's policy from its OWN FedrecConfig (never from settings the server sent)."""
    s = config.secagg
    require = s.require_secure if s.require_secure is not None else config.federated.secure
    return ClientPolicy(require_secure=require, min_cohort=s.min_cohort, minimum=from_config(config))
