"""`fedrec certs`: make the TLS certificates and the SuperNode keys that a deployment needs."""

from __future__ import annotations

import argparse
from pathlib import Path

from fedrec.shared.certs import DEFAULT_HOSTS, make_certificates


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write (new or empty)")
    parser.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP",
                        help="a name or IP address clients use to reach the server (repeatable; "
                             f"default {' and '.join(DEFAULT_HOSTS)})")
    parser.add_argument("--clients", type=int, default=3, metavar="N", help="SuperNode key pairs to make (default 3)")
    parser.add_argument("--force", action="store_true", help="overwrite the files in a non-empty DIR")
    parser.set_defaults(handler=run_certs)


def run_certs(args: argparse.Namespace) -> int:
    paths = make_certificates(args.out, args.host, args.clients, force=args.force)
    out = paths.ca_cert.parent
    host = (args.host or DEFAULT_HOSTS)[0]
    bind = "127.0.0.1" if host in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"  # Flower binds 127.0.0.1 by default
    print(f"wrote to {out}/:")
    print("  ca.crt, ca.key          certificate authority (keep ca.key offline; give ca.crt to every client)")
    print(f"  server.pem, server.key  server certificate for {', '.join(args.host or DEFAULT_HOSTS)}")
    for key, public in zip(paths.client_keys, paths.client_public_keys):
        print(f"  {key.name}, {public.name}  SuperNode key pair (give {key.name} to that client only)")
    print(f"  {paths.public_key_list.name}  the public keys of the clients allowed to join, one per line")
    print()
    print("next, on the server (Flower 1.42 commands; TLS and SuperNode authentication):")
    print(f"  flower-superlink --ssl-ca-certfile {out}/ca.crt --ssl-certfile {out}/server.pem "
          f"--ssl-keyfile {out}/server.key --enable-supernode-auth --host {bind} --port 9093")
    print(f"  flwr supernode register {out}/client-K.pub CONNECTION   # once per client; CONNECTION in "
          f"$FLWR_HOME/config.toml has address = \"{host}:9093\", root-certificates = \"{out}/ca.crt\"")
    print("and on client K:")
    print(f"  flower-supernode --superlink {host}:9093 --root-certificates ca.crt "
          f"--auth-supernode-private-key client-K.key")
    return 0
