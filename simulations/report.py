"""The Markdown report of `fedrec compare`: results table, command, configuration (TOML), versions, machine."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
from importlib import metadata
from pathlib import Path

from fedrec.shared.table import format_table
from fedrec.simulations.results_schema import CompareResults, SettingRow

LIBRARIES = ("fedrec", "flwr", "numpy", "scipy", "cryptography", "pydantic", "matplotlib")
COLUMNS = [  # (row attribute, header, format)
    ("rmse", "RMSE", ".4f"),
    ("mae", "MAE", ".4f"),
    ("ndcg_at_10", "NDCG@10", ".4f"),
    ("recall_at_10", "R@10", ".4f"),
    ("wall_seconds", "wall s", ".2f"),
    ("bytes_up_per_client_per_round", "up B/client/round", ",.0f"),
]
IMPLICIT_COLUMNS = [  # implicit feedback: ranking metrics on held-out positives, no ratings to predict
    ("precision_at_10", "P@10", ".4f"),
    ("recall_at_10", "R@10", ".4f"),
    ("ndcg_at_10", "NDCG@10", ".4f"),
    ("map_at_10", "MAP@10", ".4f"),
    ("wall_seconds", "wall s", ".2f"),
    ("bytes_up_per_client_per_round", "up B/client/round", ",.0f"),
]


def is_implicit(results: CompareResults) -> bool:
    return results.config.get("data", {}).get("feedback") == "implicit"


def command_line(parser: argparse.ArgumentParser, args: argparse.Namespace, program: str = "fedrec compare") -> str:
    """The command as parsed: every option given on the command line (or differing from its default), in order."""
    words = [program]
    for action in parser._actions:  # argparse has no public listing of a parser's options
        value = getattr(args, action.dest, None)
        if not action.option_strings or value is None or value == action.default or action.dest == "help":
            continue
        flag = action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif action.nargs == 0:
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return " ".join([words[0], shlex.join(words[1:])]) if len(words) > 1 else words[0]


def _cell(row: SettingRow, key: str, fmt: str, first: str) -> str:
    if row.status == "failed":
        return "failed" if key == first else "-"
    mean, std = getattr(row, key), getattr(row, f"{key}_std")
    if mean is None:
        return "-"
    return format(mean, fmt) + (f" ± {format(std, fmt)}" if std is not None else "")


def results_table(results: CompareResults, markdown: bool = True) -> str:
    metric_columns = IMPLICIT_COLUMNS if is_implicit(results) else COLUMNS
    rows = []
    for row in results.rows:
        cells = {"name": row.name, "rounds": str(row.rounds)}
        cells.update({key: _cell(row, key, fmt, metric_columns[0][0]) for key, _, fmt in metric_columns})
        cells["clients"] = "-" if row.num_clients is None else f"{row.clients_per_round or row.num_clients}/{row.num_clients}"
        rows.append(cells)
    columns = [("name", "setting", ""), *metric_columns, ("rounds", "rounds", ""), ("clients", "clients/round", "")]
    return format_table(rows, columns, markdown=markdown)


def toml_dump(tree: dict) -> str:
    """TOML for a two-level tree of scalars (the configuration); None has no TOML form, so it is left out."""
    def scalar(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        if isinstance(value, (int, float)):
            return repr(value)
        return json.dumps(str(value))  # a JSON string is a valid TOML basic string

    lines = []
    for section, fields in tree.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {scalar(value)}" for key, value in fields.items() if value is not None]
        lines.append("")
    return "\n".join(lines)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_facts() -> dict[str, str]:
    facts = {"platform": platform.platform(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                facts["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return facts


def _setting_notes(results: CompareResults) -> list[str]:
    notes = []
    for row in results.rows:
        if row.name == "centralized" and is_implicit(results):
            solver = results.config["train"]["implicit_solver"]
            what = (f"pooled data, {row.rounds} epochs of WRMF `{solver}` (train.epochs = federated.rounds; `gradient` "
                    "takes the federated step, `als` solves the items exactly, `cg` approximately)")
        elif row.name == "centralized":
            what = f"pooled data, {row.rounds} full-batch epochs (train.epochs = federated.rounds)"
        else:
            what = (f"{row.num_clients} clients, {row.clients_per_round or 'fraction-sampled'} per round, "
                    f"{row.rounds} rounds, federated.secure = {str(row.secure).lower()}")
        notes.append(f"- `{row.name}`: {what}; model seeds {row.seeds}")
    return notes


def render(results: CompareResults) -> str:
    data = results.data
    failed = [row for row in results.rows if row.status == "failed"]
    spread = "mean ± standard deviation over " if results.repeats > 1 else ""
    lines = [
        "# fedrec compare",
        "",
        f"Data: {data.source}: {data.n_train} training and {data.n_test} test ratings, {data.n_users} users, "
        f"{data.n_items} items. Every setting uses this split, k = {results.config['model']['factors']} factors "
        f"and the same budget; {spread}{results.repeats} model seed(s). Finished {results.created}.",
        "",
        "## Results",
        "",
        results_table(results),
        "",
        "Metrics on the test set after the last round. `up B/client/round`: payload bytes uploaded per round "
        "(training and evaluation exchanges) divided by the clients summed that round, averaged over rounds.",
        "",
    ]
    if failed:
        lines += ["Failed settings:", ""] + [f"- `{row.name}`: {row.error}" for row in failed] + [""]
    lines += [
        f"![test {'NDCG@10' if is_implicit(results) else 'RMSE'} by round](rmse_by_round.png)", "", "![cost per round](cost_per_round.png)", "",
        "## Settings", "", *_setting_notes(results), "",
        "## Command", "", "```sh", results.command, "```", "",
        "## Configuration", "", "Shared by every setting (each changes only what is listed above).", "",
        "```toml", toml_dump(results.config).rstrip(), "```", "",
        "## Environment", "",
        format_table([{"name": k, "value": v} for k, v in {**library_versions(), **machine_facts()}.items()],
                     [("name", "item", ""), ("value", "value", "")], markdown=True),
        "",
    ]
    return "\n".join(lines)
