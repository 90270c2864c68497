"""`fedrec compare`: end to end on Flower (one small run), plus its failure handling and bad input without Ray."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest

from fedrec.server.federation import run_federation
from fedrec.shared import cli
from fedrec.shared.config import FedrecConfig, load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.train import global_mean_reference
from fedrec.simulations import compare as compare_module
from fedrec.simulations.report import toml_dump
from fedrec.simulations.results_schema import CompareResults
from tests.fakegrid import FakeGrid

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = [
    "--set", "synthetic.n_users=80", "--set", "synthetic.n_items=100", "--set", "synthetic.n_ratings=2500",
    "--factors", "4", "--num-clients", "3", "--rounds", "2",
]
FILES = ("results.json", "report.md", "rmse_by_round.png", "cost_per_round.png")


def _check_outputs(out: Path) -> CompareResults:
    import matplotlib.image

    for name in FILES:
        assert (out / name).is_file(), name
    for name in ("rmse_by_round.png", "cost_per_round.png"):
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE)
        assert matplotlib.image.imread(out / name).ndim == 3
    results = CompareResults.model_validate_json((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for text in ("| setting |", "fedrec compare", "```toml", "flwr", "cryptography", "python", "cpus"):
        assert text in report
    return results


def _assert_numeric(row) -> None:
    assert row.status == "ok" and row.error is None
    for value in (row.rmse, row.mae, row.ndcg_at_10, row.recall_at_10, row.wall_seconds):
        assert value is not None and math.isfinite(value)
    assert row.rounds == 2 and len(row.history) == 2


@pytest.mark.flower
def test_compare_end_to_end(tmp_path: Path) -> None:
    """Both federated settings on Flower's simulation engine (Ray): the plain one trains exactly what the
    in-process grid trains, the secure one the same model up to fixed-point rounding, and both beat an
    untrained model. (This is the suite's one run of the Ray engine with secure sums.)"""
    out = tmp_path / "report"
    assert cli.main(["compare", *SMALL, "--out", str(out)]) == 0
    results = _check_outputs(out)
    rows = {row.name: row for row in results.rows}
    assert list(rows) == ["centralized", "federated", "federated-secure"]
    _assert_numeric(rows["centralized"])
    _assert_numeric(rows["federated"])
    secure = rows["federated-secure"]
    _assert_numeric(secure)  # a failed secure setting fails this test (and `fedrec compare` exits 1)
    assert secure.secure is True and rows["federated"].secure is False
    assert secure.rmse == pytest.approx(rows["federated"].rmse, abs=1e-4)  # secure sums train the same model
    assert rows["federated"].bytes_up_per_client_per_round > 0
    assert rows["centralized"].bytes_up_per_client_per_round is None
    raw = json.loads((out / "results.json").read_text())
    for entry in raw["rows"][2]["history"]:  # federated-secure
        assert entry["clients"] == 3 and entry["bytes_up"] > 0 and entry["bytes_down"] > 0 and entry["seconds"] > 0
    plain = FedrecConfig.model_validate({**raw["config"], "federated": {**raw["config"]["federated"], "secure": False}})
    in_process = run_federation(FakeGrid(plain, 3), plain, n_items=raw["data"]["n_items"])
    for name, metric in (("rmse", "rmse"), ("mae", "mae"), ("ndcg_at_10", "ndcg@10"), ("recall_at_10", "recall@10")):
        assert getattr(rows["federated"], name) == pytest.approx(in_process[metric], abs=1e-9), name
        assert getattr(secure, name) == pytest.approx(in_process[metric], abs=1e-4), name
    train, test = load_train_test(plain)
    assert secure.rmse < global_mean_reference(train, test, plain.eval)["rmse"] - 0.02
    assert {"name", "rmse", "mae", "ndcg@10", "recall@10", "wall_seconds", "bytes_up_per_client_per_round",
            "rounds", "history"} <= set(raw["rows"][1])
    assert "item_model" not in raw["rows"][1]
    assert "--rounds 2" in raw["command"]
    assert raw["config"]["train"]["epochs"] == 2  # the centralised budget follows the federated rounds


def _fake_simulate(config: FedrecConfig, on_round=None, n_items=None) -> dict:
    """Stands in for the Flower run: plain aggregation works, secure aggregation is "not available"."""
    if config.federated.secure:
        raise ModuleNotFoundError("No module named 'server.secure'")
    shift = 0.01 * config.model.seed
    history = []
    for round_number in range(1, config.federated.rounds + 1):
        entry = {"round": round_number, "clients": 3, "sampled": 3, "rmse": 1.1 - 0.05 * round_number + shift,
                 "mae": 0.9, "ndcg@10": 0.1, "train_rmse": 1.0, "ratings_used": 2000.0, "seconds": 0.1,
                 "bytes_up": 3000, "bytes_down": 2000, "failures": []}
        history.append(entry)
        on_round(entry)
    return {"rmse": history[-1]["rmse"], "mae": 0.9, "ndcg@10": 0.1, "recall@10": 0.2, "precision@10": 0.05,
            "coverage": 0.5, "wall_seconds": 1.0 + shift, "rounds": config.federated.rounds, "num_clients": 3,
            "history": history, "item_model": {"q": None, "bi": None, "mu": 3.5}}


def test_failed_setting_is_recorded_with_repeats_and_exits_1(tmp_path: Path, monkeypatch, capsys) -> None:
    """A failed setting: the results are still written (valid data for the others), and the exit status is 1."""
    monkeypatch.setattr(compare_module, "simulate", _fake_simulate)
    out = tmp_path / "report"
    assert cli.main(["compare", *SMALL, "--out", str(out), "--repeats", "2"]) == 1
    assert "fedrec compare: error: setting federated-secure failed" in capsys.readouterr().err
    results = _check_outputs(out)
    rows = {row.name: row for row in results.rows}
    assert rows["federated-secure"].status == "failed"
    assert "server.secure" in rows["federated-secure"].error
    assert "server.secure" in (out / "report.md").read_text()
    for name in ("centralized", "federated"):
        row = rows[name]
        assert row.status == "ok" and row.seeds == [0, 1] and len(row.runs) == 2
        assert row.rmse_std is not None and row.rmse_std >= 0
    assert rows["federated"].rmse_std == pytest.approx(0.01 / math.sqrt(2))
    assert rows["federated"].bytes_up_per_client_per_round == pytest.approx(1000)
    assert " ± " in (out / "report.md").read_text()


@pytest.mark.parametrize("repeats", ["0", "-1", "two", "1.5"])
def test_bad_repeats_exits_2_and_writes_nothing(tmp_path: Path, capsys, repeats: str) -> None:
    out = tmp_path / "report"
    assert cli.main(["compare", *SMALL, "--out", str(out), "--repeats", repeats]) == 2
    assert not (out / "results.json").exists()
    error = capsys.readouterr().err
    assert error.startswith("fedrec: error:") and "--repeats" in error


def test_unknown_dataset_and_unwritable_out_exit_2(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert cli.main(["compare", "--dataset", "no-such-data", "--out", str(out)]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert not out.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main(["compare", *SMALL, "--out", str(blocker / "report")]) == 2
    assert cli.main(["compare", *SMALL, "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.count("fedrec: error:") == 2


def test_report_toml_reads_back_as_the_same_config() -> None:
    config = load_config(overrides={"model.factors": 8, "data.data_dir": "/tmp/x \"quoted\"", "federated.secure": True})
    assert FedrecConfig.model_validate(tomllib.loads(toml_dump(config.model_dump(mode="json")))) == config
