"""`fedrec client`: one data holder joins a fedrec server, training on its own ratings file alone."""

from __future__ import annotations

import argparse
import collections
import os
import re
import socket
import ssl
import sys
import threading
import time
from pathlib import Path

from fedrec.client.data import READ_AHEAD_ENV, read_ahead_spec
from fedrec.shared import cli, locks, processes
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
    parser.add_argument("--allow-plain", dest="secagg.require_secure", action="store_false", default=None,
                        help="also answer a server that asks for unmasked vectors (by default this client refuses)")
    parser.add_argument("--min-cohort", dest="secagg.min_cohort", type=int, metavar="N",
                        help="smallest cohort this client's vector may be summed in (default 3)")
    parser.add_argument("--port", type=int, default=0, metavar="PORT",
                        help="local port of this client's SuperNode (default: any free port)")
    parser.add_argument("--serve", type=int, metavar="PORT",
                        help="also run this client's recommendation service (`fedrec serve`) on PORT, serving the "
                             "newest model as rounds complete")
    parser.add_argument("--serve-host", default="127.0.0.1", metavar="ADDRESS",
                        help="where that service listens (default %(default)s; any other address needs --token-file)")
    parser.add_argument("--token-file", type=Path, metavar="FILE", help="the service's access token (see fedrec serve)")
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
    # The client's own privacy policy travels in its node config, where the server's settings cannot reach it.
    for field, name in keys.NODE_POLICY.items():
        value = getattr(config.secagg, field)
        if field == "require_secure":
            value = True if value is None else value
        node_config.append(f"{name}={str(value).lower() if isinstance(value, bool) else value}")
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


def service_command(args: argparse.Namespace, state_dir: Path) -> list[str]:
    """`fedrec serve` on the client's state folder; it starts before the first model and reloads newer ones."""
    from fedrec.client.serve_cli import check_port, read_token

    check_port(args.serve, "--serve")
    read_token(args.serve_host, args.token_file, "--serve-host")  # refuse a bad address or token before joining
    command = [sys.executable, "-m", "fedrec.shared.cli", "serve", "--state-dir", str(state_dir.resolve()),
               "--host", args.serve_host, "--port", str(args.serve), "--wait-for-model"]
    return command + (["--token-file", str(args.token_file.resolve())] if args.token_file is not None else [])


def probe_tls(address: str, timeout: float = 3.0) -> bool | None:
    """Does the server at HOST:PORT speak TLS? True or False; None when nothing answers (yet)."""
    host, _, port = address.rpartition(":")
    try:
        raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except (OSError, ValueError):
        return None
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only asking whether TLS is spoken
    try:
        with context.wrap_socket(raw, server_hostname=host.strip("[]") or None):
            return True
    except ssl.SSLError:
        return False
    except OSError:
        return None
    finally:
        raw.close()


def transport_mismatch(args: argparse.Namespace) -> str | None:
    """One-line reason when this client's --insecure/--certs does not match what the server speaks."""
    tls = probe_tls(args.server)
    if args.insecure and tls is True:
        return (f"the server at {args.server} uses TLS, but this client was started with --insecure (plain text): "
                f"start it with --certs DIR --key FILE (the files from `fedrec certs`)")
    if not args.insecure and tls is False:
        return (f"the server at {args.server} speaks plain text (it was started with --insecure), but this client "
                f"uses TLS (--certs): start the client with --insecure, or the server with --certs")
    return None


REFUSED_KEY = ("Failed to activate SuperNode", "code: 2004")
# On HTTP 401 to its heartbeat (a server that no longer knows this node) Flower's SuperNode sends itself
# SIGINT and ends with this line; fedrec client never sends it SIGINT, so here it means the refusal.
UNAUTHORIZED = ("401", "Unauthorized", "SuperNode terminated gracefully")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RETRYING = "Connection attempt failed"


class NodeWatcher:
    """Reads the SuperNode's log as it runs (echoing it), to tell in one line why it stopped."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self.retries = 0
        self.mismatch: str | None = None

    def feed(self, line: str) -> bool:
        """Echo one line; False when the client should stop now (it can never connect)."""
        print(line, end="", file=sys.stderr, flush=True)
        self.tail.append(ANSI.sub("", line).strip())
        if RETRYING in line:
            self.retries += 1
            # Retrying is right while the server is not up yet; a server that answers in the other
            # transport (TLS vs plain text) will never accept us, so that is checked while retrying.
            if self.retries in (2, 5) or self.retries % 10 == 0:
                self.mismatch = transport_mismatch(self.args)
                return self.mismatch is None
        return True

    def reason(self, code: int | None) -> str:
        text = "\n".join(self.tail)
        if self.mismatch:
            return self.mismatch
        if any(marker in text for marker in REFUSED_KEY):
            key = f"its key {self.args.key}" if self.args.key else "this client"
            return (f"the server at {self.args.server} refused this client: {key} is not registered with it "
                    f"(use the client-K.key that `fedrec certs` made for this server's --certs folder)")
        if any(marker in text for marker in UNAUTHORIZED):
            return (f"the server at {self.args.server} no longer accepts this client (its heartbeat was refused, "
                    f"HTTP 401): the server was restarted or replaced and does not know this node; restart the "
                    f"client to join again")
        last = next((line for line in reversed(self.tail) if line and not line.startswith("INFO")), "no message")
        return f"the client's SuperNode stopped (exit code {code}): {last}"


def run(args: argparse.Namespace) -> int:
    cli.parse_address(args.server, "--server")  # a typo here would otherwise leave the SuperNode retrying forever
    config = cli.config_from_args(args)
    # Validate before joining: a client with bad data never takes part (read_files raises a DataError).
    tables = read_files([args.data] + ([args.test] if args.test else []), config)
    print(f"{args.data}: {len(tables[0])} valid ratings of {tables[0].n_users} users", file=sys.stderr)
    state_dir = args.state_dir or args.data.with_name(args.data.name + ".fedrec-state")
    command = supernode_command(args, state_dir, config)
    if (mismatch := transport_mismatch(args)) is not None:
        raise ConfigError(mismatch)
    if args.insecure:
        print("fedrec client: WARNING: --insecure: traffic is plain text and the server is not authenticated",
              file=sys.stderr)
    # One client per state folder: two clients sharing users' state would overwrite each other's.
    service = service_command(args, state_dir) if args.serve is not None else None
    with locks.FolderLock(state_dir, "fedrec client"):
        return _take_part(args, command, service, read_ahead_spec(config, args.data, args.test))


def _take_part(args: argparse.Namespace, command: list[str], service: list[str] | None, files: str) -> int:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
           READ_AHEAD_ENV: files}
    processes.handle_sigterm()
    node = processes.start(command, env=env, capture=True)
    # The recommendation service runs beside the SuperNode and serves the newest model as rounds complete.
    server = processes.start(service, env=env) if service is not None else None
    watcher = NodeWatcher(args)
    hopeless = threading.Event()

    def read() -> None:  # a thread: the SuperNode's own children may keep the pipe open after it exits
        for line in node.stdout:
            if not watcher.feed(line):
                hopeless.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        while node.poll() is None and not hopeless.is_set():
            time.sleep(0.2)
    except KeyboardInterrupt as exc:
        print("fedrec client: interrupted; left the federation", file=sys.stderr)
        return processes.exit_code(exc)
    finally:
        processes.stop(node)
        if server is not None:
            processes.stop(server)
    time.sleep(0.3)  # let the reader take the SuperNode's last lines
    # A SuperNode runs until it is stopped: if it ended by itself, this client cannot take part.
    raise FedrecError(watcher.reason(node.returncode))
