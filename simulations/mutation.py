"""Mutation testing of the core math and protocol with mutmut: per-area kill scores and the surviving mutants.

    python -m fedrec.simulations.mutation [--areas mf federated federation secagg] [--workdir DIR] [--jobs N]

mutmut 3 names a mutated module after its path, and it runs the tests in a copy of the project
(`mutants/`). Our folders install as `fedrec.shared`, `fedrec.server`, ... (a package-dir mapping), so this
script lays the four folders out as `fedrec/...` in a work folder per area, copies tests/ and pyproject.toml
(whose [tool.mutmut] table is written for that layout) beside them, and runs `mutmut run` there.

Each area is mutated against the fast test modules that target it (AREAS below; never the `flower` and
`deployment` markers), not the whole suite: a mutant in a function that every test reaches (RatingData,
say) would otherwise run three hundred tests, and an area took hours on a shared machine. A mutant that only
another module's test would kill counts as surviving, so the scores are lower bounds. `--all-tests` mutates
against every fast test instead. Slow: minutes to tens of minutes per area; not part of the test suite.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("shared", "server", "client", "simulations")
# Area name -> (mutmut mutant-name pattern, source files relative to the work folder, the test modules run).
AREAS = {
    "mf": ("fedrec.shared.mf.*", "fedrec/shared/mf.py",
           ["test_mf.py", "test_federated_math.py", "test_metrics.py", "test_recommend.py", "test_federated.py",
            "test_scale_math.py"]),
    "federated": ("fedrec.shared.federated.*", "fedrec/shared/federated.py",
                  ["test_federated_math.py", "test_federated.py", "test_dp_federated.py", "test_resume.py",
                   "test_curious_server.py", "test_dp_item_features.py"]),
    "federation": ("fedrec.server.federation.*", "fedrec/server/federation.py",
                   ["test_federated.py", "test_resume.py", "test_client_state.py", "test_dp_federated.py",
                    "test_secure_federated.py", "test_curious_server.py", "test_preflight.py"]),
    "secagg": ("fedrec.shared.secagg.*", "fedrec/shared/secagg",
               ["test_secagg_primitives.py", "test_secagg_bounds.py", "test_secagg_analysis.py",
                "test_secagg_records.py", "test_secagg_masking.py", "test_secagg_protocol.py",
                "test_secagg_safeguards.py", "test_secagg_unmasking.py", "test_secagg_dp_share.py", "test_secagg_setup.py",
                "test_dp_noise.py"]),
}
# mutmut's exit-code meaning (mutmut.stats.status_by_exit_code), repeated so that reading results needs no import.
KILLED = {1, 3, 36, 37, -24, 24, 152, 255}  # failed tests, pytest error, timeout, type check
SURVIVED = {0}


def stage(workdir: Path, area: str, all_tests: bool) -> None:
    """A fresh copy of the project in the layout mutmut can name: fedrec/<folder>/..., tests/, pyproject.toml,
    whose [tool.mutmut] table is narrowed to this area's files (and, unless all_tests, its test modules)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, workdir / "fedrec" / folder, ignore=ignore)
    shutil.copytree(REPO / "tests", workdir / "tests", ignore=ignore)
    _, path, tests = AREAS[area]
    text = (REPO / "pyproject.toml").read_text()
    text = _set_key(text, "only_mutate", [path if path.endswith(".py") else path + "/*"])
    if not all_tests:
        text = _set_key(text, "pytest_add_cli_args_test_selection", [f"tests/{name}" for name in tests])
    (workdir / "pyproject.toml").write_text(text)


def _set_key(text: str, key: str, value: list[str]) -> str:
    """Replace one `key = [...]` entry of [tool.mutmut] (a list that may span lines)."""
    start = text.index("\n" + key + " = [") + 1
    end = text.index("]", start) + 1
    return text[:start] + f"{key} = {json.dumps(value)}" + text[end:]


def area_of(meta: Path, workdir: Path) -> str | None:
    source = meta.relative_to(workdir / "mutants").as_posix().removesuffix(".meta")
    return next((name for name, (_, path, _) in AREAS.items() if source == path or source.startswith(path + "/")), None)


def scores(workdir: Path, areas: list[str]) -> dict[str, dict]:
    """Per area: killed, survived, other (no tests, not checked, suspicious) and the surviving mutant names."""
    found: dict[str, dict] = {}
    for meta in sorted((workdir / "mutants").rglob("*.py.meta")):
        area = area_of(meta, workdir)
        if area is None:
            continue
        entry = found.setdefault(area, {"counts": Counter(), "files": {}, "survivors": []}) if area in areas else None
        if entry is None:
            continue
        source = meta.relative_to(workdir / "mutants").as_posix().removesuffix(".meta")
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code is None:  # not run (another area's mutant, or left out by --only)
                continue
            status = "killed" if code in KILLED else "survived" if code in SURVIVED else "other"
            entry["counts"][status] += 1
            entry["files"].setdefault(source, Counter())[status] += 1
            if status != "killed":
                entry["survivors"].append((key, status, code))
    return found


def check(workdir: Path, area: str, patterns: list[str], modules: list[str] | None) -> None:
    """Run each named mutant that is not killed yet against the area's current test modules, in a fresh
    process, and record the verdict as mutmut would. For survivors of an earlier run once tests were added
    (mutmut would rerun the whole area after a change of its test list), and for mutants of lru_cached
    functions: mutmut forks its workers from a process whose caches already hold the right values.
    `modules` (default: the area's) may name only the test modules added since: the others passed already."""
    mutants = workdir / "mutants"
    shutil.rmtree(mutants / "tests")
    shutil.copytree(REPO / "tests", mutants / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    tests = [f"tests/{name}" for name in (modules or AREAS[area][2])]
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        names = [key for key, code in codes.items() if code not in KILLED and code is not None
                 and any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns)]
        for name in names:
            done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   "-m", "not flower and not deployment", *tests], cwd=mutants,
                                  env={**os.environ, "MUTANT_UNDER_TEST": name}, capture_output=True, text=True)
            codes[name] = done.returncode
            print(f"{'killed' if done.returncode in KILLED else 'survived'} ({done.returncode}): {name}", flush=True)
            meta.write_text(json.dumps(data, indent=4))


def not_run(workdir: Path, count: int, seed: int) -> list[str]:
    """A uniform random sample of the mutants that have no result yet (mutmut runs the cheapest first, so
    what is left of an interrupted run is not like what was run: a sample of it estimates the rest)."""
    names = sorted(key for meta in (workdir / "mutants").rglob("*.py.meta")
                   for key, code in json.loads(meta.read_text())["exit_code_by_key"].items() if code is None)
    chosen = sorted(random.Random(seed).sample(names, min(count, len(names))))
    (workdir / "sample.json").write_text(json.dumps({"pool": len(names), "seed": seed, "names": chosen}, indent=1))
    return chosen


def estimate(workdir: Path) -> str:
    """The whole area's kill score: the mutants run outside the sample (an interrupted run, the files named by
    --only, earlier samples) counted exactly, the rest estimated from the random sample of them (sample.json),
    with a 95% Wilson interval. The sample's rate is its first pass (recorded when its run ended): survivors
    rerun with --check after tests were written for them no longer stand for the mutants never run. The rate
    stands for the sample and every mutant still never run; mutants of the pool run since (outside the sample)
    are counted exactly. A sample that is the whole pool gives an exact score."""
    path = workdir / "sample.json"
    if not path.exists():
        return ""
    sample = json.loads(path.read_text())
    chosen = set(sample["names"])
    codes = {key: code for meta in (workdir / "mutants").rglob("*.py.meta")
             for key, code in json.loads(meta.read_text())["exit_code_by_key"].items()}
    first = sample.get("first_pass", {})
    exact = [code for key, code in codes.items() if code is not None and key not in chosen]
    drawn = [first.get(key, codes.get(key)) for key in chosen]
    drawn = [code for code in drawn if code is not None]
    if not drawn:
        return ""
    n, k, z = len(drawn), sum(code in KILLED for code in drawn), 1.96
    now = sum(codes.get(key) in KILLED for key in chosen)
    rate = k / n
    centre, half = (rate + z * z / (2 * n)) / (1 + z * z / n), z * ((rate * (1 - rate) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    killed_exact = sum(code in KILLED for code in exact)
    never_run = sum(code is None for key, code in codes.items() if key not in chosen)
    pool = n + never_run  # the sample stands for itself and for the mutants still never run

    def score(r: float) -> float:
        return 100 * (killed_exact + r * pool) / (len(exact) + pool)

    label = "first pass" if first else "current results"
    text = (f"{len(exact)} mutants run outside the sample ({killed_exact} killed); {k} of a random {n} "
            f"({label}; {now} killed now) of the {sample['pool']} never run when drawn (seed {sample.get('seed')})")
    if never_run == 0:
        return (f"{text}; none left unrun: exact score {score(rate):.1f}% "
                f"({killed_exact + k} of {len(exact) + n}; {killed_exact + now} now)")
    return (f"{text}, {never_run} still never run: estimated score {score(rate):.1f}% "
            f"(95% interval {score(centre - half):.1f}% to {score(centre + half):.1f}%)")


def _row(name: str, counts: Counter) -> str:
    total = sum(counts.values())
    score = f"{100 * counts['killed'] / total:.1f}%" if total else "-"
    return f"| {name} | {total} | {counts['killed']} | {counts['survived']} | {counts['other']} | {score} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--areas", nargs="+", choices=list(AREAS), default=["mf", "federated", "federation", "secagg"])
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "mutation",
                        help="work folder (one sub-folder per area, replaced when that area runs; default: build/mutation)")
    parser.add_argument("--all-tests", action="store_true", help="run every fast test, not the area's modules")
    parser.add_argument("--keep", action="store_true",
                        help="continue in an existing work folder (fresh tests/, mutants already run keep their result)")
    parser.add_argument("--only", nargs="+", metavar="PATTERN",
                        help="mutant names or patterns to (re)run instead of the whole area (e.g. 'fedrec.shared.secagg.shamir.*')")
    parser.add_argument("--check-tests", nargs="+", metavar="MODULE",
                        help="the test modules --check runs (default: the area's)")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="with --keep: run N mutants drawn at random from those an interrupted run did not reach")
    parser.add_argument("--seed", type=int, default=0, help="of --sample (default 0)")
    parser.add_argument("--report", action="store_true", help="only print the scores of an earlier run")
    parser.add_argument("--check", nargs="+", metavar="PATTERN",
                        help="rerun the named, not yet killed mutants of an earlier run against the current tests")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested in parallel (default 2)")
    parser.add_argument("--json", type=Path, help="also write the scores and survivors here")
    args = parser.parse_args(argv)
    found: dict[str, dict] = {}
    for area in args.areas:
        workdir = args.workdir / area
        if args.report or args.check:
            if args.check:
                check(workdir, area, args.check, args.check_tests)
            found.update(scores(workdir, [area]))
            continue
        if args.keep and workdir.exists():
            shutil.rmtree(workdir / "tests")
            shutil.copytree(REPO / "tests", workdir / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            stage(workdir, area, args.all_tests)
        # Without names mutmut runs every mutant of only_mutate (this area) that has no result yet, so a
        # --keep run continues an interrupted one; named mutants (--only, --sample) are run again.
        patterns = args.only or (not_run(workdir, args.sample, args.seed) if args.sample else [])
        print(f"== mutmut: {area} ({' '.join(patterns) or AREAS[area][0]})", flush=True)
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs), *patterns],
                              cwd=workdir)
        if args.sample:  # the sample's first pass (of the part run, if interrupted), which --check does not change
            sample = json.loads((workdir / "sample.json").read_text())
            codes = {key: code for meta in (workdir / "mutants").rglob("*.py.meta")
                     for key, code in json.loads(meta.read_text())["exit_code_by_key"].items()}
            sample["first_pass"] = {key: codes.get(key) for key in sample["names"]}
            (workdir / "sample.json").write_text(json.dumps(sample, indent=1))
        if done.returncode != 0:
            print(f"mutmut failed on {area} (exit {done.returncode})", file=sys.stderr)
            return 1
        found.update(scores(workdir, [area]))
    print("\n| area | mutants | killed | survived | other | kill score |\n|---|---|---|---|---|---|")
    for area in args.areas:
        entry = found.get(area, {"counts": Counter(), "files": {}})
        print(_row(area, entry["counts"]))
        if len(entry["files"]) > 1:
            for source, counts in sorted(entry["files"].items()):
                print(_row(f"&nbsp; {source.removeprefix('fedrec/')}", counts))
    for area in args.areas:
        if text := estimate(args.workdir / area):
            print(f"{area}: {text}")
    for area in args.areas:
        for key, status, code in found.get(area, {}).get("survivors", []):
            print(f"{status} ({code}): {key}")
    print(f"\nsee one: cd {args.workdir}/AREA && {Path(sys.executable).name} -m mutmut show MUTANT_NAME")
    if args.json is not None:
        args.json.write_text(json.dumps({area: {"counts": dict(v["counts"]), "survivors": v["survivors"],
                                                "files": {f: dict(c) for f, c in v["files"].items()}}
                                         for area, v in found.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
