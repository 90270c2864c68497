"""Benchmark: federated rounds at MovieLens-10M and MovieLens-1M size, plain and secure, with peak memory and traffic.

    python -m fedrec.simulations.bench_scale_federated [--settings ml10m ml1m] [--modes plain secure]
        [--rounds 4] [--users U --items I --ratings N] [--num-clients C] [--clients-per-round S] [--json OUT]

Two settings of `fedrec simulate` on synthetic data, k = 32, gradient updates (the defaults):
- `ml10m`: 70,000 users, 10,000 items, 10,000,000 ratings, 100 clients, all of them every round;
- `ml1m`: 6,040 users, 3,706 items, 1,000,209 ratings, one client per user (6,040 clients), 200 sampled a
  round (a secure sampled round forms a new cohort: advertise, share keys, masked input, unmask).
`--users/--items/--ratings/--num-clients/--clients-per-round` shrink a setting (to find where time goes).

Every (setting, mode) runs `simulate()` in a fresh child process, one at a time, R rounds; the seconds per
steady round are the median of rounds 2..R-1, as in the other benchmarks (each Ray worker makes the synthetic
data and warms up in the statistics sum before round 1; every round's seconds are reported). Each round's payload bytes (arrays and config values, Flower's framing excluded;
fedrec's own count, `bytes_up`/`bytes_down` of the history) are divided by its clients. The evaluations
after round R are left out (answered with no sum by a stand-in) unless `--final-eval`: they are not timed, and
with one client per user they would be a sum over all 6,040 clients. With `--plain-stats` (the default for
`ml1m`) the one statistics sum before round 1, also over every client, is a plain sum even in a secure run
(the clients are told not to require secure aggregation for it): a secure cohort of 6,040 takes its setup of
millions of key agreements; the timed rounds are secure as asked.

CPU: after every round the child adds up the user and system CPU seconds of itself and all its descendants
(/proc/PID/stat), so each round's CPU seconds over every process are known too: on a shared machine they vary
less than wall seconds, and on the 2 cores a round takes at least half of them.

Memory: the parent reads /proc every 0.25 s for the child and all its descendants (the Ray GCS, raylet and
worker processes are separate processes) and reports the peak of the sum of RSS (shared pages, e.g. Ray's
object store, counted once per process that maps them), the peak of the sum of PSS (shared pages split among
their processes: the tree's real footprint), and the peak RSS of the largest single process with its name.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SETTINGS = {
    "ml10m": {"users": 70_000, "items": 10_000, "ratings": 10_000_000, "num_clients": 100, "clients_per_round": None},
    "ml1m": {"users": 6_040, "items": 3_706, "ratings": 1_000_209, "num_clients": 6_040, "clients_per_round": 200},
}
SAMPLE_SECONDS = 0.25


# ---------------------------------------------------------------------------------------------- the child


def _skip_all_client_sums(final_eval: bool, plain_stats: bool) -> None:
    """Benchmark stand-ins around the server's aggregator (the ServerApp runs in this process)."""
    from fedrec.server import federation
    from fedrec.server.aggregation import PlainSum, SumResult

    original = federation.make_aggregator

    class Aggregator:
        def __init__(self, grid, config):
            self.inner = original(grid, config)
            self.plain = PlainSum(grid, config.federated.timeout)

        def sum(self, node_ids, config, arrays, length, group):
            if group.endswith(".eval") and not final_eval:
                return SumResult(total=None, participants=[])
            if group == "0" and plain_stats:
                return self.plain.sum(node_ids, config, arrays, length, group)
            return self.inner.sum(node_ids, config, arrays, length, group)

    federation.make_aggregator = Aggregator


def child(spec: dict, out: Path) -> None:
    from fedrec.shared.config import load_config
    from fedrec.simulations.bench_secagg import quiet, timed_exchanges
    from fedrec.simulations.run import simulate

    quiet()
    _skip_all_client_sums(spec["final_eval"], spec["plain_stats"])
    overrides = {
        "synthetic.n_users": spec["users"], "synthetic.n_items": spec["items"], "synthetic.n_ratings": spec["ratings"],
        "federated.num_clients": spec["num_clients"], "federated.rounds": spec["rounds"],
        "federated.eval_every": spec["rounds"], "federated.secure": spec["secure"], "model.factors": 32,
        "federated.timeout": 3600.0,
    }
    if spec["clients_per_round"]:
        overrides["federated.clients_per_round"] = spec["clients_per_round"]
    if spec["secure"] and spec["plain_stats"]:
        overrides["secagg.require_secure"] = False  # the clients' policy: answer the plain statistics sum
    config = load_config(None, overrides)
    cpu_at_end: dict[int, float] = {}  # CPU seconds of this process and all its descendants after each round

    def on_round(entry: dict) -> None:
        cpu_at_end[entry["round"]] = tree_cpu_seconds(os.getpid())

    start = time.perf_counter()
    with timed_exchanges() as exchanges:
        result = simulate(config, on_round)
    history = [{key: entry.get(key) for key in ("round", "clients", "sampled", "seconds", "bytes_up", "bytes_down",
                                                  "failures")} for entry in result["history"]]
    for entry in history:
        if entry["round"] - 1 in cpu_at_end and entry["round"] in cpu_at_end:
            entry["cpu_s"] = cpu_at_end[entry["round"]] - cpu_at_end[entry["round"] - 1]
    out.write_text(json.dumps({"history": history, "exchanges": exchanges, "wall_s": time.perf_counter() - start}))


# --------------------------------------------------------------------------------------------- the parent


def _proc_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants (their own, not their waited children's)."""
    ticks = 0
    for pid in _proc_tree(root):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2:].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def _memory_kb(pid: int) -> tuple[int, int, str] | None:
    """(RSS kB, PSS kB, short name) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            fields = dict(line.split(":", 1) for line in f if line.count(":") == 1 and line.endswith("kB\n"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
    except OSError:
        return None
    name = os.path.basename(cmd[0].decode(errors="replace")) if cmd and cmd[0] else "?"
    if name.startswith("python") and len(cmd) > 2:
        name += " " + cmd[2].decode(errors="replace")[:40]
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0]), name


class TreeMemory:
    """Peak memory of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int):
        self.pid, self.stop = pid, threading.Event()
        self.peak_rss_kb = self.peak_pss_kb = self.peak_processes = 0
        self.largest: tuple[int, str] = (0, "")
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            rows = [m for m in map(_memory_kb, _proc_tree(self.pid)) if m is not None]
            self.peak_rss_kb = max(self.peak_rss_kb, sum(r[0] for r in rows))
            self.peak_pss_kb = max(self.peak_pss_kb, sum(r[1] for r in rows))
            self.peak_processes = max(self.peak_processes, len(rows))
            for rss, _, name in rows:
                if rss > self.largest[0]:
                    self.largest = (rss, name)
            self.stop.wait(SAMPLE_SECONDS)

    def finish(self) -> dict[str, Any]:
        self.stop.set()
        self.thread.join()
        return {"peak_tree_rss_mb": self.peak_rss_kb / 1024, "peak_tree_pss_mb": self.peak_pss_kb / 1024,
                "peak_process_rss_mb": self.largest[0] / 1024, "peak_process": self.largest[1],
                "processes": self.peak_processes}


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_one(spec: dict) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        load_start, started = load_average(), time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "fedrec.simulations.bench_scale_federated", "--child",
                                 json.dumps(spec), str(out)], stderr=subprocess.PIPE, text=True)
        memory = TreeMemory(proc.pid)
        _, err = proc.communicate()
        mem = memory.finish()
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"bench_scale_federated: the {spec['name']} run failed:\n{err[-3000:]}")
        data = json.loads(out.read_text())
    history = data["history"]
    steady = history[1:-1]
    seconds = [e["seconds"] for e in history]
    per_client = lambda key: statistics.median(e[key] / e["clients"] for e in steady)  # noqa: E731
    return {
        **spec, **mem, "load_start": load_start, "load_end": load_average(),
        "child_wall_s": time.perf_counter() - started, "simulate_wall_s": data["wall_s"],
        "rounds_s": seconds, "median_s": statistics.median(e["seconds"] for e in steady),
        "median_cpu_s": statistics.median(e["cpu_s"] for e in steady) if all("cpu_s" in e for e in steady) else None,
        "cpu_rounds_s": [e.get("cpu_s") for e in history],
        "clients": [e["clients"] for e in history],
        "mb_up_per_client": per_client("bytes_up") / 1e6, "mb_down_per_client": per_client("bytes_down") / 1e6,
        "exchanges": data["exchanges"], "failures": [f for e in history for f in e["failures"]],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(json.loads(argv[1]), Path(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["ml10m", "ml1m"])
    parser.add_argument("--modes", nargs="+", choices=["plain", "secure"], default=["plain", "secure"])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per run; rounds 2..R-1 are timed (default 4)")
    for name in ("users", "items", "ratings", "num-clients", "clients-per-round"):
        parser.add_argument(f"--{name}", type=int, help="override the setting's size")
    parser.add_argument("--final-eval", action="store_true", help="run the evaluations after round R (untimed)")
    parser.add_argument("--plain-stats", choices=["auto", "yes", "no"], default="auto",
                        help="sum the statistics before round 1 in the clear (auto: when clients are sampled)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (round 1 and round R are not timed)")
    runs = []
    for setting in args.settings:
        size = dict(SETTINGS[setting])
        for key in size:
            if getattr(args, key) is not None:
                size[key] = getattr(args, key)
        sampled = bool(size["clients_per_round"]) and size["clients_per_round"] < size["num_clients"]
        plain_stats = {"auto": sampled, "yes": True, "no": False}[args.plain_stats]
        for mode in args.modes:
            spec = {"name": f"{setting} {mode}", "setting": setting, "mode": mode, **size, "rounds": args.rounds,
                    "secure": mode == "secure", "final_eval": args.final_eval, "plain_stats": plain_stats}
            row = run_one(spec)
            runs.append(row)
            print(f"{row['name']}: {row['median_s']:.2f} s/round {[round(s, 2) for s in row['rounds_s']]}, "
                  f"{row['median_cpu_s'] or float('nan'):.1f} CPU s/round, peak PSS "
                  f"{row['peak_tree_pss_mb']:.0f} MB (RSS sum {row['peak_tree_rss_mb']:.0f} MB), load "
                  f"{row['load_start']} -> {row['load_end']}", file=sys.stderr, flush=True)
    print("| setting | users | items | ratings | clients (a round) | sum | s/round (median 2..R-1) | CPU s/round, all processes "
          "| every round s "
          "| peak PSS of the process tree, MB | peak RSS sum, MB | largest process RSS, MB | MB up per client per round "
          "| MB down per client per round | load average start -> end |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        per_round = r["clients_per_round"] or r["num_clients"]
        print(f"| {r['setting']} | {r['users']:,} | {r['items']:,} | {r['ratings']:,} | {r['num_clients']:,} ({per_round}) "
              f"| {r['mode']} | {r['median_s']:.2f} | {r['median_cpu_s'] or float('nan'):.1f} | {' '.join(f'{s:.2f}' for s in r['rounds_s'])} "
              f"| {r['peak_tree_pss_mb']:,.0f} | {r['peak_tree_rss_mb']:,.0f} | {r['peak_process_rss_mb']:,.0f} "
              f"| {r['mb_up_per_client']:.3f} | {r['mb_down_per_client']:.3f} | {r['load_start']} -> {r['load_end']} |")
    failures = sum(len(r["failures"]) for r in runs)
    if failures:
        print(f"WARNING: {failures} client failures; see the JSON output", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
