"""What a client keeps: its users' state, tied to one run and kept per round, and the model it serves.

The state belongs to the run that made it: the server's run id (stable across `fedrec server --resume`), the
item catalogue and the number of factors. A different run starts the users fresh. Besides the state after the
last trained round, the state at the start of each of the last few rounds is kept, keyed by round: when a
resumed server trains a round again, the client starts it from the state it had before that round, so the
round's user step is not applied twice. Rows are matched by user id, so a ratings file that gained users
between rounds gives the new users fresh factors and keeps everyone else's.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context

from fedrec.shared import arraypack, atomic, mf
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.recommend import ItemModel
from fedrec.shared.serving import save_snapshot

STATE_KEY = "fedrec.user-state"
STATE_FILE = "user-state.bin"  # shared/arraypack.py's format
LEGACY_STATE_FILE = "user-state.npz"  # written before that format; still read, so an upgraded client keeps its users
KEEP_ROUNDS = 3  # start-of-round states kept: enough for a server resumed from its previous checkpoint
SHARED_KEYS = ("opt.t",)  # optimizer step count: one value for all users, not one row per user
NOW = "now"

State = dict[str, np.ndarray]


def run_identity(run_id: str, catalogue: tuple[str, ...] | None, n_items: int, factors: int) -> str:
    """What the saved state must match to be reused: server run, item catalogue, model size."""
    items = hashlib.sha256("\n".join(catalogue).encode()).hexdigest()[:16] if catalogue is not None else f"n{n_items}"
    return f"run={run_id} items={items} k={factors}"


def align_users(saved: State, saved_ids: np.ndarray, fresh: State, ids: np.ndarray) -> State:
    """`saved` re-indexed to the users `ids`: known users keep their rows, new users take `fresh` rows
    (or zeros for optimizer slots), users no longer in the file are dropped."""
    if np.array_equal(saved_ids, ids):
        return {key: value.copy() for key, value in saved.items()}
    position = {user: row for row, user in enumerate(saved_ids.tolist())}
    old_rows = np.array([position.get(user, -1) for user in ids.tolist()], dtype=np.int64)
    kept = old_rows >= 0
    aligned = {}
    for key, value in saved.items():
        if key in SHARED_KEYS:
            aligned[key] = value.copy()
            continue
        rows = fresh[key].copy() if key in fresh else np.zeros((len(ids), *value.shape[1:]), dtype=value.dtype)
        rows[kept] = value[old_rows[kept]]
        aligned[key] = rows
    return aligned


class UserStateStore:
    """The saved states of this client for the current run, in its state folder (or, in simulation, in the
    node's Flower state). Slots: `now` (after the last trained round) and `r<N>` (at the start of round N)."""

    def __init__(self, context: Context, state_dir: Path | None, identity: str | None):
        """`identity` None reads whatever is saved (for inspection)."""
        self.context, self.state_dir, self.identity = context, state_dir, identity
        self.last_round = 0
        self.slots: dict[str, tuple[State, np.ndarray]] = {}
        saved = self._read()
        if saved is None:
            return
        meta = json.loads(str(saved["meta"]))
        if identity is not None and meta.get("identity") != identity:
            print(f"fedrec client: saved user state is from another run ({meta.get('identity')}); "
                  f"this run ({identity}) starts its users fresh", file=sys.stderr)
            return
        self.last_round = int(meta["round"])
        for slot in meta["slots"]:
            prefix = f"{slot}/"
            arrays = {key[len(prefix):]: saved[key] for key in saved if key.startswith(prefix) and key != f"{slot}/#ids"}
            self.slots[slot] = (arrays, saved[f"{slot}/#ids"])

    def _read(self) -> dict[str, np.ndarray] | None:
        blob = None
        if self.state_dir is not None:
            for name in (STATE_FILE, LEGACY_STATE_FILE):
                if (self.state_dir / name).exists():
                    blob = (self.state_dir / name).read_bytes()
                    break
        if blob is None and STATE_KEY in self.context.state.array_records:
            blob = self.context.state.array_records[STATE_KEY]["blob"].numpy().tobytes()
        if blob is None:
            return None
        try:
            saved = arraypack.unpack(blob) if arraypack.is_packed(blob) else dict(np.load(io.BytesIO(blob)))
            if "meta" not in saved:
                raise ValueError("no metadata")
            return saved
        except Exception as exc:  # noqa: BLE001 - a damaged or older state file: the users start fresh
            print(f"fedrec client: ignoring unreadable saved user state ({exc}); users start fresh", file=sys.stderr)
            return None

    def start_of(self, round_number: int, fresh: State, ids: np.ndarray) -> State:
        """The state to begin round `round_number` from (also the state to evaluate the model of the round
        before it): the start-of-round state if that round was trained before, else the latest."""
        slot = f"r{round_number}"
        if slot not in self.slots:
            if round_number <= self.last_round:  # an older round than we kept: nothing sound to start from
                print(f"fedrec client: no saved state from before round {round_number}; users start fresh",
                      file=sys.stderr)
                return fresh
            slot = NOW
        if slot not in self.slots:
            return fresh
        state, saved_ids = self.slots[slot]
        return align_users(state, saved_ids, fresh, ids)

    def record(self, round_number: int, before: State, after: State, ids: np.ndarray) -> None:
        """Keep `before` as round N's start and `after` as the latest; forget rounds after N (a redo
        replaces them) and rounds older than the last KEEP_ROUNDS."""
        self.slots = {slot: value for slot, value in self.slots.items()
                      if slot != NOW and round_number - KEEP_ROUNDS < int(slot[1:]) < round_number}
        self.slots[f"r{round_number}"] = (before, ids)
        self.slots[NOW] = (after, ids)
        self.last_round = round_number
        arrays = {"meta": np.array(json.dumps({"identity": self.identity, "round": round_number,
                                               "slots": sorted(self.slots)}))}
        for slot, (state, slot_ids) in self.slots.items():
            arrays[f"{slot}/#ids"] = np.asarray(slot_ids, dtype=str)
            arrays.update({f"{slot}/{key}": np.ascontiguousarray(value) for key, value in state.items()})
        blob = arraypack.pack(arrays)
        self.context.state.array_records[STATE_KEY] = ArrayRecord({"blob": Array(np.frombuffer(blob, dtype=np.uint8))})
        if self.state_dir is not None:
            atomic.write_bytes(self.state_dir / STATE_FILE, blob, mode=0o600)
            (self.state_dir / LEGACY_STATE_FILE).unlink(missing_ok=True)  # superseded: never read a stale copy

    def latest(self) -> State | None:
        return self.slots[NOW][0] if NOW in self.slots else None


def save_served_model(state_dir: Path | None, item: mf.ItemSide, known: np.ndarray, catalogue, train: Ratings,
                      config: FedrecConfig) -> None:
    """Keep the item side just received (the final model after the last round) for `fedrec serve`."""
    if state_dir is None:
        return
    model = ItemModel(item.q, item.bi, item.mu, np.asarray(catalogue, dtype=str), known, config.model.reg,
                      config.model.bias_reg, train.rating_min, train.rating_max)
    save_snapshot(state_dir, model, train)
