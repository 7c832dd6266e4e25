"""`SeedChoice` (`sweep figures --seeds`): which seeds of a store a report draws, and the report of some seeds."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import StoreError, write_figures
from analysis.load import Rows
from analysis.seeds import SeedChoice
from analysis.synthetic import write_store
from handmade import NAMES, small_images
from test_image_figures import IMAGE_OPTIONS, image_rows, make_image_store

TWO_SEEDS = {"options": {"seeds": 2}}
TEN_SEEDS = {"options": {"seeds": 10}}


def test_a_choice_is_the_seeds_named_each_once_in_order_and_every_stored_seed_is_all():
    assert SeedChoice.of_store(TEN_SEEDS, [2, 0, 2]) == SeedChoice((0, 2), tuple(range(10)))
    assert SeedChoice.of_store(TEN_SEEDS, None).chosen is None
    assert SeedChoice.of_store(TWO_SEEDS, [1, 0]).chosen is None   # every seed, however named: the whole report


@pytest.mark.parametrize("seeds, fragment", [([2], "--seeds 2: the store has no such seed; its seeds are 0-1 (its "
                                                    "sweep ran with --seeds 2)"),
                                             ([0, 5, 7], "--seeds 5,7: the store has no such seed"),
                                             ([], "--seeds names no seed")])
def test_a_seed_the_store_does_not_have_is_refused_naming_those_it_has(seeds, fragment):
    with pytest.raises(StoreError, match="^" + fragment.replace("(", r"\(").replace(")", r"\)")):
        SeedChoice.of_store(TWO_SEEDS, seeds)


def test_a_store_whose_manifest_does_not_say_its_seeds_takes_any():
    assert SeedChoice.of_store({"options": {}}, [3]) == SeedChoice((3,), None)
    assert SeedChoice.of_store({"options": {}}, [3]).line() == "seed 3"


@pytest.mark.parametrize("count", [0, -2])
def test_a_hand_edited_count_of_no_seeds_says_nothing_of_the_store_s_seeds(count):
    """`sweep run` refuses --seeds 0; a manifest edited to say it named no seeds, and a refusal of --seeds 1 then
    failed with an IndexError (the store's seeds in words, of none)."""
    assert SeedChoice.of_store({"options": {"seeds": count}}, [1]) == SeedChoice((1,), None)
    assert SeedChoice.of_store({"options": {"seeds": count}}).hint() is None


def test_rows_keeps_the_chosen_seeds_of_a_table_and_of_rows():
    table = pd.DataFrame({"key": list("abcd"), "seed": [0, 1, 2, 0]})
    rows = Rows(table, np.arange(8, dtype=np.float32).reshape(4, 2))
    choice = SeedChoice((0, 2), (0, 1, 2))
    assert choice.rows(table)["key"].tolist() == ["a", "c", "d"]
    kept = choice.rows(rows)
    assert kept.meta["key"].tolist() == ["a", "c", "d"] and kept.logits[:, 0].tolist() == [0, 4, 6]
    assert choice.rows(None) is None
    assert SeedChoice(None, (0, 1, 2)).rows(table) is table   # every seed: the rows as they are


def test_the_line_names_the_chosen_seeds_among_the_stores_and_the_hint_only_a_full_report_of_several():
    assert SeedChoice.of_store(TEN_SEEDS, [0, 2]).line() == "seeds 0, 2 of 0-9"
    assert SeedChoice.of_store(TWO_SEEDS, [1]).line() == "seed 1 of 0-1"
    assert SeedChoice.of_store(TEN_SEEDS).line() is None
    assert "`--seeds 0` draws a smaller report" in SeedChoice.of_store(TEN_SEEDS).hint()
    assert "all 10 seeds (0-9)" in SeedChoice.of_store(TEN_SEEDS).hint()
    assert SeedChoice.of_store(TEN_SEEDS, [0]).hint() is None
    assert SeedChoice.of_store({"options": {"seeds": 1}}).hint() is None


def report_files(index: Path) -> dict[str, bytes | None]:
    """Every file of a report but its index page, by path within the report: its bytes (an SVG's None: its ids are
    drawn at random)."""
    root = index.parent
    return {str(p.relative_to(root)): None if p.suffix == ".svg" else p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p != index}


def test_a_report_of_seed_0_of_two_is_the_report_of_a_store_of_one_seed(tmp_path):
    """`--seeds 0` on a store of two seeds: every page and figure (grids, class pages, strips, GIFs), file for file
    and byte for byte, is that of the same store with seed 0 alone: no file names or shows a seed-1 image."""
    one = report_files(write_figures(make_image_store(tmp_path / "one")))
    two = make_image_store(tmp_path / "two", seeds=2)
    index = write_figures(two, seeds=[0])
    assert report_files(index) == one
    assert "interpolation-0000-0001-photo.png-s0.gif" in one and "img/transfigure_-_0_-1_0_photo.png.png" in one
    assert "Images of seed 0 of 0-1 (<code>sweep figures --seeds</code>)" in index.read_text()


def test_a_report_of_every_seed_draws_each_seeds_images(tmp_path):
    store = make_image_store(tmp_path / "two", seeds=2)
    index = write_figures(store)
    files = report_files(index)
    for seed in (0, 1):
        for name in (f"interpolation-0000-0001-photo.png-s{seed}.png", f"img/addition_merge_0_1_{seed}.png",
                     f"img/transfigure_-_3_-1_{seed}_photo.png.png",
                     f"img/directed-dream_block2_3_-1_{seed}_photo.png.png"):
            assert name in files, name
    assert "(seed 1)" in index.read_text() and "Images of seed" not in index.read_text()
    page = (index.parent / "classes" / "0003.html").read_text()
    assert "transfigure_-_3_-1_1_photo.png.png" in page and "transfigure_-_3_-1_0_photo.png.png" in page


def test_a_class_page_names_the_seed_of_each_addition_when_a_seed_is_not_0(tmp_path):
    """Report hunt: a store of two seeds showed each addition twice on its classes' pages, "apple + bear (merge):
    ranks 1 and 2" both times, without saying which image was which seed's."""
    store = make_image_store(tmp_path / "two", seeds=2)
    page = (write_figures(store).parent / "classes" / "0000.html").read_text()
    assert "(merge, seed 0): ranks" in page and "(merge, seed 1): ranks" in page
    page = (write_figures(store, seeds=[1]).parent / "classes" / "0000.html").read_text()
    assert "(merge, seed 1): ranks" in page and "seed 0" not in page


def test_the_index_of_another_seed_says_the_opposites_shown_are_the_lowest_seeds(tmp_path):
    """Report hunt: `--seeds 1` drew the opposites grid and the class pages' opposites from seed 0 (the opposites
    table holds each class's lowest seed), while the index said only the class images were seed 0's."""
    import html
    import re
    store = make_image_store(tmp_path / "two", seeds=2)
    index = write_figures(store, seeds=[1])
    text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", index.read_text())).split())
    assert "The class images and the opposite images are each class's lowest seed" in text
    assert "img/opposite_-_0_-1_0.png" in (index.parent / "classes" / "0000.html").read_text()   # seed 0's, as said


def test_a_report_of_a_seed_without_additions_or_image_jobs_draws_no_empty_grid(tmp_path):
    """Report hunt: `--seeds 1` on a store whose seed 1 holds only class images (its additions failed, say) drew an
    empty additions grid, titled "Additions:  (page 1 of 1)", and listed it on the index."""
    rows = [*small_images(), *image_rows(np.random.default_rng(1)),
            *(dataclasses.replace(r, seed=1) for r in small_images() if r.job == "octave")]
    store = write_store(str(tmp_path / "s"), NAMES, rows, options={**IMAGE_OPTIONS, "seeds": 2}, rows_per_file=5)
    index = write_figures(store, seeds=[1])
    files = report_files(index)
    assert "contact-01.png" in files and not any(name.startswith(("additions-", "img/addition")) for name in files)
    assert "<h3>Additions</h3>" not in index.read_text()
