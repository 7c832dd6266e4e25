"""Reading stores: columns, order, de-duplication, representatives, PNGs on demand, and one-line errors."""
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.load import (NUMERIC_COLUMNS, StoreError, iter_image_rows, iter_pngs, open_store, read_rows,
                           refuse_repeated_stores, representatives)
from analysis.synthetic import Image, write_store
from handmade import NAMES, OCTAVE, corrupt_png_column, make_small_store
from sweep.store import Store


def test_rows_hold_every_image_in_a_stable_order(small_store):
    rows = read_rows(open_store(small_store))
    assert len(rows) == 16 and rows.logits.shape == (16, 6) and rows.logits.dtype == np.float32
    assert "png" not in rows.meta.columns
    assert list(rows.meta["job"].drop_duplicates()) == ["addition", "octave", "opposite"]
    octave = rows.job("octave")
    assert list(octave.meta["target"]) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(octave.logits[4], OCTAVE[4])


def test_rows_do_not_depend_on_how_files_are_cut(tmp_path):
    a = read_rows(open_store(make_small_store(tmp_path / "a", rows_per_file=3)))
    b = read_rows(open_store(make_small_store(tmp_path / "b", rows_per_file=16)))
    pd.testing.assert_frame_equal(a.meta, b.meta)
    np.testing.assert_array_equal(a.logits, b.logits)


def test_numeric_reads_never_touch_png_bytes(small_store):
    corrupt_png_column(small_store)
    store = open_store(small_store)
    with pytest.raises(OSError):  # the corruption is real: the png column cannot be read any more
        pq.read_table(store.files("images")[0], columns=["png"])
    assert len(read_rows(store)) == 16
    with pytest.raises(ValueError):
        read_rows(store, columns=[*NUMERIC_COLUMNS, "png"])


def test_a_file_whose_pictures_cannot_be_read_is_refused_in_the_store_s_one_wording(small_store):
    """The pictures' reader (`figures`, `directions`) refused a damaged png column in words of its own, without the
    way on, while the numbers passed: the very file `sweep run --check-files` sets aside, and its refusal says so."""
    corrupt_png_column(small_store)
    store = open_store(small_store)
    with pytest.raises(StoreError) as refused:
        dict(iter_pngs(store, ["octave:-:0:-1:0"]))
    assert str(refused.value).startswith(f"unreadable file {small_store}/images/part-") and \
        "(`sweep run --check-files` with the store's command moves it into quarantine/" in str(refused.value)


def test_duplicate_keys_count_once_and_the_lowest_seed_represents_a_class(tmp_path):
    seed1 = Image("octave", 0, np.array([10, 0, 0, 0, 9, 0.0]), seed=1)
    seed0 = Image("octave", 0, np.array(OCTAVE[0], float), seed=0)
    other = Image("octave", 1, np.array(OCTAVE[1], float), seed=0)
    # seed 1 comes first in file order; the duplicate of seed 0 comes last
    store = write_store(str(tmp_path / "s"), NAMES, [seed1, seed0, other, seed0], rows_per_file=1)
    rows = read_rows(open_store(store))
    assert len(rows) == 3
    reps = representatives(rows.job("octave"))
    assert list(reps.meta["target"]) == [0, 1] and list(reps.meta["seed"]) == [0, 0]
    np.testing.assert_array_equal(reps.logits[0], OCTAVE[0])


def test_pngs_are_read_for_the_requested_keys_only(small_store):
    store = open_store(small_store)
    wanted = ["octave:-:3:-1:0", "addition:merge:0:1:0"]
    got = dict(iter_pngs(store, wanted))
    assert sorted(got) == sorted(wanted)
    assert all(png.startswith(b"\x89PNG") for png in got.values())


def test_pictures_are_read_from_the_files_the_key_index_names_only(tmp_path, monkeypatch):
    """The numeric pass gives the key index ({path: keys}, as `Store.keys_by_file`); given it, a reader of pictures
    opens only the files holding the keys it wants, each once; without it, the key columns are read first."""
    from analysis.load import read_rows_and_keys
    from sweep.store import is_frame_key
    from test_image_figures import counted_reads, make_image_store
    store = open_store(make_image_store(tmp_path / "s"))
    rows, index = read_rows_and_keys(store, frames=True)
    assert list(index) == store.files("images") + store.files("frames")
    assert sorted(key for keys in index.values() for key in keys) == sorted(rows.meta["key"])
    wanted = [next(k for k in rows.meta["key"] if is_frame_key(k)), "octave:-:3:-1:0", "octave:-:4:-1:0"]
    holding = {path for path, keys in index.items() if set(keys) & set(wanted)}
    with monkeypatch.context() as patch:
        opened, read = counted_reads(patch, store.root)
        got = dict(iter_pngs(store, wanted, index))
    assert sorted(got) == sorted(wanted) and all(png.startswith(b"\x89PNG") for png in got.values())
    assert sum(opened.values()) == len(holding) == len([path for path in read if "png" in read[path]])
    assert dict(iter_pngs(store, wanted)) == got


def test_several_readers_in_one_pass_get_what_each_read_alone_gets(tmp_path, monkeypatch):
    """`read_rows_for`: the analysis' rows (final images, outputs) and the figures' image-job rows (their numbers,
    frames, derived columns, no outputs) from one read of each file, each as its own pass gives it."""
    from analysis.load import LABEL_PROB, OUTPUTS_FINITE, RowsWanted, read_rows_and_keys, read_rows_for
    from test_image_figures import counted_reads, make_image_store
    store = open_store(make_image_store(tmp_path / "s"))
    figures = RowsWanted((*NUMERIC_COLUMNS, "step", "width", LABEL_PROB, OUTPUTS_FINITE), frames=True,
                         logits=False, jobs=("transfigure", "interpolate"))
    with monkeypatch.context() as patch:
        opened, _ = counted_reads(patch, store.root)
        both = read_rows_for(store, [RowsWanted(), figures])
    assert set(opened.values()) == {1} and len(opened) == len(store.files("images") + store.files("frames"))
    alone = [read_rows_and_keys(store), read_rows_and_keys(store, figures.columns, frames=True, logits=False)]
    alone[1] = (alone[1][0].select(alone[1][0].meta["job"].isin(figures.jobs)), alone[1][1])
    for (rows, index), (reference, reference_index) in zip(both, alone):
        pd.testing.assert_frame_equal(rows.meta, reference.meta)
        np.testing.assert_array_equal(rows.logits, reference.logits)
        assert index == reference_index
    assert both[0][1].keys() == set(store.files("images")) and both[1][0].logits.shape[1] == 0
    assert set(both[1][0].meta["job"]) == {"transfigure", "interpolate"} and (both[1][0].meta["frame"] >= 0).any()


def test_chosen_columns_of_chosen_images_and_an_older_file_without_the_step(small_store):
    wanted = ["octave:-:3:-1:0", "addition:merge:0:1:0"]
    rows = {r["key"]: r for r in iter_image_rows(small_store, wanted, ["label", "logits", "step"])}
    assert sorted(rows) == sorted(wanted) and set(rows["octave:-:3:-1:0"]) == {"key", "label", "logits", "step"}
    assert rows["octave:-:3:-1:0"]["label"] == 3 and rows["octave:-:3:-1:0"]["logits"] == OCTAVE[3]
    for name in os.listdir(os.path.join(small_store, "images")):   # as written before images/ had a step column
        path = os.path.join(small_store, "images", name)
        pq.write_table(pq.read_table(path).drop_columns(["step"]), path)
    [old] = iter_image_rows(small_store, ["octave:-:3:-1:0"], ["step", "png"])
    assert old["step"] == -1 and old["png"].startswith(b"\x89PNG")


def test_temporary_files_are_ignored(small_store):
    pd.DataFrame({"a": [1]}).to_parquet(os.path.join(small_store, "images", "_part-tmp.parquet"))
    pd.DataFrame({"a": [1]}).to_parquet(os.path.join(small_store, "images", ".hidden.parquet"))
    assert len(read_rows(open_store(small_store))) == 16


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


def test_no_store(tmp_path):
    with pytest.raises(StoreError) as err:
        open_store(str(tmp_path / "nowhere"))
    assert "no store" in _one_line(err)


def test_missing_manifest(small_store):
    os.remove(os.path.join(small_store, "manifest.json"))
    with pytest.raises(StoreError) as err:
        open_store(small_store)
    assert "manifest.json" in _one_line(err)


def test_broken_manifest(small_store):
    with open(os.path.join(small_store, "manifest.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(StoreError) as err:
        open_store(small_store)
    assert "manifest" in _one_line(err)


def test_a_store_without_images_says_why_it_has_none(tmp_path):
    import pyarrow as pa
    from sweep.lease import Lease
    from sweep.store import FAILURES
    store = open_store(write_store(str(tmp_path / "s"), NAMES, []))
    with pytest.raises(StoreError) as err:
        read_rows(store)
    assert "holds no images yet: run `sweep run` first" in _one_line(err)
    store.write_table(f"{FAILURES}/part-0.parquet", pa.table({"key": ["k"], "attempt": [1]}))
    with pytest.raises(StoreError) as err:                  # a walk-through was told to run `sweep run` here
        read_rows(store)
    assert "every item tried so far failed (`sweep status" in _one_line(err)
    lease = Lease.acquire(store, "run-1")
    try:
        with pytest.raises(StoreError) as err:
            read_rows(store)
        assert "a sweep is running on it (host " in _one_line(err) and "run run-1" in _one_line(err)
    finally:
        lease.release()


def test_foreign_parquet_file(small_store):
    pd.DataFrame({"a": [1], "b": ["x"]}).to_parquet(os.path.join(small_store, "images", "zz-foreign.parquet"))
    with pytest.raises(StoreError) as err:
        read_rows(open_store(small_store))
    message = _one_line(err)
    assert "zz-foreign.parquet" in message and "logits" in message


def test_file_that_is_not_parquet(small_store):
    with open(os.path.join(small_store, "images", "zz-garbage.parquet"), "wb") as f:
        f.write(b"this is not parquet at all")
    with pytest.raises(StoreError) as err:
        read_rows(open_store(small_store))
    assert f"unreadable file {small_store}/images/zz-garbage.parquet: " in _one_line(err)   # as `sweep status`,
    assert "moves it into quarantine/" in _one_line(err)                                    # with the way on


def test_a_frames_file_is_refused_by_its_own_folder(tmp_path):
    """A frames/ file is named like its batch's images/ file: refused as "images/NAME", it named another file (the
    pictures' reader given the key index, and a frames file that is not a classweep file)."""
    from analysis.load import read_rows_and_keys
    from sweep.store import is_frame_key
    from test_image_figures import make_image_store
    store = open_store(make_image_store(tmp_path / "s"))
    rows, index = read_rows_and_keys(store, frames=True)
    frame = next(key for key in rows.meta["key"] if is_frame_key(key))
    path = next(path for path, keys in index.items() if frame in keys)
    name = path.rsplit("/", 1)[1]
    assert path == os.path.join(store.root, "frames", name) and os.path.exists(os.path.join(store.root, "images", name))
    table = pq.read_table(path)
    with open(path, "wb") as f:
        f.write(b"this is not parquet at all")
    with pytest.raises(StoreError) as err:
        dict(iter_pngs(store, [frame], index))
    assert _one_line(err).startswith(f"unreadable file {store.uri}/frames/{name}: ")
    pq.write_table(table.drop_columns(["png"]), path)
    with pytest.raises(StoreError) as err:
        read_rows(store, frames=True)
    assert _one_line(err).startswith(f"{store.uri}/frames/{name} is not a classweep images file (missing columns: png)")


def test_logits_that_do_not_match_the_manifest(small_store):
    path = os.path.join(small_store, "manifest.json")
    manifest = json.load(open(path))
    manifest["n_classes"], manifest["class_names"] = 7, [*NAMES, "gnu"]
    json.dump(manifest, open(path, "w"))
    with pytest.raises(StoreError) as err:
        read_rows(open_store(small_store))
    assert "7 classes" in _one_line(err)


def test_a_read_without_outputs_never_touches_the_logits_column(tmp_path):
    """Scale audit: the figures read every frame's 4 KB output vector (1.4 GB of them at 10^5 images) to show two
    numbers; `logits=False` reads the numbers only, with each final image's label probability computed file by
    file (a frame's is nan: its outputs are not read for it)."""
    from test_image_figures import make_image_store
    from handmade import corrupt_column
    from jobs.outputs import label_probs
    from analysis.load import LABEL_PROB
    store = make_image_store(tmp_path / "s")
    whole = read_rows(store, frames=True)
    light = read_rows(store, [*NUMERIC_COLUMNS, LABEL_PROB], frames=True, logits=False)
    assert light.logits.shape == (len(whole), 0)
    pd.testing.assert_frame_equal(light.meta.drop(columns=[LABEL_PROB]), whole.meta)
    np.testing.assert_array_equal(light.meta[LABEL_PROB], np.where(
        whole.meta["frame"] >= 0, np.nan, label_probs(whole.logits, whole.meta["label"])))
    corrupt_column(store, "logits", "frames")   # the final images' probabilities read no frames/ file's outputs
    pd.testing.assert_frame_equal(read_rows(store, [*NUMERIC_COLUMNS, LABEL_PROB], frames=True, logits=False).meta,
                                  light.meta)
    for folder in ("images", "frames"):
        corrupt_column(store, "logits", folder)
    assert len(read_rows(store, frames=True, logits=False)) == len(whole)
    with pytest.raises(StoreError):   # the corruption is real
        read_rows(store, frames=True)


def test_rows_read_the_same_whatever_optional_columns_their_files_lack(tmp_path):
    """Files of one store written before and after the image jobs' columns existed, read together."""
    store = make_small_store(tmp_path / "s", rows_per_file=3)
    full = read_rows(open_store(store))
    for name in sorted(os.listdir(os.path.join(store, "images")))[::2]:   # every other file as an older one
        path = os.path.join(store, "images", name)
        pq.write_table(pq.read_table(path).drop_columns(["source", "frame", "step"]), path)
    mixed = read_rows(open_store(store), [*NUMERIC_COLUMNS, "step"])
    pd.testing.assert_frame_equal(mixed.meta.drop(columns=["step"]), full.meta)
    np.testing.assert_array_equal(mixed.logits, full.logits)
    assert set(mixed.meta["step"]) <= {-1, 0}


def test_gathered_is_the_concatenation_indexed_without_holding_it():
    """read_rows' outputs at 10^5 images were held three times (the files', their concatenation, the rows in order):
    `gathered` gives the same rows holding the wanted ones once beside the parts not yet copied out."""
    import tracemalloc
    from analysis.load import gathered
    rng = np.random.default_rng(0)
    for _ in range(100):   # parts of 0-4 rows, any subset in any order, none at all
        parts = [rng.normal(size=(n, 3)).astype(np.float32) for n in rng.integers(0, 5, rng.integers(1, 8))]
        whole = np.concatenate(parts)
        rows = rng.permutation(len(whole))[:rng.integers(0, len(whole) + 1)]
        got = gathered(list(parts), rows)
        assert got.dtype == np.float32 and np.array_equal(got, whole[rows])
    parts = [np.full((500, 250), float(f), np.float32) for f in range(40)]   # 40 files of 500 KB: 20 MB
    rows = np.arange(20_000)[::-1].copy()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        got = gathered(parts, rows)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert got[0, 0] == 39 and got[-1, 0] == 0 and parts == []
    assert peak < 1.3 * 20_000 * 250 * 4, peak / 1e6   # np.concatenate(parts)[rows]: 2x the outputs above the parts


def test_rows_without_outputs_hold_no_file_s_outputs(tmp_path, monkeypatch):
    """`logits=False` with LABEL_PROB reads each file's outputs for its label probabilities: they were kept, as a
    zero-width slice of each file's array, until every file was read and the rows put in order (a reader of every
    interpolation frame held gigabytes of outputs for a few numbers a row). Measured as the Arrow memory held when
    the rows are put in order."""
    import pyarrow as pa

    import analysis.load as load
    names = tuple(f"class {c}" for c in range(500))
    rng = np.random.default_rng(0)
    store = write_store(str(tmp_path / "s"), names, [Image("octave", n % 500, rng.normal(size=500), seed=n // 500)
                                                     for n in range(2000)], rows_per_file=100)   # 20 files
    outputs = 2000 * 500 * 4                                                                         # 4 MB
    held, gathered = [], load.gathered

    def measured(parts, rows):
        held.append(pa.total_allocated_bytes() - before)
        return gathered(parts, rows)
    monkeypatch.setattr(load, "gathered", measured)
    before = pa.total_allocated_bytes()
    rows = read_rows(open_store(store), ["key", "job", "target", "seed", "label", load.LABEL_PROB], logits=False)
    assert rows.logits.shape == (2000, 0) and rows.meta[load.LABEL_PROB].between(0, 1).all()
    assert held[0] < outputs / 4, held[0] / outputs


@pytest.mark.parametrize("spelling", ["link", "file-uri"])
def test_a_store_given_twice_under_another_spelling_is_refused(tmp_path, spelling):
    """`sweep compare` and `sweep stability` took a store and a link to it (or its file:// URI) for two stores: its
    rows were counted twice, as two generators or models named by their folders."""
    first, other = make_small_store(tmp_path / "a"), make_small_store(tmp_path / "b")
    if spelling == "link":
        os.symlink(first, tmp_path / "a-link")
        again = str(tmp_path / "a-link")
    else:
        again = f"file://{first}"
    refuse_repeated_stores([Store.open(first), Store.open(other)])   # two stores: taken
    with pytest.raises(StoreError, match=rf"^store {first} is given twice \(also as {again}\): compare each store "
                                         rf"once$"):
        refuse_repeated_stores([Store.open(first), Store.open(other), Store.open(again)])
