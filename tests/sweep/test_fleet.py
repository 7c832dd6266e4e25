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
