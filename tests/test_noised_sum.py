"""The benchmark's unmasked sum decodes what secure aggregation decodes: exactly without DP, in distribution with it."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.server.federation import run_federation
from fedrec.server.inprocess import InProcessGrid
from fedrec.shared.config import load_config
from fedrec.shared.dp.calibration import NoisePlan
from fedrec.shared.secagg.params import from_config
from fedrec.simulations.noised_sum import UnmaskedSum

N_ITEMS = 60
DATA = {"synthetic.n_users": 60, "synthetic.n_items": N_ITEMS, "synthetic.n_ratings": 1200, "model.factors": 2,
        "federated.num_clients": 6, "federated.rounds": 2}


def test_without_dp_the_unmasked_sum_trains_exactly_the_secure_run():
    """Same clients, same encoding, masks skipped: every decoded sum, hence the whole run, is bit-identical."""
    config = load_config(None, DATA)
    secure = run_federation(InProcessGrid(config, 6), config, N_ITEMS)
    grid = InProcessGrid(config, 6)
    unmasked = run_federation(grid, config, N_ITEMS, aggregator=UnmaskedSum(grid, config))
    assert np.array_equal(secure["item_model"]["q"], unmasked["item_model"]["q"])
    assert np.array_equal(secure["item_model"]["bi"], unmasked["item_model"]["bi"])
    assert [entry["rmse"] for entry in secure["history"]] == [entry["rmse"] for entry in unmasked["history"]]


@pytest.mark.parametrize("clients, noise_cohort", [(5, None), (4, 943), (10, 943)])
def test_the_decoded_noise_has_the_variance_of_the_announced_cohort(clients, noise_cohort):
    """m clients' encodings of zero decode to noise with the variance of the N-client plan (N = m by default)."""
    config = load_config(None, {**DATA, "dp.epsilon": 8.0})
    summer = UnmaskedSum(None, config, noise_cohort=noise_cohort)
    size, multiplier, clip = 40_000, 0.3, 2.0
    total = np.zeros(size, dtype=np.uint64)
    for _ in range(clients):
        total += summer.encode(np.zeros(size), (multiplier, clip), clients)
    cohort = from_config(config).plan(noise_cohort or clients)
    decoded = total.view(np.int64).astype(np.float64) / 2.0**cohort.frac_bits * clip  # as the server decodes, rescales
    expected = NoisePlan(multiplier, 1.0, size, cohort.n, cohort.max_dropouts, cohort.colluders,
                         cohort.frac_bits).noise_std() * clip
    # The sample variance of 40,000 values is within 2% of the true one at 2.8 sd.
    assert decoded.std() == pytest.approx(expected, rel=0.02)
    assert abs(decoded.mean()) < 5 * expected / np.sqrt(size)
