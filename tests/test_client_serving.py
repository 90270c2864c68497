"""The final model reaches simulated clients, and stored feedback trains in the next run (the deployed client
serving the final model: tests/test_deployment.py, in the one real-process run)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fedrec.client.state import UserStateStore
from fedrec.shared.feedback import FeedbackStore

SMALL = ["--set", "synthetic.n_users=80", "--set", "synthetic.n_items=100", "--set", "synthetic.n_ratings=3000"]


def fedrec(*args) -> list[str]:
    return [sys.executable, "-m", "fedrec.shared.cli", *map(str, args)]


def simulate(tmp_path, name: str) -> subprocess.CompletedProcess:
    command = fedrec("simulate", "--rounds", "2", "--num-clients", "2", "--factors", "4", "--no-secure", *SMALL,
                     "--client-state-dir", tmp_path / "clients", "--model-out", tmp_path / f"{name}.npz")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def load(path) -> dict:
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


@pytest.mark.flower
def test_simulated_clients_keep_the_final_model_and_train_on_stored_feedback(tmp_path):
    simulate(tmp_path, "first")
    final = load(tmp_path / "first.npz")
    client = tmp_path / "clients/client-0"
    for k in (0, 1):
        kept = load(tmp_path / f"clients/client-{k}/item-model.npz")
        assert np.array_equal(kept["q"], final["q"]) and np.array_equal(kept["bi"], final["bi"])
        assert float(kept["mu"]) == pytest.approx(float(final["mu"])) and len(kept["items"]) == len(final["bi"])
    ratings = load(client / "user-ratings.npz")
    old_user = str(ratings["user_ids"][ratings["users"][0]])
    old_item = str(ratings["items"][0])
    item_ids = load(client / "item-model.npz")["items"]
    store = FeedbackStore(client)
    store.add("newcomer", str(item_ids[3]), 5.0, "purchase", 1)
    store.add(old_user, str(item_ids[int(old_item)]), 1.0, None, 2)  # a new opinion of an item rated in the data
    store.close()

    simulate(tmp_path, "second")  # the same client folders: the feedback is part of this run's training data
    ratings = load(client / "user-ratings.npz")
    users = ratings["user_ids"][ratings["users"]]
    assert ratings["values"][(users == "newcomer") & (ratings["items"] == 3)].tolist() == [5.0]
    assert ratings["values"][(users == old_user) & (ratings["items"] == int(old_item))].tolist() == [1.0]
    state, ids = UserStateStore(None, client, None).slots["now"]  # the state after the last round, by user id
    assert "newcomer" in ids.tolist() and state["p"].shape[0] == len(ids)
    done = subprocess.run(fedrec("recommend", "--state-dir", client, "--user", "newcomer", "--json"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and '"items"' in done.stdout, done.stderr
