"""Benchmark: `fedrec baseline` on synthetic data of MovieLens-10M size, time and peak memory of each phase.

    python -m fedrec.simulations.bench_scale [--users 70000 --items 10000 --ratings 10000000] [--json OUT]

First the phases of `fedrec baseline` one by one in a fresh child process (make the data, split it, fit and
evaluate the MF, fit and evaluate the biases-only model, the global-mean reference), each with its wall time,
its CPU time (user + system, which varies less than wall time on a shared machine) and the child's peak resident
memory so far; then the whole `fedrec baseline` command in another fresh child, with its wall time, CPU time
and peak resident memory. Children run one at a time; nothing else is measured meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULTS = {"users": 70_000, "items": 10_000, "ratings": 10_000_000}

# Runs in the child: only APIs that fedrec has had since its first baseline, so that the same script can
# measure an older checkout (put that checkout first on PYTHONPATH) for before-and-after figures.
PHASES = r"""
import json, resource, sys, time
from fedrec.shared.config import load_config
from fedrec.shared.data import synthetic
from fedrec.shared.data.split import split
from fedrec.shared.train import evaluate, fit, global_mean_reference

config = load_config(None, json.loads(sys.argv[1]))
rows = []
clock = time.perf_counter()

cpu = time.process_time()

def done(phase, **extra):
    global clock, cpu
    now, now_cpu = time.perf_counter(), time.process_time()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    rows.append({"phase": phase, "seconds": now - clock, "cpu_seconds": now_cpu - cpu, "peak_rss_mb": peak, **extra})
    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    clock, cpu = time.perf_counter(), time.process_time()

ratings = synthetic.generate(config.synthetic)
done("make the data")
train, test = split(ratings, config.data)
del ratings
done("split 80/20")
model = fit(train, config.model, config.train)
done("fit MF (k=32, 60 epochs)")
done("evaluate MF", rmse=evaluate(model, train, test, config.eval)["rmse"])
del model
biases = fit(train, config.model.model_copy(update={"factors": 0}), config.train)
done("fit biases only")
done("evaluate biases only", rmse=evaluate(biases, train, test, config.eval)["rmse"])
done("global mean", rmse=global_mean_reference(train, test, config.eval)["rmse"])
print(json.dumps(rows))
"""


def overrides(args: argparse.Namespace) -> dict[str, int]:
    return {"synthetic.n_users": args.users, "synthetic.n_items": args.items, "synthetic.n_ratings": args.ratings}


def run_phases(args: argparse.Namespace) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", PHASES, json.dumps(overrides(args))],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_scale: the phase run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_command(args: argparse.Namespace) -> dict:
    """Wall time and peak RSS of the whole `fedrec baseline` command, in a fresh child (os.wait4 reads the
    child's own resource usage, which RUSAGE_CHILDREN would mix with the phase run's)."""
    command = [sys.executable, "-m", "fedrec.shared.cli", "baseline"]
    for key, value in overrides(args).items():
        command += ["--set", f"{key}={value}"]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"bench_scale: `{' '.join(command)}` failed:\n{err.read()[-3000:]}")
        table = out.read()
    return {"command": " ".join(["fedrec", *command[3:]]), "seconds": seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024, "table": table}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=DEFAULTS["users"])
    parser.add_argument("--items", type=int, default=DEFAULTS["items"])
    parser.add_argument("--ratings", type=int, default=DEFAULTS["ratings"])
    parser.add_argument("--skip-phases", action="store_true", help="only time the whole command")
    parser.add_argument("--skip-command", action="store_true", help="only time the phases")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    result: dict = {"size": overrides(args)}
    print(f"synthetic data: {args.users:,} users, {args.items:,} items, {args.ratings:,} ratings", file=sys.stderr)
    if not args.skip_phases:
        result["phases"] = run_phases(args)
        print("| phase | wall s | CPU s | peak RSS so far, MB |\n|---|---|---|---|")
        for row in result["phases"]:
            print(f"| {row['phase']} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} | {row['peak_rss_mb']:.0f} |")
    if not args.skip_command:
        result["command"] = run_command(args)
        print(f"\nwhole command `{result['command']['command']}`: {result['command']['seconds']:.1f} s wall, "
              f"{result['command']['cpu_seconds']:.1f} s CPU, peak RSS {result['command']['peak_rss_mb']:.0f} MB")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
