"""`fedrec compare`: centralised vs federated (plain, secure, per-user) MF on one split, one model size, one budget."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fedrec.shared import atomic, cli, preflight
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.item_features import features_for
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.positives import check_positives
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import ConfigError, FedrecError
from fedrec.shared.metrics import headline, round_metric
from fedrec.shared.train import evaluate, fit
from fedrec.shared.train_implicit import evaluate_implicit, fit_implicit
from fedrec.simulations import report
from fedrec.simulations.results_schema import CompareResults, DataSummary, RoundEntry, RunMetrics, SettingRow
from fedrec.shared.dp.plan import privacy_level
from fedrec.simulations.run import add_federated_options, simulate

METRICS = ("rmse", "mae", "ndcg@10", "recall@10", "precision@10", "map@10", "wall_seconds", "bytes_up_per_client_per_round")
# Settings whose failure is recorded in the results instead of stopping the comparison.
MAY_FAIL = ("federated-secure", "federated-secure-dp", "federated-per-user")
ROUND_KEYS = ("clients", "rmse", "mae", "ndcg@10", "train_rmse", "train_loss", "seconds", "bytes_up", "bytes_down",
              "epsilon")


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    cli.add_data_options(parser)
    cli.add_model_options(parser)
    add_federated_options(parser)
    group = parser.add_argument_group("comparison")
    group.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="folder receiving results.json, report.md and the PNG plots")
    group.add_argument("--repeats", default="1", metavar="K",
                       help="model seeds per setting (seed, seed+1, ...); the split is shared (default 1)")
    group.add_argument("--per-user", action="store_true",
                       help="add the one-client-per-user setting (clients_per_round from config, else 10%% of users)")
    parser.epilog = ("Exit status: 0 when every setting ran; 1 when a setting failed (its error is in report.md "
                     "and results.json, which are still written with the settings that ran); 2 on bad input.")
    parser.set_defaults(handler=run, command_parser=parser)


def _parse_repeats(text: str) -> int:
    try:
        repeats = int(text)
    except ValueError:
        repeats = 0
    if repeats < 1 or str(repeats) != text.strip():
        raise ConfigError(f"--repeats must be a positive whole number, got {text!r}")
    return repeats


def run(args: argparse.Namespace) -> int:
    repeats = _parse_repeats(args.repeats)
    config = cli.config_from_args(args)
    results = compare(config, args.out, repeats, args.per_user, report.command_line(args.command_parser, args))
    print(report.results_table(results, markdown=False))
    print(f"wrote {args.out}/results.json, report.md, rmse_by_round.png, cost_per_round.png", file=sys.stderr)
    failed = [row.name for row in results.rows if row.status == "failed"]
    if failed:
        # The results stay written (the other settings are valid data, the failure is recorded in them), but a
        # script or CI running the comparison must see that it is incomplete: exit 1 (2 is kept for bad input).
        print(f"fedrec compare: error: setting {', '.join(failed)} failed (see {args.out / 'report.md'})", file=sys.stderr)
        return 1
    return 0


def check_out_dir(out_dir: Path) -> None:
    """Fail before any work if the results could not be written (the folder itself is created at the end)."""
    probe = Path(out_dir).absolute()
    if probe.exists() and not probe.is_dir():
        raise FedrecError(f"--out {out_dir}: exists and is not a folder")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise FedrecError(f"--out {out_dir}: cannot create or write files in {probe}")


def _with(config: FedrecConfig, **changes: object) -> FedrecConfig:
    tree = config.model_dump()
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        tree[section][field] = value
    return FedrecConfig.model_validate(tree)


def _settings(config: FedrecConfig, per_user: bool, n_users: int) -> list[tuple[str, FedrecConfig]]:
    dp = config.dp.epsilon is not None
    base = _with(config, dp__epsilon=None) if dp else config  # DP is its own setting, beside the others
    settings = [
        ("centralized", base),
        ("federated", _with(base, federated__secure=False)),
        ("federated-secure", _with(base, federated__secure=True)),
    ]
    if dp:
        settings.append(("federated-secure-dp", config))
    config = base
    if per_user:
        per_round = config.federated.clients_per_round or max(1, round(0.1 * n_users))
        settings.append(("federated-per-user", _with(
            config, federated__secure=False, federated__num_clients=n_users, federated__clients_per_round=per_round)))
    return settings


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _run_centralized(config: FedrecConfig, train: Ratings, test: Ratings) -> dict:
    history: list[dict] = []
    last = [time.perf_counter()]

    def on_epoch(epoch: int, train_rmse: float) -> None:
        now = time.perf_counter()
        history.append({"round": epoch, "train_rmse": train_rmse, "seconds": now - last[0]})
        last[0] = now
        _say(f"[centralized] epoch {epoch:4d}/{config.train.epochs}  train RMSE {train_rmse:.4f}")

    def on_implicit_epoch(epoch: int, loss: float) -> None:
        now = time.perf_counter()
        history.append({"round": epoch, "train_loss": loss, "seconds": now - last[0]})
        last[0] = now
        _say(f"[centralized] epoch {epoch:4d}/{config.train.epochs}  training loss per positive {loss:.4f}")

    start = time.perf_counter()
    if config.data.feedback == "implicit":
        threshold = config.data.positive_threshold
        implicit_model = fit_implicit(train, threshold, config.model, config.train, on_epoch=on_implicit_epoch)
        metrics = evaluate_implicit(implicit_model, train, test, threshold, config.eval)
    else:
        model = fit(train, config.model, config.train, on_epoch=on_epoch,
                    item_features=features_for(config, train.item_ids))
        metrics = evaluate(model, train, test, config.eval)
    return {**metrics, "wall_seconds": time.perf_counter() - start, "history": history}


def _run_federated(name: str, config: FedrecConfig, n_items: int) -> dict:
    rounds = config.federated.rounds

    def on_round(entry: dict) -> None:
        note = f"  SKIPPED: {entry['skipped']}" if "skipped" in entry else ""
        _say(f"[{name}] round {entry['round']:4d}/{rounds}  clients {entry['clients']:4d}  {round_metric(entry)}  "
             f"{entry['seconds']:6.2f} s  up {entry['bytes_up'] / 1e6:8.3f} MB  down {entry['bytes_down'] / 1e6:8.3f} MB{note}")

    result = simulate(config, on_round, n_items=n_items)
    result.pop("item_model", None)
    per_client = [e["bytes_up"] / e["clients"] for e in result["history"] if e.get("clients")]
    result["bytes_up_per_client_per_round"] = float(np.mean(per_client)) if per_client else 0.0
    return result


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _mean_history(histories: list[list[dict]]) -> list[RoundEntry]:
    """Round-by-round mean over the repeats (every repeat runs the same number of rounds)."""
    merged = []
    for entries in zip(*histories):
        row: dict = {"round": entries[0]["round"]}
        for key in ROUND_KEYS:
            mean, std = _mean_std([entry.get(key) for entry in entries])
            if mean is not None:
                row[key] = mean
                if key == "rmse":
                    row["rmse_std"] = std
        skipped = [entry["skipped"] for entry in entries if "skipped" in entry]
        if skipped:
            row["skipped"] = skipped[0]
        merged.append(RoundEntry.model_validate(row))
    return merged


def _row(name: str, config: FedrecConfig, seeds: list[int], runs: list[dict], error: str | None) -> SettingRow:
    fed = config.federated
    row: dict = {
        "name": name, "seeds": seeds, "rounds": fed.rounds,
        "status": "failed" if error else "ok", "error": error,
    }
    if name != "centralized":
        row.update(num_clients=fed.num_clients, clients_per_round=fed.clients_per_round, secure=fed.secure,
                   privacy=privacy_level(config))
        if runs and "dp" in runs[0]:
            row["dp"] = runs[0]["dp"]
    if not error:
        for key in METRICS:
            row[key], row[f"{key}_std"] = _mean_std([run.get(key) for run in runs])
        row["runs"] = [RunMetrics.model_validate({"seed": seed, **{k: run.get(k) for k in METRICS}})
                       for seed, run in zip(seeds, runs)]
        row["history"] = _mean_history([run["history"] for run in runs])
    return SettingRow.model_validate(row)


def _run_setting(name: str, config: FedrecConfig, train: Ratings, test: Ratings, repeats: int) -> SettingRow:
    seeds = [config.model.seed + repeat for repeat in range(repeats)]
    runs: list[dict] = []
    for repeat, seed in enumerate(seeds):
        seeded = _with(config, model__seed=seed)
        fed = seeded.federated
        epochs = "ALS epochs" if seeded.data.feedback == "implicit" and seeded.train.implicit_solver in ("als", "cg") else "full-batch epochs"
        how = (f"{fed.rounds} {epochs}" if name == "centralized" else
               f"{fed.num_clients} clients, {fed.rounds} rounds, {'secure' if fed.secure else 'plain'} aggregation")
        _say(f"[compare] {name}: model seed {seed} (repeat {repeat + 1}/{repeats}), {how}")
        try:
            if name == "centralized":
                runs.append(_run_centralized(seeded, train, test))
            else:
                runs.append(_run_federated(name, seeded, train.n_items))
        except Exception as exc:
            if name not in MAY_FAIL:
                raise
            error = f"{type(exc).__name__}: {exc}"
            _say(f"[compare] {name} FAILED: {error}")
            return _row(name, config, seeds, [], error)
        _say(f"[compare] {name} done: {headline(runs[-1])}, {runs[-1]['wall_seconds']:.1f} s")
    return _row(name, config, seeds, runs, None)


def compare(config: FedrecConfig, out_dir: Path, repeats: int = 1, per_user: bool = False,
            command_line: str = "") -> CompareResults:
    """Run every setting on the same split and write results.json (last), report.md and the plots to `out_dir`."""
    out_dir = Path(out_dir)
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}")
    if config.eval.top_k != 10:
        raise ConfigError(f"compare reports @10 metrics: eval.top_k must be 10 (got {config.eval.top_k})")
    check_out_dir(out_dir)
    train, test = load_train_test(config)
    preflight.check_federation(config.federated, train.n_users)
    if config.data.feedback == "implicit":
        check_positives(train, config.data.positive_threshold)
    config = _with(config, train__epochs=config.federated.rounds)  # one full-batch step per epoch = one per round
    source = config.data.dataset if config.data.train is None else f"train={config.data.train} test={config.data.test}"
    _say(f"[compare] {source}: {len(train)} training and {len(test)} test ratings, {train.n_users} users, "
         f"{train.n_items} items; k = {config.model.factors}, {config.federated.rounds} rounds, {repeats} repeat(s)")
    rows = [_run_setting(name, setting, train, test, repeats)
            for name, setting in _settings(config, per_user, train.n_users)]
    results = CompareResults(
        command=command_line, created=datetime.now(timezone.utc).isoformat(timespec="seconds"), repeats=repeats,
        data=DataSummary(source=str(source), n_train=len(train), n_test=len(test),
                         n_users=train.n_users, n_items=train.n_items),
        config=config.model_dump(mode="json"), rows=rows,
    )
    from fedrec.simulations import plots  # matplotlib: imported only when there is something to draw

    # Render everything first, then write: a failure while rendering leaves the folder untouched.
    outputs = {
        "rmse_by_round.png": plots.rmse_by_round(results),
        "cost_per_round.png": plots.cost_per_round(results),
        "report.md": report.render(results).encode("utf-8"),
        "results.json": CompareResults.model_validate_json(results.to_json()).to_json().encode("utf-8"),
    }
    for name, data in outputs.items():  # results.json last: its presence means the run is complete
        atomic.write_bytes(out_dir / name, data)
    return results
