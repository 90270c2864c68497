"""fedrec's ServerApp: reads the configuration and runs the federated training loop."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedrec.server.federation import run_federation
from fedrec.server.state import Checkpoint
from fedrec.shared import atomic, metrics
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.load import load_dataset
from fedrec.shared.flower_waits import shorten_object_pull_retries
from fedrec.shared.runconfig import from_run_config

RUN_SPEC_KEY = "fedrec-run"  # run-config key naming the JSON spec that `fedrec server` writes
flower_log = logging.getLogger("flwr")  # streamed to `flwr run --stream` and the SuperLink log


def log_round(entry: dict) -> None:
    note = f" SKIPPED ({entry['skipped']})" if "skipped" in entry else ""
    flower_log.info("fedrec round %d: %d clients, %s, %.2f s, %d bytes up, %d bytes down%s", entry["round"],
                    entry["clients"], metrics.round_metric(entry), entry["seconds"], entry["bytes_up"], entry["bytes_down"], note)


def run_deployment(grid: Grid, spec_path: Path) -> None:
    """The run `fedrec server` submitted: its spec names the config, catalogue, state folder and outputs."""
    shorten_object_pull_retries()  # each reply's pull would otherwise often wait a whole second
    spec = json.loads(spec_path.read_text())
    config = FedrecConfig.model_validate(spec["config"])
    catalogue = json.loads(Path(spec["catalogue"]).read_text())
    state_dir = Path(spec["state_dir"])
    checkpoint = Checkpoint(state_dir)
    result = run_federation(grid, config, len(catalogue), log_round, catalogue=catalogue,
                            checkpoint=checkpoint, resume=spec["resume"] and checkpoint.exists(),
                            run_id=spec.get("run_id"))
    item = result.pop("item_model")
    atomic.write_files({  # both or neither
        state_dir / "item-model.npz": atomic.npz_bytes(q=item["q"], bi=item["bi"], mu=item["mu"], items=np.array(catalogue)),
        Path(spec["json"]): atomic.json_bytes({**result, "config": spec["config"]}),
    })
    flower_log.info("fedrec finished: %s", metrics.headline(result, config.eval.top_k))


def build_server_app(
    config: FedrecConfig | None = None,
    n_items: int | None = None,
    on_round: Callable[[dict], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
    n_users: int | None = None,
) -> ServerApp:
    """A ServerApp bound to `config` (simulation), or reading its run config (`flwr run`, `fedrec server`)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if context.run_config.get(RUN_SPEC_KEY):
            run_deployment(grid, Path(str(context.run_config[RUN_SPEC_KEY])))
            return
        run_config = config or from_run_config(context.run_config)
        # The item catalogue is public (its size fixes the vector layout); ratings stay with the clients.
        if n_items is None:
            dataset = load_dataset(run_config)
            items, users = dataset.n_items, dataset.n_users
        else:
            items, users = n_items, n_users
        result = run_federation(grid, run_config, items, on_round or log_round, n_users=users)
        flower_log.info("fedrec finished: %s, %.1f s", metrics.headline(result, run_config.eval.top_k), result["wall_seconds"])
        if on_result is not None:
            on_result(result)

    return app


app = build_server_app()
