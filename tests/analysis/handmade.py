"""A small hand-designed store whose tables can be worked out on paper (see the comments on each image).

Six classes. Octave images (most activated other class -> nearest neighbour):
    0 -> 1, 1 -> 0                 a mutual pair: component {0, 1}
    2 -> 3, 3 -> 4, 4 -> 2, 5 -> 4 a 3-cycle plus a tail: component {2, 3, 4, 5}, triangle clique {2, 3, 4}
Opposite images (argmax): 0 -> 1, 1 -> 0, 2 -> 5, 3 -> 5, 4 -> 0, 5 -> 3
    mutual: 0 <-> 1 and 3 <-> 5; not mutual: 2 (5's opposite is 3), 4 (0's opposite is 1)
Margin labels (stored, chosen by hand): 0 -> 3, 1 -> 3, 2 -> 4, 3 -> 0, 4 -> 5, 5 -> 0; mutual only 0 <-> 3.
Additions: 0+1 merge ranks (1, 2) top two; 0+1 juxtapose (1, 3) not; 2+3 merge (3, 2) not; 2+3 juxtapose tie (1, 1).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from analysis.synthetic import Image, noise_png, write_store
from jobs.catalog import key_of

NAMES = ("apple", "bear", "cat", "dog", "eel", "fox")
OCTAVE = {
    0: [10, 5, 1, 0, 0, -2],
    1: [4, 10, 1, 0, 0, -1],
    2: [0, 1, 10, 6, 2, 0],
    3: [0, 0, 2, 10, 7, 1],
    4: [0, 0, 8, 1, 10, 0],
    5: [1, 0, 0, 0, 2, 10],
}
OPPOSITE = {  # target: (logits, margin label)
    0: ([-9, 6, 0, 0, 1, 0], 3),
    1: ([5, -9, 0, 1, 0, 0], 3),
    2: ([0, 0, -9, 1, 0, 6], 4),
    3: ([0, 1, 0, -9, 0, 6], 0),
    4: ([6, 0, 1, 0, -9, 0], 5),
    5: ([0, 1, 0, 6, 0, -9], 0),
}
ADDITION = {  # (a, b, variant): logits
    (0, 1, "merge"): [9, 8, 1, 0, 0, 0],
    (0, 1, "juxtapose"): [9, 2, 8, 0, 0, 0],
    (2, 3, "merge"): [0, 0, 5, 6, 7, 0],
    (2, 3, "juxtapose"): [0, 0, 7, 7, 1, 0],
}
OPTIONS = {"jobs": ["octave", "opposite", "addition"], "classes": [0, 1, 2, 3, 4, 5], "pairs": [[0, 1], [2, 3]],
           "variants": ["merge", "juxtapose"], "seeds": 1, "batch_size": 4}


def small_images(drop: tuple[str, ...] = (), size: int = 24) -> list[Image]:
    """The store's rows; `drop` removes rows by key."""
    rng = np.random.default_rng(0)
    images = [Image("octave", c, np.array(v, float), png=noise_png(rng, size)) for c, v in OCTAVE.items()]
    images += [Image("opposite", c, np.array(v, float), margin_label=m, png=noise_png(rng, size))
               for c, (v, m) in OPPOSITE.items()]
    images += [Image("addition", a, np.array(v, float), variant=variant, partner=b, png=noise_png(rng, size))
               for (a, b, variant), v in ADDITION.items()]
    return [im for im in images if key_of(im.job, im.variant, im.target, im.partner, im.seed) not in drop]


def make_small_store(path, drop: tuple[str, ...] = (), options: dict | None = None, rows_per_file: int = 4) -> str:
    return write_store(str(path), NAMES, small_images(drop), options=options or OPTIONS,
                       rows_per_file=rows_per_file)


@dataclass(frozen=True)
class Report:
    """A store and the index.html `write_figures` returned for it: what a module-scoped fixture makes once for the
    tests that only read the report (a test that writes into the store works on `copied(report.store, ...)`)."""
    store: str      # the store's folder
    index: Path     # as `write_figures` returned it
    log: str = ""   # what it wrote on its `stream`, when that was a StringIO

    @property
    def out(self) -> Path:
        return self.index.parent


def copied(store: str, path) -> str:
    """A copy of the store folder `store` at `path`, its analysis and figures included and every file's modification
    time kept (so that a kept file and a redrawn one still tell apart): a test's own store, from a shared one."""
    return str(shutil.copytree(store, path))


def corrupt_png_column(store: str) -> None:
    """Overwrite every png column chunk of every images/ file with garbage (other columns stay readable)."""
    corrupt_column(store, "png")


def corrupt_column(store: str, column: str, folder: str = "images") -> None:
    """Overwrite every `column` chunk of every `folder` file with garbage (other columns stay readable)."""
    import glob
    for path in glob.glob(f"{store}/{folder}/*.parquet"):
        meta = pq.ParquetFile(path).metadata
        j = meta.schema.to_arrow_schema().names.index(column)
        chunks = [meta.row_group(i).column(j) for i in range(meta.num_row_groups)]
        with open(path, "r+b") as f:
            for col in chunks:
                f.seek(col.dictionary_page_offset or col.data_page_offset)
                f.write(b"\xff" * col.total_compressed_size)




def write_scorer(store: str, scorer: str = "other.w", part: int = 0) -> str:
    """A `sweep score` scorer on the store's images, written through the scoring module's own table builder: its
    outputs are the stored logits rolled by one class (so it disagrees with the generating model). `part`: the part
    file's number (a second part adds to the scorer, as a resumed `sweep score` does)."""
    from sweep.score import SCORER_FILE, SCORES, ScorePlan, scores_table
    from sweep.store import Store
    st = Store.open(store)
    rows = st.read("images", ["key", "target", "partner", "logits"]).to_pandas()
    logits = np.roll(np.stack(rows["logits"].to_numpy()), 1, axis=1)
    plan = ScorePlan(scorer=scorer, weights="w", n_classes=len(NAMES), scale=1.0)
    st.write_bytes(f"{SCORES}/{scorer}/{SCORER_FILE}", b"{}")
    st.write_table(f"{SCORES}/{scorer}/part-{part}.parquet",
                   scores_table(list(rows["key"]), rows["target"].astype(int).tolist(),
                                rows["partner"].fillna(-1).astype(int).tolist(), logits, plan))
    return scorer
