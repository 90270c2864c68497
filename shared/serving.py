"""What a client keeps in its state folder to serve: the final item side, its users' ratings, their feedback."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedrec.shared import atomic
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import FedrecError
from fedrec.shared.recommend import ItemModel, Recommender

ITEM_MODEL_FILE = "item-model.npz"
USER_RATINGS_FILE = "user-ratings.npz"


def save_snapshot(state_dir: Path, model: ItemModel, train: Ratings) -> None:
    """The item side as received (with the catalogue and the settings serving needs) and this client's
    training ratings (items coded by the catalogue), beside the users' factors. Never sent anywhere."""
    atomic.write_npz(state_dir / ITEM_MODEL_FILE, mode=0o600, q=model.q, bi=model.bi, mu=np.float64(model.mu),
                     items=np.asarray(model.item_ids, dtype=str), known=model.known.astype(bool),
                     reg=np.float64(model.reg), bias_reg=np.float64(model.bias_reg),
                     rating_min=np.float64(model.rating_min), rating_max=np.float64(model.rating_max))
    atomic.write_npz(state_dir / USER_RATINGS_FILE, mode=0o600, user_ids=np.asarray(train.user_ids, dtype=str),
                     users=train.users, items=train.items, values=train.values)


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FedrecError(f"{path} not found: the client has no trained model yet (train first; with "
                          f"`fedrec simulate` pass --client-state-dir DIR and serve DIR/client-K)")
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in saved.files}
    except (OSError, ValueError) as exc:
        raise FedrecError(f"{path} is not a readable fedrec model file: {exc}") from None


def load_item_model(state_dir: Path) -> ItemModel:
    saved = _load(Path(state_dir) / ITEM_MODEL_FILE)
    try:
        return ItemModel(saved["q"].astype(np.float64), saved["bi"].astype(np.float64), float(saved["mu"]),
                         saved["items"].astype(str), saved["known"].astype(bool), float(saved["reg"]),
                         float(saved["bias_reg"]), float(saved["rating_min"]), float(saved["rating_max"]))
    except KeyError as exc:
        raise FedrecError(f"{Path(state_dir) / ITEM_MODEL_FILE} lacks {exc}: not a fedrec client model") from None


def load_recommender(state_dir: Path, feedback: list[tuple] = ()) -> Recommender:
    """The served model: the item side, each user's training ratings and then the stored feedback events
    (id, user, item, rating, ...) in order, a later rating of the same item replacing the earlier one."""
    model = load_item_model(state_dir)
    saved = _load(Path(state_dir) / USER_RATINGS_FILE)
    user_ids, users, items, values = saved["user_ids"].astype(str), saved["users"], saved["items"], saved["values"]
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(len(user_ids) + 1))
    ratings = {str(user_ids[u]): (items[order[a:b]], values[order[a:b]])
               for u, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])) if b > a}
    latest: dict[str, dict[int, float]] = {}
    for _, user, item, rating, *_ in feedback:
        if item in model.index_of:  # an item dropped from a newer catalogue is no longer served
            latest.setdefault(user, {})[model.index_of[item]] = float(rating)
    for user, changes in latest.items():
        items, values = ratings.get(user, (np.zeros(0, np.int64), np.zeros(0)))
        keep = ~np.isin(items, list(changes))
        ratings[user] = (np.append(items[keep], list(changes)).astype(np.int64), np.append(values[keep], list(changes.values())))
    return Recommender(model, ratings)
