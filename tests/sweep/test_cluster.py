"""A simulated cluster (ray.cluster_utils.Cluster): while it has no GPU, `--device gpu` waits for GPU nodes and gives
up after `gpu_wait` (`sweep run`, `sweep score`, the feature pass); with two one-GPU nodes added, the driver joins
it by address and the GPU actors, one per GPU, spread the work over both nodes (the `worker` column names the
node)."""
from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import sweep_fakes
from sweep.driver import SweepConfig, run_sweep
from sweep.features import FeatureConfig, run_features
from sweep.fleet import ClusterConfig, SweepError
from sweep.score import ScoreConfig, run_score
from sweep.store import IMAGES

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
ROOT = Path(__file__).parents[2]
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    # The nodes' workers inherit this environment: they must import the project like the driver does, and the
    # fakes (with the marker directory they share).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]))
        patch.setenv("CLASSWEEP_TEST_MARKERS", str(tmp_path_factory.mktemp("markers")))
        cluster = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
        cluster.wait_for_nodes()
        yield cluster, None
        cluster.shutdown()


def test_a_joined_cluster_is_not_held_to_its_nodes_of_today(two_nodes):
    """A library caller that joined a cluster itself (no --address): more CPUs per worker than any node has now is
    not refused as on a local Ray, since an autoscaler may add a larger node; GPU actors there wait for GPU nodes
    (--gpu-wait)."""
    from sweep.fleet import cluster_plan, ray_started_here
    cluster, _ = two_nodes
    ray.init(address=cluster.address)
    try:
        assert not ray_started_here()
        assert cluster_plan(ClusterConfig(cpus_per_worker=8, device="cpu"), 3) == (False, 1)
        # No GPU yet, and --gpu-wait as long as the general wait for a first worker: the GPU line, which says more.
        from sweep.fleet import Fleet
        from sweep.worker import WorkerConfig
        fleet = Fleet(WorkerConfig("unused", "digits", "random"), 1, use_gpu=True, cpus=0.5)
        notes, stream = [], io.StringIO()
        try:
            with pytest.raises(SweepError, match=r"no GPU worker could start in 1s \(the cluster has 0 GPUs\)"):
                fleet.first_ready(lambda actor: actor.info.remote(), gpu_wait=1.0, stream=stream,
                                  interval=0.2, give_up_after=1.0, note=notes.append)
            # its lines go to `note` (a progress bar's message, above the bar), not onto the stream under the bar
            assert notes and notes[0].startswith("the cluster has no GPU yet") and stream.getvalue() == ""
        finally:
            fleet.stop()
    finally:
        ray.shutdown()


def test_device_gpu_waits_for_gpu_nodes_and_gives_up(two_nodes, tmp_path):
    cluster, _ = two_nodes
    out = io.StringIO()
    with pytest.raises(SweepError, match="no GPU worker could start in .* --gpu-wait"):
        run_sweep(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                              jobs="octave", cluster=ClusterConfig(address=cluster.address, device="gpu",
                                                                   gpu_wait=1.0, progress_every=0.5,
                                                                   cpus_per_worker=0.5)), stream=out)
    assert "waiting up to 1s for GPU nodes" in out.getvalue() and not ray.is_initialized()


@pytest.mark.parametrize("command", ["score", "features"])
def test_score_and_features_wait_for_gpu_nodes_and_give_up(two_nodes, tmp_path, command):
    cluster, _ = two_nodes
    store = tmp_path / "s"
    sweep_fakes.build_store(store, classes="0-1", jobs="octave", pairs=None)
    where = ClusterConfig(address=cluster.address, device="gpu", gpu_wait=1.0, progress_every=0.5, cpus_per_worker=0.5)
    run = {"score": lambda out: run_score(ScoreConfig(str(store), "digits", "random", cluster=where), stream=out),
           "features": lambda out: run_features(FeatureConfig(str(store), "block2", (0,), cluster=where), stream=out)}
    out = io.StringIO()
    with sweep_fakes.failing_if_stuck(120), \
            pytest.raises(SweepError, match="no GPU worker could start in .* --gpu-wait"):
        run[command](out)
    assert "waiting up to 1s for GPU nodes" in out.getvalue() and not ray.is_initialized()


def test_work_spreads_over_both_nodes(two_nodes, tmp_path):
    cluster, _ = two_nodes
    for _ in range(2):           # the GPU nodes join (the head has none)
        cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    assert not ray.is_initialized()
    summary = run_sweep(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                                    jobs="octave,opposite", batch_size=2, engine="sweep_fakes:spread_run_batch",
                                    cluster=ClusterConfig(address=cluster.address, cpus_per_worker=0.5)),
                        stream=io.StringIO())
    assert not ray.is_initialized()             # the driver disconnected from the cluster it joined
    assert summary.complete and summary.device == "gpu" and summary.workers == 2
    frame = pd.read_parquet(tmp_path / "s" / IMAGES, columns=["key", "worker"])
    assert len(frame) == 20 and frame.key.is_unique
    nodes = frame.worker.str.split("/").str[1]   # host/node/actor
    assert nodes.nunique() == 2 and nodes.value_counts().min() >= 2
    # The step counter stays on the head while GPU nodes (spot) come and go: on a node that went, it would take the
    # progress within batches and the hang watch (--stall-timeout) with it for the rest of the run. Four of them,
    # none on a worker node (placed anywhere, 4 of 12 landed on this head).
    from sweep.worker import start_step_counter
    ray.init(address=cluster.address)
    try:
        counters = [start_step_counter() for _ in range(4)]
        ray.get([counter.snapshot.remote() for counter in counters])
        placed = {ray._private.state.actors(actor_id=c._actor_id.hex())["Address"]["NodeID"] for c in counters}
        assert placed == {cluster.head_node.node_id}
    finally:
        ray.shutdown()


def test_a_store_path_that_the_nodes_do_not_share_stops_the_run(two_nodes, tmp_path):
    """A local --store on a cluster without a shared file system: each worker wrote onto its own node's disk, the
    driver saw none of it, the run ended 'incomplete' without a word why, and a resume ran everything again. The first
    batch a worker reports written that the driver cannot find stops the run, saying why."""
    cluster, _ = two_nodes
    with pytest.raises(SweepError, match=r"reported .* written, but .* is not there.*every node"):
        run_sweep(SweepConfig(store=str(tmp_path / "s"), model="digits", weights="random", schedule="tiny",
                              jobs="octave", classes="0-1", worker="sweep_fakes:OwnDiskWorker",
                              cluster=ClusterConfig(address=cluster.address, workers=1, cpus_per_worker=0.5)),
                  stream=io.StringIO())
    assert list((tmp_path / "s-node-disk" / IMAGES).iterdir())   # where that worker's node put the images


@pytest.mark.slow
def test_a_gpu_node_lost_in_the_middle_of_a_run_loses_no_item_and_stores_none_twice(two_nodes, tmp_path):
    """A spot GPU node goes while its worker holds batches: they run again on the other node, and every item is
    stored exactly once."""
    cluster, _ = two_nodes
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    store, lost = tmp_path / "s", []

    def remove_a_working_node() -> None:   # the node of the worker that wrote the first batch
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ((store / IMAGES).is_dir() and any((store / IMAGES).iterdir())):
            time.sleep(0.05)
        first = pd.read_parquet(next((store / IMAGES).iterdir()), columns=["worker"]).worker[0]
        node = next(n for n in cluster.worker_nodes if n.node_id.startswith(first.split("/")[1]))
        cluster.remove_node(node, allow_graceful=False)
        lost.append(node.node_id)

    remover = threading.Thread(target=remove_a_working_node)
    remover.start()
    with sweep_fakes.failing_if_stuck(300):
        summary = run_sweep(SweepConfig(store=str(store), model="digits", weights="random", schedule="tiny",
                                        jobs="octave", classes="0-9", batch_size=1,
                                        engine="sweep_fakes:slow_run_batch",
                                        cluster=ClusterConfig(address=cluster.address, workers=2, cpus_per_worker=0.5)),
                            stream=io.StringIO())
    remover.join()
    assert lost and summary.complete and summary.failed == ()
    assert summary.out_of_reach + summary.actors_replaced >= 1   # the driver saw the worker go
    sweep_fakes.assert_exactly_once(store, 10)
