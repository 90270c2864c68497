"""X25519 key pairs and HKDF-SHA256 key agreement, with the info strings the protocol binds keys to."""

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

KEY_BYTES = 32


def generate() -> X25519PrivateKey:
    """A fresh X25519 private key from the OS random generator."""
    return X25519PrivateKey.generate()


def public_raw(private_key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of the public key of `private_key`."""
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_raw(private_key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of a private key (for Shamir sharing and the client's persistent state)."""
    return private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def private_from_raw(raw: bytes) -> X25519PrivateKey:
    """Inverse of private_raw."""
    return X25519PrivateKey.from_private_bytes(bytes(raw))


def public_from_raw(raw: bytes) -> X25519PublicKey:
    """A public key from its 32 raw bytes."""
    return X25519PublicKey.from_public_bytes(bytes(raw))


def agree(private_key: X25519PrivateKey, peer_public_raw: bytes, info: bytes) -> bytes:
    """32-byte key = HKDF-SHA256(X25519(private_key, peer), info); symmetric in the two parties."""
    shared = private_key.exchange(public_from_raw(peer_public_raw))
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def _ints(*values: int) -> bytes:
    return struct.pack(f">{len(values)}q", *values)


def share_info(run_id: bytes, cohort_id: int) -> bytes:
    """HKDF info of the key that seals shares between two clients of one cohort."""
    return b"fedrec-secagg-share|" + run_id + b"|" + _ints(cohort_id)


def pair_info(run_id: bytes, cohort_id: int, round_: int, u: int, v: int) -> bytes:
    """HKDF info of the pairwise mask seed of u and v in one round (order of u, v irrelevant)."""
    return b"fedrec-secagg-pair|" + run_id + b"|" + _ints(cohort_id, round_, min(u, v), max(u, v))
