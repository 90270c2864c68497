"""Pseudo-random mask expansion: a 32-byte seed to a uint64 vector via the AES-256-CTR keystream.

AES-256-CTR rather than ChaCha20: with AES instructions it expands a 450 kB mask in 0.08 ms against 0.13 ms
here, and a client expands about fifty masks a round."""

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SEED_BYTES = 32
# Every seed (self-mask b_u^r, or a pairwise key already bound to its round by HKDF) keys exactly one
# stream, so a fixed all-zero nonce/counter never repeats a (key, nonce) pair.
_NONCE = bytes(16)
# Encrypting a reused zero buffer is about 6x faster than allocating a fresh one (page faults).
_zeros = b""


def expand(seed: bytes, length: int) -> np.ndarray:
    """Return `length` uint64 words of the AES-256-CTR keystream keyed by `seed` (a read-only array)."""
    global _zeros
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if len(_zeros) < 8 * length:
        _zeros = bytes(8 * length)
    encryptor = Cipher(algorithms.AES(bytes(seed)), modes.CTR(_NONCE)).encryptor()
    stream = encryptor.update(memoryview(_zeros)[: 8 * length])
    return np.frombuffer(stream, dtype=np.uint64)
