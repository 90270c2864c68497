"""Feedback kept durably in SQLite in the client's state folder, and read back into training like any file.

Durability: WAL journal with synchronous=FULL, and each event is committed (the WAL fsynced) before the
service replies, so an acknowledged event survives kill -9 and power loss of the process.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
import threading
from pathlib import Path

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.data.reader import read_ratings_file
from fedrec.shared.errors import FedrecError

DB_FILE = "feedback.sqlite"
CSV_FILE = "feedback.csv"
ID_PATTERN = re.compile(r"[^\s,;:\x00-\x1f\x7f]{1,200}")
"""User and item ids the service accepts: no spaces, separators (, ; :) or control characters, so that
stored feedback reads back unchanged through the ratings-file reader."""

SCHEMA = """CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    item TEXT NOT NULL,
    rating REAL NOT NULL,
    event TEXT,
    timestamp INTEGER NOT NULL
)"""


class FeedbackStore:
    """One SQLite database of feedback events; `add` returns only after the event is on disk."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / DB_FILE
        try:
            # Autocommit mode: each INSERT is its own transaction, committed (and fsynced) when execute returns.
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise FedrecError(f"{self.path}: not a usable feedback database: {exc}") from None
        self._lock = threading.Lock()

    def add(self, user: str, item: str, rating: float, event: str | None, timestamp: int) -> int:
        with self._lock:
            cursor = self._db.execute("INSERT INTO events (user, item, rating, event, timestamp) VALUES (?, ?, ?, ?, ?)",
                                      (user, item, float(rating), event, int(timestamp)))
            return int(cursor.lastrowid)

    def events(self) -> list[tuple[int, str, str, float, str | None, int]]:
        with self._lock:
            return self._db.execute("SELECT id, user, item, rating, event, timestamp FROM events ORDER BY id").fetchall()

    def close(self) -> None:
        self._db.close()


def stored_events(state_dir: Path) -> list[tuple[int, str, str, float, str | None, int]]:
    """Every stored event (id, user, item, rating, event, timestamp) in order, read-only; [] without a database."""
    path = Path(state_dir) / DB_FILE
    if not path.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return db.execute("SELECT id, user, item, rating, event, timestamp FROM events ORDER BY id").fetchall()
    except sqlite3.DatabaseError as exc:
        raise FedrecError(f"{path}: not a usable feedback database: {exc}") from None


def export_csv(state_dir: Path) -> Path | None:
    """Write the stored feedback as `user,item,rating,timestamp` for the ratings reader, one row per (user, item):
    its last received event, as the service folded it in; None when there is none. Read-only access, so a running service can keep writing meanwhile."""
    events = stored_events(state_dir)
    if not events:
        return None
    latest = {(user, item): event for event in events for _, user, item, *_ in [event]}  # the last received wins
    rows = sorted(latest.values())
    lines = ["user,item,rating,timestamp", *(f"{u},{i},{r!r},{t}" for _, u, i, r, _, t in rows)]
    target = Path(state_dir) / CSV_FILE
    atomic.write_text(target, "\n".join(lines) + "\n", mode=0o600)
    return target


def read_feedback(state_dir: Path, rating_min: float, rating_max: float, on_bad_rows: str):
    """The stored feedback through the same validation as any ratings file (later events of a pair win)."""
    path = export_csv(state_dir)
    if path is None:
        return None
    table, _ = read_ratings_file(path, rating_min=rating_min, rating_max=rating_max, on_bad_rows=on_bad_rows, sep=",")
    return table


def with_feedback(train: Ratings, test: Ratings, table, catalogue) -> tuple[Ratings, Ratings]:
    """(train plus feedback, test): a feedback rating replaces the file's rating of the same (user, item);
    users known only from feedback are appended; items outside the catalogue are left out (with a note)."""
    index_of = {str(item): k for k, item in enumerate(catalogue)}
    items = np.array([index_of.get(str(item), -1) for item in table.items], dtype=np.int64)
    if (items < 0).any():
        print(f"fedrec client: {int((items < 0).sum())} feedback events of items outside the catalogue were left out",
              file=sys.stderr)
    keep = items >= 0
    feedback_users, items, values = table.users[keep].astype(str), items[keep], table.values[keep]
    known_users = train.user_ids.astype(str)
    new_users = np.setdiff1d(np.unique(feedback_users), known_users)
    user_ids = np.concatenate([known_users, new_users])
    position = {user: k for k, user in enumerate(user_ids.tolist())}
    users = np.array([position[user] for user in feedback_users.tolist()], dtype=np.int64)
    n_items = len(catalogue)
    replaced = np.isin(train.users * n_items + train.items, users * n_items + items)
    kept = train.subset(~replaced)
    if train.timestamps is not None and table.timestamps is not None:
        timestamps = np.concatenate([kept.timestamps, table.timestamps[keep]])
    else:
        timestamps = None
    merged = Ratings(np.concatenate([kept.users, users]), np.concatenate([kept.items, items]),
                     np.concatenate([kept.values, values]), timestamps, user_ids, train.item_ids,
                     train.rating_min, train.rating_max)
    return merged, Ratings(test.users, test.items, test.values, test.timestamps, user_ids, test.item_ids,
                           test.rating_min, test.rating_max)
