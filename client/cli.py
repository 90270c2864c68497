"""`fedrec client`: one data holder joins a fedrec server, training on its own ratings file alone."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from fedrec.shared import cli, processes
from fedrec.shared import protocol as keys
from fedrec.shared.data.load import read_files
from fedrec.shared.errors import ConfigError, FedrecError


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    parser.add_argument("--server", required=True, metavar="HOST:PORT", help="the fedrec server's address")
    parser.add_argument("--data", required=True, type=Path, metavar="FILE", help="this client's training ratings")
    parser.add_argument("--test", type=Path, metavar="FILE", help="this client's held-out ratings (for evaluation)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="where the client keeps its users' factors (default: FILE.fedrec-state beside --data)")
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument("--certs", type=Path, metavar="DIR", help="folder from `fedrec certs` (TLS, the default)")
    security.add_argument("--insecure", action="store_true", help="plain text, no authentication (testing only)")
    parser.add_argument("--key", type=Path, metavar="FILE", help="this client's private key from `fedrec certs`")
    parser.add_argument("--rating-min", dest="data.rating_min", type=float, metavar="X")
    parser.add_argument("--rating-max", dest="data.rating_max", type=float, metavar="X")
    parser.add_argument("--on-bad-rows", dest="data.on_bad_rows", choices=["fail", "drop"])
    parser.add_argument("--port", type=int, default=0, metavar="PORT",
                        help="local port of this client's SuperNode (default: any free port)")
    parser.set_defaults(handler=run)


def _quoted(path: Path) -> str:
    text = str(path.resolve())
    if "'" in text:
        raise ConfigError(f"paths with a single quote are not supported by Flower's node config: {text}")
    return f"'{text}'"


def supernode_command(args: argparse.Namespace, state_dir: Path, config) -> list[str]:
    node_config = [f"{keys.NODE_DATA_FILE}={_quoted(args.data)}", f"{keys.NODE_STATE_DIR}={_quoted(state_dir)}",
                   f"{keys.NODE_ON_BAD_ROWS}='{config.data.on_bad_rows}'"]
    if args.test is not None:
        node_config.append(f"{keys.NODE_TEST_FILE}={_quoted(args.test)}")
    for name, value in ((keys.NODE_RATING_MIN, config.data.rating_min), (keys.NODE_RATING_MAX, config.data.rating_max)):
        if value is not None:
            node_config.append(f"{name}={float(value)}")
    command = [sys.executable, "-m", "fedrec.client.supernode", "--superlink", args.server,
               "--port", str(args.port or processes.free_port()), "--node-config", " ".join(node_config)]
    if args.insecure:
        return [*command, "--insecure"]
    if args.key is None:
        raise ConfigError("--certs needs --key FILE: this client's private key (client-K.key from `fedrec certs`)")
    for needed in (args.certs / "ca.crt", args.key):
        if not needed.is_file():
            raise ConfigError(f"{needed} not found (make the files with `fedrec certs --out {args.certs}`)")
    return [*command, "--root-certificates", str(args.certs / "ca.crt"), "--auth-supernode-private-key", str(args.key)]


def run(args: argparse.Namespace) -> int:
    cli.parse_address(args.server, "--server")  # a typo here would otherwise leave the SuperNode retrying forever
    config = cli.config_from_args(args)
    # Validate before joining: a client with bad data never takes part (read_files raises a DataError).
    tables = read_files([args.data] + ([args.test] if args.test else []), config)
    print(f"{args.data}: {len(tables[0])} valid ratings of {tables[0].n_users} users", file=sys.stderr)
    state_dir = args.state_dir or args.data.with_name(args.data.name + ".fedrec-state")
    command = supernode_command(args, state_dir, config)  # checks --certs/--key before anything is created
    state_dir.mkdir(parents=True, exist_ok=True)
    if args.insecure:
        print("fedrec client: WARNING: --insecure: traffic is plain text and the server is not authenticated",
              file=sys.stderr)
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    node = processes.start(command, env=env)
    signal.signal(signal.SIGTERM, processes.interrupt)
    try:
        code = node.wait()
    except KeyboardInterrupt:
        code = 130
    finally:
        processes.stop(node)
    if code not in (0, 130, -signal.SIGTERM):
        raise FedrecError(f"the client's SuperNode exited with code {code} (see its messages above)")
    return 0
