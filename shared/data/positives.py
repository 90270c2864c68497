"""Implicit feedback from interaction tables: the positives (value 1) at or above a threshold, the rest dropped."""

from __future__ import annotations

import numpy as np

from fedrec.shared.data.ratings import Ratings


def positives(ratings: Ratings, threshold: float | None) -> Ratings:
    """Every interaction with value >= `threshold` (all of them when None) as a positive of value 1.

    Applied once, where a table enters implicit training or evaluation: the stored data stays as it was
    read (ratings, events), so a threshold is never applied twice to values already made 1."""
    kept = ratings if threshold is None else ratings.subset(ratings.values >= threshold)
    return Ratings(kept.users, kept.items, np.ones(len(kept)), kept.timestamps, ratings.user_ids, ratings.item_ids,
                   0.0, 1.0)
