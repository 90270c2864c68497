"""fedrec's ServerApp: reads the configuration and runs the federated training loop."""

from __future__ import annotations

from collections.abc import Callable

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.federation import run_federation
from shared.config import FedrecConfig
from shared.data.load import load_dataset
from shared.runconfig import from_run_config


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
        result = run_federation(grid, run_config, items, on_round)
        if on_result is not None:
            on_result(result)

    return app


app = build_server_app()
