"""Pseudo-random mask expansion: a 32-byte seed to a uint64 vector via the AES-256-CTR keystream.

AES-256-CTR rather than ChaCha20: with AES instructions it expands a 450 kB mask in about 60 us against 90 us
here, and a client expands about fifty masks a round."""

import threading

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 32
# Every seed (self-mask b_u^r, or a pairwise key already bound to its round by HKDF) keys exactly one
# stream, so a fixed all-zero nonce/counter never repeats a (key, nonce) pair.
_NONCE = bytes(16)
# Encrypting a reused zero buffer into a reused output buffer avoids two fresh allocations (page faults)
# per mask; the output buffer never leaves this module (apply) or is copied out (expand). One pair of
# buffers per thread, so that concurrent callers never share one.
_scratch = threading.local()


def _keystream(seed: bytes, length: int) -> np.ndarray:
    """The first `length` uint64 words of the keystream, in the module's scratch buffer (overwritten by the
    next call: use at once)."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if len(getattr(_scratch, "zeros", b"")) < 8 * length:
        _scratch.zeros, _scratch.out = bytes(8 * length), bytearray(8 * length + 16)
    encryptor = Cipher(algorithms.AES(bytes(seed)), modes.CTR(_NONCE)).encryptor()
    encryptor.update_into(memoryview(_scratch.zeros)[: 8 * length], _scratch.out)
    return np.frombuffer(_scratch.out, dtype=np.uint64, count=length)


def expand(seed: bytes, length: int) -> np.ndarray:
    """Return `length` uint64 words of the AES-256-CTR keystream keyed by `seed` (a fresh array)."""
    return _keystream(seed, length).copy()


def apply(y: np.ndarray, seed: bytes, sign: int) -> None:
    """y += sign * expand(seed, y.size), in place, mod 2^64 (sign is +1 or -1)."""
    if sign == 1:
        y += _keystream(seed, y.size)
    elif sign == -1:
        y -= _keystream(seed, y.size)
    else:
        raise ValueError(f"sign must be +1 or -1, got {sign}")
