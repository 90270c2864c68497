"""Tests for train/test splits (random, per-user, temporal) and the user-to-client partitions."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_ratings
from fedrec.shared.config import DataConfig
from fedrec.shared.data.partition import partition_users
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.data.split import per_user_split, random_split, split, temporal_split
from fedrec.shared.errors import ConfigError, DataError


def assert_partition_of(ratings: Ratings, train: Ratings, test: Ratings) -> None:
    """train and test are disjoint and together hold every rating exactly once."""
    assert len(train) + len(test) == len(ratings)
    key = lambda r: set(zip(r.users.tolist(), r.items.tolist()))  # noqa: E731 - (user, item) is unique
    assert not key(train) & key(test)
    assert key(train) | key(test) == key(ratings)
    assert train.n_users == test.n_users == ratings.n_users  # same id spaces
    assert train.n_items == test.n_items == ratings.n_items


@pytest.mark.parametrize("kind", ["random", "per-user", "temporal"])
def test_splits_are_disjoint_and_cover_everything(dense_random_ratings: Ratings, kind: str) -> None:
    train, test = split(dense_random_ratings, DataConfig(split=kind, test_fraction=0.25, seed=3))
    assert_partition_of(dense_random_ratings, train, test)
    assert 0.2 * len(dense_random_ratings) < len(test) < 0.3 * len(dense_random_ratings)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.5])
def test_random_and_temporal_sizes(dense_random_ratings: Ratings, fraction: float) -> None:
    expected = round(fraction * len(dense_random_ratings))
    assert random_split(dense_random_ratings, fraction, seed=1).sum() == expected
    assert temporal_split(dense_random_ratings, fraction).sum() == expected


def test_random_split_is_seeded(dense_random_ratings: Ratings) -> None:
    a = random_split(dense_random_ratings, 0.2, seed=5)
    assert np.array_equal(a, random_split(dense_random_ratings, 0.2, seed=5))
    assert not np.array_equal(a, random_split(dense_random_ratings, 0.2, seed=6))


def test_per_user_split_is_seeded(dense_random_ratings: Ratings) -> None:
    a = per_user_split(dense_random_ratings, 0.3, None, seed=5)
    assert np.array_equal(a, per_user_split(dense_random_ratings, 0.3, None, seed=5))
    assert not np.array_equal(a, per_user_split(dense_random_ratings, 0.3, None, seed=6))


def test_per_user_fraction_per_user(dense_random_ratings: Ratings) -> None:
    test = per_user_split(dense_random_ratings, 0.3, None, seed=0)
    counts = dense_random_ratings.user_counts()
    held = np.bincount(dense_random_ratings.users[test], minlength=dense_random_ratings.n_users)
    expected = np.minimum(np.rint(0.3 * counts), counts - 1)
    np.testing.assert_array_equal(held, expected)
    assert (counts - held >= 1).all()


def test_per_user_keeps_one_training_rating_per_user() -> None:
    # user 0: 1 rating, user 1: 2 ratings, user 2: 3 ratings; a huge fraction still leaves one each.
    ratings = make_ratings([0, 1, 1, 2, 2, 2], [0, 0, 1, 0, 1, 2], [3, 4, 5, 1, 2, 3])
    test = per_user_split(ratings, 0.9, None, seed=0)
    train_counts = np.bincount(ratings.users[~test], minlength=3)
    np.testing.assert_array_equal(train_counts, [1, 1, 1])


@pytest.mark.parametrize("k", [1, 2, 5])
def test_leave_k_out(dense_random_ratings: Ratings, k: int) -> None:
    test = per_user_split(dense_random_ratings, 0.2, k, seed=0)
    counts = dense_random_ratings.user_counts()
    held = np.bincount(dense_random_ratings.users[test], minlength=dense_random_ratings.n_users)
    possible = counts > k
    assert possible.any()
    np.testing.assert_array_equal(held[possible], k)
    np.testing.assert_array_equal(held[~possible], counts[~possible] - 1)  # everything but one


def test_leave_k_through_the_config(dense_random_ratings: Ratings) -> None:
    train, test = split(dense_random_ratings, DataConfig(split="per-user", leave_k=2, seed=1))
    assert_partition_of(dense_random_ratings, train, test)
    assert (np.bincount(test.users, minlength=60) == 2).all()  # every user in the fixture has >= 3 ratings


def test_temporal_test_is_later_than_train(dense_random_ratings: Ratings) -> None:
    train, test = split(dense_random_ratings, DataConfig(split="temporal", test_fraction=0.3))
    assert test.timestamps.min() >= train.timestamps.max()


def test_temporal_ties_do_not_break_the_order() -> None:
    stamps = [5, 1, 3, 3, 3, 9, 2, 3]
    ratings = make_ratings(np.arange(8), np.zeros(8), np.full(8, 3.0), stamps)
    test = temporal_split(ratings, 0.5)
    assert test.sum() == 4
    assert ratings.timestamps[test].min() >= ratings.timestamps[~test].max()
    assert set(np.flatnonzero(test)) >= {0, 5}


def test_temporal_split_needs_timestamps() -> None:
    with pytest.raises(DataError, match="timestamps"):
        temporal_split(make_ratings([0, 1], [0, 0], [3, 4]), 0.5)


def user_counts() -> np.ndarray:
    return np.random.default_rng(2).integers(1, 200, 103)


@pytest.mark.parametrize("scheme", ["iid", "activity"])
def test_every_user_is_on_exactly_one_client(scheme: str) -> None:
    counts = user_counts()
    client = partition_users(counts, 10, scheme, seed=0)
    assert client.shape == (103,)
    assert client.min() == 0 and client.max() == 9
    assert np.issubdtype(client.dtype, np.integer)


@pytest.mark.parametrize("scheme", ["iid", "activity"])
def test_clients_have_balanced_user_counts(scheme: str) -> None:
    sizes = np.bincount(partition_users(user_counts(), 10, scheme, seed=0), minlength=10)
    assert sizes.sum() == 103
    assert sizes.max() - sizes.min() <= 1


def test_iid_is_seeded_and_random() -> None:
    counts = user_counts()
    a = partition_users(counts, 5, "iid", seed=1)
    assert np.array_equal(a, partition_users(counts, 5, "iid", seed=1))
    assert not np.array_equal(a, partition_users(counts, 5, "iid", seed=2))
    assert not np.array_equal(a, np.sort(a))  # not just contiguous blocks of user ids


def test_activity_puts_heavier_users_on_lower_clients() -> None:
    counts = user_counts()
    client = partition_users(counts, 6, "activity", seed=0)
    for c in range(5):
        assert counts[client == c].min() >= counts[client == c + 1].max()
    totals = np.bincount(client, weights=counts, minlength=6)
    assert (np.diff(totals) <= 0).all()


@pytest.mark.parametrize("num_clients", [0, 104, 1000])
def test_bad_number_of_clients_is_a_config_error(num_clients: int) -> None:
    with pytest.raises(ConfigError, match="num_clients"):
        partition_users(user_counts(), num_clients, "iid", seed=0)


def test_one_client_per_user_is_allowed() -> None:
    client = partition_users(user_counts(), 103, "activity", seed=0)
    assert sorted(client.tolist()) == list(range(103))


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown partition scheme"):
        partition_users(user_counts(), 3, "dirichlet", seed=0)  # type: ignore[arg-type]
