"""One entry to the data: a built-in dataset or the user's CSV files, validated, coded and split."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data import datasets, synthetic
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.data.reader import RawTable, ValidationReport, read_ratings_file
from fedrec.shared.data.split import split
from fedrec.shared.errors import DataError

DEFAULT_CSV_SCALE = (1.0, 5.0)


def _shared_codes(vocabs: list[np.ndarray], codes: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One sorted id space for several tables' own vocabularies (the ids as np.unique would order them)."""
    ids = np.unique(np.concatenate(vocabs)) if vocabs else np.zeros(0, dtype=str)
    return ids.astype(str), [np.searchsorted(ids, vocab).astype(np.int64)[code] for vocab, code in zip(vocabs, codes)]


def _to_ratings(tables: list[RawTable], rating_min: float, rating_max: float) -> list[Ratings]:
    # Codes are remapped, never expanded to one id string per rating (that would cost more than the ratings).
    user_ids, users = _shared_codes([t.user_vocab for t in tables], [t.user_codes for t in tables])
    item_ids, items = _shared_codes([t.item_vocab for t in tables], [t.item_codes for t in tables])
    return [
        Ratings(u, i, t.values, t.timestamps, user_ids, item_ids, rating_min, rating_max)
        for t, u, i in zip(tables, users, items)
    ]


def _log_reports(reports: list[ValidationReport]) -> None:
    for report in reports:
        if report.counts:
            print(report.summary(), file=sys.stderr)


def read_files(paths: list[Path], config: FedrecConfig) -> list[Ratings]:
    """Read several CSV/TSV files into one shared id space (train and test, or one client's files)."""
    low = config.data.rating_min if config.data.rating_min is not None else DEFAULT_CSV_SCALE[0]
    high = config.data.rating_max if config.data.rating_max is not None else DEFAULT_CSV_SCALE[1]
    read = [
        read_ratings_file(path, rating_min=low, rating_max=high, on_bad_rows=config.data.on_bad_rows)
        for path in paths
    ]
    _log_reports([report for _, report in read])
    return _to_ratings([table for table, _ in read], low, high)


def load_dataset(config: FedrecConfig) -> Ratings:
    """The whole built-in dataset named by `data.dataset` (synthetic, or a verified MovieLens download)."""
    name = config.data.dataset
    if name == "synthetic":
        return synthetic.generate(config.synthetic)
    if name not in datasets.REGISTRY:
        known = ", ".join(["synthetic", *datasets.REGISTRY])
        raise DataError(f"unknown dataset {name!r}: choose one of {known}, or pass --train/--test files")
    spec = datasets.REGISTRY[name]
    path = datasets.fetch(name, config.data.data_dir)
    low = config.data.rating_min if config.data.rating_min is not None else spec.rating_min
    high = config.data.rating_max if config.data.rating_max is not None else spec.rating_max
    table, report = read_ratings_file(
        path,
        rating_min=low,
        rating_max=high,
        on_bad_rows=config.data.on_bad_rows,
        sep=spec.sep,
        has_header=spec.has_header,
        encoding=spec.encoding,
    )
    _log_reports([report])
    return _to_ratings([table], low, high)[0]


def load_train_test(config: FedrecConfig) -> tuple[Ratings, Ratings]:
    """Train and test sets: the user's two files as given, or the configured split of a dataset."""
    if config.data.train is not None or config.data.test is not None:
        if config.data.train is None or config.data.test is None:
            raise DataError("give both --train FILE and --test FILE (or neither, and a --dataset)")
        train, test = read_files([config.data.train, config.data.test], config)
        return train, test
    return split(load_dataset(config), config.data)


CSV_BLOCK_ROWS = 200_000


def _csv_blocks(ratings: Ratings) -> Iterator[bytes]:
    header = "user,item,rating" + (",timestamp" if ratings.timestamps is not None else "")
    yield (header + "\n").encode()
    for start in range(0, len(ratings), CSV_BLOCK_ROWS):
        block = slice(start, start + CSV_BLOCK_ROWS)
        columns = [ratings.user_ids[ratings.users[block]], ratings.item_ids[ratings.items[block]],
                   np.char.mod("%g", ratings.values[block])]
        if ratings.timestamps is not None:
            columns.append(ratings.timestamps[block].astype(str))
        yield "".join(",".join(row) + "\n" for row in zip(*columns)).encode()


def write_csv(ratings: Ratings, path: Path) -> None:
    """Write `user,item,rating[,timestamp]` with the original ids, atomically (temp file, then rename), a block
    of rows at a time, so that the text of a large table is never held whole."""
    atomic.write_chunks(Path(path), _csv_blocks(ratings))
