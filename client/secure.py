"""The client's side of secure aggregation: answer each stage, keep the secrets in the node's own state."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fedrec.shared import protocol
from fedrec.shared.config import FedrecConfig, SecAggConfig
from fedrec.shared.secagg import messages as M
from fedrec.shared.secagg.client import SecAggClient
from fedrec.shared.secagg.params import ClientPolicy, policy_from_config
from fedrec.shared.secagg.records import flat_values, payload_records, read_payload, untag

STATE_KEY = "fedrec.secagg-state"


def client_policy(context: Context, own_config: FedrecConfig) -> ClientPolicy:
    """This client's privacy policy: a deployed client's from its node config (set by `fedrec client`), a
    simulated client's from the configuration it was built with. Never from the server's messages."""
    node = context.node_config
    if protocol.NODE_DATA_FILE in node:
        defaults = SecAggConfig()
        values = {field: node.get(key, getattr(defaults, field)) for field, key in protocol.NODE_POLICY.items()}
        if values["require_secure"] is None:
            values["require_secure"] = True  # a deployed client requires it unless told otherwise
        own_config = own_config.model_copy(update={"secagg": SecAggConfig.model_validate(values)})
    return policy_from_config(own_config)


def _load_client(context: Context, policy: ClientPolicy) -> SecAggClient:
    if STATE_KEY not in context.state.config_records:
        return SecAggClient(policy)
    return SecAggClient.from_state(untag(dict(context.state.config_records[STATE_KEY])), policy)


def respond(
    msg: Message, context: Context, config: FedrecConfig, policy: ClientPolicy,
    compute_vector: Callable[[Message, Context, FedrecConfig], np.ndarray],
) -> RecordDict:
    """Run the requested stage; the reply holds only public keys, sealed shares, the masked vector or
    opened shares, never the plain vector."""
    request = read_payload(msg.content)
    client = _load_client(context, policy)
    stage = request[M.STAGE]
    if stage == M.ADVERTISE:
        reply = client.advertise(request)
    elif stage == M.SHARE_KEYS:
        reply = client.share_keys(request)
    elif stage == M.MASKED_INPUT:
        task = msg.content.config_records[protocol.CONFIG]
        noise = (float(task[protocol.DP_NOISE]), float(task[protocol.DP_CLIP])) if protocol.DP_NOISE in task else None
        reply = client.masked_input(request, compute_vector(msg, context, config), noise)
    elif stage == M.UNMASK:
        reply = client.unmask(request)
    else:
        raise ValueError(f"unknown secure-aggregation stage {stage!r}")
    # Saved before replying: a committee member's record of what it revealed must survive a crash.
    context.state.config_records[STATE_KEY] = ConfigRecord(flat_values(client.to_state()))
    return RecordDict(payload_records(reply))
