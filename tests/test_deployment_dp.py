"""Real processes on 127.0.0.1: `fedrec server --dp-epsilon` and three `fedrec client`s, user-level DP end to end."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fedrec.shared import arraypack
from fedrec.shared.certs import make_certificates
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.reader import read_ratings_file
from fedrec.shared.dp.plan import plan_run
from tests.test_deployment import RUN_TIMEOUT, Deployment, fedrec, untrained_rmse

pytestmark = pytest.mark.deployment

BUDGET, DELTA, ROUNDS = 8.0, 1e-5, 2
# 600 users: the noise on each decoded sum is fixed by the budget, the signal grows with the users. At 150
# users two DP rounds beat the untrained model by 0.03-0.07 RMSE depending on the noise; at 600 by 0.056
# with sd 0.004 (12 in-process runs of this configuration). A server that never applies the sums still gains
# 0.017 (sd 0.002, 4 runs) from the clients' own user biases, so the margin of 0.03 tells the two apart.
DATA = ("--set", "synthetic.n_users=600", "--set", "synthetic.n_items=120", "--set", "synthetic.n_ratings=12000")
# One evaluation, after the last round: each evaluation is a release that costs budget (and an exchange).
SETTINGS = ("--rounds", str(ROUNDS), "--set", f"federated.eval_every={ROUNDS}", "--min-clients", "3",
            "--dp-epsilon", str(BUDGET), "--dp-delta", str(DELTA),
            "--set", "federated.server_lr=0.2", "--set", "federated.client_lr=0.2")
TRAINED_MARGIN = 0.03


@pytest.fixture(scope="module")
def dp_root(tmp_path_factory) -> Path:
    """Three clients' files, the item catalogue and the certificates, made once for the module."""
    root = tmp_path_factory.mktemp("deployment-dp")
    subprocess.run(fedrec("data", "partition", "--num-clients", "3", "--out", root / "data", *DATA),
                   check=True, capture_output=True)
    make_certificates(root / "certs", ["127.0.0.1", "localhost"], 3)
    return root


def client_table(root: Path, k: int, name: str):
    return read_ratings_file(root / f"data/client-{k}/{name}.csv", rating_min=1, rating_max=5)[0]


def final_model_rmse(root: Path, tmp: Path) -> float:
    """Test RMSE of the final model, exactly: the item side each client kept and its users' own factors.

    The run's released RMSE is a noised sum (a DP release); this is the measurement the test can trust."""
    squared, count = 0.0, 0
    for k in range(3):
        test = client_table(root, k, "test")
        user = arraypack.unpack((tmp / f"client-{k}-state/user-state.bin").read_bytes())
        with np.load(tmp / f"client-{k}-state/item-model.npz") as item:
            user_row = {uid: j for j, uid in enumerate(user["now/#ids"])}
            item_row = {iid: j for j, iid in enumerate(item["items"])}
            u = np.array([user_row[uid] for uid in test.users])
            i = np.array([item_row[iid] for iid in test.items])
            predicted = item["mu"] + user["now/bu"][u] + item["bi"][i] + np.einsum("nk,nk->n", user["now/p"][u], item["q"][i])
        squared += float(np.sum((np.clip(predicted, 1, 5) - test.values) ** 2))
        count += len(test.values)
    return math.sqrt(squared / count)


def user_means(root: Path) -> np.ndarray:
    """Each user's mean training rating: the per-user statistic the DP run sums (with noise) to get mu."""
    means = []
    for k in range(3):
        train = client_table(root, k, "train")
        counts = np.bincount(train.user_codes)
        means.append(np.bincount(train.user_codes, train.values) / counts)
    return np.concatenate(means)


@pytest.fixture
def deployment(dp_root, tmp_path):
    running = Deployment(dp_root, tmp_path)
    yield running
    running.stop()


def test_dp_run_of_two_rounds_states_spends_and_noises_its_budget(deployment, dp_root, tmp_path):
    # The SuperLink keeps its state in memory here (the other deployment tests use the default file, which
    # restarts need): the same run, and no database is written.
    server = deployment.server(*SETTINGS, "--superlink-db", "memory")
    deployment.wait_for("waiting for clients", timeout=60)
    for k in range(3):
        deployment.client(k)
    assert server.wait(timeout=RUN_TIMEOUT) == 0, deployment.log("server")[-3000:]
    assert not (tmp_path / "state/superlink.db").exists()
    result = json.loads((tmp_path / "result.json").read_text())

    # The first line says what protects the clients, with the accountant's figures.
    first_line = deployment.log("server").splitlines()[0]
    assert first_line.startswith(f"privacy: secure-sum+dp (user-level epsilon {BUDGET:g} at delta {DELTA:.3g}, "
                                 f"noise multiplier {result['dp']['noise_multiplier']:.3f}, clip 1, Skellam)"), first_line
    assert result["privacy"] == "secure-sum+dp"

    # The dp object: the budget, and the noise the planner picks for it (the smallest that spends at most it).
    dp = result["dp"]
    catalogue = (dp_root / "data/items.txt").read_text().split()
    planned = plan_run(FedrecConfig.model_validate(result["config"]), len(catalogue), None)
    assert dp["noise_multiplier"] == pytest.approx(planned.noise_multiplier) and dp["noise_multiplier"] > 1.0
    assert (dp["epsilon"], dp["delta"], dp["clip"], dp["rounds"], dp["sampling_rate"], dp["mechanism"]) == \
        (BUDGET, DELTA, 1.0, ROUNDS, 1.0, "skellam")
    assert 0.95 * BUDGET < dp["epsilon_spent"] <= BUDGET  # the planner leaves little of the budget unused

    # Each history entry records the epsilon spent so far: growing, within the budget, ending at the total.
    history = result["history"]
    assert [entry["round"] for entry in history] == [1, 2] and all(entry["clients"] == 3 for entry in history)
    spent = [entry["epsilon"] for entry in history]
    assert 0 < spent[0] < spent[1] <= BUDGET and spent[1] == pytest.approx(dp["epsilon_spent"])

    # The clients' noise reached the decoded statistics: mu is their noised sum of user means over their noised
    # count. Without noise it would equal the mean of the user means to about 1e-8 (fixed-point rounding); with
    # it, its sd is about z * clip * sqrt(1 + mu^2) / users * sqrt(3 / 2) (3 clients' shares sized for 2 honest
    # survivors), 0.05 here, so |deviation| < 1e-6 happens by chance with probability about 2e-5.
    means = user_means(dp_root)
    with np.load(tmp_path / "state/item-model.npz") as item:
        mu = float(item["mu"])
    deviation = abs(mu - means.mean())
    noise_sd = dp["noise_multiplier"] * dp["stats_clip"] * math.sqrt(1 + mu**2) / means.size * math.sqrt(3 / 2)
    assert 1e-6 < deviation < 6 * noise_sd, (mu, means.mean(), noise_sd)

    # The model trained despite the noise: measured exactly, and the run's own (noised) figure is close to it.
    rmse = final_model_rmse(dp_root, tmp_path)
    assert rmse < untrained_rmse(dp_root) - TRAINED_MARGIN, (rmse, untrained_rmse(dp_root))
    assert abs(result["rmse"] - rmse) < 0.1, (result["rmse"], rmse)
