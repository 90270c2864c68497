"""Sealing of Shamir shares between two clients with ChaCha20-Poly1305 and bound associated data."""

import hashlib
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from fedrec.shared.secagg.errors import SecAggTamperError

NONCE_BYTES = 12
NO_ROUND = -1  # s-key shares are made before the client knows the round that will use them


def share_ad(sender: int, receiver: int, cohort_id: int, round_: int, gen: int, kind: str) -> bytes:
    """Associated data that ties a sealed share to its sender, receiver, cohort, round, key generation, kind.

    `gen` is the generation of the sender's s key: for kind "s" the key being shared, for kind "b" the
    key the sender used for its pairwise masks in that round (so a committee member can tell which
    s-key share must never be revealed together with this b share).
    """
    return b"fedrec-secagg-ad|" + struct.pack(">5q", sender, receiver, cohort_id, round_, gen) + kind.encode()


def share_digest(plaintext_share: bytes, associated_data: bytes) -> bytes:
    """SHA-256 of a plaintext share bound to the same fields as its sealing: the dealer publishes it, so the
    server can tell a wrong opened share from a right one (a share is a uniform 521-bit value: its digest
    reveals nothing usable about it)."""
    return hashlib.sha256(b"fedrec-secagg-share-digest|" + associated_data + b"|" + plaintext_share).digest()


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """nonce || ChaCha20-Poly1305(key, nonce, plaintext, associated_data) with a random nonce."""
    nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: a key seals only a few hundred shares
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, associated_data)


def open_(key: bytes, ciphertext: bytes, associated_data: bytes, *, sender: int = -1,
          receiver: int = -1, kind: str = "") -> bytes:
    """Inverse of seal; a failed authentication raises SecAggTamperError naming the share."""
    try:
        return ChaCha20Poly1305(key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], associated_data)
    except (InvalidTag, ValueError):
        raise SecAggTamperError(
            f"sealed {kind!r} share from client {sender} to client {receiver} failed authentication "
            "(tampered, misrouted or replayed)",
            sender, receiver, kind,
        ) from None
