"""The Skellam mechanism in fedrec's fixed-point integer domain: rounding, noise shares, sensitivity, headroom.

Why Skellam (Agarwal, Kairouz & Liu, NeurIPS 2021) rather than the distributed discrete Gaussian (Kairouz,
Liu & Steinke, ICML 2021): a sum of independent Skellam variables is exactly Skellam, so n client shares
of parameter mu/n add up to precisely the mechanism the accountant analyses, whatever subset survives; the
sum of discrete Gaussians is only close to a discrete Gaussian and needs an extra approximation term.
Skellam noise is two Poisson draws (numpy samples them exactly and vectorised); an exact discrete-Gaussian
sampler needs a per-value rejection loop.

Integer grid: a float x is read as x * 2^frac_bits (fedrec's secure-aggregation encoding, see
fedrec.shared.secagg.fixedpoint), randomly rounded (unbiased), then the noise is added. Rounding a clipped
vector can grow it; rather than resample (the conditional rounding of Kairouz et al.), we put the
worst-case growth into the sensitivity: with rounding floor(y + U), U uniform, coupled between neighbours,
each coordinate of the difference grows by at most 1, so Delta_2 <= C * 2^f + sqrt(d). At f = 24 that is a
relative growth of sqrt(d) / (C * 2^24), about 1e-5 for fedrec's ~5e4 coordinates and C = 1.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass

import numpy as np

from fedrec.shared.dp.errors import DPError

# numpy's Poisson sampler accepts means up to about 9.2e18 but is only accurate far below that: measured here,
# the variance of its draws is right at 1e13, 1% high at 1e14, 10% at 3e14 and 42% at 1e16 (not Poisson, so
# not the Skellam mechanism the accountant assumes). Larger means are drawn as a sum of independent Poisson
# draws of mean at most EXACT_POISSON_MEAN (a sum of Poissons is exactly Poisson), and a plan whose client
# mean would need more than MAX_POISSON_PARTS of them is refused.
EXACT_POISSON_MEAN = 2.0**40
MAX_POISSON_PARTS = 64
MAX_POISSON_MEAN = EXACT_POISSON_MEAN * MAX_POISSON_PARTS
# DP vectors are encoded with fewer fractional bits than plain secure sums (24): it keeps every client's
# Poisson mean in the sampler's exact range (the mean grows as 4^frac_bits), while the rounding it adds, at
# most sqrt(d) per user in integer units, is 0.4% of the clip at d = 56,000 and counted in the sensitivity.
DP_FRAC_BITS = 16
INT64_LIMIT = 2**63 - 1


def secure_rng() -> np.random.Generator:
    """A generator freshly seeded with 256 bits from the OS's CSPRNG (use one per call in production)."""
    return np.random.Generator(np.random.PCG64DXSM(np.random.SeedSequence(secrets.randbits(256))))


@dataclass(frozen=True)
class Sensitivity:
    """L2 and L1 sensitivity, in integer units, of one client's rounded vector to one user's data."""

    l2: float
    l1: float
    dimension: int


def sensitivity(clip: float, dimension: int, frac_bits: int = DP_FRAC_BITS) -> Sensitivity:
    """Sensitivity of randomized rounding of (a sum of per-user vectors clipped to L2 <= clip) on the 2^-f grid.

    Add/remove one user moves the float vector by at most `clip`; the coupled rounding adds at most 1 per
    coordinate, hence l2 <= clip*2^f + sqrt(d). The difference is an integer vector, so l1 <= l2^2, and
    l1 <= sqrt(d) * l2 by Cauchy-Schwarz.
    """
    if not (math.isfinite(clip) and clip > 0):
        raise DPError(f"clip norm must be a positive number, got {clip}")
    if dimension < 1:
        raise DPError(f"dimension must be >= 1, got {dimension}")
    l2 = clip * 2.0**frac_bits + math.sqrt(dimension)
    return Sensitivity(l2=l2, l1=min(math.sqrt(dimension) * l2, l2 * l2), dimension=int(dimension))


def randomized_round(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unbiased rounding to int64: floor(y) + Bernoulli(frac(y)), i.e. floor(y + U)."""
    y = np.asarray(y, dtype=np.float64)
    low = np.floor(y)
    return (low + (rng.random(y.shape) < (y - low))).astype(np.int64)


def skellam_noise(shape: int | tuple[int, ...], mu: float, rng: np.random.Generator) -> np.ndarray:
    """Symmetric Skellam(mu) integers: Poisson(mu) - Poisson(mu), mean 0, variance 2*mu."""
    if not (math.isfinite(mu) and 0 <= mu <= MAX_POISSON_MEAN):
        raise DPError(f"Skellam parameter mu={mu:.3g} is outside [0, {MAX_POISSON_MEAN:.3g}]; lower the fractional "
                      "bits or the noise")
    if mu == 0:
        return np.zeros(shape, dtype=np.int64)
    parts = math.ceil(mu / EXACT_POISSON_MEAN)
    noise = np.zeros(shape, dtype=np.int64)
    for _ in range(parts):  # at most MAX_POISSON_PARTS; one for every plan fedrec makes at DP_FRAC_BITS
        noise += rng.poisson(mu / parts, shape).astype(np.int64)
        noise -= rng.poisson(mu / parts, shape).astype(np.int64)
    return noise


def noise_tail(total_mu: float, dimension: int, failure_log2: float = 40.0) -> float:
    """t such that Skellam(total_mu) exceeds t in any of `dimension` coordinates with probability <= 2^-failure_log2.

    Bernstein: Poisson(m) - m is sub-gamma with variance m and scale 1, so the Skellam X with variance
    v = 2*total_mu has P(|X| >= t) <= 2 exp(-t^2 / (2 (v + t/3))); union over the coordinates.
    """
    log_terms = math.log(2 * dimension) + failure_log2 * math.log(2)
    variance = 2.0 * total_mu
    return log_terms / 3 + math.sqrt(log_terms**2 / 9 + 2 * log_terms * variance)


def check_headroom(n_clients: int, value_bound: float, client_mu: float, dimension: int,
                   frac_bits: int = DP_FRAC_BITS, failure_log2: float = 40.0) -> float:
    """Refuse a configuration whose decoded sum (values plus every client's noise) could wrap past int64.

    value_bound bounds |coordinate| of the SUM of the clients' float vectors (e.g. number of users x clip).
    Returns the worst-case magnitude in integer units, for logging.
    """
    values = value_bound * 2.0**frac_bits + n_clients  # + up to 1 per client from rounding
    worst = values + noise_tail(n_clients * client_mu, dimension, failure_log2)
    if not worst < INT64_LIMIT:
        raise DPError(
            f"sum of {n_clients} clients (values up to {value_bound}, Skellam mu {client_mu:.3g} each) may reach "
            f"{worst:.3g} > 2^63 in the {frac_bits}-bit fixed-point domain; lower frac_bits, the clip or the noise"
        )
    return worst


def encode_noised(x: np.ndarray, client_mu: float, rng: np.random.Generator | None = None,
                  frac_bits: int = DP_FRAC_BITS, bound: float = 2.0**20) -> np.ndarray:
    """A client's noised fixed-point vector (uint64, mod 2^64), to be masked; decode the sum with fixedpoint.decode.

    x is the client's (already per-user clipped) float vector; |x| beyond `bound` is refused, never clipped.
    rng: pass a seeded generator only in tests; by default a fresh OS-seeded one is drawn for every call.
    """
    rng = secure_rng() if rng is None else rng
    x = np.asarray(x, dtype=np.float64).ravel()
    bad = np.flatnonzero(~(np.abs(x) <= bound))  # NaN fails the comparison and is caught too
    if bad.size:
        raise DPError(
            f"value {float(x[bad[0]])!r} at index {int(bad[0])} is outside ±{bound} ({bad.size} offending values)"
        )
    if not bound * 2.0**frac_bits + 1 < INT64_LIMIT:
        raise DPError(f"bound {bound} does not fit in int64 with {frac_bits} fractional bits")
    scaled = randomized_round(x * 2.0**frac_bits, rng) + skellam_noise(x.shape, client_mu, rng)
    return scaled.view(np.uint64)
