"""`fedrec recommend` and `fedrec serve`: a client's recommendations, from the command line or over HTTP."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import threading
from pathlib import Path

from fedrec.shared.errors import ConfigError, FedrecError

LOOPBACK = ("127.0.0.1", "::1")
WATCH_SECONDS = 1.0  # how often the service looks for a newer model left by training


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"expected 1 to 1000, got {value}")
    return value


def register_recommend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, required=True, metavar="DIR", help="the client's state folder")
    parser.add_argument("--user", required=True, metavar="ID", help="one of this client's users")
    parser.add_argument("--top", type=_positive, default=10, metavar="N", help="how many items (default %(default)s)")
    parser.add_argument("--explain", action="store_true", help="say why each item is recommended")
    parser.add_argument("--json", action="store_true", help="print JSON, as the service answers")
    parser.set_defaults(handler=run_recommend)


def _why(explanation: dict) -> str:
    rated = ", ".join(f"{'like' if r['similarity'] >= 0 else 'unlike'} {r['item']} (you gave {r['your_rating']:g}) "
                      f"{r['contribution']:+.3f}" for r in explanation["because_you_rated"])
    text = (f"mean {explanation['global_mean']:.3f}, your tendency {explanation['user_bias']:+.3f}, "
            f"item popularity {explanation['item_bias']:+.3f}")
    if rated:
        text += f"; {rated}; other rated items {explanation['other_rated_items']:+.3f}"
    return text


def run_recommend(args: argparse.Namespace) -> int:
    from fedrec.shared.feedback import stored_events
    from fedrec.shared.serving import load_recommender

    recommender = load_recommender(args.state_dir, stored_events(args.state_dir))
    if args.user not in recommender:
        examples = ", ".join(recommender.users[:5])
        raise FedrecError(f"user {args.user!r} is not one of the {len(recommender.users)} users of {args.state_dir} "
                          f"(e.g. {examples})")
    rows = recommender.recommend(args.user, args.top, args.explain)
    if args.json:
        print(json.dumps({"user": args.user, "items": rows}, indent=2))
        return 0
    for rank, row in enumerate(rows, 1):
        print(f"{rank:3d}  {row['item']:>12}  {row['score']:.3f}")
        if args.explain:
            print(f"     {_why(row['explanation'])}")
    return 0


def register_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", type=Path, required=True, metavar="DIR", help="the client's state folder")
    add_service_options(parser)
    parser.add_argument("--port", type=int, default=8080, metavar="PORT", help="default %(default)s")
    parser.add_argument("--wait-for-model", action="store_true",
                        help="start before the first round has left a model (answer 503 until then)")
    parser.set_defaults(handler=run_serve)


def add_service_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                        help="where the service listens (default %(default)s; any other address needs --token-file)")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="a file holding the access token every request must carry (Authorization: Bearer TOKEN)")


def read_token(host: str, token_file: Path | None, host_option: str = "--host") -> str | None:
    if token_file is None:
        if host not in LOOPBACK:
            raise ConfigError(f"{host_option} {host}: listening beyond this machine needs --token-file FILE "
                              "(a secret every request must carry)")
        return None
    try:
        token = token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--token-file {token_file}: cannot read it: {exc}") from None
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(f"--token-file {token_file}: the token must be at least 16 characters, without spaces")
    return token


def check_port(port: int, option: str = "--port") -> None:
    if not 0 < port < 65536:
        raise ConfigError(f"{option} {port}: expected 1 to 65535")


def run_serve(args: argparse.Namespace) -> int:
    check_port(args.port)
    token = read_token(args.host, args.token_file)
    import uvicorn

    from fedrec.client.service import Service, build_app

    service = Service(args.state_dir, wait_for_model=args.wait_for_model)
    gc.freeze()  # the loaded model and ratings are long-lived: keep them out of every garbage collection
    threading.Thread(target=service.watch, args=(WATCH_SECONDS,), daemon=True).start()
    served = service.recommender
    what = (f"{len(served.users)} users, {len(served.model.item_ids)} items" if served is not None
            else "no model yet (waiting for the first round)")
    print(f"fedrec serve: {what}; http://{args.host}:{args.port}/", file=sys.stderr, flush=True)
    uvicorn.run(build_app(service, token), host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
