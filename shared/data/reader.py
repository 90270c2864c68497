"""Reading and validating ratings files: every bad row is reported with its file and line, never kept silently.

Files are read as a stream, a chunk of lines at a time, and ids are coded to integers as they are read, so
memory follows the parsed ratings, not the size of the text. Gzip files and zip archives (a MovieLens zip:
its ratings file is picked) are read directly.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from fedrec.shared.errors import DataError

EXAMPLES_PER_REASON = 3
CHUNK_LINES = 50_000
ZIP_MEMBERS = ("ratings.csv", "ratings.dat", "u.data")  # MovieLens: latest/small, 1M/10M, 100K


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

    def add(self, lines: np.ndarray, reason: str, text_of: Callable[[int], str]) -> None:
        if len(lines) == 0:
            return
        self.counts[reason] += int(len(lines))
        shown = sum(1 for example in self.examples if example.reason == reason)
        for line in lines[: max(0, EXAMPLES_PER_REASON - shown)]:
            self.examples.append(RowProblem(int(line), reason, text_of(int(line))[:120]))

    def summary(self) -> str:
        if not self.counts:
            return f"{self.path}: {self.rows_read} rows, all valid"
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.counts.most_common())
        lines = [f"{self.path}: {self.rows_dropped} of {self.rows_read} rows rejected ({reasons})"]
        lines += [f"  {self.path}:{ex.line}: {ex.reason}: {ex.text!r}" for ex in sorted(self.examples, key=lambda ex: ex.line)]
        return "\n".join(lines)


@dataclass(frozen=True)
class RawTable:
    """Validated rows, ids coded by order of first appearance (`user_vocab[user_codes]` is each row's user id)."""

    user_codes: np.ndarray
    item_codes: np.ndarray
    user_vocab: np.ndarray
    item_vocab: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray | None

    @property
    def users(self) -> np.ndarray:
        """Each row's user id (a string array: built on request, it is larger than the codes)."""
        return self.user_vocab[self.user_codes]

    @property
    def items(self) -> np.ndarray:
        return self.item_vocab[self.item_codes]


@contextmanager
def _binary(path: Path) -> Iterator[object]:
    """The file's bytes: plain, gzip (by its magic number, whatever the name) or the ratings file in a zip."""
    try:
        with open(path, "rb") as probe:
            magic = probe.read(4)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a ratings file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from None
    if magic[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as stream:
            yield stream
    elif magic == b"PK\x03\x04":
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{path}: not a valid zip archive ({exc})") from None
        with archive:
            files = [info for info in archive.infolist() if not info.is_dir()]
            chosen = [info for info in files if Path(info.filename).name in ZIP_MEMBERS] or (files if len(files) == 1 else [])
            if len(chosen) != 1:
                names = ", ".join(info.filename for info in files[:8])
                raise DataError(f"{path}: cannot tell which file in the zip holds the ratings ({names}); "
                                f"expected one of {', '.join(ZIP_MEMBERS)}, or a zip of one file")
            with archive.open(chosen[0]) as stream:
                yield stream
    else:
        with open(path, "rb") as stream:
            yield stream


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, decoded; a bad byte or a damaged archive is a DataError."""
    number = 0
    try:
        with _binary(path) as stream:
            for number, raw in enumerate(stream, 1):  # noqa: B007 - number is reported on errors
                try:
                    yield number, raw.decode(encoding).rstrip("\r\n")
                except UnicodeDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid {encoding} text (byte {exc.start} of the line)") from None
    except (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: the compressed file is damaged or truncated after line {number} ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


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


def _chunks(path: Path, encoding: str) -> Iterator[tuple[np.ndarray, list[str]]]:
    """Non-empty lines in chunks: (line numbers, texts)."""
    numbers: list[int] = []
    texts: list[str] = []
    for number, text in _lines(path, encoding):
        if text.strip():
            numbers.append(number)
            texts.append(text)
            if len(texts) == CHUNK_LINES:
                yield np.array(numbers, dtype=np.int64), texts
                numbers, texts = [], []
    if texts:
        yield np.array(numbers, dtype=np.int64), texts


class _Columns:
    """The kept rows so far, as numbers: ids coded through dictionaries, the rest as arrays per chunk."""

    def __init__(self) -> None:
        self.user_index: dict[str, int] = {}
        self.item_index: dict[str, int] = {}
        self.parts: dict[str, list[np.ndarray]] = {"users": [], "items": [], "values": [], "stamps": [], "lines": []}

    @staticmethod
    def _code(ids: np.ndarray, index: dict[str, int]) -> np.ndarray:
        """Integer codes of a chunk's ids: the dictionary is consulted once per distinct id, not per row."""
        distinct, inverse = np.unique(ids, return_inverse=True)
        codes = np.fromiter((index.setdefault(value, len(index)) for value in distinct.tolist()), np.int64, len(distinct))
        return codes[inverse.reshape(-1)]

    def add(self, users: np.ndarray, items: np.ndarray, values: np.ndarray, stamps: np.ndarray | None, lines: np.ndarray) -> None:
        self.parts["users"].append(self._code(users, self.user_index))
        self.parts["items"].append(self._code(items, self.item_index))
        self.parts["values"].append(values)
        self.parts["stamps"].append(stamps if stamps is not None else np.zeros(len(values), dtype=np.int64))
        self.parts["lines"].append(lines)

    def column(self, name: str, dtype: type) -> np.ndarray:
        """One whole column; its chunks are released as it is built, so it is never held twice."""
        parts = self.parts.pop(name)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


def _texts_of(path: Path, encoding: str, wanted: set[int]) -> dict[int, str]:
    """The text of a few lines, by a second pass (for examples found only after the whole file was read)."""
    found: dict[int, str] = {}
    for number, text in _lines(path, encoding):
        if number in wanted:
            found[number] = text
            if len(found) == len(wanted):
                break
    return found


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
    report = ValidationReport(str(path))
    kept = _Columns()
    expected: int | None = None
    first_chunk = True
    for line_numbers, texts in _chunks(path, encoding):
        if first_chunk:
            if sep == "auto":
                sep = _guess_separator(texts[0])
            first = [p.strip() for p in texts[0].split(sep)]
            if has_header is None:
                # A header has a non-numeric rating field and no number anywhere ("user,item,rating"); a first
                # row like "1,10,abc" is data with a bad rating, to be reported, not swallowed as a header.
                has_header = len(first) >= 3 and not _parse_numbers(first, float)[1].any()
            if has_header:
                line_numbers, texts = line_numbers[1:], texts[1:]
            first_chunk = False
        if not texts:
            continue
        chunk_lines, chunk_texts = line_numbers, texts

        def text_at(line: int) -> str:
            return chunk_texts[int(np.searchsorted(chunk_lines, line))]

        parts = [text.split(sep) for text in texts]
        report.rows_read += len(parts)
        n_fields = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        if expected is None:
            expected = int(n_fields[0]) if n_fields[0] in (3, 4) else 4
        shaped = n_fields == expected
        report.add(line_numbers[~shaped], f"malformed (expected {expected} fields)", text_at)
        good = parts if shaped.all() else [parts[i] for i in np.flatnonzero(shaped)]
        lines = line_numbers[shaped]
        columns = list(zip(*good)) if good else [()] * expected
        users = np.char.strip(np.asarray(columns[0], dtype=str))
        items = np.char.strip(np.asarray(columns[1], dtype=str))
        values, numeric = _parse_numbers(list(columns[2]), np.float64)
        keep = np.ones(len(lines), dtype=bool)

        def reject(mask: np.ndarray, reason: str) -> None:
            mask = mask & keep
            report.add(lines[mask], reason, text_at)
            keep[mask] = False

        reject((np.char.str_len(users) == 0) | (np.char.str_len(items) == 0), "empty user or item id")
        reject(~numeric, "rating is not a number")
        reject(np.isnan(values), "rating is NaN")
        reject(~np.isfinite(values), "rating is infinite")
        with np.errstate(invalid="ignore"):
            reject((values < rating_min) | (values > rating_max), f"rating outside the scale [{rating_min:g}, {rating_max:g}]")
        stamps = None
        if expected == 4:
            parsed, stamp_ok = _parse_numbers(list(columns[3]), np.float64)
            reject(~stamp_ok | ~np.isfinite(parsed), "timestamp is not a number")
            stamps = np.where(keep, parsed, 0).astype(np.int64)[keep]
        kept.add(users[keep], items[keep], values[keep], stamps, lines[keep])
    if first_chunk:
        raise DataError(f"{path}: the file is empty (no ratings)")
    if report.rows_read == 0:
        raise DataError(f"{path}: the file has a header but no ratings")

    users, items = kept.column("users", np.int64), kept.column("items", np.int64)
    values, lines = kept.column("values", np.float64), kept.column("lines", np.int64)
    when = kept.column("stamps", np.int64)
    # Duplicate (user, item) pairs: keep the latest by timestamp, ties going to the later line.
    pair = users * max(len(kept.item_index), 1) + items
    order = np.lexsort((lines, when, pair))
    last_of_pair = np.ones(len(pair), dtype=bool)
    last_of_pair[:-1] = pair[order][1:] != pair[order][:-1]
    duplicate = np.zeros(len(pair), dtype=bool)
    duplicate[order[~last_of_pair]] = True
    if duplicate.any():
        dup_lines = np.sort(lines[duplicate])
        texts = _texts_of(path, encoding, set(dup_lines[:EXAMPLES_PER_REASON].tolist()))
        report.add(dup_lines, "duplicate (user, item) pair (kept the latest)", lambda line: texts.get(line, ""))
    keep = ~duplicate

    report.rows_kept = int(keep.sum())
    if report.counts and on_bad_rows == "fail":
        raise DataError(
            report.summary()
            + "\nfix the file, or pass --on-bad-rows drop (data.on_bad_rows = \"drop\") to drop these rows"
        )
    if report.rows_kept == 0:
        raise DataError(report.summary() + f"\n{path}: no valid ratings left")
    # Recode so that only ids of kept rows remain (a dropped duplicate's ids are always also kept).
    user_vocab = np.array(list(kept.user_index), dtype=str)
    item_vocab = np.array(list(kept.item_index), dtype=str)
    table = RawTable(
        user_codes=users[keep],
        item_codes=items[keep],
        user_vocab=user_vocab,
        item_vocab=item_vocab,
        values=values[keep],
        timestamps=None if expected != 4 else when[keep],
    )
    return table, report
