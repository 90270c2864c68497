"""`fedrec server`: a Flower SuperLink plus the fedrec run submitted to it, as one command that cleans up."""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedrec.shared import atomic, cli, locks, preflight, processes
from fedrec.shared.data.item_features import GENRES, features_for
from fedrec.shared.dp.plan import privacy_line
from fedrec.shared.errors import ConfigError, FedrecError
from fedrec.server.state import Checkpoint

CONNECTION = "fedrec"
RUN_ID_FILE = "run-id.txt"
CERT_FILES = ("ca.crt", "server.pem", "server.key", "client-public-keys.csv")  # what the SuperLink reads from --certs
APP_PYPROJECT = """[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "fedrec"
version = "0.1.0"

[tool.flwr.app]
publisher = "fedrec"

[tool.flwr.app.components]
serverapp = "fedrec.server.app:app"
clientapp = "fedrec.client.app:app"

[tool.flwr.app.config]
fedrec-run = ""
"""


def register(parser: argparse.ArgumentParser) -> None:
    cli.add_common_options(parser)
    cli.add_model_options(parser)
    parser.add_argument("--address", default="127.0.0.1:9092", metavar="HOST:PORT",
                        help="where the SuperLink listens (default %(default)s; 0.0.0.0:PORT for remote clients)")
    parser.add_argument("--rounds", dest="federated.rounds", type=int, metavar="R")
    parser.add_argument("--min-clients", dest="federated.num_clients", type=int, metavar="N",
                        help="start once N clients are connected, and train with them")
    parser.add_argument("--timeout", dest="federated.timeout", type=float, metavar="SECONDS",
                        help="how long one exchange waits for replies")
    parser.add_argument("--secure", dest="federated.secure", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--update", dest="federated.update", choices=["gradient", "delta", "als"],
                        help="what clients send: item gradient (default), local change (delta), or with implicit "
                             "feedback each item's normal-equation sums (als: the server solves the items exactly)")
    parser.add_argument("--server-lr", dest="federated.server_lr", type=float, metavar="X",
                        help="learning rate of the server optimizer (gradient and delta updates)")
    cli.add_dp_options(parser)
    cli.add_feedback_options(parser.add_argument_group("feedback (the federation's choice: clients follow it)"))
    parser.add_argument("--items", required=True, type=Path, metavar="FILE",
                        help="the public item catalogue: one item id per line (first field; a header is allowed)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="results JSON (default STATE_DIR/results.json)")
    parser.add_argument("--state-dir", type=Path, default=Path("fedrec-server-state"), metavar="DIR")
    parser.add_argument("--resume", action="store_true", help="continue from the last completed round in STATE_DIR")
    parser.add_argument("--superlink-db", choices=["file", "memory"], default="file",
                        help="where the SuperLink keeps its state: 'file' (default), STATE_DIR/superlink.db, so that "
                             "running clients reconnect to a restarted server; 'memory': rounds about twice as "
                             "fast, but after a restart every client must be restarted too")
    security = parser.add_mutually_exclusive_group(required=True)
    security.add_argument("--certs", type=Path, metavar="DIR", help="folder from `fedrec certs` (TLS and client keys)")
    security.add_argument("--insecure", action="store_true", help="plain text, any client may join (testing only)")
    parser.set_defaults(handler=run)


def read_catalogue(path: Path) -> list[str]:
    """Item ids from the first column of a file (separator and header detected as for ratings)."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise ConfigError(f"cannot read the item catalogue {path}: {exc.strerror}") from None
    ids = [line.replace("\t", ",").replace("|", ",").split(",")[0].strip() for line in lines]
    if ids and ids[0].lower() in ("item", "itemid", "item_id", "movieid", "id"):
        ids = ids[1:]
    if not ids:
        raise ConfigError(f"the item catalogue {path} is empty")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"the item catalogue {path} lists some item ids more than once")
    return ids


def parse_address(address: str) -> tuple[str, int]:
    return cli.parse_address(address, "--address")


def _flwr(args: list[str], env: dict, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([processes.tool("flwr"), *args], env=env, capture_output=True, text=True, timeout=timeout)


FLOWER_IN_MEMORY_STATE = ":flwr-in-memory:"  # flwr.supercore.constant.FLWR_IN_MEMORY_DB_NAME


def _register_clients(certs: Path, env: dict) -> int:
    """Flower 1.42 admits a SuperNode only if its public key was registered with the running SuperLink."""
    keys = [line.strip() for line in (certs / "client-public-keys.csv").read_text().splitlines() if line.strip()]
    for key in keys:
        with tempfile.NamedTemporaryFile("w", suffix=".pub", delete=False) as handle:
            handle.write(key + "\n")
        try:
            done = _flwr(["supernode", "register", handle.name, CONNECTION, "--format", "json"], env)
        finally:
            os.unlink(handle.name)
        reply = json.loads(done.stdout or "{}")
        if "already in use" in done.stdout:  # kept in the SuperLink's database from before a restart
            continue
        if not reply.get("success"):  # flwr exits 0 even when registering failed
            raise FedrecError(f"registering a client key with the SuperLink failed: {done.stdout.strip() or done.stderr.strip()}")
    return len(keys)


def _run_status(run_id: str | None, env: dict) -> str:
    """The run's real status: `flwr run` exits 0 even when the ServerApp failed."""
    if run_id is None:
        return "not started"
    done = _flwr(["ls", CONNECTION, "--format", "json"], env)
    runs = json.loads(done.stdout or "{}").get("runs", [])
    return next((run["status"] for run in runs if str(run["run-id"]) == run_id), "unknown")


def _stream(process: subprocess.Popen) -> str | None:
    """Echo the run's log while it runs; returns the run id that `flwr run` reports."""
    run_id = None
    for line in process.stdout:
        print(line, end="", flush=True)
        if match := re.search(r"Successfully started run (\d+)", line):
            run_id = match.group(1)
    process.wait()
    return run_id


def _run_identity(state_dir: Path, resume: bool) -> str:
    """A stable id of this training run, sent to every client with every task: the same across --resume,
    new for a new run, so that a client never carries its users' factors from one run into another."""
    path = state_dir / RUN_ID_FILE
    if resume and path.exists():
        return path.read_text().strip()
    run_id = secrets.token_hex(8)
    atomic.write_text(path, run_id + "\n")
    return run_id


def _check_input(args: argparse.Namespace) -> tuple:
    """Every check that needs nothing written: flags, catalogue, certificates, checkpoint against --resume."""
    config = cli.config_from_args(args)
    preflight.check_federation(config.federated, clients_flag="--min-clients")
    catalogue = read_catalogue(args.items)
    if config.model.item_features not in (None, GENRES):  # the ServerApp may run in another folder
        absolute = str(Path(config.model.item_features).resolve())
        config = config.model_copy(update={"model": config.model.model_copy(update={"item_features": absolute})})
    features_for(config, catalogue)  # a bad feature file or --factors is one error before any client connects
    if not args.insecure:
        for name in CERT_FILES:
            if not (args.certs / name).is_file():
                raise ConfigError(f"--certs: {args.certs / name} not found (make the files with `fedrec certs --out {args.certs}`)")
    state_dir = args.state_dir.resolve()
    checkpoint = Checkpoint(state_dir)
    if checkpoint.exists() and not args.resume:
        raise ConfigError(f"{state_dir} holds an earlier run: pass --resume to continue it, or choose another --state-dir")
    if args.resume and not checkpoint.exists():
        raise ConfigError(f"--resume: {state_dir} holds no checkpoint to resume from")
    return config, catalogue


def _prepare(args: argparse.Namespace, host: str, port: int, config, catalogue: list[str]) -> tuple[dict, Path, Path]:
    """Under the state folder's lock: the checkpoint read in full, the output paths, the run's files."""
    state_dir = args.state_dir.resolve()
    if args.resume:  # read in full now: a damaged checkpoint is one error before any client connects
        saved = Checkpoint(state_dir).load()
        if saved.q.shape != (len(catalogue), config.model.factors):
            raise ConfigError(f"--resume: the checkpoint holds {saved.q.shape[0]} items x {saved.q.shape[1]} factors, "
                              f"this run has {len(catalogue)} items (--items) x {config.model.factors} factors")
    privacy = privacy_line(config, len(catalogue), None)  # refuses an impossible DP budget here
    state_dir.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good
    json_out = (args.json or state_dir / "results.json").resolve()
    preflight.check_writable(json_out, "--json")
    atomic.write_json(state_dir / "catalogue.json", catalogue)
    spec = {"config": config.model_dump(mode="json"), "catalogue": str(state_dir / "catalogue.json"),
            "state_dir": str(state_dir), "resume": bool(args.resume), "json": str(json_out),
            "run_id": _run_identity(state_dir, args.resume)}
    atomic.write_json(state_dir / "run.json", spec)
    app_dir = state_dir / "app"
    atomic.write_text(app_dir / "pyproject.toml", APP_PYPROJECT)
    home = state_dir / "flwr-home"
    security = "insecure = true" if args.insecure else f'root-certificates = "{(args.certs / "ca.crt").resolve()}"'
    atomic.write_text(home / "config.toml", f'[superlink]\ndefault = "{CONNECTION}"\n\n'
                                            f'[superlink.{CONNECTION}]\naddress = "{host}:{port}"\n{security}\n')
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}
    print(privacy, file=sys.stderr)  # the run's first line, once everything has been checked
    return env, state_dir, json_out


def _check_own_listener(superlink: subprocess.Popen, port: int, timeout: float = 10.0) -> None:
    """The process answering on the port must be our SuperLink, not another server that took it first
    (otherwise our run would be submitted to, and our clients trained by, someone else's SuperLink)."""
    deadline = time.monotonic() + timeout
    while True:
        holders = locks.listening_pids(port)
        ours = {superlink.pid, *processes.descendants(superlink.pid)}
        if not holders or holders & ours:  # empty: no /proc to ask (not Linux)
            return
        if time.monotonic() > deadline or superlink.poll() is not None:
            raise ConfigError(f"port {port} is held by another process (pid {', '.join(map(str, sorted(holders)))}), "
                              f"not by this server's SuperLink; stop it or choose another --address")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> int:
    host, port = parse_address(args.address)
    locks.ensure_port_free(host, port)  # before anything else: a taken port changes nothing
    config, catalogue = _check_input(args)  # nothing written yet
    # One server per state folder, for as long as this process lives (the kernel releases it on a crash).
    with locks.FolderLock(args.state_dir, "fedrec server"):
        return _serve(args, host, port, config, catalogue)


def _serve(args: argparse.Namespace, host: str, port: int, config, catalogue: list[str]) -> int:
    env, state_dir, json_out = _prepare(args, host, port, config, catalogue)
    # A database in the state folder keeps the registered client keys across a restart (--resume), so
    # clients that were retrying reconnect to the new SuperLink instead of being refused. Flower's in-memory
    # state instead saves the SQL work behind every request (a deployment round is mostly such requests):
    # faster rounds, but a restarted SuperLink no longer knows the running clients (they exit 2, saying so).
    database = str(state_dir / "superlink.db") if args.superlink_db == "file" else FLOWER_IN_MEMORY_STATE
    superlink = [processes.tool("flower-superlink"), "--host", host, "--port", str(port), "--disable-runtime-dependency-installation",
                 "--database", database]
    if args.insecure:
        print("fedrec server: WARNING: --insecure: plain text, and any client that can reach the port may join",
              file=sys.stderr)
        superlink.append("--insecure")
    else:
        certs = args.certs.resolve()
        superlink += ["--ssl-ca-certfile", str(certs / "ca.crt"), "--ssl-certfile", str(certs / "server.pem"),
                      "--ssl-keyfile", str(certs / "server.key"), "--enable-supernode-auth"]
    started_before = json_out.stat().st_mtime_ns if json_out.exists() else None
    children: list[subprocess.Popen] = []
    processes.handle_sigterm()
    try:
        children.append(processes.start(superlink, log_file=state_dir / "superlink.log", env=env))
        if not processes.wait_for_port(host, port, timeout=60.0, process=children[0]):
            raise FedrecError(f"the SuperLink did not start on {host}:{port} (see {state_dir / 'superlink.log'})")
        _check_own_listener(children[0], port)
        if not args.insecure:
            print(f"registered {_register_clients(args.certs, env)} client keys", file=sys.stderr)
        print(f"fedrec server listening on {host}:{port}; waiting for clients", file=sys.stderr)
        submit = [processes.tool("flwr"), "run", str(state_dir / "app"), CONNECTION, "--stream",
                  "--run-config", f"fedrec-run='{state_dir / 'run.json'}'"]
        children.append(processes.start(submit, env=env, capture=True))
        status = _run_status(_stream(children[-1]), env)
    except KeyboardInterrupt as exc:
        print("fedrec server: interrupted; stopped the SuperLink and its runs", file=sys.stderr)
        return processes.exit_code(exc)
    finally:
        for child in reversed(children):
            processes.stop(child)
    finished = json_out.exists() and json_out.stat().st_mtime_ns != started_before
    if status != "finished:completed" or not finished:
        raise FedrecError(f"the run did not finish (status {status}); see {state_dir / 'superlink.log'}")
    print(f"fedrec server: finished; results in {json_out}", file=sys.stderr)
    return 0
