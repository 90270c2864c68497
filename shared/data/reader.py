"""Reading and validating ratings files: every bad row is reported with its file and line, never kept silently."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fedrec.shared.errors import DataError

EXAMPLES_PER_REASON = 3


@dataclass(frozen=True)
class RowProblem:
    """One rejected row: where it is and why."""

    line: int
    reason: str
    text: str


@dataclass
class ValidationReport:
    """What was read from one file, what was kept, and what was dropped for which reason."""

    path: str
    rows_read: int = 0
    rows_kept: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: list[RowProblem] = field(default_factory=list)

    @property
    def rows_dropped(self) -> int:
        return self.rows_read - self.rows_kept

    def add(self, lines: np.ndarray, reason: str, texts: list[str]) -> None:
        if len(lines) == 0:
            return
        self.counts[reason] += int(len(lines))
        shown = sum(1 for example in self.examples if example.reason == reason)
        for line in lines[: max(0, EXAMPLES_PER_REASON - shown)]:
            self.examples.append(RowProblem(int(line), reason, texts[int(line) - 1][:120]))

    def summary(self) -> str:
        if not self.counts:
            return f"{self.path}: {self.rows_read} rows, all valid"
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.counts.most_common())
        lines = [f"{self.path}: {self.rows_dropped} of {self.rows_read} rows rejected ({reasons})"]
        lines += [f"  {self.path}:{ex.line}: {ex.reason}: {ex.text!r}" for ex in self.examples]
        return "\n".join(lines)


@dataclass(frozen=True)
class RawTable:
    """Validated rows with string ids, before they are coded into id spaces."""

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray | None


def _decode(path: Path, encoding: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a ratings file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}:{line}: not valid {encoding} text (byte {exc.start})") from None


def _guess_separator(line: str) -> str | None:
    for sep in ("::", "\t", ",", ";"):
        if sep in line:
            return sep
    return None  # any run of whitespace


def _parse_numbers(column: list[str], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised parse; on failure fall back per value only to find which rows are bad."""
    try:
        return np.asarray(column, dtype=np.float64).astype(dtype), np.ones(len(column), dtype=bool)
    except ValueError:
        pass
    values = np.zeros(len(column), dtype=np.float64)
    ok = np.ones(len(column), dtype=bool)
    for index, text in enumerate(column):
        try:
            values[index] = float(text)
        except ValueError:
            ok[index] = False
    return values.astype(dtype), ok


def read_ratings_file(
    path: Path,
    *,
    rating_min: float,
    rating_max: float,
    on_bad_rows: Literal["fail", "drop"] = "fail",
    sep: str | None = "auto",
    has_header: bool | None = None,
    encoding: str = "utf-8",
) -> tuple[RawTable, ValidationReport]:
    """Read `user,item,rating[,timestamp]` rows; fail on bad rows with a report, or drop them and report."""
    path = Path(path)
    if not rating_min < rating_max:
        raise DataError(f"rating scale [{rating_min}, {rating_max}] is empty: rating_min must be below rating_max")
    texts = _decode(path, encoding).splitlines()
    report = ValidationReport(str(path))
    line_numbers = np.flatnonzero([bool(text.strip()) for text in texts]) + 1
    if len(line_numbers) == 0:
        raise DataError(f"{path}: the file is empty (no ratings)")
    if sep == "auto":
        sep = _guess_separator(texts[line_numbers[0] - 1])
    parts = [texts[line - 1].split(sep) for line in line_numbers]
    first = [p.strip() for p in parts[0]]
    if has_header is None:
        # A header has a non-numeric rating field and no number anywhere ("user,item,rating"); a first row
        # like "1,10,abc" is data with a bad rating, to be reported, not swallowed as a header.
        has_header = len(first) >= 3 and not _parse_numbers(first, float)[1].any()
    if has_header:
        line_numbers, parts = line_numbers[1:], parts[1:]
    if len(parts) == 0:
        raise DataError(f"{path}: the file has a header but no ratings")
    report.rows_read = len(parts)

    n_fields = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
    expected = int(n_fields[0]) if n_fields[0] in (3, 4) else 4
    shaped = n_fields == expected
    report.add(line_numbers[~shaped], f"malformed (expected {expected} fields)", texts)
    good = [parts[i] for i in np.flatnonzero(shaped)]
    lines = line_numbers[shaped]
    columns = list(zip(*good)) if good else [()] * expected
    users = np.char.strip(np.asarray(columns[0], dtype=str))
    items = np.char.strip(np.asarray(columns[1], dtype=str))
    values, numeric = _parse_numbers(list(columns[2]), np.float64)
    keep = np.ones(len(lines), dtype=bool)

    def reject(mask: np.ndarray, reason: str) -> None:
        mask = mask & keep
        report.add(lines[mask], reason, texts)
        keep[mask] = False

    reject((np.char.str_len(users) == 0) | (np.char.str_len(items) == 0), "empty user or item id")
    reject(~numeric, "rating is not a number")
    reject(np.isnan(values), "rating is NaN")
    reject(~np.isfinite(values), "rating is infinite")
    with np.errstate(invalid="ignore"):
        reject((values < rating_min) | (values > rating_max), f"rating outside the scale [{rating_min:g}, {rating_max:g}]")
    timestamps = None
    if expected == 4:
        stamps, stamp_ok = _parse_numbers(list(columns[3]), np.float64)
        reject(~stamp_ok | ~np.isfinite(stamps), "timestamp is not a number")
        timestamps = np.where(keep, stamps, 0).astype(np.int64)

    # Duplicate (user, item) pairs: keep the latest by timestamp, ties going to the later line.
    index = np.flatnonzero(keep)
    _, user_codes = np.unique(users[index], return_inverse=True)
    _, item_codes = np.unique(items[index], return_inverse=True)
    pair = user_codes.astype(np.int64) * (int(item_codes.max(initial=0)) + 1) + item_codes
    when = timestamps[index] if timestamps is not None else np.zeros(len(index), dtype=np.int64)
    order = np.lexsort((lines[index], when, pair))
    # np.append(..., True) would give one flag for zero rows, when every row was already rejected.
    last_of_pair = np.ones(len(index), dtype=bool)
    last_of_pair[:-1] = pair[order][1:] != pair[order][:-1]
    duplicate = np.zeros(len(lines), dtype=bool)
    duplicate[index[order[~last_of_pair]]] = True
    reject(duplicate, "duplicate (user, item) pair (kept the latest)")

    report.rows_kept = int(keep.sum())
    if report.counts and on_bad_rows == "fail":
        raise DataError(
            report.summary()
            + "\nfix the file, or pass --on-bad-rows drop (data.on_bad_rows = \"drop\") to drop these rows"
        )
    if report.rows_kept == 0:
        raise DataError(report.summary() + f"\n{path}: no valid ratings left")
    table = RawTable(
        users=users[keep],
        items=items[keep],
        values=values[keep],
        timestamps=None if timestamps is None else timestamps[keep],
    )
    return table, report
