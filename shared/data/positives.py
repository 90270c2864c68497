"""Implicit feedback from interaction tables: the positives (value 1) at or above a threshold, the rest dropped."""

from __future__ import annotations

import numpy as np

from fedrec.shared.data.ratings import Ratings
from fedrec.shared.errors import DataError


def positives(ratings: Ratings, threshold: float | None) -> Ratings:
    """Every interaction with value >= `threshold` (all of them when None) as a positive of value 1.

    Applied once, where a table enters implicit training or evaluation: the stored data stays as it was
    read (ratings, events), so a threshold is never applied twice to values already made 1."""
    kept = ratings if threshold is None else ratings.subset(ratings.values >= threshold)
    return Ratings(kept.users, kept.items, np.ones(len(kept)), kept.timestamps, ratings.user_ids, ratings.item_ids,
                   0.0, 1.0)


def check_positives(train: Ratings, threshold: float | None) -> None:
    """One clear error before any training when the threshold leaves no positive to learn from."""
    if threshold is not None and not (train.values >= threshold).any():
        top = float(train.values.max()) if len(train) else float("nan")
        raise DataError(f"--positive-threshold {threshold:g}: no training interaction has a value that high "
                        f"(the largest is {top:g}), so implicit training would have no positives")
