"""Tests for reading and validating ratings files: every bad row is reported with file:line or counted when dropped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedrec.shared.data.reader import read_ratings_file
from fedrec.shared.errors import DataError

GOOD = ["1,10,5,100", "1,11,3,101", "2,10,4,102", "2,12,1,103", "3,11,2.5,104"]

# One bad line per kind, placed after the good lines: (line text, expected reason fragment).
BAD_ROWS = {
    "malformed": ("4,10,5", "malformed (expected 4 fields)"),
    "not_number": ("4,10,five,105", "rating is not a number"),
    "nan": ("4,11,nan,106", "rating is NaN"),
    "out_of_scale": ("4,12,7,107", "rating outside the scale [1, 5]"),
    "empty_id": (",12,3,108", "empty user or item id"),
    "bad_timestamp": ("5,10,3,yesterday", "timestamp is not a number"),
}


def write(tmp_path: Path, lines: list[str], name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read(path: Path, **kwargs):
    kwargs.setdefault("rating_min", 1.0)
    kwargs.setdefault("rating_max", 5.0)
    return read_ratings_file(path, **kwargs)


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_row_fails_with_file_and_line(tmp_path: Path, kind: str) -> None:
    text, reason = BAD_ROWS[kind]
    path = write(tmp_path, GOOD + [text])
    with pytest.raises(DataError) as excinfo:
        read(path, on_bad_rows="fail")
    message = str(excinfo.value)
    assert f"{path}:{len(GOOD) + 1}: {reason}" in message
    assert "1 of 6 rows rejected" in message


@pytest.mark.parametrize("kind", sorted(BAD_ROWS))
def test_bad_row_is_dropped_and_counted(tmp_path: Path, kind: str) -> None:
    text, reason = BAD_ROWS[kind]
    table, report = read(write(tmp_path, GOOD + [text]), on_bad_rows="drop")
    assert dict(report.counts) == {reason: 1}
    assert report.rows_read == 6 and report.rows_kept == 5 and report.rows_dropped == 1
    assert len(table.users) == 5
    assert list(table.users) == ["1", "1", "2", "2", "3"]


def test_infinite_rating_is_rejected(tmp_path: Path) -> None:
    table, report = read(write(tmp_path, GOOD + ["4,10,inf,105"]), on_bad_rows="drop")
    assert dict(report.counts) == {"rating is infinite": 1}
    assert np.isfinite(table.values).all()


def test_all_kinds_together_are_counted_per_reason(tmp_path: Path) -> None:
    lines = list(GOOD)
    for text, _ in BAD_ROWS.values():
        lines += [text, text.replace("4,", "6,", 1)]  # two of each kind (the second from another user)
    table, report = read(write(tmp_path, lines), on_bad_rows="drop")
    assert report.rows_read == len(GOOD) + 2 * len(BAD_ROWS)
    assert report.rows_kept == len(GOOD)
    assert dict(report.counts) == {reason: 2 for _, reason in BAD_ROWS.values()}
    assert len(table.values) == len(GOOD)
    # The summary shows where the problems are.
    assert f"{report.path}:6: malformed" in report.summary()


def test_duplicate_keeps_the_latest_timestamp(tmp_path: Path) -> None:
    # (1, 10) three times: the latest timestamp (300, on line 2) wins, not the last line.
    lines = ["1,10,2,100", "1,10,5,300", "1,10,1,200", "2,10,4,100"]
    path = write(tmp_path, lines)
    with pytest.raises(DataError) as excinfo:
        read(path, on_bad_rows="fail")
    message = str(excinfo.value)
    assert f"{path}:1: duplicate (user, item) pair" in message
    assert f"{path}:3: duplicate (user, item) pair" in message
    assert f"{path}:2:" not in message

    table, report = read(path, on_bad_rows="drop")
    assert report.counts["duplicate (user, item) pair (kept the latest)"] == 2
    assert report.rows_kept == 2
    kept = {(u, i): (v, t) for u, i, v, t in zip(table.users, table.items, table.values, table.timestamps)}
    assert kept == {("1", "10"): (5.0, 300), ("2", "10"): (4.0, 100)}


def test_duplicate_without_timestamps_keeps_the_later_line(tmp_path: Path) -> None:
    table, report = read(write(tmp_path, ["1\t10\t2", "1\t10\t4", "2\t10\t3"]), on_bad_rows="drop")
    assert report.counts["duplicate (user, item) pair (kept the latest)"] == 1
    assert table.timestamps is None
    assert sorted(zip(table.users, table.values)) == [("1", 4.0), ("2", 3.0)]


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read(path)


def test_header_only_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="header but no ratings"):
        read(write(tmp_path, ["user,item,rating,timestamp"]))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read(tmp_path / "nope.csv")


def test_header_is_detected_and_not_counted(tmp_path: Path) -> None:
    table, report = read(write(tmp_path, ["userId,movieId,rating,timestamp"] + GOOD))
    assert report.rows_read == len(GOOD) and report.rows_kept == len(GOOD)
    assert list(table.items) == ["10", "11", "10", "12", "11"]


def test_no_header_first_row_is_data(tmp_path: Path) -> None:
    table, report = read(write(tmp_path, GOOD))
    assert report.rows_read == len(GOOD)
    assert table.users[0] == "1" and table.values[0] == 5.0


def test_explicit_header_flag_overrides_detection(tmp_path: Path) -> None:
    table, report = read(write(tmp_path, GOOD), has_header=True)
    assert report.rows_read == len(GOOD) - 1


@pytest.mark.parametrize(
    "sep, template",
    [
        ("tab", "{u}\t{i}\t{r}\t{t}"),
        ("comma", "{u},{i},{r},{t}"),
        ("double colon", "{u}::{i}::{r}::{t}"),
        ("spaces", "{u}   {i} {r}  {t}"),
        ("tab and spaces", "{u}\t {i}\t{r} \t{t}"),
        ("comma and spaces", "{u}, {i}, {r}, {t}"),
    ],
)
def test_separators(tmp_path: Path, sep: str, template: str) -> None:
    rows = [("7", "100", 4, 50), ("7", "101", 3.5, 51), ("8", "100", 1, 52)]
    path = write(tmp_path, [template.format(u=u, i=i, r=r, t=t) for u, i, r, t in rows])
    table, report = read(path)
    assert report.rows_kept == 3
    assert list(table.users) == ["7", "7", "8"]
    assert list(table.items) == ["100", "101", "100"]
    np.testing.assert_array_equal(table.values, [4.0, 3.5, 1.0])
    np.testing.assert_array_equal(table.timestamps, [50, 51, 52])


def test_string_ids_and_three_columns(tmp_path: Path) -> None:
    table, report = read(write(tmp_path, ["user,item,rating", "alice,The Matrix,5", "bob,Heat,2", "alice,Heat,4"]))
    assert report.rows_kept == 3
    assert table.timestamps is None
    assert list(zip(table.users, table.items, table.values)) == [
        ("alice", "The Matrix", 5.0), ("bob", "Heat", 2.0), ("alice", "Heat", 4.0),
    ]


def test_custom_scale(tmp_path: Path) -> None:
    lines = ["1,1,0.5", "1,2,10", "1,3,0.4", "1,4,10.5"]
    table, report = read(write(tmp_path, lines), rating_min=0.5, rating_max=10.0, on_bad_rows="drop")
    np.testing.assert_array_equal(table.values, [0.5, 10.0])
    assert dict(report.counts) == {"rating outside the scale [0.5, 10]": 2}


def test_empty_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="rating_min must be below rating_max"):
        read(write(tmp_path, GOOD), rating_min=5.0, rating_max=5.0)


def test_non_utf8_bytes_give_the_line_number(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"1,10,5\n2,11,4\n3,caf\xe9,3\n4,12,2\n")
    with pytest.raises(DataError) as excinfo:
        read(path)
    assert f"{path}:3: not valid utf-8" in str(excinfo.value)
    table, _ = read(path, encoding="latin-1")
    assert "café" in list(table.items)


def test_blank_lines_keep_true_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, ["1,10,5", "", "2,10,4", "", "", "3,10,x"])
    with pytest.raises(DataError) as excinfo:
        read(path)
    assert f"{path}:6: rating is not a number" in str(excinfo.value)


def test_everything_bad_is_an_error_even_when_dropping(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no valid ratings left"):
        read(write(tmp_path, ["1,10,9", "2,10,0"]), on_bad_rows="drop")


def test_counts_on_a_larger_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 2000
    users = rng.integers(0, 50, n)
    items = rng.integers(0, 40, n)
    values = rng.integers(0, 7, n)  # 0 and 6 are out of the 1..5 scale
    stamps = rng.permutation(n)
    path = write(tmp_path, [f"{u},{i},{v},{t}" for u, i, v, t in zip(users, items, values, stamps)])
    table, report = read(path, on_bad_rows="drop")
    in_scale = (values >= 1) & (values <= 5)
    latest: dict[tuple[int, int], tuple[int, int]] = {}
    for u, i, v, t in zip(users[in_scale], items[in_scale], values[in_scale], stamps[in_scale]):
        if (u, i) not in latest or t > latest[(u, i)][1]:
            latest[(u, i)] = (v, t)
    assert report.rows_read == n
    assert report.rows_kept == len(latest) == len(table.values)
    assert report.counts["rating outside the scale [1, 5]"] == int((~in_scale).sum())
    assert report.counts["duplicate (user, item) pair (kept the latest)"] == int(in_scale.sum()) - len(latest)
    got = {(int(u), int(i)): (int(v), int(t)) for u, i, v, t in zip(table.users, table.items, table.values, table.timestamps)}
    assert got == latest


def test_every_row_malformed_is_a_data_error(tmp_path: Path) -> None:
    path = write(tmp_path, ["1,10", "2,11", "3,12"])
    with pytest.raises(DataError) as excinfo:
        read(path, on_bad_rows="fail")
    assert f"{path}:1: malformed" in str(excinfo.value)
    with pytest.raises(DataError, match="no valid ratings left"):
        read(path, on_bad_rows="drop")


def test_a_bad_first_row_is_reported_not_taken_for_a_header(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("1,10,abc\n1,11,4\n")
    with pytest.raises(DataError, match=r"r.csv:1: rating is not a number"):
        read_ratings_file(path, rating_min=1, rating_max=5)
