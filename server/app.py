"""fedrec's ServerApp: reads the configuration and runs the federated training loop."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.federation import run_federation
from shared.config import FedrecConfig
from shared.data.load import load_dataset
from shared.runconfig import from_run_config


flower_log = logging.getLogger("flwr")  # streamed to `flwr run --stream` and the SuperLink log


def log_round(entry: dict) -> None:
    rmse = f"{entry['rmse']:.4f}" if "rmse" in entry else "-"
    flower_log.info("fedrec round %d: %d clients, test RMSE %s, %.2f s, %d bytes up, %d bytes down",
                    entry["round"], entry["clients"], rmse, entry["seconds"], entry["bytes_up"], entry["bytes_down"])


def build_server_app(
    config: FedrecConfig | None = None,
    n_items: int | None = None,
    on_round: Callable[[dict], None] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> ServerApp:
    """A ServerApp bound to `config`, or reading `[tool.flwr.app.config]` when run by `flwr run`."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_config = config or from_run_config(context.run_config)
        # The item catalogue is public (its size fixes the vector layout); ratings stay with the clients.
        items = n_items if n_items is not None else load_dataset(run_config).n_items
        result = run_federation(grid, run_config, items, on_round or log_round)
        flower_log.info("fedrec finished: test RMSE %.4f, MAE %.4f, %.1f s", result["rmse"], result["mae"], result["wall_seconds"])
        if on_result is not None:
            on_result(result)

    return app


app = build_server_app()
