"""The closed loop's policies: federated (in-process Flower clients), centralised, popularity, random, oracle.

Each policy keeps its own interactions (the world's start plus the clicks its own lists earned), so what it
recommends shapes what it learns from next. The federated policy's interactions live on its clients, as
ratings files they read through the ratings reader like any deployed client's.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fedrec.shared import atomic, protocol, wrmf
from fedrec.shared.config import FedrecConfig
from fedrec.shared.data.partition import partition_users
from fedrec.shared.data.ratings import Ratings
from fedrec.shared.topn import epsilon_greedy, thompson_users, top_n
from fedrec.shared.train_implicit import fit_implicit, init_items
from fedrec.shared.world import World, ideal_lists, validate_responses


class Policy:
    """Recommends top-N lists from its own interactions, and stores the validated clicks they earn."""

    name = "policy"

    def __init__(self, world: World, config: FedrecConfig):
        self.world, self.config = world, config
        self.seen = np.zeros((world.n_users, world.n_items), dtype=bool)
        self.seen[world.start.users, world.start.items] = True
        self.train_seconds = 0.0

    def fit(self, rounds: int) -> None:
        """Learn from the interactions so far (nothing to learn for the non-learning policies)."""

    def recommend(self, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def store(self, users: np.ndarray, items: np.ndarray) -> None:
        """Validate the step's clicks, then keep them as new interactions."""
        validate_responses(users, items, self.seen)
        self.seen[users, items] = True

    def _as_ratings(self) -> Ratings:
        users, items = np.nonzero(self.seen)
        start = self.world.start
        return Ratings(users, items, np.ones(users.size), None, start.user_ids, start.item_ids, 0.0, 1.0)


def mf_lists(x: np.ndarray, y: np.ndarray, matrix, seen: np.ndarray, config: FedrecConfig,
             rng: np.random.Generator) -> np.ndarray:
    """Top-N of x . y over unseen items, with the configured exploration (`matrix`: the users' positives,
    whose WRMF systems are the posterior precisions Thompson sampling draws from)."""
    loop, model = config.loop, config.model
    if loop.explore == "thompson":
        x, systems = wrmf.solve_rows(matrix, y, model.reg, model.alpha, return_systems=True)
        x = thompson_users(x, systems, loop.thompson_scale, rng)
    lists = top_n(x @ y.T, seen, loop.top_n)
    if loop.explore == "epsilon-greedy":
        lists = epsilon_greedy(lists, seen, loop.epsilon, rng)
    return lists


class CentralizedPolicy(Policy):
    """WRMF on the pooled interactions (one holder sees everything), warm-started from step to step."""

    name = "centralized"

    def __init__(self, world: World, config: FedrecConfig):
        super().__init__(world, config)
        self.y = init_items(world.n_items, config.model)

    def fit(self, rounds: int) -> None:
        start = time.perf_counter()
        training = self.config.train.model_copy(update={"epochs": rounds})
        self.y = fit_implicit(self._as_ratings(), None, self.config.model, training, init_y=self.y).y
        self.train_seconds += time.perf_counter() - start

    def recommend(self, rng: np.random.Generator) -> np.ndarray:
        users, items = np.nonzero(self.seen)
        matrix = wrmf.interaction_matrix(users, items, self.world.n_users, self.world.n_items)
        model = self.config.model
        x = wrmf.solve_rows(matrix, self.y, model.reg, model.alpha)
        return mf_lists(x, self.y, matrix, self.seen, self.config, rng)


class FederatedPolicy(Policy):
    """WRMF trained by federated rounds over in-process ClientApps; each client keeps its users'
    interactions in its own ratings file and recommends to its own users from the shared item factors."""

    def __init__(self, world: World, config: FedrecConfig, folder: Path):
        super().__init__(world, config)
        fed = config.federated
        self.name = "federated-secure" if fed.secure else "federated"
        self.client_of_user = partition_users(np.bincount(world.start.users, minlength=world.n_users),
                                              fed.num_clients, fed.partition, fed.seed)
        self.files = [folder / f"client-{k}.csv" for k in range(fed.num_clients)]
        policy = config.secagg.model_dump()
        policy["require_secure"] = fed.secure if policy["require_secure"] is None else policy["require_secure"]
        self.node_configs = [{protocol.NODE_DATA_FILE: str(path),
                              **{key: policy[field] for field, key in protocol.NODE_POLICY.items()}}
                             for path in self.files]
        self.warm_start: dict | None = None
        self.y = init_items(world.n_items, config.model)
        for client in range(fed.num_clients):
            self._write_client(client)

    def _write_client(self, client: int) -> None:
        """The client's ratings file: every interaction of its users, value 1 (atomically replaced)."""
        users, items = np.nonzero(self.seen & (self.client_of_user == client)[:, None])
        start = self.world.start
        rows = np.char.add(np.char.add(start.user_ids[users], ","), np.char.add(start.item_ids[items], ",1"))
        atomic.write_text(self.files[client], "user,item,rating\n" + "\n".join(rows.tolist()) + "\n")

    def store(self, users: np.ndarray, items: np.ndarray) -> None:
        super().store(users, items)
        for client in np.unique(self.client_of_user[users]):
            self._write_client(int(client))

    def fit(self, rounds: int) -> None:
        from fedrec.server.federation import run_federation
        from fedrec.server.inprocess import InProcessGrid

        start = time.perf_counter()
        fed = self.config.federated.model_copy(update={"rounds": rounds, "eval_every": rounds})
        config = self.config.model_copy(update={"federated": fed})
        grid = InProcessGrid(config, fed.num_clients, node_configs=self.node_configs)
        result = run_federation(grid, config, self.world.n_items, catalogue=self.world.start.item_ids.tolist(),
                                warm_start=self.warm_start)
        self.warm_start = result["item_model"]
        self.y = np.asarray(result["item_model"]["q"], dtype=np.float64)
        self.train_seconds += time.perf_counter() - start

    def recommend(self, rng: np.random.Generator) -> np.ndarray:
        """Every client recommends to its own users, from its own interactions and the shared item factors."""
        lists = np.zeros((self.world.n_users, self.config.loop.top_n), dtype=np.int64)
        model = self.config.model
        for client in range(self.config.federated.num_clients):
            mine = np.flatnonzero(self.client_of_user == client)
            seen = self.seen[mine]
            users, items = np.nonzero(seen)
            matrix = wrmf.interaction_matrix(users, items, mine.size, self.world.n_items)
            x = wrmf.solve_rows(matrix, self.y, model.reg, model.alpha)
            lists[mine] = mf_lists(x, self.y, matrix, seen, self.config, rng)
        return lists


class PopularityPolicy(Policy):
    """The items with the most interactions in its own data, for everyone (the rich get richer)."""

    name = "popularity"

    def recommend(self, rng: np.random.Generator) -> np.ndarray:
        counts = self.seen.sum(0).astype(np.float64)
        return top_n(np.broadcast_to(counts, self.seen.shape), self.seen, self.config.loop.top_n)


class RandomPolicy(Policy):
    """Uniformly random unseen items."""

    name = "random"

    def recommend(self, rng: np.random.Generator) -> np.ndarray:
        return top_n(rng.random(self.seen.shape), self.seen, self.config.loop.top_n)


class OraclePolicy(Policy):
    """Knows the truth: each user's unseen items with the highest click chance."""

    name = "oracle"

    def recommend(self, rng: np.random.Generator) -> np.ndarray:
        return ideal_lists(self.world, self.seen, self.config.loop.top_n)


def make_policies(world: World, config: FedrecConfig, folder: Path) -> list[Policy]:
    return [FederatedPolicy(world, config, folder), CentralizedPolicy(world, config), PopularityPolicy(world, config),
            RandomPolicy(world, config), OraclePolicy(world, config)]
