"""Benchmark of secure-aggregation crypto cost per round: client and server, for an MF item-side vector.

Run: python -m simulations.bench_secagg_crypto [--repeats 5]. Clients run in-process, one at a time, and
are restored from / saved to their flat state around every message, as the Flower layer will do.
"""

import argparse
import statistics
import time

import numpy as np

from fedrec.shared.secagg.client import SecAggClient
from fedrec.shared.secagg.server import SecAggServer

LENGTH = 1682 * 33  # MovieLens-100k items x (32 factors + bias)


class Timed:
    """Clients as flat states plus per-call timings of client and server work."""

    def __init__(self, n: int, cohort_id: int):
        self.server = SecAggServer(b"bench", cohort_id)
        self.states = {i: SecAggClient().to_state() for i in range(1, n + 1)}
        self.server_s = 0.0
        self.client_s: dict[str, list[float]] = {}

    def srv(self, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.server_s += time.perf_counter() - t0
        return out

    def stage(self, name, reqs, step, drop=()):
        for i, req in reqs.items():
            if i in drop:
                continue
            t0 = time.perf_counter()
            c = SecAggClient.from_state(self.states[i])
            reply = step(c, req)
            self.states[i] = c.to_state()
            self.client_s.setdefault(name, []).append(time.perf_counter() - t0)
            self.srv(self.server.receive, reply)

    def setup(self):
        self.stage("advertise", self.srv(self.server.advertise_requests, sorted(self.states)), SecAggClient.advertise)
        self.stage("share_keys", self.srv(self.server.share_keys_requests), SecAggClient.share_keys)
        return self.srv(self.server.finish_setup)

    def round(self, r, x, drop=()):
        self.stage("masked_input", self.srv(self.server.masked_input_requests, r),
                   lambda c, req: c.masked_input(req, x), drop)
        self.stage("unmask", self.srv(self.server.unmask_requests), SecAggClient.unmask)
        return self.srv(self.server.aggregate)


def bench(n: int, repeats: int, drop_frac: float) -> dict[str, float]:
    x = np.random.default_rng(0).uniform(-1, 1, LENGTH)
    setup_t = Timed(n, 0)
    t0 = time.perf_counter()
    setup_t.setup()
    setup_wall = time.perf_counter() - t0
    rows = {"setup_client_ms": 1e3 * statistics.median(
        a + b for a, b in zip(setup_t.client_s["advertise"], setup_t.client_s["share_keys"])),
            "setup_server_ms": 1e3 * setup_t.server_s, "setup_wall_s": setup_wall}
    server, mi, um = [], [], []
    for r in range(repeats):
        if drop_frac:  # a round with dropouts ends the cohort: set up a fresh one (not timed)
            t = Timed(n, r + 1)
            cohort = t.setup()
            drop = set(cohort[:: max(1, round(1 / drop_frac))][: max(1, round(drop_frac * n))])
        else:
            t, drop = setup_t, set()
        t.server_s, t.client_s = 0.0, {}
        total = t.round(r, x, drop)
        assert np.abs(total - (n - len(drop)) * x).max() < 1e-5
        server.append(t.server_s)
        mi += t.client_s["masked_input"]
        um += t.client_s["unmask"]
    rows |= {"client_masked_ms": 1e3 * statistics.median(mi), "committee_unmask_ms": 1e3 * statistics.median(um),
             "server_round_ms": 1e3 * statistics.median(server),
             "server_per_client_ms": 1e3 * statistics.median(server) / n}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    args = ap.parse_args()
    print(f"vector length {LENGTH} (uint64, {LENGTH * 8 / 1e6:.2f} MB per client); medians over {args.repeats} rounds")
    cols = ["setup_client_ms", "setup_server_ms", "client_masked_ms", "committee_unmask_ms", "server_round_ms",
            "server_per_client_ms"]
    print(f"{'n':>4} {'dropped':>8} " + " ".join(f"{c:>20}" for c in cols))
    for n in args.sizes:
        for drop_frac in (0.0, 0.05):
            row = bench(n, args.repeats, drop_frac)
            label = f"{max(1, round(drop_frac * n)) if drop_frac else 0}"
            print(f"{n:>4} {label:>8} " + " ".join(f"{row[c]:>20.2f}" for c in cols), flush=True)


if __name__ == "__main__":
    main()
