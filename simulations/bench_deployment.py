"""Seconds per round of `fedrec server` + three `fedrec client` processes on loopback, per SuperNode idle poll,
ClientApp launcher, object-pull retry and SuperLink state.

    python -m simulations.bench_deployment --polls 0.2 --clientapps warm cold --pull-retries fedrec flower \
        --superlink-dbs file memory --rounds 6 --repeats 2
    python -m simulations.bench_deployment --dataset ml-100k --data-dir DIR --rounds 20 ...   # the README's demo

A poll of 3 s is what Flower 1.42's SuperNode does on its own; 0.2 s is fedrec's default (client/supernode.py).
"warm" forks each message's ClientApp from a process that has imported everything (fedrec's default,
client/superexec.py); "cold" is Flower's launcher, a fresh Python per message (FEDREC_WARM_CLIENTAPP=0).
Pull retry "fedrec" retries an object that is not there yet after 10 ms, growing to 0.5 s (shared/flower_waits.py,
the default); "flower" keeps Flower's 1 s growing to 10 s (FEDREC_PULL_RETRY=flower). SuperLink state "file"
is `fedrec server`'s default (an SQLite database in the state folder), "memory" its `--superlink-db memory`.
Each setting is a full run with TLS, SuperNode keys and secure aggregation; round 1 (key setup) and the last
round (final evaluation) are left out of the median. With --repeats the settings alternate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedrec.shared import processes
from fedrec.shared.certs import make_certificates


def fedrec(*args) -> list[str]:
    return [sys.executable, "-m", "fedrec.shared.cli", *map(str, args)]


def one_run(root: Path, poll: float, clientapp: str, rounds: int, pull_retry: str = "fedrec",
            superlink_db: str = "file") -> dict:
    out = Path(tempfile.mkdtemp(dir=root))
    port = processes.free_port()
    env = {**os.environ, "FEDREC_POLL_SECONDS": str(poll), "FEDREC_WARM_CLIENTAPP": "1" if clientapp == "warm" else "0",
           "FEDREC_PULL_RETRY": pull_retry}
    children = []
    try:
        launched = time.perf_counter()
        server = processes.start(fedrec("server", "--address", f"127.0.0.1:{port}", "--items", root / "data/items.txt",
                                        "--state-dir", out / "state", "--json", out / "result.json", "--certs",
                                        root / "certs", "--rounds", rounds, "--min-clients", 3,
                                        "--superlink-db", superlink_db),
                                 log_file=out / "server.log", env=env)
        children.append(server)
        deadline = time.monotonic() + 120  # clients may join only once the server has registered their keys
        while "waiting for clients" not in (out / "server.log").read_text(errors="replace"):
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server did not start, see {out}/server.log")
            time.sleep(0.5)
        for k in range(3):
            data = root / f"data/client-{k}"
            children.append(processes.start(fedrec("client", "--server", f"127.0.0.1:{port}", "--data", data / "train.csv",
                                                   "--test", data / "test.csv", "--state-dir", out / f"c{k}",
                                                   "--certs", root / "certs", "--key", root / f"certs/client-{k}.key"),
                                            log_file=out / f"client-{k}.log", env=env))
        start = time.perf_counter()
        if server.wait(timeout=900) != 0:
            raise SystemExit(f"run failed, see {out}/server.log")
        wall, server_wall = time.perf_counter() - start, time.perf_counter() - launched
    finally:
        for child in children:
            processes.stop(child, grace=5.0)
    history = json.loads((out / "result.json").read_text())["history"]
    steady = [entry["seconds"] for entry in history[1:-1]]
    return {"poll": poll, "clientapp": clientapp, "pull_retry": pull_retry, "superlink_db": superlink_db, "median_round_s": statistics.median(steady),
            "rounds_s": [e["seconds"] for e in history], "wall_s": wall, "server_wall_s": server_wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=float, nargs="+", default=[0.2])
    parser.add_argument("--clientapps", nargs="+", choices=["warm", "cold"], default=["warm", "cold"])
    parser.add_argument("--pull-retries", nargs="+", choices=["fedrec", "flower"], default=["fedrec"])
    parser.add_argument("--superlink-dbs", nargs="+", choices=["file", "memory"], default=["file"])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--dataset", default="synthetic", help="what `fedrec data partition` deals to the 3 clients")
    parser.add_argument("--data-dir", type=Path, help="where MovieLens files are (else downloaded)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedrec-bench-deploy-"))
    data = ["--dataset", args.dataset] + (["--data-dir", args.data_dir] if args.data_dir else [])
    subprocess.run(fedrec("data", "partition", *data, "--num-clients", 3, "--out", root / "data"), check=True, capture_output=True)
    make_certificates(root / "certs", ["127.0.0.1", "localhost"], 3)
    settings = [(poll, app, retry, db) for poll in args.polls for app in args.clientapps for retry in args.pull_retries
                for db in args.superlink_dbs]
    results = []
    for rep in range(args.repeats):
        for poll, app, retry, db in settings if rep % 2 == 0 else settings[::-1]:
            results.append(one_run(root, poll, app, args.rounds, retry, db))
            print(f"poll {poll:g} s, {app}, pull retry {retry}, SuperLink state {db}: {results[-1]['rounds_s']}",
                  file=sys.stderr, flush=True)
    print("| SuperNode idle poll | ClientApp | object-pull retry | SuperLink state | median s/round (rounds 2..R-1) "
          "| every round s | clients started to server done, s | server started to done, s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['poll']:g} s | {r['clientapp']} | {r['pull_retry']} | {r['superlink_db']} | {r['median_round_s']:.2f} | "
              f"{', '.join(f'{s:.1f}' for s in r['rounds_s'])} | {r['wall_s']:.0f} | {r['server_wall_s']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
