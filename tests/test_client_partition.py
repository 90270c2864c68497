"""A simulated client's partition, built from the rows grouped once, equals the ratings of its users."""

from __future__ import annotations

import numpy as np
import pytest

from fedrec.client import data as client_data
from fedrec.shared.config import load_config
from fedrec.shared.data.load import load_train_test
from fedrec.shared.data.partition import partition_users
from fedrec.shared.federated import ClientData

SMALL = {"synthetic.n_users": 120, "synthetic.n_items": 40, "synthetic.n_ratings": 2000}


@pytest.mark.parametrize("scheme", ["iid", "activity"])
def test_every_partition_is_exactly_its_users_ratings_in_file_order(scheme):
    config = load_config(None, {**SMALL, "federated.partition": scheme, "federated.seed": 5})
    train, test = load_train_test(config)
    num = 7
    owner = partition_users(train.user_counts(), num, scheme, 5)
    seen = 0
    for k in range(num):
        got = client_data.partition_data(config, k, num)
        users = np.flatnonzero(owner == k)
        want = ClientData.from_partition(train, test, users)  # the whole-dataset mask, as before
        for a, b in ((got.train, want.train), (got.test, want.test)):
            for field in ("users", "items", "values"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            np.testing.assert_array_equal(a.user_ids, b.user_ids)
            assert a.n_items == b.n_items
        seen += len(got.train) + len(got.test)
    assert seen == len(train) + len(test)  # every rating dealt to exactly one partition
