"""Payload keys, stage names and reply checks of the secure-aggregation messages (flat dicts).

Maps travel as parallel lists: e.g. SHARE_TO[i] is the receiver of B_SHARE_CT[i] and S_SHARE_CT[i].
"""

import numpy as np

# Stages (value of STAGE in every request and reply).
ADVERTISE = "advertise"
SHARE_KEYS = "share_keys"
MASKED_INPUT = "masked_input"
UNMASK = "unmask"

# Common keys.
STAGE = "stage"
RUN_ID = "run_id"  # bytes, advertise request only
COHORT_ID = "cohort_id"  # int
INDEX = "index"  # int, the client's index in 1..n (also its Shamir x-coordinate)
ROUND = "round"  # int, masked_input and unmask
GRAPH_SEED = "graph_seed"  # int, advertise request: the public seed of the mask graph and the committee
# Share-keys request: the announced parameters travel as "param.<field>" (SecAggParams.to_payload).

# Advertise reply.
C_PK = "c_pk"  # bytes: public key for sealing shares
S_PK = "s_pk"  # bytes: public key for pairwise masks (generation 0)

# Share-keys request.
MEMBERS = "members"  # list[int]
COMMITTEE = "committee"  # list[int]
THRESHOLD = "threshold"  # int
PEER_IDS = "peer_ids"  # list[int]: clients whose c key follows (committee; all members for committee members)
PEER_C_PK = "peer_c_pk"  # list[bytes], parallel to PEER_IDS

# Share-keys reply and masked-input reply: sealed shares for the committee.
SHARE_TO = "share_to"  # list[int]
S_SHARE_CT = "s_share_ct"  # list[bytes]: shares of the next s private key
B_SHARE_CT = "b_share_ct"  # list[bytes]: shares of this round's self-mask seed
S_SHARE_HASH = "s_share_hash"  # list[bytes]: digest of each plaintext s share, so bad opened shares are spotted
B_SHARE_HASH = "b_share_hash"  # list[bytes]

# Masked-input request: the neighbours' current s public keys.
NEIGHBOUR_IDS = "neighbour_ids"  # list[int]
NEIGHBOUR_S_PK = "neighbour_s_pk"  # list[bytes]

# Masked-input reply.
MASKED = "masked"  # numpy uint64 vector y_u
S_GEN = "s_gen"  # int: generation of the s key used for the pairwise masks of this round
NEXT_S_PK = "next_s_pk"  # bytes: public key of generation S_GEN + 1
B_COMMIT = "b_commit"  # bytes: SHA-256 of b_u^r, so the server can detect a wrongly reconstructed b

# Unmask request.
SURVIVORS = "survivors"  # list[int]
DROPPED = "dropped"  # list[int]
B_FROM = "b_from"  # list[int]: senders of the sealed b shares
B_GEN = "b_gen"  # list[int]: s generation each of those senders used this round
B_CT = "b_ct"  # list[bytes]
S_FROM = "s_from"  # list[int]: senders of the sealed s shares
S_GEN_OF = "s_gen_of"  # list[int]: generation of each of those s keys
S_CT = "s_ct"  # list[bytes]

# Unmask reply (B_FROM / S_FROM again, restricted to the shares that opened).
B_SHARE = "b_share"  # list[bytes], 36-byte Shamir shares (nine GF(2^31-1) values)
S_SHARE = "s_share"  # list[bytes]
REJECTED_B = "rejected_b"  # list[int]: senders whose b share failed authentication
REJECTED_S = "rejected_s"  # list[int]


def reply_problem(r: dict, committee: list[int], s_gen: dict[int, int], length: int | None) -> str:
    """Why a client's reply is malformed for its stage ("" if it is fine); KeyError if a key is missing."""
    stage = r[STAGE]
    if stage == ADVERTISE:
        return "" if len(r[C_PK]) == len(r[S_PK]) == 32 else "bad public key"
    if stage in (SHARE_KEYS, MASKED_INPUT):
        if list(r[SHARE_TO]) != committee or len(r[S_SHARE_CT]) != len(committee) \
                or len(r[S_SHARE_HASH]) != len(committee) or any(len(h) != 32 for h in r[S_SHARE_HASH]):
            return "shares not addressed to the committee"
    if stage == MASKED_INPUT:
        y = r[MASKED]
        if not (isinstance(y, np.ndarray) and y.dtype == np.uint64 and y.ndim == 1):
            return "masked input is not a uint64 vector"
        if length is not None and y.size != length:
            return f"length {y.size}, expected {length}"
        if r[S_GEN] != s_gen[r[INDEX]] or len(r[B_SHARE_CT]) != len(committee) or len(r[NEXT_S_PK]) != 32 \
                or len(r[B_COMMIT]) != 32 or len(r[B_SHARE_HASH]) != len(committee) \
                or any(len(h) != 32 for h in r[B_SHARE_HASH]):
            return "wrong s-key generation, next s key or b shares"
    if stage == UNMASK and (len(r[B_FROM]) != len(r[B_SHARE]) or len(r[S_FROM]) != len(r[S_SHARE])):
        return "unparallel share lists"
    return ""
