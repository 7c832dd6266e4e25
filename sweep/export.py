"""Export a store's images as PNG files with readable names: `octave/0042_goldfish_s0.png`,
`transfigure/0003_digit-3_china-jpg_s0.png`, `interpolate/0000_digit-0+0001_digit-1_china-jpg_s0_f03.png`."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq

from sweep.store import FRAMES, IMAGES, Store, open_store

COLUMNS = ["job", "variant", "target", "partner", "seed", "target_name", "partner_name", "png"]
# Columns older stores lack, and the values of missing data (stored as nulls).
MISSING = {"source": "", "frame": -1, "partner": -1, "partner_name": ""}


def slug(name: str) -> str:
    """A class name as a file-name part: "great white shark" -> "great-white-shark"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "class"


def png_name(row: dict) -> str:
    """Relative file name of one image row: job (and variant) folder, class index and name, source image, seed,
    and the frame of an interpolation frame."""
    folder = row["job"] + (f"-{slug(row['variant'])}" if row["variant"] else "")
    parts = []
    if row["target"] >= 0:
        part = f"{row['target']:04d}_{slug(row['target_name'])}"
        if row["partner"] >= 0:
            part += f"+{row['partner']:04d}_{slug(row['partner_name'])}"
        parts.append(part)
    if row.get("source"):
        parts.append(slug(row["source"]))
    stem = "_".join(parts + [f"s{row['seed']}"])
    if row.get("frame", -1) >= 0:
        stem += f"_f{row['frame']:02d}"
    return f"{folder}/{stem}.png"


def export_pngs(store: Store | str, out: str | Path) -> int:
    """Write every stored image (and interpolation frame) under `out`; returns how many. Reads one file and row
    group at a time."""
    store = open_store(store)
    out = Path(out)
    count = 0
    for path in store.files(IMAGES) + store.files(FRAMES):
        with store.fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            present = [c for c in ("source", "frame") if c in parquet.schema_arrow.names]
            for batch in parquet.iter_batches(columns=COLUMNS + present, batch_size=256):
                for row in batch.to_pylist():
                    row = {**MISSING, **{name: value for name, value in row.items() if value is not None}}
                    target = out / png_name(row)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(row["png"])
                    count += 1
    return count
