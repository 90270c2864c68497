"""Loading one client's private ratings: its partition in simulation, cached per process."""

from __future__ import annotations

import functools

import numpy as np

from shared.config import FedrecConfig
from shared.data.load import load_train_test
from shared.data.partition import partition_users
from shared.federated import ClientData


@functools.lru_cache(maxsize=2)
def _split(data_json: str):
    return load_train_test(FedrecConfig.model_validate_json(data_json))


@functools.lru_cache(maxsize=64)
def _partition(data_json: str, scheme: str, seed: int, partition_id: int, num_partitions: int) -> ClientData:
    train, test = _split(data_json)
    client_of_user = partition_users(train.user_counts(), num_partitions, scheme, seed)
    return ClientData.from_partition(train, test, np.flatnonzero(client_of_user == partition_id))


def partition_data(config: FedrecConfig, partition_id: int, num_partitions: int) -> ClientData:
    """The ratings of the users dealt to `partition_id` (the dataset is read once per process)."""
    data_json = config.model_dump_json(include={"data", "synthetic"})
    fed = config.federated
    return _partition(data_json, fed.partition, fed.seed, partition_id, num_partitions)
