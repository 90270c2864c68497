"""The `fedrec` command line: parses options into the one configuration model and dispatches to each job."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fedrec.shared import processes
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
    add_feedback_options(group)


def add_feedback_options(group) -> None:
    """--feedback and --positive-threshold (data settings every training command takes)."""
    group.add_argument("--feedback", dest="data.feedback", choices=["explicit", "implicit"],
                       help="explicit ratings (default), or implicit interactions trained for ranking (WRMF)")
    group.add_argument("--positive-threshold", dest="data.positive_threshold", type=float, metavar="X",
                       help="implicit feedback: interactions with value >= X are positives, the rest are dropped "
                            "(4 binarises MovieLens); default: every interaction is a positive")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--factors", dest="model.factors", type=int, metavar="K")
    group.add_argument("--reg", dest="model.reg", type=float, metavar="X")
    group.add_argument("--bias-reg", dest="model.bias_reg", type=float, metavar="X")
    group.add_argument("--seed", dest="model.seed", type=int, metavar="N", help="seed of the initial factors")
    group.add_argument("--alpha", dest="model.alpha", type=float, metavar="X",
                       help="implicit feedback: confidence of a positive is 1 + X (default 10)")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE.toml", help="configuration file (see README)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override any configuration field, e.g. --set synthetic.n_users=500 (repeatable)")


def add_dp_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("differential privacy (user level, on every decoded sum)")
    group.add_argument("--dp-epsilon", dest="dp.epsilon", type=float, metavar="E",
                       help="privacy budget; fedrec picks the noise that spends at most E over the planned rounds")
    group.add_argument("--dp-delta", dest="dp.delta", type=float, metavar="D", help="default 1 / number of users")
    group.add_argument("--dp-clip", dest="dp.clip", type=float, metavar="C",
                       help="L2 bound on one user's contribution to a training update (default 1.0)")


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
    from fedrec.client import serve_cli
    from fedrec.server import cli as server_cli
    from fedrec.simulations import audit, compare, loop
    from fedrec.simulations import run as simulate

    return {
        "audit": ("attack what a curious server holds, plain, secure-sum and DP: a table, JSON and a plot", audit.register),
        "baseline": ("train the centralised MF baseline and print its metrics", baseline.register),
        "certs": ("make TLS certificates and SuperNode keys for a deployment", certs.register),
        "compare": ("compare federated and centralised training: a report with tables and plots", compare.register),
        "client": ("join a fedrec server as one data holder, training on a local ratings file", client_cli.register),
        "data": ("fetch, check, split and partition rating data", data.register),
        "loop": ("simulate the closed loop of recommending, clicks and federated training over time", loop.register),
        "server": ("start a fedrec server (a Flower SuperLink) and run federated training", server_cli.register),
        "recommend": ("top-N recommendations with reasons for one of a client's users", serve_cli.register_recommend),
        "serve": ("a client's recommendation and feedback service over HTTP", serve_cli.register_serve),
        "simulate": ("run a federated simulation on Flower's simulation engine", simulate.register),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedrec", description="Federated, privacy-preserving MF recommender.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (summary, register) in _commands().items():
        register(sub.add_parser(name, help=summary, description=summary))
    return parser


def _stop_now(code: int) -> None:
    """After an interrupt: stop Ray if this process started it, and if a worker thread would keep the
    process alive (Flower's simulation runs the ServerApp in a non-daemon thread that keeps training and
    sleeping), exit at once. Outputs are written atomically, so nothing is left half-written."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    if any(thread.is_alive() and not thread.daemon for thread in threading.enumerate()
           if thread is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    processes.handle_sigterm()
    try:
        return int(args.handler(args) or 0)
    except FedrecError as exc:
        print(f"fedrec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        code = processes.exit_code(exc)
        print(f"fedrec: interrupted ({'SIGTERM' if code == 143 else 'Ctrl-C'}); stopped", file=sys.stderr)
        _stop_now(code)
        return code


if __name__ == "__main__":
    sys.exit(main())
