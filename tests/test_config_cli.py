"""Tests for the configuration model and the `fedrec` command line (baseline, data split, error handling)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedrec.shared import cli
from fedrec.shared.config import load_config
from fedrec.shared.data.reader import read_ratings_file
from fedrec.shared.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SMALL_SYNTHETIC = [
    "--set", "synthetic.n_users=200", "--set", "synthetic.n_items=300", "--set", "synthetic.n_ratings=8000",
]


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fedrec.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_of(argv: list[str]):
    return cli.config_from_args(cli.build_parser().parse_args(argv))


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedrec.shared.cli", *argv], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_defaults_without_a_file() -> None:
    config = load_config()
    assert config.data.dataset == "synthetic" and config.train.optimizer == "adam" and config.model.factors == 32


def test_toml_file_is_loaded(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[model]\nfactors = 8\nreg = 0.5\n[train]\noptimizer = "sgd"\n[data]\nsplit = "temporal"\n')
    config = load_config(path)
    assert config.model.factors == 8 and config.model.reg == 0.5
    assert config.train.optimizer == "sgd" and config.data.split == "temporal"
    assert config.train.epochs == 60  # untouched fields keep their defaults


def test_unknown_field_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"model\.facters"):
        load_config(write_toml(tmp_path, "[model]\nfacters = 8\n"))


def test_unknown_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="modle"):
        load_config(write_toml(tmp_path, "[modle]\nfactors = 8\n"))


@pytest.mark.parametrize(
    "text, field",
    [
        ("[train]\nlr = -1.0\n", "train.lr"),
        ("[train]\noptimizer = \"lbfgs\"\n", "train.optimizer"),
        ("[data]\ntest_fraction = 1.5\n", "data.test_fraction"),
        ("[model]\nfactors = \"many\"\n", "model.factors"),
    ],
)
def test_bad_value_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert field in str(excinfo.value)
    assert str(path) in str(excinfo.value)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write_toml(tmp_path, "[model\nfactors = 8\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[train]\nepochs = 5\nlr = 0.5\n[model]\nfactors = 8\n")
    config = config_of(["baseline", "--config", str(path), "--epochs", "7", "--set", "model.factors=12"])
    assert config.train.epochs == 7 and config.model.factors == 12
    assert config.train.lr == 0.5  # from the file
    # A dedicated option is more specific than --set.
    config = config_of(["baseline", "--config", str(path), "--set", "train.epochs=9", "--epochs", "3"])
    assert config.train.epochs == 3
    config = config_of(["baseline", "--config", str(path), "--set", "train.epochs=9"])
    assert config.train.epochs == 9


def test_set_parsing() -> None:
    parsed = cli._parse_set([
        "model.factors=16", "model.reg=0.25", "data.dataset=ml-100k", 'data.split="per-user"', "synthetic.seed = 3",
    ])
    assert parsed == {
        "model.factors": 16, "model.reg": 0.25, "data.dataset": "ml-100k", "data.split": "per-user", "synthetic.seed": 3,
    }
    assert isinstance(parsed["model.factors"], int)
    for bad in ["model.factors", "factors=3", "=3"]:
        with pytest.raises(ConfigError, match="SECTION.FIELD=VALUE"):
            cli._parse_set([bad])


def test_set_of_an_unknown_field_exits_2(capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["baseline", "--set", "model.nope=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "fedrec: error:" in err and "model.nope" in err


def test_baseline_on_small_synthetic_data(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = run_cli("baseline", *SMALL_SYNTHETIC, "--epochs", "20", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ["rmse", "mae", "fit_seconds", "n_train", "n_test", "ndcg@10", "precision@10", "recall@10", "coverage"]:
        assert key in result, key
    assert result["n_train"] + result["n_test"] == 8000
    assert result["n_test"] == 1600
    assert 0.3 < result["rmse"] < result["references"]["global_mean"]["rmse"]
    assert 0 <= result["mae"] <= result["rmse"]
    assert 0 <= result["ndcg@10"] <= 1 and 0 < result["coverage"] <= 1
    assert result["config"]["train"]["epochs"] == 20
    assert "MF (k=32)" in done.stdout


def test_data_split_writes_files_that_read_back(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = cli.main(["data", "split", *SMALL_SYNTHETIC, "--split", "per-user", "--out", str(tmp_path / "out")])
    assert code == 0
    counts = {}
    for name in ("train", "test"):
        table, report = read_ratings_file(tmp_path / "out" / f"{name}.csv", rating_min=1, rating_max=5)
        assert report.rows_read == report.rows_kept
        assert table.timestamps is not None
        counts[name] = report.rows_kept
    assert counts["train"] + counts["test"] == 8000
    assert f"wrote {counts['train']} training and {counts['test']} test ratings" in capsys.readouterr().err


def test_data_split_of_an_input_file(tmp_path: Path) -> None:
    source = tmp_path / "ratings.tsv"
    source.write_text("".join(f"u{u}\ti{i}\t{1 + (u + i) % 5}\n" for u in range(10) for i in range(6)))
    assert cli.main(["data", "split", "--input", str(source), "--test-fraction", "0.25", "--out", str(tmp_path)]) == 0
    train, _ = read_ratings_file(tmp_path / "train.csv", rating_min=1, rating_max=5)
    test, _ = read_ratings_file(tmp_path / "test.csv", rating_min=1, rating_max=5)
    assert (len(train.values), len(test.values)) == (45, 15)
    pairs = set(zip(train.users, train.items)) | set(zip(test.users, test.items))
    assert pairs == {(f"u{u}", f"i{i}") for u in range(10) for i in range(6)}


def test_malformed_csv_exits_2_without_traceback(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    test = tmp_path / "test.csv"
    train.write_text("user,item,rating\n1,10,5\n2,10,banana\n3,11,4\n")
    test.write_text("user,item,rating\n1,11,4\n")
    out = tmp_path / "result.json"
    done = run_cli("baseline", "--train", str(train), "--test", str(test), "--epochs", "2", "--json", str(out))
    assert done.returncode == 2
    assert "fedrec: error:" in done.stderr
    assert f"{train}:3: rating is not a number" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
    assert set(tmp_path.iterdir()) == {train, test}  # no temporary file left behind either


def test_train_without_test_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train = tmp_path / "train.csv"
    train.write_text("1,10,5\n")
    assert cli.main(["baseline", "--train", str(train)]) == 2
    assert "give both --train FILE and --test FILE" in capsys.readouterr().err


def test_baseline_table_follows_top_k(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["baseline", *SMALL_SYNTHETIC, "--epochs", "3", "--set", "eval.top_k=5"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "NDCG@5" in table[0] and "@10" not in table[0]
    mf_row = table[-1].split()
    assert mf_row[0] == "MF" and "-" not in mf_row[4:8]  # ranking columns are filled in
