"""A simulated two-node cluster (ray.cluster_utils.Cluster, one fake GPU per node): the driver joins it by address
and the GPU actors, one per GPU, spread the work over both nodes (the `worker` column names the node)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
import pytest

from sweep.driver import SweepConfig, run_sweep
from sweep.fleet import ClusterConfig
from sweep.store import IMAGES

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def two_nodes():
    saved = os.environ.get("PYTHONPATH")
    # The nodes' workers inherit this environment: they must import the project like the driver does.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), saved or ""])
    cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1})
    node = cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster, node
    cluster.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def test_work_spreads_over_both_nodes(two_nodes, tmp_path):
    cluster, _ = two_nodes
    assert not ray.is_initialized()
    summary = run_sweep(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                    jobs="octave,opposite", batch_size=2,
                                    cluster=ClusterConfig(address=cluster.address, cpus_per_worker=0.5)),
                        stream=io.StringIO())
    assert not ray.is_initialized()             # the driver disconnected from the cluster it joined
    assert summary.complete and summary.device == "gpu" and summary.workers == 2
    frame = pd.read_parquet(tmp_path / "s" / IMAGES, columns=["key", "worker"])
    assert len(frame) == 20 and frame.key.is_unique
    nodes = frame.worker.str.split("/").str[1]   # host/node/actor
    assert nodes.nunique() == 2 and nodes.value_counts().min() >= 2
