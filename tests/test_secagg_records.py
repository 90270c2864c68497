"""Secure-aggregation payloads survive Flower's records: ints, floats, bytes, lists (empty ones too) and arrays."""

import numpy as np
import pytest
from flwr.app import RecordDict

from fedrec.shared import protocol
from fedrec.shared.secagg import records


def test_a_payload_survives_the_records_with_its_types():
    payload = {"stage": "masked", "round": 3, "scale": 0.5, "blob": b"\x00\x01", "ids": [4, 9], "keys": [b"a", b"b"],
               "none_yet": [], "masked": np.arange(5, dtype=np.uint64), "known": np.array([1, 0, 1], dtype=np.uint8)}
    back = records.read_payload(RecordDict(records.payload_records(payload)))
    assert sorted(back) == sorted(payload)
    for key in ("masked", "known"):
        assert back[key].dtype == payload[key].dtype
        np.testing.assert_array_equal(back[key], payload[key])
    assert {k: v for k, v in back.items() if not isinstance(v, np.ndarray)} == \
        {k: v for k, v in payload.items() if not isinstance(v, np.ndarray)}


def test_only_arrays_go_to_the_array_record_and_none_when_there_are_none():
    plain = records.payload_records({"stage": "advertise", "pks": (b"x",), "empty": ()})
    assert set(plain) == {protocol.SECAGG}
    assert dict(plain[protocol.SECAGG]) == {"stage": "advertise", "pks|bytes1": b"x", "empty": records.EMPTY_LIST}
    assert records.untag({"a": records.EMPTY_LIST, "b|int64": np.array([1], ">i8").tobytes(), "c": 2}) == \
        {"a": [], "b": [1], "c": 2}
    with_array = records.payload_records({"y": np.zeros(2)})
    assert set(with_array) == {protocol.SECAGG, protocol.SECAGG_ARRAYS} and dict(with_array[protocol.SECAGG]) == {}


def test_a_message_without_a_payload_is_a_key_error():
    with pytest.raises(KeyError):
        records.read_payload(RecordDict())


def test_entries_after_an_array_are_kept():
    payload = {"y": np.arange(3, dtype=np.uint64), "round": 2, "ids": [5, 6]}
    assert records.flat_values(payload) == {"round": 2, "ids|int64": np.array([5, 6], ">i8").tobytes()}
    back = records.read_payload(RecordDict(records.payload_records(payload)))
    assert back["round"] == 2 and back["ids"] == [5, 6] and back["y"].tolist() == [0, 1, 2]


@pytest.mark.parametrize("values", [{"x|bytes0": b""}, {"x|bytes": b"ab"}, {"x|float": b"ab"}, {"x|int64": b"abc"},
                                    {"x|bytes2": b"abc"}, {"x|int64": [1, 2]}])
def test_a_malformed_packed_list_is_a_value_error_naming_it(values):
    with pytest.raises(ValueError, match="'x'"):
        records.untag(values)
