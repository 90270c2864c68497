"""The simulated ClientApp travels to the engine's workers as the arguments that build it, and rebuilds the same."""

from __future__ import annotations

import pickle
from pathlib import Path

from fedrec.client.app import build_client_app
from fedrec.shared.config import FedrecConfig, load_config


def config() -> FedrecConfig:
    return load_config(None, {"synthetic.n_users": 40, "synthetic.n_items": 30, "synthetic.n_ratings": 600,
                              "model.factors": 3, "federated.num_clients": 2, "federated.secure": True,
                              "dp.epsilon": 8.0, "data.data_dir": "/nowhere/movielens"})


def test_the_app_pickles_small_and_rebuilds_with_the_same_configuration(tmp_path):
    app = build_client_app(config(), tmp_path / "clients")
    blob = pickle.dumps(app)  # the standard pickle cannot pickle the handlers' closures: only the arguments travel
    assert len(blob) < 4000
    rebuilt = pickle.loads(blob)
    assert rebuilt._build_args == app._build_args
    assert FedrecConfig.model_validate_json(rebuilt._build_args[0]) == config()
    assert Path(rebuilt._build_args[1]) == tmp_path / "clients"
    assert pickle.loads(blob) is rebuilt  # built once per worker process, then reused


def test_the_rebuilt_app_answers_a_message_as_the_original_does():
    from fedrec.server.federation import run_federation
    from fedrec.server.inprocess import InProcessGrid

    cfg = config().model_copy(update={"federated": config().federated.model_copy(update={"rounds": 1, "secure": False})})
    cfg = cfg.model_copy(update={"dp": cfg.dp.model_copy(update={"epsilon": None}),
                                 "secagg": cfg.secagg.model_copy(update={"require_secure": False})})
    first, second = InProcessGrid(cfg, 2), InProcessGrid(cfg, 2)
    second.app = pickle.loads(pickle.dumps(build_client_app(cfg)))
    a = run_federation(first, cfg, n_items=30, run_id="r")
    b = run_federation(second, cfg, n_items=30, run_id="r")
    assert a["rmse"] == b["rmse"] and a["history"][-1]["clients"] == 2
