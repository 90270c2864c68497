"""t-of-n Shamir secret sharing of short secrets over the prime field 2^521 - 1 (Python integers)."""

import secrets

from fedrec.shared.secagg.errors import SecAggAbort

PRIME = 2**521 - 1  # a Mersenne prime comfortably larger than any 32-byte secret
SHARE_BYTES = 66  # ceil(521 / 8)


def split(secret: bytes, xs: list[int], threshold: int) -> list[int]:
    """Share y = f(x) for each x in xs, where f has degree threshold-1, f(0) = secret, random coefficients."""
    if len(set(xs)) != len(xs) or any(not 1 <= x < PRIME for x in xs):
        raise ValueError(f"x-coordinates must be distinct and in [1, p), got {xs}")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold {threshold} must be in [1, {len(xs)}]")
    s = int.from_bytes(secret, "big")
    if s >= PRIME:
        raise ValueError("secret too long for the field")
    # Coefficients come from the OS CSPRNG: anything weaker would let t-1 shares reveal the secret.
    coeffs = [s] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = []
    for x in xs:
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        shares.append(y)
    return shares


def lagrange_at_zero(xs: tuple[int, ...]) -> list[int]:
    """Coefficients l_i with f(0) = sum l_i f(x_i) for any polynomial of degree < len(xs)."""
    out = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        out.append(num * pow(den, -1, PRIME) % PRIME)
    return out


class Combiner:
    """Reconstructs many secrets of one threshold; the Lagrange coefficients of a set of holders are
    computed once (in a round every secret usually comes from the same holders)."""

    def __init__(self, threshold: int, secret_bytes: int = 32):
        self.threshold, self.secret_bytes = threshold, secret_bytes
        self._coefficients: dict[tuple[int, ...], list[int]] = {}

    def combine(self, points: list[tuple[int, int]]) -> bytes:
        """f(0) from the first `threshold` of the (x, y) points (all assumed good)."""
        distinct = dict(points)
        if len(distinct) < self.threshold:
            raise SecAggAbort(f"{len(distinct)} distinct shares, need at least {self.threshold} to reconstruct")
        pts = list(distinct.items())[: self.threshold]
        xs = tuple(x for x, _ in pts)
        if xs not in self._coefficients:
            self._coefficients[xs] = lagrange_at_zero(xs)
        s = sum(c * y for c, (_, y) in zip(self._coefficients[xs], pts)) % PRIME
        try:
            return s.to_bytes(self.secret_bytes, "big")
        except OverflowError:
            raise SecAggAbort("the shares are inconsistent: the reconstructed secret is too long") from None


def combine(points: list[tuple[int, int]], threshold: int, secret_bytes: int = 32) -> bytes:
    """Lagrange-interpolate f(0) from the first `threshold` of the (x, y) points."""
    return Combiner(threshold, secret_bytes).combine(points)


def share_to_bytes(y: int) -> bytes:
    """A share value as 66 big-endian bytes."""
    return y.to_bytes(SHARE_BYTES, "big")


def share_from_bytes(raw: bytes) -> int:
    """Inverse of share_to_bytes (rejects values outside the field)."""
    if len(raw) != SHARE_BYTES:
        raise ValueError(f"a share is {SHARE_BYTES} bytes, got {len(raw)}")
    y = int.from_bytes(raw, "big")
    if y >= PRIME:
        raise ValueError("share value outside the field")
    return y
