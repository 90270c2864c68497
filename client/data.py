"""Loading one client's private ratings: a partition of a dataset in simulation, or its own files in deployment."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np

from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.load import load_train_test, read_files
from fedrec.shared.data.partition import partition_users
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.federated import ClientData
from fedrec.shared.feedback import read_feedback, with_feedback


@functools.lru_cache(maxsize=2)
def _split(data_json: str):
    return load_train_test(FedrecConfig.model_validate_json(data_json))


@functools.lru_cache(maxsize=4)
def _dealt(data_json: str, scheme: str, seed: int, num_partitions: int) -> tuple[np.ndarray, dict[str, tuple]]:
    """Which partition each user went to, and every partition's rows of train and test, found once: the rows
    of each split sorted by partition (stable, so each partition keeps the file's order) and the bounds."""
    train, test = _split(data_json)
    client_of_user = partition_users(train.user_counts(), num_partitions, scheme, seed)
    rows = {}
    for name, ratings in (("train", train), ("test", test)):
        owner = client_of_user[ratings.users]
        order = np.argsort(owner, kind="stable")
        rows[name] = (order, np.searchsorted(owner[order], np.arange(num_partitions + 1)))
    return client_of_user, rows


# A process may serve many simulated clients (943 with one client per user): a partition costs only its own
# rows to rebuild, so the cache need not hold them all.
@functools.lru_cache(maxsize=64)
def _partition(data_json: str, scheme: str, seed: int, partition_id: int, num_partitions: int) -> ClientData:
    train, test = _split(data_json)
    client_of_user, rows = _dealt(data_json, scheme, seed, num_partitions)

    def own_rows(ratings: Ratings, name: str) -> Ratings:
        order, bounds = rows[name]
        return ratings.subset(order[bounds[partition_id]:bounds[partition_id + 1]])

    return ClientData.from_partition(own_rows(train, "train"), own_rows(test, "test"),
                                     np.flatnonzero(client_of_user == partition_id))


def partition_data(config: FedrecConfig, partition_id: int, num_partitions: int) -> ClientData:
    """The ratings of the users dealt to `partition_id` (the dataset is read once per process)."""
    data_json = config.model_dump_json(include={"data", "synthetic"})
    fed = config.federated
    return _partition(data_json, fed.partition, fed.seed, partition_id, num_partitions)


def _on_catalogue(ratings: Ratings, index_of: dict[str, int], n_items: int) -> Ratings:
    codes = np.array([index_of.get(item, -1) for item in ratings.item_ids], dtype=np.int64)  # one per item id
    mapped = codes[ratings.items]
    kept = ratings.subset(mapped >= 0)
    return Ratings(kept.users, mapped[mapped >= 0], kept.values, kept.timestamps, ratings.user_ids,
                   np.empty(n_items, dtype=str), ratings.rating_min, ratings.rating_max)


def file_data(config: FedrecConfig, train_file: Path, test_file: Path | None, catalogue: tuple[str, ...]) -> ClientData:
    """This client's own files, validated, with items coded by the server's public catalogue."""
    stamp = tuple(p.stat().st_mtime_ns for p in (train_file, test_file) if p is not None)
    return _file_data(config.model_dump_json(include={"data"}), train_file, test_file, stamp, catalogue)


# `fedrec client` names its files here for its SuperNode; the warm SuperExec (client/superexec.py) reads them
# once, so that each message's ClientApp, forked from it, starts with them parsed instead of reading them again
# (0.09 s a message for 29,000 ratings on a quiet machine, 0.2 s under load).
READ_AHEAD_ENV = "FEDREC_CLIENT_FILES"
_READING = {"rating_min", "rating_max", "on_bad_rows"}  # all that reading a ratings file depends on


def read_ahead_spec(config: FedrecConfig, train_file: Path, test_file: Path | None) -> str:
    files = [str(p.resolve()) for p in (train_file, test_file) if p is not None]  # as the node config names them
    return json.dumps({"files": files, "data": config.data.model_dump(include=_READING)})


def read_ahead(spec: str) -> None:
    """Parse and validate the files that `spec` (read_ahead_spec) names, into this process's cache."""
    named = json.loads(spec)
    paths = tuple(Path(p) for p in named["files"])
    config = FedrecConfig.model_validate({"data": named["data"]})
    _read_tables(config.model_dump_json(include={"data": _READING}), paths, tuple(p.stat().st_mtime_ns for p in paths))


@functools.lru_cache(maxsize=64)
def _read_tables(reading_json: str, paths: tuple[Path, ...], stamp: tuple) -> tuple[Ratings, ...]:
    """The files as read; `stamp` (their modification times) makes a changed file a new entry."""
    return tuple(read_files(list(paths), FedrecConfig.model_validate_json(reading_json)))


# Several clients share one process in the in-process grid (the closed loop runs them so): room for each one's
# files, so that no client re-reads its file at every message.
@functools.lru_cache(maxsize=64)
def _file_data(data_json: str, train_file: Path, test_file: Path | None, stamp: tuple, catalogue: tuple[str, ...]) -> ClientData:
    config = FedrecConfig.model_validate_json(data_json)
    paths = (train_file,) + ((test_file,) if test_file is not None else ())
    tables = _read_tables(config.model_dump_json(include={"data": _READING}), paths, stamp)
    index_of = {item: k for k, item in enumerate(catalogue)}
    coded = [_on_catalogue(table, index_of, len(catalogue)) for table in tables]
    unknown = sum(len(table) - len(kept) for table, kept in zip(tables, coded))
    if unknown:
        print(f"fedrec client: {unknown} ratings of items outside the server's catalogue were left out", file=sys.stderr)
    train = coded[0]
    test = coded[1] if test_file is not None else train.subset(np.zeros(len(train), dtype=bool))
    return ClientData(train, test)


def with_stored_feedback(config: FedrecConfig, data: ClientData, state_dir: Path | None, catalogue) -> ClientData:
    """The ratings plus the feedback the client's service stored, read through the ratings-file validation."""
    if state_dir is None:
        return data
    train = data.train
    table = read_feedback(state_dir, train.rating_min, train.rating_max, config.data.on_bad_rows)
    if table is None:
        return data
    return ClientData(*with_feedback(train, data.test, table, catalogue))
