"""Implicit feedback (WRMF): gradients against finite differences, exact solves, MAP, federated = centralised."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from fedrec.client.data import file_data
from fedrec.server import cli as server_cli
from fedrec.server.app import run_deployment
from fedrec.server.federation import run_federation
from fedrec.shared import cli, metrics, mf, protocol, wrmf
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.positives import positives
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.federated import Stats
from fedrec.shared.federated_implicit import ImplicitServerModel
from fedrec.shared.train_implicit import evaluate_implicit, fit_implicit, init_items
from tests.conftest import make_ratings
from tests.fakegrid import FakeGrid

REG, ALPHA = 0.3, 4.0


def _problem(n_users=12, n_items=15, k=4, density=0.3, seed=0):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    users, items = np.nonzero(mask)
    return (mask, wrmf.interaction_matrix(users, items, n_users, n_items),
            rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k)))


def dense_loss(mask: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """The WRMF loss written out over every (user, item) pair, independently of shared/wrmf.py."""
    preference = mask.astype(float)
    confidence = 1.0 + ALPHA * preference
    return 0.5 * float((confidence * (preference - x @ y.T) ** 2).sum()) + 0.5 * REG * float((x * x).sum() + (y * y).sum())


def finite_differences(f, at: np.ndarray, step: float = 1e-6) -> np.ndarray:
    gradient = np.zeros_like(at)
    for index in np.ndindex(at.shape):
        up, down = at.copy(), at.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (f(up) - f(down)) / (2 * step)
    return gradient


def test_loss_and_item_gradient_match_the_dense_loss_and_finite_differences():
    mask, matrix, x, y = _problem()
    assert wrmf.loss(matrix, x, y, REG, ALPHA) == pytest.approx(dense_loss(mask, x, y), rel=1e-12)
    gradient = wrmf.item_gradient_data(matrix, x, y, ALPHA) + REG * y  # the server adds reg Y to the clients' sum
    numeric = finite_differences(lambda yy: dense_loss(mask, x, yy), y)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-5)
    assert np.abs(gradient).max() > 1.0  # a gradient that is all ~0 could not tell right from wrong
    user_numeric = finite_differences(lambda xx: dense_loss(mask, xx, y), x)
    np.testing.assert_allclose(wrmf.user_gradient(matrix, x, y, REG, ALPHA), user_numeric, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("density", [0.05, 0.6])  # few positives per row (Woodbury) and many (dense solve)
def test_row_solves_are_exact_minimisers(density):
    mask, matrix, _, y = _problem(n_users=40, n_items=30, k=8, density=density, seed=1)
    x = wrmf.solve_rows(matrix, y, REG, ALPHA)
    numeric = finite_differences(lambda xx: dense_loss(mask, xx, y), x)
    assert np.abs(numeric).max() < 1e-5  # the dense loss does not go down in any direction
    x_dense, systems = wrmf.solve_rows(matrix, y, REG, ALPHA, return_systems=True)
    np.testing.assert_allclose(x, x_dense, rtol=1e-9, atol=1e-12)
    assert systems.shape == (40, 8, 8)
    items = wrmf.solve_rows(matrix.T.tocsr(), x, REG, ALPHA)  # the ALS item step is exact too
    assert np.abs(wrmf.item_gradient_data(matrix, x, items, ALPHA) + REG * items).max() < 1e-8


def test_conjugate_gradient_rows_reach_the_exact_solve_in_k_steps_and_stay_there():
    mask, matrix, _, y = _problem(n_users=40, n_items=30, k=6, density=0.2, seed=3)
    matrix = wrmf.interaction_matrix(*np.nonzero(mask & (np.arange(40) != 7)[:, None]), 40, 30)  # row 7: none
    exact = wrmf.solve_rows(matrix, y, REG, ALPHA)
    start = np.random.default_rng(4).normal(size=(40, 6))
    np.testing.assert_allclose(wrmf.solve_rows_cg(matrix, y, REG, ALPHA, start, 6), exact, rtol=1e-7, atol=1e-9)
    assert np.abs(wrmf.solve_rows_cg(matrix, y, REG, ALPHA, start, 2) - exact).max() > 1e-3  # steps count
    np.testing.assert_allclose(wrmf.solve_rows_cg(matrix, y, REG, ALPHA, exact, 3), exact, rtol=1e-9, atol=1e-12)
    assert np.all(wrmf.solve_rows_cg(matrix, y, REG, ALPHA, np.zeros((40, 6)), 3)[7] == 0)


def test_conjugate_gradient_als_reaches_nearly_the_loss_of_exact_als():
    config = load_config(None, SMALL)
    train, _ = load_train_test(config)
    losses = {}
    for solver in ("als", "cg"):
        training = config.train.model_copy(update={"implicit_solver": solver, "epochs": 8})
        fit_implicit(train, 4.0, config.model, training, on_epoch=lambda epoch, loss: losses.setdefault(solver, []).append(loss))
    assert losses["cg"][-1] < 0.9 * losses["cg"][0]  # it trains
    assert losses["cg"][-1] == pytest.approx(losses["als"][-1], rel=0.02)
    # Each epoch's steps start where the last epoch left the rows (as `implicit` does), users first, in float32.
    pos = positives(train, 4.0)
    matrix = wrmf.interaction_matrix(pos.users, pos.items, pos.n_users, pos.n_items).astype(np.float32)
    model = fit_implicit(train, 4.0, config.model, config.train.model_copy(update={"implicit_solver": "cg", "epochs": 3}))
    y = init_items(pos.n_items, config.model).astype(np.float32)
    x = np.zeros((pos.n_users, 8), np.float32)
    for _ in range(3):
        x = wrmf.solve_rows_cg(matrix, y, config.model.reg, config.model.alpha, x, 3)
        y = wrmf.solve_rows_cg(matrix.T.tocsr(), x, config.model.reg, config.model.alpha, y, 3)
    assert y.dtype == np.float32 and model.y.dtype == np.float64
    np.testing.assert_allclose(model.y, y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(model.x, wrmf.solve_rows_cg(matrix, y, config.model.reg, config.model.alpha, x, 3), rtol=1e-12, atol=1e-14)


def test_item_solve_from_client_normal_sums_is_the_exact_als_item_step():
    """The users split over three clients: the sum of their normal-equation parts solves every item exactly
    as the centralised ALS item step does (an item no user liked gets 0, as it does there)."""
    mask, matrix, _, y = _problem(n_users=30, n_items=25, k=6, density=0.25, seed=2)
    mask[:, 0] = False  # an item without positives
    users, items = np.nonzero(mask)
    matrix = wrmf.interaction_matrix(users, items, 30, 25)
    x = wrmf.solve_rows(matrix, y, REG, ALPHA)
    parts = [wrmf.item_normal_sums(matrix[rows], x[rows], ALPHA) for rows in (slice(0, 7), slice(7, 20), slice(20, 30))]
    summed = [sum(part[j] for part in parts) for j in range(3)]
    assert summed[1].shape == (25, wrmf.triangle_size(6)) and summed[2].shape == (25, 6)
    solved = wrmf.solve_from_normal_sums(*summed, REG)
    np.testing.assert_allclose(solved, wrmf.solve_rows(matrix.T.tocsr(), x, REG, ALPHA), rtol=1e-9, atol=1e-12)
    assert np.all(solved[0] == 0) and np.abs(solved).max() > 0.1


def test_federated_als_keeps_the_items_whose_likers_all_sat_the_round_out():
    """Half the clients answered: the sums are scaled up, an item with likers but none among them keeps its
    factors (its solve would be 0), and an item nobody likes gets 0, as in centralised ALS."""
    config = load_config(None, {**SMALL, "federated.update": "als", "model.factors": 3})
    server = ImplicitServerModel(4, config)
    before = server.item.q.copy()
    rng = np.random.default_rng(5)
    gram, grams, rhs = rng.normal(size=6) ** 2, rng.random((4, 6)), rng.normal(size=(4, 3))
    gram[[0, 3, 5]] += 5.0  # the diagonal: X^T X positive definite
    grams[1:3], rhs[1:3] = 0.0, 0.0  # items 1 and 2: nobody who answered likes them
    total = np.concatenate([gram, np.hstack([grams, rhs]).ravel()])
    server.apply(total, Stats(0.0, np.array([3.0, 2.0, 0.0, 5.0]), 0.0, 0.0), share=0.5)
    np.testing.assert_array_equal(server.item.q[1], before[1])
    assert np.all(server.item.q[2] == 0.0) and np.abs(before[[1, 2]]).min() > 0
    expected = wrmf.solve_from_normal_sums(gram / 0.5, grams / 0.5, rhs / 0.5, config.model.reg)
    np.testing.assert_allclose(server.item.q[[0, 3]], expected[[0, 3]], rtol=1e-12)


def test_map_at_k_of_known_lists():
    """User 0: two relevant items, at ranks 1 and 3: AP@3 = (1/1 + 2/3) / 2. User 1 (who ranks the other way):
    four relevant items, two in its list of three, at ranks 1 and 2: AP@3 = (1 + 1) / min(4, 3)."""
    user = mf.UserSide(np.array([[1.0], [-1.0]]), np.zeros(2))
    item = mf.ItemSide(np.array([[4.0], [3.0], [2.0], [1.0], [0.0]]), np.zeros(5), 0.0)
    test_users, test_items = np.array([0, 0, 1, 1, 1, 1]), np.array([0, 2, 4, 3, 0, 1])
    sums, recommended = metrics.ranking_sums(user, item, np.array([], int), np.array([], int), test_users, test_items,
                                             np.ones(6), np.ones(5, bool), k=3, relevant_threshold=0.5)
    assert sums["map"] == pytest.approx((1 + 2 / 3) / 2 + 2 / 3)
    assert sums["precision"] == pytest.approx(2 / 3 + 2 / 3) and sums["recall"] == pytest.approx(1.0 + 2 / 4)
    assert recommended.tolist() == [1, 1, 2, 1, 1]


def test_positives_drop_interactions_below_the_threshold():
    ratings = make_ratings([0, 0, 1, 1], [0, 1, 0, 2], [5, 3, 4, 1], n_items=3)
    kept = positives(ratings, 4.0)
    assert kept.users.tolist() == [0, 1] and kept.items.tolist() == [0, 0] and kept.values.tolist() == [1.0, 1.0]
    assert len(positives(ratings, None)) == 4


SMALL = {"synthetic.n_users": 120, "synthetic.n_items": 150, "synthetic.n_ratings": 4000, "model.factors": 8,
         "data.feedback": "implicit", "data.positive_threshold": 4.0, "federated.num_clients": 4,
         "federated.rounds": 4, "federated.secure": True, "federated.server_optimizer": "adam",
         "federated.server_lr": 0.05, "train.optimizer": "adam", "train.lr": 0.05, "train.epochs": 4,
         "train.implicit_solver": "gradient", "eval.coverage": True}


def test_federated_implicit_full_batch_equals_centralised_with_secure_aggregation():
    """Every client every round: the securely summed item gradients step the server's items exactly as
    centralised training steps them, and the federated evaluation equals the centralised one."""
    config = load_config(None, SMALL)
    result = run_federation(FakeGrid(config, 4), config, n_items=150)
    assert result["privacy"] == "secure-sum"
    train, test = load_train_test(config)
    central = fit_implicit(train, 4.0, config.model, config.train)
    initial = fit_implicit(train, 4.0, config.model, config.train.model_copy(update={"epochs": 1})).y
    assert np.abs(central.y - initial).max() > 1e-2  # training moved the items: the comparison means something
    np.testing.assert_allclose(result["item_model"]["q"], central.y, rtol=1e-5, atol=1e-6)
    pooled = evaluate_implicit(central, train, test, 4.0, config.eval)
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10", "coverage", "n_ranked_users", "n_test"):
        assert result[key] == pytest.approx(pooled[key], rel=1e-6), key
    assert 0 < result["ndcg@10"] < 1 and result["map@10"] != pytest.approx(result["ndcg@10"])


def test_federated_als_equals_centralised_als_with_secure_aggregation():
    """`federated.update = "als"`: the securely summed normal equations give the server the exact ALS item
    step, so 3 rounds are 3 epochs of centralised ALS, and the evaluations agree."""
    config = load_config(None, {**SMALL, "federated.update": "als", "federated.rounds": 3,
                                "train.implicit_solver": "als", "train.epochs": 3})
    result = run_federation(FakeGrid(config, 4), config, n_items=150)
    train, test = load_train_test(config)
    central = fit_implicit(train, 4.0, config.model, config.train)
    two_epochs = fit_implicit(train, 4.0, config.model, config.train.model_copy(update={"epochs": 2}))
    assert np.abs(central.y - two_epochs.y).max() > 1e-3  # each round counts: a missed or repeated one shows
    # Secure aggregation rounds every client's value to 2^-24: the items agree to about that.
    np.testing.assert_allclose(result["item_model"]["q"], central.y, rtol=1e-5, atol=1e-6)
    pooled = evaluate_implicit(central, train, test, 4.0, config.eval)
    for key in ("precision@10", "recall@10", "ndcg@10", "map@10", "coverage"):
        assert result[key] == pytest.approx(pooled[key], rel=1e-6), key


@pytest.mark.parametrize("argv, message", [
    (["baseline", "--positive-threshold", "4"], "positive_threshold applies to implicit feedback only"),
    (["baseline", "--feedback", "implicit", "--positive-threshold", "nan"], "must be a finite number"),
    (["baseline", "--feedback", "implicit", "--positive-threshold", "9", "--set", "synthetic.n_ratings=2000",
      "--set", "synthetic.n_users=50"], "no training interaction has a value that high"),
    (["simulate", "--feedback", "implicit", "--dp-epsilon", "1"], "not available with implicit feedback"),
    (["compare", "--feedback", "implicit", "--update", "delta", "--out", "never"], "implicit feedback trains with"),
    (["simulate", "--update", "als"], "federated.update = \"als\" is for implicit feedback"),
])
def test_bad_implicit_settings_are_one_clear_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_feedback_choice_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["baseline", "--feedback", "clicks"])
    assert exit_info.value.code == 2 and "invalid choice: 'clicks'" in capsys.readouterr().err


def test_a_warm_started_run_continues_where_the_last_one_stopped():
    """The closed loop trains in pieces: 2 rounds, or 1 round and then 1 more warm-started from its item side
    and server optimizer, give the same items (implicit clients keep no state between runs)."""
    config = load_config(None, {**SMALL, "federated.secure": False, "federated.rounds": 2})
    whole = run_federation(FakeGrid(config, 4), config, n_items=150)["item_model"]
    one = config.model_copy(update={"federated": config.federated.model_copy(update={"rounds": 1})})
    first = run_federation(FakeGrid(one, 4), one, n_items=150)["item_model"]
    assert np.abs(first["q"] - whole["q"]).max() > 1e-3
    second = run_federation(FakeGrid(one, 4), one, n_items=150, warm_start=first)["item_model"]
    np.testing.assert_allclose(second["q"], whole["q"], rtol=1e-12, atol=1e-12)


def test_fedrec_server_with_implicit_feedback_trains_file_clients_like_centralised_als(tmp_path):
    """`fedrec server --feedback implicit --positive-threshold 4 --update als` with `fedrec client`s on their own
    files (the deployment path, in process): the clients follow the server's feedback settings, and the saved
    item model is centralised ALS on the union of the clients' training files."""
    assert cli.main(["data", "partition", "--num-clients", "3", "--out", str(tmp_path / "files"), "--set",
                     "synthetic.n_users=90", "--set", "synthetic.n_items=60", "--set", "synthetic.n_ratings=2500"]) == 0
    parser = argparse.ArgumentParser()
    server_cli.register(parser)
    args = parser.parse_args(["--feedback", "implicit", "--positive-threshold", "4", "--update", "als", "--rounds", "2",
                              "--min-clients", "3", "--factors", "4", "--no-secure", "--items",
                              str(tmp_path / "files/items.txt"), "--insecure", "--state-dir", str(tmp_path / "server")])
    config, catalogue = server_cli._check_input(args)
    spec = {"config": config.model_dump(mode="json"), "catalogue": str(tmp_path / "catalogue.json"),
            "state_dir": str(tmp_path / "server"), "resume": False, "json": str(tmp_path / "results.json"), "run_id": "r"}
    (tmp_path / "catalogue.json").write_text(json.dumps(catalogue))
    (tmp_path / "run.json").write_text(json.dumps(spec))
    (tmp_path / "server").mkdir()
    client = load_config(None, {})  # a client's own settings: explicit feedback, until the server says otherwise
    nodes = [{protocol.NODE_DATA_FILE: str(tmp_path / f"files/client-{k}/train.csv"),
              protocol.NODE_TEST_FILE: str(tmp_path / f"files/client-{k}/test.csv"),
              protocol.NODE_POLICY["require_secure"]: False} for k in range(3)]
    run_deployment(FakeGrid(client, 3, node_configs=nodes), tmp_path / "run.json")
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["ndcg@10"] > 0 and "rmse" not in results

    tables = [file_data(config, Path(node[protocol.NODE_DATA_FILE]), None, tuple(catalogue)).train for node in nodes]
    offsets = np.cumsum([0] + [table.n_users for table in tables])
    union = Ratings(np.concatenate([t.users + o for t, o in zip(tables, offsets)]),
                    np.concatenate([t.items for t in tables]), np.concatenate([t.values for t in tables]), None,
                    np.arange(offsets[-1]).astype(str), tables[0].item_ids, 1.0, 5.0)
    central = fit_implicit(union, 4.0, config.model, config.train.model_copy(update={"epochs": 2, "implicit_solver": "als"}))
    with np.load(tmp_path / "server/item-model.npz") as saved:
        np.testing.assert_allclose(saved["q"], central.y, rtol=1e-9, atol=1e-12)
    assert np.abs(central.y).max() > 0.1
