"""Which seeds a report draws (`sweep figures --seeds`): `SeedChoice`, and its `rows`, the one filter by seed.

A sweep run with `--seeds N` holds N images of each item, and a report of every seed grows with them: at 10 seeds of
a 1000-class sweep, 30,000 interpolation strips and GIFs and a thumbnail of each of 52,000 images. A report of some
seeds draws, of the rows that hold every seed (the additions table, the jobs from source photographs and their
interpolation frames), those of the chosen seeds only, filtered as the report reads them, before any image is read.

What the choice leaves as it is: the class images (contact sheets, opposites, PCA, graph, feature scatter, and
each class page's class image and opposite) are the analysis' representatives, each class's lowest seed, as in its
tables; the analysis tables themselves (features.parquet too) cover every seed; a trajectory video is drawn for
the key given, whatever its seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import pandas as pd

from analysis.load import Rows
from sweep.store import StoreError


def stored_seeds(manifest: dict) -> tuple[int, ...] | None:
    """The seeds of a store: 0 .. N-1 of its sweep's `--seeds N` (the manifest's plan); None when it does not say
    (nor when it says fewer than one, which `sweep run` refuses: a hand-edited manifest)."""
    try:
        count = int(manifest["options"]["seeds"])
    except (KeyError, TypeError, ValueError):
        return None
    return tuple(range(count)) if count >= 1 else None


def seed_span(seeds: tuple[int, ...]) -> str:
    """A store's seeds in words: "0", "0-9"."""
    return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])


@dataclass(frozen=True)
class SeedChoice:
    """The seeds a report draws, among the store's."""
    chosen: tuple[int, ...] | None = None   # ascending; None: every seed (also when every stored seed was named)
    stored: tuple[int, ...] | None = None   # `stored_seeds`; None: the manifest does not say (any seed is taken)

    @classmethod
    def of_store(cls, manifest: dict, seeds: Iterable[int] | None = None) -> "SeedChoice":
        """The choice of `seeds` (None: every seed) in the store of `manifest`; StoreError for a seed it does not
        have, naming those it has."""
        stored = stored_seeds(manifest)
        if seeds is None:
            return cls(None, stored)
        chosen = tuple(sorted({int(seed) for seed in seeds}))
        if not chosen:
            raise StoreError("--seeds names no seed: give all, or seeds such as 0 or 0,2")
        unknown = [seed for seed in chosen if stored is not None and seed not in stored]
        if unknown:
            raise StoreError(f"--seeds {','.join(map(str, unknown))}: the store has no such seed; its seeds are "
                             f"{seed_span(stored)} (its sweep ran with --seeds {len(stored)})")
        return cls(None if chosen == stored else chosen, stored)

    def rows(self, rows: pd.DataFrame | Rows | None) -> pd.DataFrame | Rows | None:
        """Of `rows` (a table with a seed column, or `Rows`; None stays None), those of the chosen seeds."""
        if self.chosen is None or rows is None:
            return rows
        meta = rows.meta if isinstance(rows, Rows) else rows
        kept = meta["seed"].isin(self.chosen).to_numpy()
        return rows.select(kept) if isinstance(rows, Rows) else rows[kept].reset_index(drop=True)

    def line(self) -> str | None:
        """The chosen seeds in words, "seeds 0, 2 of 0-9" ("seed 0" when the store does not say its own); None for
        every seed."""
        if self.chosen is None:
            return None
        shown = f"seed{'s' * (len(self.chosen) > 1)} {', '.join(map(str, self.chosen))}"
        return shown + (f" of {seed_span(self.stored)}" if self.stored else "")

    def hint(self) -> str | None:
        """For a report of every seed of a store with several: that `--seeds 0` draws a smaller one."""
        if self.chosen is not None or not self.stored or len(self.stored) < 2:
            return None
        return (f"drawing the images of all {len(self.stored)} seeds ({seed_span(self.stored)}); `--seeds 0` draws "
                f"a smaller report, of seed 0's only")
