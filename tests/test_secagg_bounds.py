"""The edges of the secure-aggregation primitives: Shamir's and fixed point's argument ranges, the exactness and
wrap-around of fixed-point sums, and the documented tolerance (found by mutation testing: an off-by-one in any
of these checks passed every other test)."""

import secrets

import numpy as np
import pytest

from fedrec.shared.secagg import fixedpoint, shamir
from fedrec.shared.secagg.errors import SecAggAbort, SecAggRangeError

P = shamir.PRIME


# ----- Shamir
def test_split_accepts_exactly_the_x_coordinates_and_thresholds_in_range():
    secret = secrets.token_bytes(32)
    ys = shamir.split(secret, [1, P - 1], 2)  # the largest x-coordinate in the field works
    assert shamir.combine([(1, ys[0]), (P - 1, ys[1])], 2) == secret
    for xs in ([0, 1], [1, P], [2, 2, 3], [-1, 2]):
        with pytest.raises(ValueError, match="x-coordinates"):
            shamir.split(secret, xs, 2)
    for threshold in (0, 4):
        with pytest.raises(ValueError, match="threshold"):
            shamir.split(secret, [1, 2, 3], threshold)
    for wrong in (secret[:31], secret + b"x"):
        with pytest.raises(ValueError, match="32 bytes"):
            shamir.split(wrong, [1, 2, 3], 2)
    # Above 2^16 coefficients a dot product could pass 2^63 (refused before anything is computed).
    with pytest.raises(ValueError, match="threshold"):
        shamir.split(secret, list(range(1, 2**16 + 2)), 2**16 + 1)
    degree_0 = shamir.split(secret, [1, 2, 3], 1)  # the secret's own chunks, at every x
    assert len(set(degree_0)) == 1 and shamir.combine([(7, degree_0[0])], 1) == secret
    ys = shamir.split(secret, [1, 2, 3], 3)
    assert shamir.combine(list(zip([1, 2, 3], ys)), 3) == secret


def test_a_random_coefficient_equal_to_the_prime_is_drawn_again(monkeypatch):
    """31 random bits give PRIME itself with chance 2^-31, so a fake CSPRNG forces the redraw: only the
    values that were PRIME are replaced, with fresh masked draws."""
    first = np.array([0xFFFFFFFF, 5, 0x7FFFFFFF, 0x80000007, P - 1, 0xFFFFFFFF], dtype=np.uint32)
    second = np.array([1, 0x80000002, 3], dtype=np.uint32)
    draws = iter([first.tobytes(), second.tobytes()])

    def fake_token_bytes(n):
        raw = next(draws)  # a third draw (or an endless loop) fails the test
        assert n == len(raw)
        return raw

    monkeypatch.setattr(shamir.secrets, "token_bytes", fake_token_bytes)
    out = shamir._field_uniform((2, 3))
    assert out.dtype == np.uint64 and out.tolist() == [[1, 5, 2], [7, P - 1, 3]]


def test_the_extreme_secrets_round_trip():
    for secret in (bytes(32), b"\xff" * 32):
        ys = shamir.split(secret, [1, 2, 3], 2)
        assert shamir.combine(list(zip([1, 2, 3], ys))[1:], 2) == secret


def test_combine_counts_distinct_holders_and_uses_any_set_of_them():
    secret = secrets.token_bytes(32)
    xs = [3, 5, 8, 13, 21]
    pts = list(zip(xs, shamir.split(secret, xs, 3)))
    with pytest.raises(SecAggAbort, match="2 distinct shares, need at least 3"):
        shamir.combine([pts[0], pts[0], pts[1]], 3)  # a repeated share is one share
    combiner = shamir.Combiner(3)  # one combiner, several holder sets (its coefficients are cached per set)
    for subset in (pts[:3], pts[2:], pts[::2], pts):
        assert combiner.combine(subset) == secret


def test_a_wrong_share_gives_an_abort_not_a_wrong_secret():
    secret = secrets.token_bytes(32)
    xs = [1, 2, 3]
    ys = shamir.split(secret, xs, 3)
    ys[1] = (np.frombuffer(secrets.token_bytes(36), dtype=">u4") % P).astype(">u4").tobytes()  # garbage
    # Every interpolated chunk is then a uniform field element: all nine fit in 30 bits with chance 2^-9.
    with pytest.raises(SecAggAbort, match="inconsistent"):
        shamir.combine(list(zip(xs, ys)), 3)


def test_chunks_beyond_32_bytes_are_inconsistent_shares():
    """Nine 30-bit chunks hold 270 bits and a secret 256: a top chunk of 2^16 or more comes from no secret."""
    values = np.zeros(shamir.CHUNKS, dtype=">u4")
    values[-1] = (1 << 16) - 1  # one point of a degree-0 sharing is the secret's chunks themselves
    assert shamir.combine([(1, values.tobytes())], 1) == b"\xff\xff" + bytes(30)
    values[-1] = 1 << 16
    with pytest.raises(SecAggAbort, match="inconsistent: the reconstructed secret is too long"):
        shamir.combine([(1, values.tobytes())], 1)


def test_lagrange_coefficients_interpolate_any_polynomial_of_lower_degree():
    xs = (2, 7, 9, 30)
    coefficients = [int(c) for c in shamir.lagrange_at_zero(xs)]
    rng = np.random.default_rng(1)
    for degree in range(len(xs)):
        poly = [int(c) for c in rng.integers(0, P, degree + 1)]
        values = [sum(c * x**k for k, c in enumerate(poly)) % P for x in xs]
        assert sum(c * y for c, y in zip(coefficients, values)) % P == poly[0]


def test_share_bytes_are_exactly_36_and_inside_the_field():
    largest = (np.full(shamir.CHUNKS, P - 1, dtype=">u4")).tobytes()
    assert shamir.share_values(largest).tolist() == [P - 1] * shamir.CHUNKS
    for raw in (bytes(35), bytes(37)):
        with pytest.raises(ValueError, match="36 bytes"):
            shamir.share_values(raw)
    with pytest.raises(ValueError, match="outside the field"):
        shamir.share_values(np.full(shamir.CHUNKS, P, dtype=">u4").tobytes())


# ----- fixed point
@pytest.mark.parametrize("f", [0, 1, 24, 52])
def test_the_tolerance_is_never_exceeded_and_is_attained(f):
    """Half a step is the worst rounding of one value; n values add their errors."""
    half = 2.0 ** -(f + 1)
    for n in (1, 4):
        x = np.full(3, half)  # exactly between two steps: rounds to even, an error of a full half step
        total = np.zeros(3, dtype=np.uint64)
        for _ in range(n):
            total += fixedpoint.encode(x, f, bound=1.0)
        assert np.abs(fixedpoint.decode(total, f) - n * x).max() == fixedpoint.tolerance(n, f)


def test_frac_bits_from_0_to_52():
    for f in (0, 52):
        assert fixedpoint.decode(fixedpoint.encode(np.array([0.5, -1.0]), f, bound=1.0), f).tolist() == \
            ([0.0, -1.0] if f == 0 else [0.5, -1.0])
    for f in (-1, 53):
        with pytest.raises(ValueError, match="frac_bits"):
            fixedpoint.encode(np.zeros(2), f, bound=1.0)


@pytest.mark.parametrize("f", [0, 24, 40])
def test_the_bound_may_reach_the_headroom_but_not_pass_it(f):
    largest = fixedpoint.max_bound(1, f)
    assert largest * 2.0**f == 2.0**61
    encoded = fixedpoint.encode(np.array([largest, -largest]), f, bound=largest)
    assert fixedpoint.decode(encoded, f).tolist() == [largest, -largest]
    for bound in (np.nextafter(largest, np.inf), 0.0, -1.0, np.inf, np.nan):
        with pytest.raises(SecAggRangeError, match="does not fit"):
            fixedpoint.encode(np.zeros(2), f, bound=bound)


def test_max_bound_keeps_the_sum_of_n_clients_in_int64_and_needs_a_client():
    for n in (1, 3, 1000):
        bound = fixedpoint.max_bound(n, 24)
        assert n * bound * 2.0**24 == 2.0**61
    with pytest.raises(ValueError, match="n_clients"):
        fixedpoint.max_bound(0)


def test_negative_values_and_masks_wrap_around_modulo_2_64():
    f = 24
    x = np.array([-1.5, 2.25, -(2.0**-f), 0.0])
    encoded = fixedpoint.encode(x, f, bound=4.0)
    assert encoded.dtype == np.uint64 and encoded[2] == np.uint64(2**64 - 1)  # two's complement of one step
    np.testing.assert_array_equal(fixedpoint.decode(encoded, f), x)
    mask = np.random.default_rng(0).integers(0, 2**64, size=4, dtype=np.uint64)
    masked = encoded + mask  # wraps
    np.testing.assert_array_equal(fixedpoint.decode(masked - mask, f), x)
    total = fixedpoint.encode(np.array([-3.0]), f, bound=4.0) + fixedpoint.encode(np.array([1.0]), f, bound=4.0)
    assert fixedpoint.decode(total, f).tolist() == [-2.0]


def test_encode_flattens_in_c_order_and_names_the_flat_index():
    x = np.array([[0.0, 1.0], [2.0, 9.0]])
    assert fixedpoint.decode(fixedpoint.encode(x, 4, bound=10.0), 4).tolist() == [0.0, 1.0, 2.0, 9.0]
    with pytest.raises(SecAggRangeError, match=r"index 3 .*\(1 offending values\)"):
        fixedpoint.encode(x, 4, bound=5.0)
