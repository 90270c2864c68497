"""Fixed-point encoding of float vectors into uint64 (mod 2^64) so that masked sums are exact.

Tolerance: each value is rounded to the nearest multiple of 2^-f, so for a sum of n encoded vectors
|decode(sum) - float sum| <= n * 2^-(f+1) elementwise (plus the float rounding of the reference sum and
of the final division, relative 2^-53), provided every |x| <= max_bound(n, f).
"""

import numpy as np

from fedrec.shared.secagg.errors import SecAggRangeError

DEFAULT_FRAC_BITS = 24
# The int64 sum stays exact while n*B*2^f < 2^62; we cap at 2^61 so that rounding (+0.5 per value)
# and a later change of n by a few clients cannot push the sum past 2^63.
_HEADROOM_BITS = 61


def max_bound(n_clients: int, frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """Largest per-value magnitude for which the sum of n_clients encoded values is exact in int64."""
    if n_clients < 1:
        raise ValueError(f"n_clients must be >= 1, got {n_clients}")
    return 2.0 ** (_HEADROOM_BITS - frac_bits) / n_clients


def tolerance(n_clients: int, frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """Worst-case elementwise quantisation error of a decoded sum of n_clients vectors."""
    return n_clients * 2.0 ** -(frac_bits + 1)


def encode(x: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS, bound: float = 1.0) -> np.ndarray:
    """Round x * 2^frac_bits to int64 and view it as uint64; refuse (never clip) values beyond bound.

    x is flattened in C order; the index in the error message is the flat index.
    """
    x = check_range(x, frac_bits, bound)
    return np.rint(x * 2.0**frac_bits).astype(np.int64).view(np.uint64)


def check_range(x: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS, bound: float = 1.0) -> np.ndarray:
    """x flattened to float64, or SecAggRangeError naming the first value beyond `bound` (NaN included)."""
    if not 0 <= frac_bits <= 52:
        raise ValueError(f"frac_bits must be in [0, 52], got {frac_bits}")
    if not (np.isfinite(bound) and 0 < bound * 2.0**frac_bits <= 2.0**_HEADROOM_BITS):
        raise SecAggRangeError(
            f"bound {bound} with {frac_bits} fractional bits does not fit in int64 (max {max_bound(1, frac_bits)})"
        )
    x = np.asarray(x, dtype=np.float64).ravel()
    bad = np.flatnonzero(~(np.abs(x) <= bound))  # NaN compares False, so it is caught here too
    if bad.size:
        i = int(bad[0])
        raise SecAggRangeError(
            f"value {float(x[i])!r} at index {i} is outside the secure-aggregation bound ±{bound} "
            f"({bad.size} offending values); scale the update or raise the bound"
        )
    return x


def decode(total: np.ndarray, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Read a uint64 sum as two's-complement int64 and scale back to float64."""
    return np.asarray(total, dtype=np.uint64).view(np.int64).astype(np.float64) / 2.0**frac_bits
