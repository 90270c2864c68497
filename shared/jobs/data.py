"""`fedrec data`: fetch a built-in dataset, check a ratings file, or write a train/test split."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedrec.shared import atomic, cli
from fedrec.shared.data import datasets
from fedrec.shared.data.load import load_dataset, read_files, write_csv
from fedrec.shared.data.partition import partition_users
from fedrec.shared.data.split import split


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    fetch = sub.add_parser("fetch", help="download and verify a MovieLens dataset (or verify a local copy)")
    fetch.add_argument("name", choices=sorted(datasets.REGISTRY))
    fetch.add_argument("--data-dir", type=Path, metavar="DIR")
    fetch.set_defaults(handler=run_fetch)

    check = sub.add_parser("check", help="validate a ratings file and report every bad row")
    cli.add_common_options(check)
    check.add_argument("file", type=Path)
    check.add_argument("--rating-min", dest="data.rating_min", type=float, metavar="X")
    check.add_argument("--rating-max", dest="data.rating_max", type=float, metavar="X")
    check.set_defaults(handler=run_check)

    write = sub.add_parser("split", help="write train.csv and test.csv from a dataset or a ratings file")
    cli.add_common_options(write)
    cli.add_data_options(write)
    write.add_argument("--input", type=Path, metavar="FILE", help="a ratings file to split (instead of --dataset)")
    write.add_argument("--out", type=Path, required=True, metavar="DIR")
    write.set_defaults(handler=run_split)

    part = sub.add_parser("partition", help="write one train/test pair per client and the item catalogue (for deployment)")
    cli.add_common_options(part)
    cli.add_data_options(part)
    part.add_argument("--input", type=Path, metavar="FILE", help="a ratings file to split (instead of --dataset)")
    part.add_argument("--num-clients", dest="federated.num_clients", type=int, required=True, metavar="N")
    part.add_argument("--partition", dest="federated.partition", choices=["iid", "activity"])
    part.add_argument("--out", type=Path, required=True, metavar="DIR")
    part.set_defaults(handler=run_partition)


def run_fetch(args: argparse.Namespace) -> int:
    print(datasets.fetch(args.name, args.data_dir))
    return 0


def run_check(args: argparse.Namespace) -> int:
    config = cli.config_from_args(args)
    ratings = read_files([args.file], config.model_copy(update={"data": config.data.model_copy(update={"on_bad_rows": "fail"})}))[0]
    print(f"{args.file}: {len(ratings)} valid ratings, {ratings.n_users} users, {ratings.n_items} items")
    return 0


def run_split(args: argparse.Namespace) -> int:
    config = cli.config_from_args(args)
    if args.input is not None:
        ratings = read_files([args.input], config)[0]
    else:
        ratings = load_dataset(config)
    train, test = split(ratings, config.data)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(train, args.out / "train.csv")
    write_csv(test, args.out / "test.csv")
    print(f"wrote {len(train)} training and {len(test)} test ratings to {args.out}/", file=sys.stderr)
    return 0


def run_partition(args: argparse.Namespace) -> int:
    """DIR/items.txt (the public catalogue) and DIR/client-K/{train,test}.csv: each user on one client."""
    config = cli.config_from_args(args)
    ratings = read_files([args.input], config)[0] if args.input is not None else load_dataset(config)
    train, test = split(ratings, config.data)
    fed = config.federated
    client_of_user = partition_users(train.user_counts(), fed.num_clients, fed.partition, fed.seed)
    for client in range(fed.num_clients):
        folder = args.out / f"client-{client}"
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(train.subset(client_of_user[train.users] == client), folder / "train.csv")
        write_csv(test.subset(client_of_user[test.users] == client), folder / "test.csv")
    atomic.write_text(args.out / "items.txt", "\n".join(["item", *ratings.item_ids.tolist()]) + "\n")
    print(f"wrote {fed.num_clients} client folders and items.txt to {args.out}/", file=sys.stderr)
    return 0
