"""The client's side of secure aggregation: answer each stage, keep the secrets in the node's own state."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedrec.shared.config import FedrecConfig
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.client import SecAggClient
from fedrec.shared.secagg.records import flat_values, payload_records, read_payload, untag

STATE_KEY = "fedrec.secagg-state"


def _load_client(context: Context) -> SecAggClient:
    if STATE_KEY not in context.state.config_records:
        return SecAggClient()
    return SecAggClient.from_state(untag(dict(context.state.config_records[STATE_KEY])))


def respond(
    msg: Message, context: Context, config: FedrecConfig,
    compute_vector: Callable[[Message, Context, FedrecConfig], np.ndarray],
) -> RecordDict:
    """Run the requested stage; the reply holds only public keys, sealed shares, the masked vector or
    opened shares, never the plain vector."""
    request = read_payload(msg.content)
    client = _load_client(context)
    stage = request[M.STAGE]
    if stage == M.ADVERTISE:
        reply = client.advertise(request)
    elif stage == M.SHARE_KEYS:
        reply = client.share_keys(request)
    elif stage == M.MASKED_INPUT:
        reply = client.masked_input(request, compute_vector(msg, context, config))
    elif stage == M.UNMASK:
        reply = client.unmask(request)
    else:
        raise ValueError(f"unknown secure-aggregation stage {stage!r}")
    # Saved before replying: a committee member's record of what it revealed must survive a crash.
    context.state.config_records[STATE_KEY] = ConfigRecord(flat_values(client.to_state()))
    return RecordDict(payload_records(reply))
