"""fedrec's ClientApp: trains on its own ratings and replies only with its contribution to the sum."""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from client.data import partition_data
from shared import mf, protocol
from shared.config import FedrecConfig
from shared.federated import ClientTrainer
from shared.runconfig import from_run_config

STATE_KEY = "fedrec.user-state"


def _load_state(context: Context) -> dict[str, np.ndarray] | None:
    if STATE_KEY not in context.state.array_records:
        return None
    return {key: array.numpy() for key, array in context.state.array_records[STATE_KEY].items()}


def _save_state(context: Context, state: dict[str, np.ndarray]) -> None:
    context.state.array_records[STATE_KEY] = ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in state.items()})


def compute_vector(msg: Message, context: Context, config: FedrecConfig) -> np.ndarray:
    """The float vector this client contributes for the message's task (stats, train or evaluate)."""
    settings = msg.content.config_records[protocol.CONFIG]
    partition_id = int(context.node_config["partition-id"])
    data = partition_data(config, partition_id, int(context.node_config["num-partitions"]))
    trainer = ClientTrainer(data, config, partition_id, _load_state(context))
    task = settings["task"]
    if task == protocol.TASK_STATS:
        vector = trainer.stats()
    else:
        arrays = msg.content.array_records[protocol.ITEM]
        item = mf.ItemSide(arrays["q"].numpy().copy(), arrays["bi"].numpy().copy(), float(settings["mu"]))
        if task == protocol.TASK_TRAIN:
            parts = []
            if settings["evaluate"]:  # the received model, evaluated before training changes the user side
                parts.append(trainer.evaluate(item, arrays["known"].numpy().astype(bool)))
            vector = np.concatenate([*parts, trainer.train(item)])
        elif task == protocol.TASK_EVALUATE:
            vector = trainer.evaluate(item, arrays["known"].numpy().astype(bool))
        else:
            raise ValueError(f"unknown task {task!r}")
    _save_state(context, trainer.state())
    return vector


def build_client_app(config: FedrecConfig | None = None) -> ClientApp:
    """A ClientApp bound to `config`, or reading `[tool.flwr.app.config]` when run by `flwr run`."""
    app = ClientApp()

    @app.train()
    def handle(msg: Message, context: Context) -> Message:
        run_config = config or from_run_config(context.run_config)
        stage = msg.content.config_records[protocol.CONFIG]["stage"]
        if stage == protocol.STAGE_PLAIN:
            vector = compute_vector(msg, context, run_config)
            content = RecordDict({protocol.REPLY: ArrayRecord({"vector": Array(vector)})})
        else:
            from client.secure import respond

            content = respond(msg, context, run_config, compute_vector)
        return Message(content=content, reply_to=msg)

    return app


app = build_client_app()
