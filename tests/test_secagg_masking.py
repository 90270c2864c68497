"""Statistical tests that a client's masked vector looks uniform, and that the tests would catch weak masks.

Thresholds: byte chi-square (255 dof) < 400 and per-bit |z| < 6 have false-alarm rates around 1e-7, so the
tests are not flaky; a missing, truncated or reused mask pushes the statistics far beyond them (checked below).
"""

import numpy as np
import pytest

from fedrec.shared.secagg import prg
from fedrec.shared.secagg.inprocess import InProcessCohort
from fedrec.shared.secagg.params import SecAggParams

L = 4096
BOUND = 1000.0


def byte_chi2(y: np.ndarray) -> float:
    counts = np.bincount(y.view(np.uint8), minlength=256)
    expected = y.size * 8 / 256
    return float(((counts - expected) ** 2 / expected).sum())


def max_bit_z(y: np.ndarray) -> float:
    bits = (y[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    ones = bits.sum(axis=0).astype(np.float64)
    return float(np.abs((ones - y.size / 2) / np.sqrt(y.size / 4)).max())


def failures(ys: dict[str, np.ndarray]) -> set[str]:
    """Names of the uniformity checks that fail on client 1's masked vectors."""
    bad = set()
    for name in ("zero", "large"):
        if byte_chi2(ys[name]) > 400:
            bad.add(f"bytes {name}")
        if max_bit_z(ys[name]) > 6:
            bad.add(f"bits {name}")
    a, b = ys["x1"] / 2.0**64, ys["x2"] / 2.0**64
    if abs(np.corrcoef(a, b)[0, 1]) > 6 / np.sqrt(L):
        bad.add("correlation")
    diff = ys["x2"] - ys["x1"]  # a mask reused across rounds cancels here
    if byte_chi2(diff) > 400 or max_bit_z(diff) > 6:
        bad.add("difference")
    return bad


def masked_vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x1 = rng.uniform(-BOUND, BOUND, L)
    inputs = {"zero": np.zeros(L), "large": np.full(L, BOUND * 0.999), "x1": x1,
              "x2": np.clip(x1 + rng.normal(0, 1e-3, L), -BOUND, BOUND)}
    c = InProcessCohort(3, params=SecAggParams(bound=BOUND), seed=0)
    cohort = c.setup()
    ys = {}
    for r, (name, x) in enumerate(inputs.items()):
        replies = c.masked_input(r, {i: x for i in cohort})
        ys[name] = replies[1]["masked"]
        c.unmask()
    return ys


def test_masked_vector_is_uniform():
    assert failures(masked_vectors()) == set()


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("none", {"bytes zero", "bits zero", "bytes large", "bits large", "correlation", "difference"}),
        ("low32", {"bytes zero", "bits zero", "bytes large", "bits large"}),
        ("reused", {"difference"}),
    ],
)
def test_checks_would_catch_missing_or_weak_masks(monkeypatch, mode, expected):
    real = prg._keystream  # what every mask (expand and apply) is made of
    weak = {
        "none": lambda seed, n: np.zeros(n, dtype=np.uint64),
        "low32": lambda seed, n: real(seed, n) & np.uint64(0xFFFFFFFF),
        "reused": lambda seed, n: real(b"\x07" * 32, n).copy(),  # the same stream whatever the seed
    }[mode]
    monkeypatch.setattr(prg, "_keystream", weak)
    assert expected <= failures(masked_vectors())
