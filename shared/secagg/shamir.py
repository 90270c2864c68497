"""t-of-n Shamir secret sharing of 32-byte secrets, chunked over the prime field 2^31 - 1 (vectorised numpy).

A secret is cut into nine 30-bit chunks and each chunk is shared with its own random polynomial, so any t
shares give every chunk and any t-1 give none (each chunk is perfectly hidden). A share is the nine field
values at one x, 36 bytes. All arithmetic stays below 2^63 in uint64: values are < 2^31, so a product of two
is < 2^62, and every product is reduced before the next is added.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

import numpy as np

from fedrec.shared.secagg.errors import SecAggAbort

PRIME = 2**31 - 1  # a Mersenne prime
SECRET_BYTES = 32
CHUNK_BITS = 30
CHUNKS = -(-8 * SECRET_BYTES // CHUNK_BITS)  # 9
SHARE_BYTES = 4 * CHUNKS  # 36: nine big-endian uint32 field values
_P = np.uint64(PRIME)


def _chunks(secret: bytes) -> np.ndarray:
    s = int.from_bytes(secret, "big")
    return np.array([(s >> (CHUNK_BITS * i)) & ((1 << CHUNK_BITS) - 1) for i in range(CHUNKS)], dtype=np.uint64)


def _field_uniform(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform values in [0, PRIME) from the OS CSPRNG (anything weaker would let t-1 shares reveal the secret).

    31 random bits are uniform on [0, 2^31); the one value equal to PRIME is drawn again, so there is no bias."""
    out = np.frombuffer(secrets.token_bytes(4 * int(np.prod(shape))), dtype=np.uint32).astype(np.uint64).reshape(shape)
    out &= np.uint64(0x7FFFFFFF)
    while (bad := out == _P).any():
        out[bad] = np.frombuffer(secrets.token_bytes(4 * int(bad.sum())), dtype=np.uint32) & 0x7FFFFFFF
    return out


@lru_cache(maxsize=64)
def _vandermonde(xs: tuple[int, ...], threshold: int) -> np.ndarray:
    """x^k mod p for each x (rows) and k < threshold (columns); a committee reuses it all cohort long."""
    x = np.array(xs, dtype=np.uint64)[:, None]
    powers = np.ones((len(xs), threshold), dtype=np.uint64)
    for k in range(1, threshold):
        powers[:, k] = powers[:, k - 1] * x[:, 0] % _P
    powers.setflags(write=False)
    return powers


def _mulmod_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a @ b) mod p for field matrices, exact: b is split into 16-bit halves so no dot product passes 2^63."""
    lo, hi = b & np.uint64(0xFFFF), b >> np.uint64(16)
    # Each product of a 31-bit and a 16-bit value is < 2^47: sums of up to 2^16 terms stay below 2^63.
    return ((a @ hi % _P) * np.uint64(1 << 16) + a @ lo) % _P


def split(secret: bytes, xs: list[int], threshold: int) -> list[bytes]:
    """The share (36 bytes) of each x in xs of a degree threshold-1 sharing of `secret` (32 bytes)."""
    if len(set(xs)) != len(xs) or any(not 1 <= x < PRIME for x in xs):
        raise ValueError(f"x-coordinates must be distinct and in [1, {PRIME}), got {xs}")
    if not 1 <= threshold <= len(xs) or threshold > 2**16:
        raise ValueError(f"threshold {threshold} must be in [1, {len(xs)}]")
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret is {SECRET_BYTES} bytes, got {len(secret)}")
    coefficients = np.vstack([_chunks(secret)[None, :], _field_uniform((threshold - 1, CHUNKS))])
    ys = _mulmod_sum(_vandermonde(tuple(xs), threshold), coefficients)
    return [row.astype(">u4").tobytes() for row in ys]


def share_values(raw: bytes) -> np.ndarray:
    """The field values of a share (rejects a wrong length or values outside the field)."""
    if len(raw) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, got {len(raw)}")
    values = np.frombuffer(raw, dtype=">u4").astype(np.uint64)
    if (values >= _P).any():
        raise ValueError("share value outside the field")
    return values


def lagrange_at_zero(xs: tuple[int, ...]) -> np.ndarray:
    """Coefficients l_i with f(0) = sum l_i f(x_i) mod p for any polynomial of degree < len(xs)."""
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return np.array(out, dtype=np.uint64)


class Combiner:
    """Reconstructs many secrets of one threshold; the Lagrange coefficients of a set of holders are
    computed once (in a round every secret usually comes from the same holders)."""

    def __init__(self, threshold: int):
        self.threshold = threshold
        self._coefficients: dict[tuple[int, ...], np.ndarray] = {}

    def combine(self, points: list[tuple[int, bytes]]) -> bytes:
        """The secret from the first `threshold` of the (x, share) points (all assumed good)."""
        distinct = dict(points)
        if len(distinct) < self.threshold:
            raise SecAggAbort(f"{len(distinct)} distinct shares, need at least {self.threshold} to reconstruct")
        pts = list(distinct.items())[: self.threshold]
        xs = tuple(x for x, _ in pts)
        if xs not in self._coefficients:
            self._coefficients[xs] = lagrange_at_zero(xs)
        try:
            ys = np.vstack([share_values(raw) for _, raw in pts])
        except ValueError as e:
            raise SecAggAbort(f"a share is malformed: {e}") from None
        chunks = _mulmod_sum(self._coefficients[xs][None, :], ys)[0]
        if (chunks >> np.uint64(CHUNK_BITS)).any():
            raise SecAggAbort("the shares are inconsistent: a reconstructed chunk is out of range")
        s = sum(int(c) << (CHUNK_BITS * i) for i, c in enumerate(chunks))
        try:
            return s.to_bytes(SECRET_BYTES, "big")
        except OverflowError:
            raise SecAggAbort("the shares are inconsistent: the reconstructed secret is too long") from None


def combine(points: list[tuple[int, bytes]], threshold: int) -> bytes:
    """The secret from the first `threshold` of the (x, share) points."""
    return Combiner(threshold).combine(points)
