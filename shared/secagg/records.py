"""Secure-aggregation payloads as Flower records and back: the one shared module that imports Flower,
because both sides speak this format.

A payload maps names to ints, floats, bytes, lists of those, or numpy arrays. Arrays travel in an
ArrayRecord. A list of ints or of equal-length bytes travels packed as one bytes value under a tagged key
("shares|bytes36", "members|int64"): a cohort's messages carry lists of a hundred keys and shares, and
Flower checks and copies a list element by element. Empty lists are written with a tag, because an empty
list loses its element type on the wire.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedrec.shared import protocol

EMPTY_LIST = "__empty_list__"
_TAG = "|"
_INT64 = "int64"
_BYTES = "bytes"


def _pack(key: str, value: list) -> tuple[str, object]:
    if not value:
        return key, EMPTY_LIST
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return f"{key}{_TAG}{_INT64}", np.asarray(value, dtype=">i8").tobytes()
    if all(isinstance(v, (bytes, bytearray)) for v in value) and len({len(v) for v in value}) == 1 and len(value[0]):
        return f"{key}{_TAG}{_BYTES}{len(value[0])}", b"".join(value)
    return key, list(value)


def _unpack(key: str, value: object) -> tuple[str, object]:
    """Inverse of _pack; ValueError naming the key when a packed value is malformed."""
    if value == EMPTY_LIST:
        return key, []
    if _TAG not in key:
        return key, value
    name, kind = key.split(_TAG, 1)
    if not isinstance(value, bytes):
        raise ValueError(f"packed list {name!r} is not bytes")
    if kind == _INT64:
        if len(value) % 8:
            raise ValueError(f"packed int list {name!r} has {len(value)} bytes, not a multiple of 8")
        return name, np.frombuffer(value, dtype=">i8").tolist()
    if kind.startswith(_BYTES) and kind[len(_BYTES):].isdigit() and (size := int(kind[len(_BYTES):])) > 0:
        if len(value) % size:
            raise ValueError(f"packed list {name!r} has {len(value)} bytes, not a multiple of {size}")
        return name, [value[i:i + size] for i in range(0, len(value), size)]
    raise ValueError(f"unknown packing {kind!r} of {name!r}")


def flat_values(payload: dict) -> dict:
    """The non-array entries, lists packed (also used for the client's saved state)."""
    out = {}
    for key, value in payload.items():
        if isinstance(value, np.ndarray):
            continue
        if isinstance(value, (list, tuple)):
            key, value = _pack(key, list(value))
        out[key] = value
    return out


def untag(values: dict) -> dict:
    """Inverse of flat_values."""
    return dict(_unpack(key, value) for key, value in values.items())


def payload_records(payload: dict) -> dict:
    """Records to add to a message's RecordDict."""
    records = {protocol.SECAGG: ConfigRecord(flat_values(payload))}
    arrays = {k: Array(np.ascontiguousarray(v)) for k, v in payload.items() if isinstance(v, np.ndarray)}
    if arrays:
        records[protocol.SECAGG_ARRAYS] = ArrayRecord(arrays)
    return records


def read_payload(content: RecordDict) -> dict:
    """The payload of a message (KeyError if it carries none, ValueError if a packed list is malformed)."""
    payload = untag(dict(content.config_records[protocol.SECAGG]))
    if protocol.SECAGG_ARRAYS in content.array_records:
        payload.update({k: v.numpy() for k, v in content.array_records[protocol.SECAGG_ARRAYS].items()})
    return payload
