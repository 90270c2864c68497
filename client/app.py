"""fedrec's ClientApp: trains on its own ratings and replies only with its contribution to the sum."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedrec.client.data import file_data, partition_data
from fedrec.client.state import UserStateStore, run_identity
from fedrec.shared import mf, protocol
from fedrec.shared.config import FedrecConfig
from fedrec.shared.federated import ClientData, ClientTrainer
from fedrec.shared.runconfig import from_run_config

DATA_FILE, TEST_FILE, STATE_DIR = protocol.NODE_DATA_FILE, protocol.NODE_TEST_FILE, protocol.NODE_STATE_DIR
RATING_MIN, RATING_MAX, ON_BAD_ROWS = protocol.NODE_RATING_MIN, protocol.NODE_RATING_MAX, protocol.NODE_ON_BAD_ROWS


def effective_config(msg: Message, context: Context, base: FedrecConfig | None) -> FedrecConfig:
    """The model, training and evaluation settings come from the server; the data settings are the client's."""
    config = base or from_run_config(context.run_config)
    node = context.node_config
    data_updates = {key: node[name] for key, name in
                    (("rating_min", RATING_MIN), ("rating_max", RATING_MAX), ("on_bad_rows", ON_BAD_ROWS)) if name in node}
    if data_updates:
        config = config.model_copy(update={"data": config.data.model_copy(update=data_updates)})
    settings = msg.content.config_records[protocol.CONFIG].get(protocol.SETTINGS)
    if settings:
        server = FedrecConfig.model_validate_json(settings)
        config = config.model_copy(update={"model": server.model, "federated": server.federated, "eval": server.eval})
    return config


def client_data(msg: Message, context: Context, config: FedrecConfig) -> tuple[ClientData, int, Path | None]:
    """(this client's ratings, the seed of its initial user factors, its state folder)."""
    node = context.node_config
    if DATA_FILE in node:
        train_file = Path(str(node[DATA_FILE]))
        test_file = Path(str(node[TEST_FILE])) if node.get(TEST_FILE) else None
        catalogue = tuple(msg.content.config_records[protocol.CONFIG][protocol.ITEMS])
        seed = int.from_bytes(hashlib.sha256(str(train_file.resolve()).encode()).digest()[:4], "big")
        state_dir = Path(str(node[STATE_DIR])) if node.get(STATE_DIR) else None
        return file_data(config, train_file, test_file, catalogue), seed, state_dir
    partition_id = int(node["partition-id"])
    return partition_data(config, partition_id, int(node["num-partitions"])), partition_id, None


def compute_vector(msg: Message, context: Context, config: FedrecConfig) -> np.ndarray:
    """The float vector this client contributes for the message's task (stats, train or evaluate)."""
    settings = msg.content.config_records[protocol.CONFIG]
    data, seed, state_dir = client_data(msg, context, config)
    catalogue = tuple(settings[protocol.ITEMS]) if protocol.ITEMS in settings else None
    identity = run_identity(str(settings.get(protocol.RUN_ID, "")), catalogue, data.train.n_items, config.model.factors)
    store = UserStateStore(context, state_dir, identity)
    task, round_number = settings["task"], int(settings["round"])
    # Training round N starts from the state before round N; the model after round M is evaluated with the
    # state the client had after round M, i.e. before round M+1.
    fresh = ClientTrainer(data, config, seed).state()
    start = store.start_of(round_number if task == protocol.TASK_TRAIN else round_number + 1, fresh, data.train.user_ids)
    before = {key: value.copy() for key, value in start.items()}
    trainer = ClientTrainer(data, config, seed, start)
    if task == protocol.TASK_STATS:
        return trainer.stats()
    arrays = msg.content.array_records[protocol.ITEM]
    item = mf.ItemSide(arrays["q"].numpy().copy(), arrays["bi"].numpy().copy(), float(settings["mu"]))
    if task == protocol.TASK_EVALUATE:
        return trainer.evaluate(item, arrays["known"].numpy().astype(bool))
    if task != protocol.TASK_TRAIN:
        raise ValueError(f"unknown task {task!r}")
    parts = []
    if settings["evaluate"]:  # the received model, evaluated before training changes the user side
        parts.append(trainer.evaluate(item, arrays["known"].numpy().astype(bool)))
    parts.append(trainer.train(item))
    store.record(round_number, before, trainer.state(), data.train.user_ids)
    return np.concatenate(parts)


def build_client_app(config: FedrecConfig | None = None) -> ClientApp:
    """A ClientApp bound to `config` (simulation), or reading `[tool.flwr.app.config]` (flwr run)."""
    app = ClientApp()

    @app.train()
    def handle(msg: Message, context: Context) -> Message:
        run_config = effective_config(msg, context, config)
        stage = msg.content.config_records[protocol.CONFIG]["stage"]
        if stage == protocol.STAGE_PLAIN:
            vector = compute_vector(msg, context, run_config)
            content = RecordDict({protocol.REPLY: ArrayRecord({"vector": Array(vector)})})
        else:
            from fedrec.client.secure import respond

            content = respond(msg, context, run_config, compute_vector)
        return Message(content=content, reply_to=msg)

    return app


app = build_client_app()
