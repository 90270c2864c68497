"""Differential privacy through the protocol: each client's Skellam share, added inside masked_input, adds up in
the decoded sum to the noise the plan calls for, sized in units of the clip whatever the clip (found by
mutation testing: the client could size its share for another clip and only the Flower-level DP tests ran it)."""

import numpy as np
import pytest

from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.secagg.inprocess import InProcessCohort

D = 20_000


@pytest.mark.parametrize("clip", [1.0, 3.0])
def test_the_decoded_noise_has_the_planned_variance_in_units_of_the_clip(clip):
    c = InProcessCohort(10, seed=8)
    cohort = c.setup()
    multiplier = 0.5
    for i, req in c.server.masked_input_requests(0).items():
        c.server.receive(c.call(i, lambda client, req=req: client.masked_input(req, np.zeros(D), noise=(multiplier, clip))))
    noise = c.unmask()  # in units of the clip: the server multiplies the sum back by it
    plan = c.server.cohort_plan
    share = NoisePlan(multiplier, 1.0, D, 10, plan.max_dropouts, plan.colluders, plan.frac_bits)
    # Ten clients each add Skellam(client_mu) integer noise (variance 2 client_mu) on the 2^-f grid.
    expected = 10 * 2 * share.client_mu / 4.0**plan.frac_bits
    assert abs(noise.mean()) < 5 * np.sqrt(expected / D)
    assert noise.var() == pytest.approx(expected, rel=0.05)


def test_a_client_sum_of_several_clips_is_accepted_with_noise():
    """A client's vector is in units of the clip, and with many users it exceeds one clip: the range check is
    the plan's bound, not one clip."""
    c = InProcessCohort(10, seed=8)
    cohort = c.setup()
    for i, req in c.server.masked_input_requests(0).items():
        c.server.receive(c.call(i, lambda client, req=req: client.masked_input(req, np.full(500, 6.0), noise=(0.5, 2.0))))
    total = c.unmask()  # ten clients of 6 / 2 = 3 clips each
    assert abs(total.mean() - 30.0) < 0.1


def test_a_cohort_with_the_dp_encodings_fractional_bits_decodes_at_its_own_scale():
    """DP runs announce 16 fractional bits (DP_FRAC_BITS), not the default 24: the server decodes the sum at
    the announced scale, so the decoded sum is the plain sum (not 256 times smaller)."""
    from fedrec.shared.dp.skellam import DP_FRAC_BITS
    from fedrec.shared.secagg import fixedpoint
    from fedrec.shared.secagg.params import SecAggParams

    assert DP_FRAC_BITS != fixedpoint.DEFAULT_FRAC_BITS
    c = InProcessCohort(10, seed=8, params=SecAggParams(frac_bits=DP_FRAC_BITS))
    cohort = c.setup()
    rng = np.random.default_rng(0)
    xs = {i: rng.uniform(-3, 3, 200) for i in cohort}
    total = c.round(0, xs)
    want = np.sum([xs[i] for i in cohort], axis=0)
    assert np.abs(total - want).max() <= len(cohort) * 2.0 ** -(DP_FRAC_BITS + 1) + 1e-12
