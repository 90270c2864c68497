"""fedrec's ClientApp: trains on its own ratings and replies only with its contribution to the sum."""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp

from fedrec.client.data import file_data, partition_data, with_stored_feedback
from fedrec.client.state import UserStateStore, run_identity, save_served_model
from fedrec.shared import mf, protocol
from fedrec.shared.config import FedrecConfig
from fedrec.shared.federated import ClientData, ClientTrainer
from fedrec.shared.federated_implicit import ImplicitClientTrainer
from fedrec.shared.runconfig import from_run_config
from fedrec.client.secure import client_policy, respond
from fedrec.shared.secagg.errors import SecAggError, SecAggRefusal

DATA_FILE, TEST_FILE, STATE_DIR = protocol.NODE_DATA_FILE, protocol.NODE_TEST_FILE, protocol.NODE_STATE_DIR
RATING_MIN, RATING_MAX, ON_BAD_ROWS = protocol.NODE_RATING_MIN, protocol.NODE_RATING_MAX, protocol.NODE_ON_BAD_ROWS
ERROR_CODE = 4100  # fedrec's error replies (Flower's own codes are below 100)
log = logging.getLogger("fedrec.client")


@functools.lru_cache(maxsize=8)
def _server_settings(settings_json: str) -> FedrecConfig:
    """The server's settings, validated once per distinct text (every message of a run carries the same);
    the result is shared, so it is only ever read or model_copy'd, never changed in place."""
    return FedrecConfig.model_validate_json(settings_json)


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
        server = _server_settings(settings)
        # What counts as a positive is the federation's choice (it fixes the vectors' meaning); the data's
        # location and scale stay the client's own.
        data = config.data.model_copy(update={"feedback": server.data.feedback,
                                              "positive_threshold": server.data.positive_threshold})
        config = config.model_copy(update={"model": server.model, "federated": server.federated, "eval": server.eval,
                                           "data": data})
    return config


def client_data(msg: Message, context: Context, config: FedrecConfig,
                state_root: Path | None = None) -> tuple[ClientData, int, Path | None]:
    """(this client's ratings, the seed of its initial user factors, its state folder); in simulation the
    state folder is STATE_ROOT/client-K when a root is given."""
    node = context.node_config
    if DATA_FILE in node:
        train_file = Path(str(node[DATA_FILE]))
        test_file = Path(str(node[TEST_FILE])) if node.get(TEST_FILE) else None
        catalogue = tuple(msg.content.config_records[protocol.CONFIG][protocol.ITEMS])
        seed = int.from_bytes(hashlib.sha256(str(train_file.resolve()).encode()).digest()[:4], "big")
        state_dir = Path(str(node[STATE_DIR])) if node.get(STATE_DIR) else None
        return file_data(config, train_file, test_file, catalogue), seed, state_dir
    partition_id = int(node["partition-id"])
    state_dir = state_root / f"client-{partition_id}" if state_root is not None else None
    return partition_data(config, partition_id, int(node["num-partitions"])), partition_id, state_dir


def compute_vector(msg: Message, context: Context, config: FedrecConfig, state_root: Path | None = None) -> np.ndarray:
    """The float vector this client contributes for the message's task (stats, train or evaluate); under
    differential privacy (`dp_clip` in the message) each user's contribution is clipped to that norm."""
    settings = msg.content.config_records[protocol.CONFIG]
    clip = float(settings[protocol.DP_CLIP]) if protocol.DP_CLIP in settings else None
    data, seed, state_dir = client_data(msg, context, config, state_root)
    catalogue = tuple(settings[protocol.ITEMS]) if protocol.ITEMS in settings else tuple(data.train.item_ids)
    data = with_stored_feedback(config, data, state_dir, catalogue)  # the service's feedback trains too
    if config.data.feedback == "implicit":
        return implicit_vector(msg, settings, data, config)
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
        return trainer.stats(clip)
    arrays = msg.content.array_records[protocol.ITEM]
    item = mf.ItemSide(arrays["q"].numpy().copy(), arrays["bi"].numpy().copy(), float(settings["mu"]))
    if task == protocol.TASK_EVALUATE:
        known = arrays["known"].numpy().astype(bool)
        save_served_model(state_dir, item, known, catalogue, data.train, config)  # the newest model, to serve
        return trainer.evaluate(item, known, clip)
    if task != protocol.TASK_TRAIN:
        raise ValueError(f"unknown task {task!r}")
    parts = []
    if settings["evaluate"]:  # the received model, evaluated before training changes the user side
        parts.append(trainer.evaluate(item, arrays["known"].numpy().astype(bool)))
    share = float(settings[protocol.DP_FACTOR_SHARE]) if protocol.DP_FACTOR_SHARE in settings else None
    parts.append(trainer.train(item, clip, share))
    store.record(round_number, before, trainer.state(), data.train.user_ids)
    return np.concatenate(parts)


def implicit_vector(msg: Message, settings, data: ClientData, config: FedrecConfig) -> np.ndarray:
    """The implicit model's vector: users are solved exactly each round, so no user state is kept or served."""
    trainer = ImplicitClientTrainer(data, config)
    task = settings["task"]
    if task == protocol.TASK_STATS:
        return trainer.stats()
    arrays = msg.content.array_records[protocol.ITEM]
    item = mf.ItemSide(arrays["q"].numpy(), arrays["bi"].numpy(), 0.0)
    if task == protocol.TASK_EVALUATE:
        return trainer.evaluate(item, arrays["known"].numpy().astype(bool))
    if task != protocol.TASK_TRAIN:
        raise ValueError(f"unknown task {task!r}")
    parts = [trainer.evaluate(item, arrays["known"].numpy().astype(bool))] if settings["evaluate"] else []
    return np.concatenate([*parts, trainer.train(item)])


def wire_vector(vector: np.ndarray) -> np.ndarray:
    """The plain reply as sent: float32 when every value is exactly a float32, else the float64 vector.

    A train vector of item gradients is computed in float32 (the model's precision) and only widened to
    float64, so it travels in half the bytes; the server widens it back before summing (read_vector), which
    gives the same float64 values and so the same sum to the bit. Sums and counts that float32 cannot hold
    exactly (statistics, evaluation, DP-clipped or delta vectors) stay float64."""
    with np.errstate(over="ignore"):  # a value past float32's range becomes inf, unequal: float64 is sent
        narrow = vector.astype(np.float32)
    return narrow if np.array_equal(narrow, vector) else vector


def public_reason(stage: str, exc: Exception) -> str:
    """What the server may learn of a failure: the stage and the kind, never a value or index of the vector."""
    kind = exc.public() if isinstance(exc, SecAggError) else f"{type(exc).__name__} (details in the client's log)"
    return f"{stage}: {kind}"


class _RebuiltClientApp(ClientApp):
    """A ClientApp that pickles as the arguments that build it. Flower's simulation engine sends the app to a
    worker with every message; pickled by value (its handlers are closures) it cost about 2 ms of the
    engine's time per message, against well under 0.1 ms for the arguments."""

    def __init__(self, config: FedrecConfig | None, state_root: Path | None) -> None:
        super().__init__()
        self._build_args = (config.model_dump_json() if config is not None else None,
                            str(state_root) if state_root is not None else None)

    def __reduce__(self):
        return _client_app_from_args, self._build_args


@functools.lru_cache(maxsize=4)
def _client_app_from_args(config_json: str | None, state_root: str | None) -> ClientApp:
    """The app a worker unpickles: built once per distinct arguments in that process, then reused."""
    config = FedrecConfig.model_validate_json(config_json) if config_json is not None else None
    return build_client_app(config, Path(state_root) if state_root is not None else None)


def build_client_app(config: FedrecConfig | None = None, state_root: Path | None = None) -> ClientApp:
    """A ClientApp bound to `config` (simulation), or reading `[tool.flwr.app.config]` (flwr run);
    simulated clients keep their state in STATE_ROOT/client-K when `state_root` is given."""
    app = _RebuiltClientApp(config, state_root)
    vector = functools.partial(compute_vector, state_root=state_root)

    @app.train()
    def handle(msg: Message, context: Context) -> Message:
        stage = str(msg.content.config_records[protocol.CONFIG].get("stage", "?"))
        try:
            own = config or from_run_config(context.run_config)
            policy = client_policy(context, own)  # from the client's own settings, before the server's apply
            run_config = effective_config(msg, context, config)
            if stage == protocol.STAGE_PLAIN:
                if policy.require_secure:
                    raise SecAggRefusal("this client requires secure aggregation and sends no plain vector")
                content = RecordDict({protocol.REPLY: ArrayRecord({"vector": Array(wire_vector(vector(msg, context, run_config)))})})
            else:
                content = respond(msg, context, run_config, policy, vector)
        except Exception as exc:  # the full story stays here; the server gets the stage and the kind only
            log.error("%s failed: %s", stage, exc, exc_info=not isinstance(exc, SecAggError))
            return Message(error=Error(code=ERROR_CODE, reason=public_reason(stage, exc)), reply_to=msg)
        return Message(content=content, reply_to=msg)

    return app


app = build_client_app()
