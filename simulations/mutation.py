"""Mutation testing of the core math and protocol with mutmut: per-area kill scores and the surviving mutants.

    python -m fedrec.simulations.mutation [--areas mf federated federation secagg] [--workdir DIR] [--jobs N]

mutmut 3 names a mutated module after its path, and it runs the tests in a copy of the project
(`mutants/`). Our folders install as `fedrec.shared`, `fedrec.server`, ... (a package-dir mapping), so this
script lays the four folders out as `fedrec/...` in a work folder, copies tests/ and pyproject.toml
(whose [tool.mutmut] table is written for that layout) beside them, and runs `mutmut run` there, one
area at a time. Only the fast tests run (not the `flower` and `deployment` markers). Slow: minutes per area;
not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("shared", "server", "client", "simulations")
# Area name -> (mutmut mutant-name pattern, source files relative to the work folder).
AREAS = {
    "mf": ("fedrec.shared.mf.*", "fedrec/shared/mf.py"),
    "federated": ("fedrec.shared.federated.*", "fedrec/shared/federated.py"),
    "federation": ("fedrec.server.federation.*", "fedrec/server/federation.py"),
    "secagg": ("fedrec.shared.secagg.*", "fedrec/shared/secagg"),
}
# mutmut's exit-code meaning (mutmut.stats.status_by_exit_code), repeated so that reading results needs no import.
KILLED = {1, 3, 36, 37, -24, 24, 152, 255}  # failed tests, pytest error, timeout, type check
SURVIVED = {0}


def stage(workdir: Path) -> None:
    """A fresh copy of the project in the layout mutmut can name: fedrec/<folder>/..., tests/, pyproject.toml."""
    if workdir.exists():
        shutil.rmtree(workdir)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, workdir / "fedrec" / folder, ignore=ignore)
    shutil.copytree(REPO / "tests", workdir / "tests", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", workdir / "pyproject.toml")


def area_of(meta: Path, workdir: Path) -> str | None:
    source = meta.relative_to(workdir / "mutants").as_posix().removesuffix(".meta")
    return next((name for name, (_, path) in AREAS.items() if source == path or source.startswith(path + "/")), None)


def scores(workdir: Path, areas: list[str]) -> dict[str, dict]:
    """Per area: killed, survived, other (no tests, not checked, suspicious) and the surviving mutant names."""
    found: dict[str, dict] = {}
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        area = area_of(meta, workdir)
        if area is None:
            continue
        entry = found.setdefault(area, {"counts": Counter(), "survivors": []}) if area in areas else None
        if entry is None:
            continue
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code is None:  # not run in this invocation (another area's mutant)
                continue
            status = "killed" if code in KILLED else "survived" if code in SURVIVED else "other"
            entry["counts"][status] += 1
            if status != "killed":
                entry["survivors"].append((key, status, code))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", nargs="+", choices=list(AREAS), default=["mf", "federated", "federation", "secagg"])
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "mutation",
                        help="work folder, replaced on every run (default: build/mutation)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--json", type=Path, help="also write the scores and survivors here")
    args = parser.parse_args(argv)
    stage(args.workdir)
    for area in args.areas:
        pattern = AREAS[area][0]
        print(f"== mutmut: {area} ({pattern})", flush=True)
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs), pattern],
                              cwd=args.workdir)
        if done.returncode != 0:
            print(f"mutmut failed on {area} (exit {done.returncode})", file=sys.stderr)
            return 1
    found = scores(args.workdir, args.areas)
    print("\n| area | mutants | killed | survived | other | kill score |\n|---|---|---|---|---|---|")
    for area in args.areas:
        counts = found.get(area, {"counts": Counter()})["counts"]
        total = sum(counts.values())
        score = f"{100 * counts['killed'] / total:.1f}%" if total else "-"
        print(f"| {area} | {total} | {counts['killed']} | {counts['survived']} | {counts['other']} | {score} |")
    for area in args.areas:
        for key, status, code in found.get(area, {}).get("survivors", []):
            print(f"{status} ({code}): {key}")
    print(f"\nsee one: cd {args.workdir} && {Path(sys.executable).name} -m mutmut show MUTANT_NAME")
    if args.json is not None:
        args.json.write_text(json.dumps({area: {"counts": dict(v["counts"]), "survivors": v["survivors"]}
                                         for area, v in found.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
