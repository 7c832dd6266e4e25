"""The README's commands as written, as far as they run here (issue 10.1): a local store instead of s3://, the tiny
schedule and random weights; the 1000-class GoogLeNet cluster command as a dry run (no cluster, no GPU here), the
rest on the digits model through a local Ray."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from sweep.cli import main
from sweep.plan import MAX_DEFAULT_PAIRS

TEST_ARGS = ("--schedule", "tiny", "--weights", "random")   # what the tests add to the README's arguments


def sweep(*args):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="sweep")


def test_the_cluster_command_plans_a_full_class_sweep(tmp_path):
    """`sweep run --address auto --device gpu --workers 8 --model googlenet --store s3://BUCKET/googlenet-run1`:
    no longer refused for its 499500 pairs; the dry run shows the drawn sample and writes nothing."""
    store = tmp_path / "googlenet-run1"
    result = sweep("run", "--address", "auto", "--device", "gpu", "--workers", "8", "--model", "googlenet",
                   "--store", store, *TEST_ARGS, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"pairs: random:{MAX_DEFAULT_PAIRS} of 499500 pairs of the 1000 classes" in result.output
    counts = {m[0]: int(m[1]) for m in re.findall(r"^(octave|opposite|addition)\s+(\d+)", result.output, re.M)}
    assert counts == {"octave": 1000, "opposite": 1000, "addition": 2 * MAX_DEFAULT_PAIRS}   # merge, juxtapose
    assert not store.exists()


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    """`sweep run --store PATH --model NAME [--weights W] [--classes ...]` on a local Ray, three digits."""
    store = tmp_path_factory.mktemp("readme") / "run1"
    result = sweep("run", "--store", store, "--model", "digits", *TEST_ARGS, "--classes", "0-2", "--workers", "1")
    assert result.exit_code == 0, result.output
    return store, result.output


def test_run_then_the_readers_status_export_analyze_and_figures(digits_store, tmp_path):
    store, output = digits_store
    assert "pairs:" not in output                                 # three classes: all 3 pairs, nothing drawn
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["options"]["pairs"] == "all" and "pairs_drawn" not in manifest["options"]   # every pair
    # python -c "import pandas as pd; print(pd.read_parquet('STORE/images', columns=['key', 'label_name']))"
    df = pd.read_parquet(store / "images", columns=["key", "label_name"])
    assert len(df) == 3 + 3 + 3 * 2 and df.key.is_unique
    # the README's snippet: one logits row per image
    df = pd.read_parquet(store / "images", columns=["key", "job", "target_name", "label_name", "logits"])
    assert np.stack(df["logits"].to_numpy()).shape == (len(df), 10)
    status = sweep("status", "--store", store)
    assert status.exit_code == 0 and re.search(r"total\s+12/12", status.output), status.output
    exported = sweep("export", "--store", store, "--out", tmp_path / "png")
    assert exported.exit_code == 0 and "wrote 12 PNG files" in exported.output
    # sweep analyze --store STORE && sweep figures --store STORE --out report/
    analysed = sweep("analyze", "--store", store)
    assert analysed.exit_code == 0, analysed.output
    report = sweep("figures", "--store", store, "--out", tmp_path / "report")
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "index.html").is_file()


def test_a_local_run_does_not_print_rays_token_notice(digits_store):
    """Ray's "Token authentication is enabled" notice is dropped on local runs; its other messages pass."""
    import logging
    assert "Token authentication is enabled" not in digits_store[1]
    from sweep.fleet import RAY_AUTH_LOGGER, quiet_local_token_notice
    assert quiet_local_token_notice in logging.getLogger(RAY_AUTH_LOGGER).filters   # installed by the run
    record = lambda text: logging.LogRecord(RAY_AUTH_LOGGER, logging.WARNING, __file__, 1, text, (), None)
    assert not quiet_local_token_notice(record("Token authentication is enabled for this Ray cluster. Set ..."))
    assert quiet_local_token_notice(record("Token authentication is disabled for this Ray cluster."))
