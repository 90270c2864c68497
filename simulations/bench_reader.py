"""Peak memory and time of `fedrec data check` on a large synthetic ratings file, plain and gzip.

`python -m fedrec.simulations.bench_reader --rows 3000000` writes a CSV of that many distinct
(user, item, rating, timestamp) rows to a temporary folder, gzips a copy, and runs `fedrec data check` on each
in a child process, reporting the file size, wall time and the child's peak resident memory.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_ratings(path: Path, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = max(rows // 30, 10), max(rows // 150, 10)
    pairs = rng.choice(n_users * n_items, size=rows, replace=False)  # distinct (user, item) pairs
    with path.open("w") as out:
        out.write("userId,movieId,rating,timestamp\n")
        for start in range(0, rows, 500_000):
            block = pairs[start : start + 500_000]
            ratings = rng.integers(1, 6, len(block))
            stamps = rng.integers(800_000_000, 1_700_000_000, len(block))
            out.write("\n".join(f"{p // n_items},{p % n_items},{r},{t}" for p, r, t in zip(block, ratings, stamps)) + "\n")


def measure(path: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `fedrec data check PATH` in a fresh child process."""
    command = [sys.executable, "-c",
               "import resource, sys; from fedrec.shared.cli import main; code = main(['data', 'check', sys.argv[1]]); "
               "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)", str(path)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fedrec-bench-reader-"))
    try:
        plain = folder / "ratings.csv"
        write_ratings(plain, args.rows)
        packed = folder / "ratings.csv.gz"
        with plain.open("rb") as source, gzip.open(packed, "wb") as target:
            shutil.copyfileobj(source, target)
        print("| file | MB on disk | rows | data check s | peak RSS MB |")
        print("|---|---|---|---|---|")
        for path in (plain, packed):
            seconds, peak = measure(path)
            print(f"| {path.name} | {path.stat().st_size / 1e6:.0f} | {args.rows:,} | {seconds:.1f} | {peak:.0f} |")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
