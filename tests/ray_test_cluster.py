"""A two-node Ray cluster on loopback for the tests (Ray's own cluster_utils): prints its address, then runs
until its stdin closes, and shuts the cluster down. Run it with RAY_TMPDIR set and
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so that Ray keeps every address on 127.0.0.1 and its files private."""

from __future__ import annotations

import json
import os
import socket
import sys


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    import ray
    from ray.cluster_utils import Cluster

    temp_dir = os.path.join(os.environ["RAY_TMPDIR"], "ray")
    os.makedirs(temp_dir, exist_ok=True)
    # Ports picked at random, so that the cluster meets no other Ray on this machine (each default port is one).
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "temp_dir": temp_dir, "dashboard_agent_listen_port": None}
    cluster = Cluster(initialize_head=True,
                      head_node_args={**node, "gcs_server_port": free_port(), "include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        # Forget the "current cluster" file Ray wrote, so that only a driver given the address can join.
        ray._common.utils.reset_ray_address(temp_dir)
        print(cluster.address, flush=True)
        sys.stdin.read()  # the test closes it when done
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        alive = [n for n in ray.nodes() if n["Alive"]]
        drivers = [job["DriverPid"] for job in ray._private.state.jobs()]
        print(json.dumps({"nodes": [{"address": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU")} for n in alive],
                          "driver_pids": drivers}), flush=True)
        ray.shutdown()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
