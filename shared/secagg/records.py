"""Secure-aggregation payloads as Flower records and back: the one shared module that imports Flower,
because both sides speak this format.

A payload maps names to ints, floats, bytes, lists of those, or numpy arrays. Arrays travel in an
ArrayRecord; empty lists are written with a tag, because an empty list loses its element type on the wire.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedrec.shared import protocol

EMPTY_LIST = "__empty_list__"


def flat_values(payload: dict) -> dict:
    """The non-array entries, with empty lists tagged (also used for the client's saved state)."""
    return {key: (list(value) if len(value) else EMPTY_LIST) if isinstance(value, (list, tuple)) else value
            for key, value in payload.items() if not isinstance(value, np.ndarray)}


def untag(values: dict) -> dict:
    return {key: ([] if value == EMPTY_LIST else value) for key, value in values.items()}


def payload_records(payload: dict) -> dict:
    """Records to add to a message's RecordDict."""
    records = {protocol.SECAGG: ConfigRecord(flat_values(payload))}
    arrays = {k: Array(np.ascontiguousarray(v)) for k, v in payload.items() if isinstance(v, np.ndarray)}
    if arrays:
        records[protocol.SECAGG_ARRAYS] = ArrayRecord(arrays)
    return records


def read_payload(content: RecordDict) -> dict:
    """The payload of a message (KeyError if it carries none)."""
    payload = untag(dict(content.config_records[protocol.SECAGG]))
    if protocol.SECAGG_ARRAYS in content.array_records:
        payload.update({k: v.numpy() for k, v in content.array_records[protocol.SECAGG_ARRAYS].items()})
    return payload
