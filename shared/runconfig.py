"""Reading FedrecConfig from Flower's run config (`[tool.flwr.app.config]`, dotted keys like `federated.rounds`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedrec.shared.config import FedrecConfig, load_config

CONFIG_FILE_KEY = "config-file"


def from_run_config(run_config: Mapping[str, Any]) -> FedrecConfig:
    """`config-file` (optional TOML path) first, then every `section.field` key; empty strings mean unset."""
    config_file = str(run_config.get(CONFIG_FILE_KEY, "") or "")
    overrides = {key: value for key, value in run_config.items() if "." in key and value != ""}
    return load_config(Path(config_file) if config_file else None, overrides)
