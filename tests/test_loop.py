"""The closed loop: reproducible from its seed, the JSON's exact shape, validated responses, ground-truth metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedrec.shared import cli
from fedrec.shared.config import load_config
from fedrec.shared.errors import DataError
from fedrec.shared.world import ideal_lists, make_world, respond, step_metrics, validate_responses
from fedrec.simulations.loop import METRIC_KEYS

TINY = ["--set", "synthetic.n_users=60", "--set", "synthetic.n_items=90", "--set", "synthetic.n_ratings=1500",
        "--set", "synthetic.rank=4", "--factors", "4", "--steps", "2", "--rounds-per-step", "2",
        "--warmup-rounds", "3", "--top-n", "5", "--num-clients", "3"]
TINY_CONFIG = {"data.feedback": "implicit", "synthetic.n_users": 60, "synthetic.n_items": 90,
               "synthetic.n_ratings": 1500, "synthetic.rank": 4, "model.factors": 4, "loop.steps": 2,
               "loop.rounds_per_step": 2, "loop.warmup_rounds": 3, "loop.top_n": 5, "federated.num_clients": 3}


def test_loop_is_reproducible_from_its_seed_and_writes_the_issue_json(tmp_path, capsys):
    """The CLI's --json has exactly {"policies": {name: [{step, ctr, regret, ndcg, coverage, popular_share}]}};
    the same seed gives the same numbers (secure aggregation's random masks cancel exactly), another seed not."""
    out = tmp_path / "loop.json"
    argv = ["loop", *TINY, "--explore", "thompson", "--seed", "5", "--json", str(out), "--out", str(tmp_path / "report")]
    assert cli.main(argv) == 0
    written = json.loads(out.read_text())
    assert list(written) == ["policies"]
    assert list(written["policies"]) == ["federated-secure", "centralized", "popularity", "random", "oracle"]
    for steps in written["policies"].values():
        assert [entry["step"] for entry in steps] == [1, 2]
        assert all(list(entry) == ["step", *METRIC_KEYS] for entry in steps)
    assert (tmp_path / "report" / "report.md").read_text().count("| federated-secure |") == 1
    assert (tmp_path / "report" / "loop.png").read_bytes()[:4] == b"\x89PNG"
    oracle, learned = written["policies"]["oracle"], written["policies"]["centralized"]
    assert all(entry["regret"] == 0.0 and entry["ndcg"] == pytest.approx(1.0) for entry in oracle)
    assert learned[-1]["regret"] > learned[0]["regret"] > 0  # cumulative, and the model is not the oracle

    assert cli.main(argv[:-4] + ["--json", str(tmp_path / "again.json")]) == 0
    assert json.loads((tmp_path / "again.json").read_text()) == written
    assert cli.main([*argv[:-6], "--seed", "6", "--json", str(tmp_path / "other.json")]) == 0
    assert json.loads((tmp_path / "other.json").read_text()) != written
    capsys.readouterr()


def test_responses_are_validated_before_they_are_stored():
    seen = np.zeros((4, 6), dtype=bool)
    seen[0, 1] = True
    validate_responses(np.array([0, 1]), np.array([2, 2]), seen)  # new pairs of known users and items
    for users, items, message in [
        (np.array([0]), np.array([1]), "already interacted"),
        (np.array([1, 1]), np.array([3, 3]), "twice"),
        (np.array([4]), np.array([0]), "outside the world"),
        (np.array([0]), np.array([-1]), "outside the world"),
        (np.array([0.0]), np.array([2.0]), "integers"),
    ]:
        with pytest.raises(DataError, match=message):
            validate_responses(users, items, seen)


def test_world_metrics_against_the_truth():
    config = load_config(None, TINY_CONFIG)
    world = make_world(config)
    seen = np.zeros((world.n_users, world.n_items), dtype=bool)
    seen[world.start.users, world.start.items] = True
    best = ideal_lists(world, seen, 5)
    worst = ideal_lists(world.__class__(-world.attraction, world.start, world.popular, world.examination,
                                        world.no_response), seen, 5)
    rng = np.random.default_rng(0)
    perfect = step_metrics(world, best, respond(world, best, rng), seen)
    poor = step_metrics(world, worst, respond(world, worst, np.random.default_rng(0)), seen)
    assert perfect["regret"] == 0.0 and perfect["ndcg"] == pytest.approx(1.0)
    assert poor["regret"] > 0 and poor["ndcg"] < 0.5 and poor["ctr"] < perfect["ctr"]
    assert not seen[np.arange(world.n_users)[:, None], best].any()  # nothing already seen is recommended
    # Position bias: the same item clicks less often lower down (examination 1/(1+j)).
    assert world.examination.tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    assert 0 <= perfect["popular_share"] <= 1 and 0 < perfect["coverage"] <= 1


def test_a_policy_refuses_invalid_clicks_and_keeps_its_files(tmp_path):
    from fedrec.simulations.loop_policies import FederatedPolicy

    config = load_config(None, TINY_CONFIG)
    policy = FederatedPolicy(make_world(config), config, tmp_path)
    before = {path: path.read_text() for path in policy.files}
    users, items = np.nonzero(policy.seen)
    with pytest.raises(DataError, match="already interacted"):
        policy.store(users[:1], items[:1])
    assert {path: path.read_text() for path in policy.files} == before


@pytest.mark.parametrize("argv, message", [
    (["loop", "--steps", "0"], "loop.steps: Input should be greater than 0"),
    (["loop", "--no-response", "1"], "loop.no_response: Input should be less than 1"),
    (["loop", *TINY, "--num-clients", "2"], "secure aggregation needs at least"),
    (["loop", *TINY, "--top-n", "40"], "could run out of the 90 items"),
    (["loop", *TINY, "--start-threshold", "6"], "no rating that high"),
    (["loop", *TINY, "--set", "data.positive_threshold=4"], "every interaction in the loop is a positive"),
])
def test_bad_loop_settings_are_one_clear_error(argv, message, capsys, tmp_path):
    assert cli.main([*argv, "--json", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("error:") == 1
    assert not (tmp_path / "out.json").exists()


def test_bad_loop_choice_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["loop", "--explore", "ucb"])
    assert exit_info.value.code == 2 and "invalid choice: 'ucb'" in capsys.readouterr().err
