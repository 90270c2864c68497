"""`python -m simulations.bench_serve`: the client service's latency at a fixed request rate, fold-in time, kill -9.

On loopback with a 10,000-item catalogue: `fedrec serve` runs as its own process; requests for top-10 with
explanations arrive open-loop at --rate per second (latency counted from each request's scheduled time, so
a stall is not hidden by the client waiting); fold-in is timed in process and as reported by the service;
then feedback is posted under load, the service is killed with SIGKILL, and the acknowledged events are
looked up in its database. The model is random (latency does not depend on what the factors are).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from fedrec.shared import processes
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.feedback import stored_events
from fedrec.shared.recommend import ItemModel, Recommender
from fedrec.shared.serving import save_snapshot


def make_state(folder: Path, n_items: int, n_users: int, factors: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    model = ItemModel(rng.normal(0, 0.3, (n_items, factors)), rng.normal(0, 0.3, n_items), 3.5,
                      np.array([f"item{j}" for j in range(n_items)]), np.ones(n_items, bool), 0.1, 0.01, 1.0, 5.0)
    counts = rng.integers(20, 300, n_users)  # MovieLens-like activity: tens to hundreds of ratings per user
    users = np.repeat(np.arange(n_users), counts)
    items = np.concatenate([rng.choice(n_items, size=c, replace=False) for c in counts])
    user_ids = np.array([f"user{u}" for u in range(n_users)])
    ratings = Ratings(users, items, rng.integers(1, 6, len(users)).astype(float), None, user_ids, model.item_ids, 1.0, 5.0)
    save_snapshot(folder, model, ratings)
    return user_ids.tolist(), model.item_ids.tolist()


def start_service(folder: Path, port: int):
    command = [sys.executable, "-m", "fedrec.shared.cli", "serve", "--state-dir", str(folder), "--port", str(port)]
    process = processes.start(command, log_file=folder.parent / "serve.log")
    if not processes.wait_for_port("127.0.0.1", port, 60, process):
        raise SystemExit(f"the service did not start: {(folder.parent / 'serve.log').read_text()}")
    return process


class Connections:
    """Keep-alive HTTP/1.1 connections over raw asyncio streams: a load generator much lighter than an HTTP
    library, so that on a small machine the client's own work does not dominate what is measured."""

    def __init__(self, port: int, size: int):
        self.port, self.size = port, size
        self.idle: asyncio.Queue = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            self.idle.put_nowait(await asyncio.open_connection("127.0.0.1", self.port))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        connection = await self.idle.get()
        try:
            # A connection that failed is reopened on its next use (fails fast once the service is dead).
            reader, writer = connection or await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            self.idle.put_nowait(None)
            raise
        try:
            head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            writer.write((head + ("Content-Type: application/json\r\n" if body else "") + "\r\n").encode() + body)
            lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
            payload = await reader.readexactly(length)
        except BaseException:
            writer.close()
            self.idle.put_nowait(None)
            raise
        self.idle.put_nowait((reader, writer))
        return int(lines[0].split()[1]), payload

    async def close(self) -> None:
        while not self.idle.empty():
            connection = self.idle.get_nowait()
            if connection is not None:
                connection[1].close()


async def open_loop(port: int, paths: list[str], rate: float, posts: list[tuple[str, dict]] | None = None,
                    acknowledged: list[dict] | None = None, stop: threading.Event | None = None) -> list[float]:
    """Send GETs of `paths` at `rate` per second (and, interleaved, the POSTs); latencies in ms."""
    latencies: list[float] = []
    errors = 0
    pool = Connections(port, 16)
    await pool.open()

    async def get(path: str, due: float) -> None:
        nonlocal errors
        try:
            status, _ = await pool.request("GET", path)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            return
        if status != 200:
            errors += 1
        latencies.append((time.perf_counter() - due) * 1e3)

    async def post(path: str, body: dict) -> None:
        try:
            status, payload = await pool.request("POST", path, json.dumps(body).encode())
        except (OSError, asyncio.IncompleteReadError):
            return  # the service died before answering: not acknowledged
        if status == 200:
            acknowledged.append(json.loads(payload))

    tasks = []
    start = time.perf_counter()
    for n, path in enumerate(paths):
        if stop is not None and stop.is_set():
            break
        due = start + n / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(get(path, due)))
        if posts and n < len(posts):
            tasks.append(asyncio.create_task(post(*posts[n])))
    await asyncio.gather(*tasks)
    await pool.close()
    if errors and posts is None:
        print(f"  {errors} requests failed", file=sys.stderr)
    return latencies


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fold_in_times(folder: Path, users: list[str], items: list[str], count: int, seed: int) -> np.ndarray:
    from fedrec.shared.serving import load_recommender

    recommender: Recommender = load_recommender(folder)
    rng = np.random.default_rng(seed)
    wall, cpu = [], []
    for _ in range(count):
        user = users[int(rng.integers(len(users)))]
        start, start_cpu = time.perf_counter(), time.thread_time()
        recommender.add(user, int(rng.integers(len(items))), float(rng.integers(1, 6)))
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.thread_time() - start_cpu) * 1e3)
    return np.array(wall), np.array(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulations.bench_serve", description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the latency run")
    parser.add_argument("--kill-after", type=float, default=5.0, help="seconds of mixed load before kill -9")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    results: dict = {"items": args.items, "users": args.users, "factors": args.factors, "rate": args.rate}
    with tempfile.TemporaryDirectory(prefix="fedrec-bench-serve-") as root:
        folder = Path(root) / "client"
        folder.mkdir()
        users, items = make_state(folder, args.items, args.users, args.factors, args.seed)
        results["load_average_before"] = os.getloadavg()[0]
        fold, fold_cpu = fold_in_times(folder, users, items, 2000, args.seed)
        results["fold_in_ms"] = {"p50": float(np.percentile(fold, 50)), "p99": float(np.percentile(fold, 99)),
                                 "cpu_p50": float(np.percentile(fold_cpu, 50)), "cpu_p99": float(np.percentile(fold_cpu, 99))}
        print(f"fold-in (in process, {len(fold)} events): wall p50 {results['fold_in_ms']['p50']:.3f} ms, "
              f"p99 {results['fold_in_ms']['p99']:.3f} ms; CPU time p50 {results['fold_in_ms']['cpu_p50']:.3f} ms, "
              f"p99 {results['fold_in_ms']['cpu_p99']:.3f} ms")

        port = processes.free_port()
        service = start_service(folder, port)
        url = f"http://127.0.0.1:{port}"
        try:
            n = int(args.rate * args.seconds)
            paths = [f"/v1/users/{users[u]}/recommendations?k=10&explain=true" for u in rng.integers(len(users), size=n)]
            asyncio.run(open_loop(port, paths[: int(args.rate)], args.rate))  # warm-up second, not counted
            cpu_before = cpu_seconds(service.pid)
            latency = np.array(asyncio.run(open_loop(port, paths, args.rate)))
            cpu_ms = (cpu_seconds(service.pid) - cpu_before) * 1e3 / max(len(latency), 1)
            results["top10_explain_ms"] = {"requests": int(len(latency)), "p50": float(np.percentile(latency, 50)),
                                           "p99": float(np.percentile(latency, 99)), "max": float(latency.max()),
                                           "service_cpu_per_request": cpu_ms}
            print(f"top-10 with explanations at {args.rate:g}/s for {args.seconds:g} s ({len(latency)} answered): "
                  f"p50 {results['top10_explain_ms']['p50']:.2f} ms, p99 {results['top10_explain_ms']['p99']:.2f} ms; "
                  f"the service's CPU time {cpu_ms:.2f} ms per request")
            reported = []
            with httpx.Client(base_url=url) as client:
                for k in range(200):
                    start = time.perf_counter()
                    reply = client.post(f"/v1/users/{users[k % len(users)]}/feedback", json={"item": items[k], "rating": 4.0})
                    reported.append((reply.json()["fold_in_ms"], (time.perf_counter() - start) * 1e3))
            fold_served, post_ms = np.array(reported).T
            results["feedback_post_ms"] = {"fold_in_p50": float(np.percentile(fold_served, 50)),
                                           "fold_in_p99": float(np.percentile(fold_served, 99)),
                                           "round_trip_p50": float(np.percentile(post_ms, 50)),
                                           "round_trip_p99": float(np.percentile(post_ms, 99))}
            print(f"feedback POST (stored with fsync, then folded in): fold-in p50 {np.percentile(fold_served, 50):.3f} ms "
                  f"p99 {np.percentile(fold_served, 99):.3f} ms; round trip p50 {np.percentile(post_ms, 50):.2f} ms "
                  f"p99 {np.percentile(post_ms, 99):.2f} ms")

            # Mixed load (recommendations at the rate, plus one feedback per request), then kill -9 mid-load.
            acknowledged: list[dict] = []
            long_paths = paths * 3
            posts = [(f"/v1/users/{users[int(u)]}/feedback", {"item": items[int(i)], "rating": float(1 + j % 5)})
                     for j, (u, i) in enumerate(zip(rng.integers(len(users), size=len(long_paths)),
                                                    rng.integers(len(items), size=len(long_paths))))]

            killed = threading.Event()

            def kill_later() -> None:
                time.sleep(args.kill_after)
                os.killpg(service.pid, signal.SIGKILL)
                time.sleep(0.5)  # requests keep coming for a moment: whatever was in flight fails
                killed.set()

            threading.Thread(target=kill_later, daemon=True).start()
            asyncio.run(open_loop(port, long_paths, args.rate, posts, acknowledged, killed))
            service.wait(timeout=10)
        finally:
            processes.stop(service, grace=5.0)
        stored = {row[0]: row[1:4] for row in stored_events(folder) if row[0] > len(reported)}  # this phase's
        found = sum(stored.get(a["stored"]) == (a["user"], a["item"], a["rating"]) for a in acknowledged)
        results["kill9"] = {"acknowledged": len(acknowledged), "found": found, "stored": len(stored)}
        results["load_average_after"] = os.getloadavg()[0]
        print(f"kill -9 after {args.kill_after:g} s of mixed load: {len(acknowledged)} feedback events acknowledged, "
              f"{found} of them found in the database afterwards ({len(stored)} stored; the rest were in flight)")
        print(f"load average (1 min) of this machine: {results['load_average_before']:.1f} before, "
              f"{results['load_average_after']:.1f} after ({os.cpu_count()} cores)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["kill9"]["found"] == results["kill9"]["acknowledged"] else 1


if __name__ == "__main__":
    sys.exit(main())
