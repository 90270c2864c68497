"""The `fedrec` command line: parses options into the one configuration model and dispatches to each job."""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedrec.shared.config import FedrecConfig, load_config
from fedrec.shared.errors import ConfigError, FedrecError

# Every option whose dest contains a dot overrides that configuration field (dest "model.factors" -> model.factors).


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--dataset", dest="data.dataset", metavar="NAME",
                        help="synthetic (default), ml-100k, ml-1m or ml-latest-small")
    source.add_argument("--train", dest="data.train", metavar="FILE", help="training ratings CSV/TSV (with --test)")
    group.add_argument("--test", dest="data.test", metavar="FILE", help="test ratings CSV/TSV (with --train)")
    group.add_argument("--data-dir", dest="data.data_dir", metavar="DIR",
                       help="MovieLens folder: verified and used offline if it holds the files, else downloaded into")
    group.add_argument("--rating-min", dest="data.rating_min", type=float, metavar="X")
    group.add_argument("--rating-max", dest="data.rating_max", type=float, metavar="X")
    group.add_argument("--on-bad-rows", dest="data.on_bad_rows", choices=["fail", "drop"],
                       help="stop on bad rows with a report (default), or drop them and report")
    group.add_argument("--split", dest="data.split", choices=["random", "per-user", "temporal"])
    group.add_argument("--test-fraction", dest="data.test_fraction", type=float, metavar="F")
    group.add_argument("--leave-k", dest="data.leave_k", type=int, metavar="K")
    group.add_argument("--split-seed", dest="data.seed", type=int, metavar="N")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--factors", dest="model.factors", type=int, metavar="K")
    group.add_argument("--reg", dest="model.reg", type=float, metavar="X")
    group.add_argument("--bias-reg", dest="model.bias_reg", type=float, metavar="X")
    group.add_argument("--seed", dest="model.seed", type=int, metavar="N", help="seed of the initial factors")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE.toml", help="configuration file (see README)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any configuration field, e.g. --set synthetic.n_users=500 (repeatable)")


def _parse_set(items: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected SECTION.FIELD=VALUE, e.g. model.factors=16")
        try:
            overrides[key.strip()] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            overrides[key.strip()] = text  # a bare word is a string
    return overrides


def parse_address(address: str, option: str) -> tuple[str, int]:
    """HOST:PORT (a port 1..65535), or a ConfigError naming `option`."""
    host, _, port = address.rpartition(":")
    if not host.strip() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{option} {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9092")
    return host, int(port)


def config_from_args(args: argparse.Namespace) -> FedrecConfig:
    """File first, then --set, then the dedicated options: the most specific wins."""
    overrides = _parse_set(args.set)
    overrides.update({key: value for key, value in vars(args).items() if "." in key and value is not None})
    if overrides.get("data.train") is not None:
        overrides.setdefault("data.dataset", None)
    return load_config(args.config, overrides)


def _commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]]:
    # Each job module keeps its heavy imports (Flower, Ray) inside its handler, so building the parser is cheap.
    from fedrec.shared.jobs import baseline, certs, data
    from fedrec.client import cli as client_cli
    from fedrec.server import cli as server_cli
    from fedrec.simulations import compare
    from fedrec.simulations import run as simulate

    return {
        "baseline": ("train the centralised MF baseline and print its metrics", baseline.register),
        "certs": ("make TLS certificates and SuperNode keys for a deployment", certs.register),
        "compare": ("compare federated and centralised training: a report with tables and plots", compare.register),
        "client": ("join a fedrec server as one data holder, training on a local ratings file", client_cli.register),
        "data": ("fetch, check, split and partition rating data", data.register),
        "server": ("start a fedrec server (a Flower SuperLink) and run federated training", server_cli.register),
        "simulate": ("run a federated simulation on Flower's simulation engine", simulate.register),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedrec", description="Federated, privacy-preserving MF recommender.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, register) in _commands().items():
        register(sub.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except FedrecError as exc:
        print(f"fedrec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fedrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
