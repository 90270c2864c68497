"""model.item_features: fixed public item factors (genres or a CSV), under differential privacy and without."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.server.federation import run_federation
from fedrec.shared import mf
from fedrec.shared.config import load_config
from fedrec.shared.data.item_features import csv_matrix, genre_matrix, load_item_features
from fedrec.shared.data.load import load_dataset
from fedrec.shared.dp.plan import plan_run
from fedrec.shared.errors import ConfigError, FedrecError
from fedrec.shared.federated import ClientData, ClientTrainer, ServerModel, Stats
from tests.fakegrid import FakeGrid

K = 3


def _features_csv(path, item_ids, k=K, seed=0, skip=()):
    rng = np.random.default_rng(seed)
    lines = ["item," + ",".join(f"f{j}" for j in range(k))]
    for item in item_ids:
        if item not in skip:
            lines.append(f"{item}," + ",".join(f"{v:.6f}" for v in rng.normal(size=k)))
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(features, **overrides):
    return load_config(None, {"dp.epsilon": 4.0, "model.factors": K, "model.item_features": str(features),
                              **overrides})


def test_feature_rows_follow_the_run_item_order_and_have_unit_length(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("item,a,b\n7,3,4\n2,0,2\n9,0,0\n")
    features = load_item_features(str(path), None, None, ["2", "5", "7", "9"])
    assert features.dtype == np.float32
    # item 5 is not in the file and item 9's row is zero: both predict from their bias alone
    np.testing.assert_allclose(features, [[0, 1], [0, 0], [0.6, 0.8], [0, 0]])
    np.testing.assert_array_equal(csv_matrix(path, ["9", "7"]), [[0, 0], [3, 4]])


@pytest.mark.parametrize("text, message", [("item,a\n1,x\n", "not a number"), ("item,a\n1,2,3\n", "3 fields"),
                                           ("item,a\n1,2\n1,3\n", "appears twice"), ("item\n1\n", "header")])
def test_a_bad_feature_file_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "f.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_item_features(str(path), None, None, ["1"])


def test_ml100k_genres_are_the_public_flags_of_u_item(movielens_dir):
    flags = genre_matrix("ml-100k", movielens_dir, ["1", "2", "1682"])
    assert flags.shape == (3, 19)  # ml-100k's 19 genres, "unknown" included
    assert flags.sum(axis=1).tolist() == [3, 3, 1]  # Toy Story: Animation, Children's, Comedy; GoldenEye: 3; 1682: Drama


def test_with_fixed_features_a_dp_client_releases_only_the_biases_with_the_whole_clip(dense_random_ratings, tmp_path):
    """No factor coordinate is sent, the factor split does not apply (the bias part keeps the whole clip, as in
    the biases-only model), one user moves the vector by at most the clip, and a loose clip gives the exact
    item-bias gradient of the model whose factors are the features."""
    ratings, clip, share = dense_random_ratings, 0.5, 0.2
    config = _config(tmp_path / "unused.csv", **{"dp.clip": clip, "dp.factor_share": share})
    item = mf.init_item_side(ratings.n_items, K, 0.5, 3.0, np.random.default_rng(1))
    item.bi[:] = np.random.default_rng(2).normal(0, 0.3, ratings.n_items)

    def train(data, dp_clip):
        return ClientTrainer(ClientData(data, data), config, client_seed=3).train(item, dp_clip, share)

    heavy = int(np.bincount(ratings.users).argmax())
    keep = ratings.users != heavy
    neighbour = ratings.subset(keep)
    full = train(ratings, clip)
    assert full.shape == (ratings.n_items,)
    change = np.linalg.norm(full - train(neighbour, clip))
    assert clip * np.sqrt(1 - share) * 1.01 < change <= clip * (1 + 1e-9)
    client = ClientTrainer(ClientData(ratings, ratings), config, client_seed=3)
    _, _, _, grads = mf.loss_and_gradients(client.ratings, client.user, item, config.model.reg, config.model.bias_reg)
    np.testing.assert_allclose(train(ratings, 1e9), grads["bi"], rtol=1e-5, atol=1e-6)
    plain = load_config(None, {"model.factors": K, "model.item_features": "x.csv"})
    assert ClientTrainer(ClientData(ratings, ratings), plain, client_seed=3).train(item).shape == (ratings.n_items,)
    delta = load_config(None, {"model.factors": K, "model.item_features": "x.csv", "federated.update": "delta",
                               "federated.local_epochs": 2})
    fixed_delta = ClientTrainer(ClientData(ratings, ratings), delta, client_seed=3).train(item)
    assert fixed_delta.shape == (ratings.n_items,)
    # delta updates: the local item steps move the biases only (learned factors would move q between the two
    # local epochs, and so change the second epoch's bias step)
    learned = delta.model_copy(update={"model": delta.model.model_copy(update={"item_features": None})})
    learned_delta = ClientTrainer(ClientData(ratings, ratings), learned, client_seed=3).train(item)
    assert not np.allclose(fixed_delta, learned_delta[-ratings.n_items:], rtol=1e-4, atol=1e-6)


def test_the_server_never_moves_the_features_and_steps_the_biases(tmp_path):
    n = 40
    features = np.random.default_rng(0).normal(size=(n, K)).astype(np.float32)
    server = ServerModel(n, _config("f.csv"), 3.5, features)
    np.testing.assert_array_equal(server.item.q, features)
    server.apply(np.random.default_rng(1).normal(size=n), Stats(3.5, np.ones(n), 0, 0))
    np.testing.assert_array_equal(server.item.q, features)
    assert np.all(server.item.bi != 0)
    with pytest.raises(ValueError, match="fixed 40 x 3"):
        ServerModel(n, _config("f.csv"), 3.5, None)


DATA = {"synthetic.n_users": 150, "synthetic.n_items": 120, "synthetic.n_ratings": 3000, "federated.num_clients": 10,
        "federated.rounds": 3, "federated.eval_every": 3}


def test_a_dp_run_with_item_features_keeps_them_and_accounts_for_the_biases_only(tmp_path):
    base = load_config(None, DATA)
    ids = load_dataset(base).item_ids
    path = _features_csv(tmp_path / "f.csv", ids, skip={ids[0]})
    config = _config(path, **DATA, **{"dp.epsilon": 8.0})
    assert plan_run(config, len(ids), 150).dimensions["train"] == len(ids)  # no factor coordinate is released
    result = run_federation(FakeGrid(config, 10), config, n_items=len(ids), n_users=150)
    expected = load_item_features(str(path), None, None, ids)
    np.testing.assert_array_equal(result["item_model"]["q"], expected)
    assert not expected[0].any() and np.isfinite(result["rmse"])
    assert result["history"][-1]["releases"] == {"stats": 1, "train": 3, "evaluate": 1}


def test_factors_must_match_the_feature_columns_before_any_client_is_asked(tmp_path):
    base = load_config(None, DATA)
    ids = load_dataset(base).item_ids
    config = _config(_features_csv(tmp_path / "f.csv", ids, k=5), **DATA)
    grid = FakeGrid(config, 10)
    with pytest.raises(FedrecError, match="set model.factors = 5"):
        run_federation(grid, config, n_items=len(ids), n_users=150)
    assert grid.sent == []


def test_genres_need_a_movielens_dataset_and_explicit_feedback():
    config = load_config(None, {**DATA, "model.factors": 19, "model.item_features": "genres"})
    with pytest.raises(ConfigError, match="built-in MovieLens"):
        run_federation(FakeGrid(config, 10), config, n_items=120)
    with pytest.raises(FedrecError, match="explicit ratings"):
        load_config(None, {"model.item_features": "genres", "data.feedback": "implicit"})


def test_centralised_training_keeps_the_features_and_needs_them(dense_random_ratings):
    from fedrec.shared.train import fit

    ratings = dense_random_ratings
    config = load_config(None, {"model.factors": K, "model.item_features": "f.csv", "train.epochs": 5})
    features = np.random.default_rng(0).normal(size=(ratings.n_items, K)).astype(np.float32)
    model = fit(ratings, config.model, config.train, item_features=features)
    np.testing.assert_array_equal(model.item.q, features)
    assert np.abs(model.item.bi).max() > 0 and np.abs(model.user.p).max() > 0
    with pytest.raises(ConfigError, match="feature matrix"):
        fit(ratings, config.model, config.train)
