"""Packed named arrays: every dtype and shape the user state holds comes back exactly; a damaged value is refused."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.shared import arraypack


def test_arrays_come_back_exactly_with_dtype_shape_and_alignment():
    arrays = {"meta": np.array('{"round": 3}'), "r3/#ids": np.array(["u1", "user-22", ""]),
              "r3/p": np.arange(15, dtype=np.float32).reshape(5, 3) / 7, "r3/bu": np.array([1.5, -2.0, np.nan]),
              "opt.t": np.int64(7), "empty": np.zeros((0, 4)), "flags": np.array([True, False]),
              "big-endian": np.arange(3, dtype=">i8"), "strided": np.arange(20.0).reshape(4, 5)[:, ::2]}
    back = arraypack.unpack(arraypack.pack(arrays))
    assert list(back) == list(arrays)
    for name, value in arrays.items():
        value = np.asarray(value)
        assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
        np.testing.assert_array_equal(back[name], value)
    assert str(back["meta"]) == '{"round": 3}'


def test_every_array_starts_on_a_64_byte_boundary_of_the_value():
    """So that a float64 or int64 view is aligned whatever came before it."""
    blob = arraypack.pack({"a": np.arange(3, dtype=np.int8), "b": np.arange(5.0), "c": np.arange(2, dtype=np.int16)})
    start = np.frombuffer(blob, dtype=np.uint8).ctypes.data  # the views share the bytes' buffer
    back = arraypack.unpack(blob)
    assert [(back[name].ctypes.data - start) % 64 for name in "abc"] == [0, 0, 0]
    assert all(back[name].flags.aligned for name in "abc")


@pytest.mark.parametrize("damage, words", [
    (lambda b: b"NOTMAGIC" + b[8:], "bad magic"),
    (lambda b: b[:12], "header length"),
    (lambda b: b[:40], "truncated"),
    (lambda b: b[:-70], "runs past the end"),
])
def test_a_damaged_value_is_refused_with_the_reason(damage, words):
    blob = arraypack.pack({"p": np.arange(12.0), "q": np.arange(3.0)})
    with pytest.raises(ValueError, match=words):
        arraypack.unpack(damage(blob))


def test_object_arrays_are_refused():
    with pytest.raises(ValueError, match="object dtype"):
        arraypack.pack({"x": np.array([{"a": 1}], dtype=object)})
