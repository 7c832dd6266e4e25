"""Without Ray: the refusals of `--device gpu` where no GPU can ever come, and `--batch-size auto|N`."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from sweep.cli import BatchSize, main


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_gpu_on_a_local_ray_without_gpus_is_refused_before_ray(tmp_path):
    ray = pytest.importorskip("ray")
    store = tmp_path / "s"
    result = CliRunner().invoke(main, ["run", "--store", str(store), "--model", "digits", "--weights", "random",
                                       "--schedule", "tiny", "--device", "gpu"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --device gpu") and "no GPU" in lines[0]
    assert not store.exists() and not ray.is_initialized()


def test_batch_size_option_takes_auto_or_a_positive_number(tmp_path):
    kind = BatchSize()
    assert kind.convert("auto", None, None) is None and kind.convert("AUTO", None, None) is None
    assert kind.convert("12", None, None) == 12
    for bad, fragment in (("0", "at least 1"), ("big", "neither auto nor")):
        result = CliRunner().invoke(main, ["run", "--store", str(tmp_path / "s"), "--model", "digits",
                                           "--batch-size", bad])
        assert result.exit_code == 2 and fragment in result.output and not (tmp_path / "s").exists()


def test_a_driver_joining_a_cluster_hands_its_store_settings_but_no_secret_to_the_workers(monkeypatch):
    import ray
    from sweep.fleet import ClusterConfig, ray_session
    from sweep.store import STORE_SETTING_VARIABLES, store_settings
    environ = {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
               "AWS_ACCESS_KEY_ID": "id", "CLOUD_STORAGE_EMULATOR_ENDPOINT": "", "HOME": "/root"}
    assert store_settings(environ) == {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1"}
    for name in STORE_SETTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    with ray_session(ClusterConfig(address="10.0.0.1:6379")):
        pass
    assert calls[0]["address"] == "10.0.0.1:6379"
    assert calls[0]["runtime_env"] == {"env_vars": {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1"}}
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    with ray_session(ClusterConfig(address="10.0.0.1:6379")):
        pass
    assert "runtime_env" not in calls[1]                 # nothing set here: the nodes' own settings stay


def test_an_address_nothing_answers_at_is_refused_in_one_line_before_anything_is_written(tmp_path, monkeypatch):
    import socket
    import ray
    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # as in a fresh `sweep` process
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]                    # closed again: nothing listens there
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        line = refused_run(tmp_path / "s", "--address", address)
        assert line.startswith(f"Error: cannot join the Ray cluster at {address}: connection refused")


def refused_run(store, *options) -> str:
    """`sweep run` of a tiny digits sweep with `options`, refused in one line before `store` is written: the line."""
    result = CliRunner().invoke(main, ["run", "--store", str(store), "--model", "digits", "--weights", "random",
                                       "--schedule", "tiny", "--classes", "0-1", "--jobs", "octave", *options])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert not store.exists()
    return lines[0]


def test_addresses_the_reachability_check_leaves_to_ray():
    from sweep.fleet import check_reachable
    for address in ("auto", "local", "http://127.0.0.1:8265", "head-node"):
        check_reachable(address, timeout=0.1)            # not HOST:PORT: Ray resolves these itself


def test_a_run_that_lost_its_workers_waits_at_least_ten_minutes_for_new_ones():
    """A replacement actor needs time to start: a short --gpu-wait (0: do not wait for GPU nodes) must not end a
    run the moment its only actor dies."""
    from sweep.fleet import NO_WORKER_WAIT, ClusterConfig, no_worker_wait
    assert no_worker_wait(ClusterConfig(gpu_wait=0)) == NO_WORKER_WAIT == 600
    assert no_worker_wait(ClusterConfig(gpu_wait=3600)) == 3600


def test_an_address_whose_port_is_not_ascii_digits_is_left_to_ray_not_a_traceback():
    from sweep.fleet import check_reachable
    assert check_reachable("localhost:\u00b2", timeout=0.1) is None    # "²" passed str.isdigit(), then int() raised


def test_more_cpus_per_worker_than_a_local_ray_would_have_is_refused_before_ray_starts(tmp_path, monkeypatch):
    """A walk-through saw this refused only after Ray had started (10 s), with exit status 1 and a manifest left."""
    import ray
    from sweep.fleet import local_cpus
    monkeypatch.setattr(ray, "is_initialized", lambda: False)   # as in a fresh `sweep` process
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    too_many = f"{local_cpus() + 1:g}"
    line = refused_run(tmp_path / "s", "--cpus-per-worker", too_many)
    assert line.startswith(f"Error: --cpus-per-worker {too_many}: the local Ray would have")
