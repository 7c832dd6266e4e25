"""`sweep export` (sweep/export.py): one PNG file per stored key."""
from __future__ import annotations

import os

import numpy as np
import pytest

from analysis.synthetic import Image, noise_png, write_batch, write_store
from sweep.export import Exported, export_pngs
from sweep.store import Store, StoreError


def test_a_key_stored_in_two_files_is_exported_once_from_the_first_file(tmp_path):
    """A batch file copied in (or a batch run again under another name) repeats keys: the readers take each key
    from the first file by name, and `sweep status` warns; export wrote the repeat too, as a second file with a
    hash in its name, and counted it."""
    rng = np.random.default_rng(0)
    names = ["crane", "goldfish", "crane"]   # ImageNet's two cranes: their files differ by class index
    first = [Image("octave", t, rng.normal(size=3), png=noise_png(rng, 8, (0.1, 0.1, 0.1))) for t in range(3)]
    store = write_store(str(tmp_path / "store"), names, first)
    again = [Image("octave", t, rng.normal(size=3), png=noise_png(rng, 8, (0.9, 0.9, 0.9))) for t in range(2)]
    write_batch(Store.open(store), "part-zzz", again, names)
    out = tmp_path / "out"
    assert export_pngs(store, out).count == 3
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["octave/0000_crane_s0.png", "octave/0001_goldfish_s0.png", "octave/0002_crane_s0.png"]
    assert (out / files[0]).read_bytes() == first[0].png
    assert export_pngs(store, out).count == 3 and len(list(out.rglob("*.png"))) == 3   # again: the same files


def test_a_row_without_its_picture_is_refused_in_one_line_naming_the_file(tmp_path):
    """A null png (a foreign or damaged file) stopped export with a KeyError traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import pytest

    from sweep.store import StoreError

    rng = np.random.default_rng(0)
    store = write_store(str(tmp_path / "store"), ["a", "b"], [Image("octave", t, rng.normal(size=2)) for t in range(2)])
    path, = (tmp_path / "store" / "images").glob("*.parquet")
    table = pq.read_table(path)
    column = table.schema.get_field_index("png")
    pq.write_table(table.set_column(column, table.schema.field(column), pa.nulls(len(table), pa.binary())), path)
    with pytest.raises(StoreError, match=r"^unreadable file .*images/part-000000.parquet: the row of key "
                                         r"'octave:-:0:-1:0' has no png \(`sweep run --check-files`"):
        export_pngs(store, tmp_path / "out")


def test_an_image_whose_file_name_would_be_too_long_is_exported_under_a_cut_name_with_a_hash(tmp_path):
    """Hunt: an interpolation between two long class names, from a photograph with a long name, was named past the
    255 bytes a file name may have: export stopped at 'File name too long'."""
    rng = np.random.default_rng(0)
    names = ["very long class name number one " * 4, "very long class name number two " * 4]
    images = [Image("interpolate", 0, rng.normal(size=2), partner=1, source=f"{'photo ' * 30}.jpg", frame=frame,
                    png=noise_png(rng, 8)) for frame in (-1, 0)]
    store = write_store(str(tmp_path / "store"), names, images)
    assert export_pngs(store, tmp_path / "out").count == 2
    files = sorted(p.name for p in (tmp_path / "out" / "interpolate").iterdir())
    assert all(len(name.encode()) <= 255 and name.startswith("0000_very-long-class") for name in files)
    image, frame = files   # one cut name with its hash; the seed and the frame kept after it
    assert image.endswith("_s0.png") and frame.endswith("_s0_f00.png") and image[:-7] == frame[:-11]


def _store(path, names, shade, rng):
    """A store of one octave image per class name, each a noise picture around `shade`."""
    images = [Image("octave", t, rng.normal(size=len(names)), png=noise_png(rng, 8, (shade,) * 3))
              for t in range(len(names))]
    return write_store(str(path), names, images), images


def test_exporting_the_same_store_again_writes_nothing(tmp_path):
    """A second export of one store into its folder finds every file there with the same bytes: none is written
    again (their times stay), and the count says so."""
    store, images = _store(tmp_path / "store", ["a", "b", "c"], 0.5, np.random.default_rng(0))
    out = tmp_path / "out"
    assert export_pngs(store, out) == Exported(written=3, unchanged=0)
    for path in out.rglob("*.png"):
        os.utime(path, ns=(10**9, 10**9))   # 1970: a rewrite would show
    assert export_pngs(store, out) == Exported(written=0, unchanged=3)
    assert {path.stat().st_mtime_ns for path in out.rglob("*.png")} == {10**9}
    (out / "octave" / "0001_b_s0.png").unlink()   # one lost: written again, the others left
    assert export_pngs(store, out) == Exported(written=1, unchanged=2)
    assert (out / "octave" / "0001_b_s0.png").read_bytes() == images[1].png


def test_a_file_with_other_contents_is_refused_before_anything_is_written(tmp_path):
    """Export overwrote same-named files without a word: a user's own file, or another store's export into the same
    folder. Refused in one line naming the first few and --overwrite, before any file is written; files of other
    names are left alone either way."""
    rng = np.random.default_rng(0)
    store, images = _store(tmp_path / "store", ["a", "b", "c", "d", "e"], 0.5, rng)
    other, _ = _store(tmp_path / "other", ["a", "b", "c", "d", "e"], 0.9, rng)   # same names, other pictures
    out = tmp_path / "out"
    export_pngs(other, out)
    (out / "octave" / "0004_e_s0.png").unlink()
    (out / "notes.txt").write_text("mine")
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    with pytest.raises(StoreError) as refused:
        export_pngs(store, out)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"--out {out} already holds 4 files that export would write")
    assert "octave/0000_a_s0.png, octave/0001_b_s0.png, octave/0002_c_s0.png and 1 more" in message
    assert "--overwrite" in message
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before   # e not written either
    assert export_pngs(store, out, overwrite=True) == Exported(written=5, unchanged=0, replaced=4)
    assert [(out / "octave" / f"000{t}_{n}_s0.png").read_bytes() for t, n in enumerate("abcde")] == \
           [image.png for image in images]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("in_the_way", ["opposite", "opposite/0001_b_s0.png"])
def test_a_file_or_folder_in_the_way_is_refused_before_anything_is_written(tmp_path, in_the_way):
    """A file where a job's folder goes, or a folder where a PNG goes: export wrote the jobs before it, then stopped
    with `File exists` or `Is a directory` (--overwrite too), leaving a partial export. Refused in one line naming
    it, before any file is written, with --overwrite as without."""
    rng = np.random.default_rng(0)
    images = [Image(job, t, rng.normal(size=2), png=noise_png(rng, 8)) for job in ("octave", "opposite")
              for t in range(2)]
    store = write_store(str(tmp_path / "store"), ["a", "b"], images)
    out = tmp_path / "out"
    (out / in_the_way).parent.mkdir(parents=True, exist_ok=True)
    (out / in_the_way).mkdir() if in_the_way.endswith(".png") else (out / in_the_way).write_text("mine")
    before = sorted(out.rglob("*"))
    for overwrite in (False, True):
        with pytest.raises(StoreError) as refused:
            export_pngs(store, out, overwrite=overwrite)
        assert str(refused.value) == (f"--out {out} holds 1 file or folder where export would write a PNG file or "
                                      f"its folder ({in_the_way}): move them away, or export into another folder")
        assert sorted(out.rglob("*")) == before   # no octave/ either


@pytest.mark.parametrize("class_bytes, seed", [(65, 0), (80, 12345678)])
def test_names_that_clash_near_the_length_limit_get_their_hash_within_it(tmp_path, class_bytes, seed):
    """Two photographs whose long names make the same file-name part (cut at its 100 bytes): the second one's files
    took the key's hash after their name, past the 255 bytes a file name may have, whether the name had been cut
    (a long seed and frame after it) or not (a name of 241-251 bytes): export stopped at 'File name too long'
    halfway. The hash now takes the cut name's hash's place, the seed and frame kept after it."""
    rng = np.random.default_rng(0)
    names = ["a" * class_bytes, "b" * class_bytes]
    images = [Image("interpolate", 0, rng.normal(size=2), partner=1, seed=seed, source=f"{'photo ' * 20}{n}.jpg",
                    frame=frame, png=noise_png(rng, 8)) for n in (1, 2) for frame in (-1, 0)]
    store = write_store(str(tmp_path / "store"), names, images)
    assert export_pngs(store, tmp_path / "out").count == 4
    files = sorted(p.name for p in (tmp_path / "out" / "interpolate").iterdir())
    assert len(files) == 4 and all(len(name.encode()) <= 255 for name in files), [len(n.encode()) for n in files]
    assert sum(name.endswith(f"_s{seed}.png") for name in files) == 2
    assert sum(name.endswith(f"_s{seed}_f00.png") for name in files) == 2
    assert export_pngs(store, tmp_path / "out").unchanged == 4   # the same names again


@pytest.mark.parametrize("uri", ["s3://bucket/pngs", "gs://bucket/pngs", "file:///tmp/pngs"])
def test_an_output_uri_is_refused_not_made_a_local_folder(tmp_path, monkeypatch, uri):
    """Export writes into a local folder: `--out s3://bucket/pngs` made the folders `s3:/bucket/pngs` under the
    current one and said it wrote its files "under s3://bucket/pngs". Refused in one line, nothing written."""
    store, _ = _store(tmp_path / "store", ["a"], 0.5, np.random.default_rng(0))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=rf"^--out {uri} is a URI: export writes into a local folder"):
        export_pngs(store, uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_an_export_cut_short_while_writing_a_file_leaves_no_partial_file_and_runs_again(tmp_path):
    """A write cut short (a full disk here; Ctrl-C alike) left the PNG it was writing cut off under its name: the
    next export took it for a file of other contents and refused to go on without --overwrite. Each file is
    written whole or not at all: the same command then finishes the export."""
    import resource
    import signal
    import subprocess
    import sys

    store, images = _store(tmp_path / "store", ["a", "b", "c"], 0.5, np.random.default_rng(0))
    out = tmp_path / "out"
    limit = min(len(image.png) for image in images) // 2   # bytes a file may have: each PNG is cut halfway

    def small_files() -> None:   # in the child: a write past `limit` fails (EFBIG) instead of killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    script = f"from sweep.export import export_pngs; export_pngs({str(store)!r}, {str(out)!r})"
    cut_short = subprocess.run([sys.executable, "-c", script], preexec_fn=small_files, capture_output=True,
                               text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert cut_short.returncode != 0 and "File too large" in cut_short.stderr, cut_short.stderr
    assert [path for path in out.rglob("*") if path.is_file()] == []
    assert export_pngs(store, out) == Exported(written=3, unchanged=0)
    assert [(out / "octave" / f"000{t}_{n}_s0.png").read_bytes() for t, n in enumerate("abc")] == \
           [image.png for image in images]


def test_an_export_whose_job_folder_would_be_the_store_is_refused(tmp_path):
    """A store named after a job (`runs/octave`) exported into the folder that holds it (`--out runs`): its octave
    PNGs went into the store's own root, among its images/ and manifest. Refused in one line, nothing written."""
    store, _ = _store(tmp_path / "runs" / "octave", ["a", "b"], 0.5, np.random.default_rng(0))
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    with pytest.raises(StoreError) as refused:
        export_pngs(store, tmp_path / "runs")
    assert str(refused.value) == (f"--out {tmp_path / 'runs'} would put PNG files into the store {store} (as "
                                  f"octave/0000_a_s0.png): export into a folder of its own")
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before


def test_an_output_folder_under_the_home_folder_written_with_a_tilde_goes_there(tmp_path, monkeypatch):
    """`--out=~/pngs` reaches the command unexpanded (the shell expands `~` only at a word's start): export made a
    folder named `~` in the current one, where `--store=~/store`, `figures --out=~/...` and the others read the
    home folder."""
    store, images = _store(tmp_path / "store", ["a"], 0.5, np.random.default_rng(0))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert export_pngs(store, "~/pngs").written == 1
    assert (tmp_path / "home" / "pngs" / "octave" / "0000_a_s0.png").read_bytes() == images[0].png
    assert not (tmp_path / "~").exists()
