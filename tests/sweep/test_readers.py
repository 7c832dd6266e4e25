"""The readers users bring read a real store's images/ folder, `logits` coming back as an N x n_classes float32
array in each: pandas, pyarrow.dataset, DuckDB, Polars and Ray Data (Ray started once, for its test only;
with --run-slow)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import sweep_fakes

N_CLASSES = 10   # the digits model


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("readers") / "store"
    sweep_fakes.build_store(path, classes="0-2", jobs="octave,opposite", pairs="0+1")
    return str(path / "images")


@pytest.fixture(scope="module")
def expected(images):
    """key -> logits, straight from the Parquet files."""
    import pyarrow.parquet as pq
    table = pq.read_table(images, columns=["key", "logits"])
    return dict(zip(table.column("key").to_pylist(), np.array(table.column("logits").to_pylist(), np.float32)))


def _check(keys, logits, expected):
    assert logits.dtype == np.float32 and logits.shape == (len(expected), N_CLASSES)
    assert sorted(keys) == sorted(expected)
    for key, row in zip(keys, logits):
        np.testing.assert_array_equal(row, expected[key])


def test_pandas(images, expected):
    import pandas as pd
    frame = pd.read_parquet(images, columns=["key", "logits"])
    _check(list(frame["key"]), np.stack(frame["logits"].to_numpy()).astype(np.float32, copy=False), expected)


def test_pyarrow_dataset(images, expected):
    import pyarrow.dataset as ds
    table = ds.dataset(images, format="parquet").to_table(columns=["key", "logits"])
    logits = table.column("logits").combine_chunks().flatten().to_numpy().reshape(-1, N_CLASSES)
    _check(table.column("key").to_pylist(), logits, expected)


def test_duckdb(images, expected):
    duckdb = pytest.importorskip("duckdb")
    keys, logits = duckdb.sql(f"SELECT key, logits FROM read_parquet('{images}/*.parquet')").fetchnumpy().values()
    _check(list(keys), np.stack(logits).astype(np.float32, copy=False), expected)


def test_polars(images, expected):
    pl = pytest.importorskip("polars")
    frame = pl.read_parquet(os.path.join(images, "*.parquet"), columns=["key", "logits"])
    _check(frame["key"].to_list(), frame["logits"].to_numpy(), expected)


@pytest.mark.slow   # a Ray start of its own and Ray Data's import: 9 s of the 3-minute suite for a reader's check
def test_ray_data(images, expected):
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        batch = ray.data.read_parquet(images).select_columns(["key", "logits"]).take_batch(1000, batch_format="numpy")
        _check(list(batch["key"]), np.stack(batch["logits"]).astype(np.float32, copy=False), expected)
    finally:
        ray.shutdown()
