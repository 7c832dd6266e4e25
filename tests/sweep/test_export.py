"""`sweep export` (sweep/export.py): one PNG file per stored key."""
from __future__ import annotations

import numpy as np

from analysis.synthetic import Image, noise_png, write_batch, write_store
from sweep.export import export_pngs
from sweep.store import Store


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
    assert export_pngs(store, out) == 3
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["octave/0000_crane_s0.png", "octave/0001_goldfish_s0.png", "octave/0002_crane_s0.png"]
    assert (out / files[0]).read_bytes() == first[0].png
    assert export_pngs(store, out) == 3 and len(list(out.rglob("*.png"))) == 3   # again: the same files


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
