"""What a store is missing, relative to its manifest's options."""
import pytest

from analysis.coverage import coverage, item_key
from analysis.load import open_store, read_rows
from handmade import NAMES, OPTIONS, make_small_store


def _manifest(options):
    return {"n_classes": 6, "class_names": list(NAMES), "options": options}


def _keys(store):
    return read_rows(open_store(store)).meta["key"]


def test_complete_store(small_store):
    cov = coverage(_manifest(OPTIONS), _keys(small_store))
    assert cov.complete and cov.classes_without_image == ()
    assert {j.job: (j.present, j.expected) for j in cov.jobs} == {"octave": (6, 6), "opposite": (6, 6),
                                                                  "addition": (4, 4)}
    assert cov.lines(NAMES)[-1] == "store complete"


def test_incomplete_store_says_what_is_missing(tmp_path):
    drop = (item_key("octave", "", 5, -1, 0), item_key("addition", "merge", 2, 3, 0))
    store = make_small_store(tmp_path / "s", drop=drop)
    cov = coverage(_manifest(OPTIONS), _keys(store))
    assert not cov.complete and cov.classes_without_image == (5,)
    text = "\n".join(cov.lines(NAMES))
    assert "octave: 5 of 6 images; missing 1: octave:-:5:-1:0" in text
    assert "addition: 3 of 4 images; missing 1: addition:merge:2:3:0" in text
    assert "5 (fox)" in text and "INCOMPLETE" in text


def test_job_planned_but_never_run(tmp_path):
    drop = tuple(item_key("opposite", "", c, -1, 0) for c in range(6))
    cov = coverage(_manifest(OPTIONS), _keys(make_small_store(tmp_path / "s", drop=drop)))
    assert "opposite: 0 of 6 images; missing 6" in "\n".join(cov.lines(NAMES))


@pytest.mark.parametrize("options", [
    {"jobs": "octave,opposite,addition", "classes": "0-5", "pairs": "0+1,2+3", "variants": "merge,juxtapose",
     "seeds": "1"},
    {"jobs": ["octave", "opposite", "addition"], "classes": "all", "pairs": ["0+1", "2+3"], "seeds": [0]},
])
def test_options_as_the_command_line_gave_them(small_store, options):
    assert coverage(_manifest(options), _keys(small_store)).complete


def test_sweep_of_some_classes_only(small_store):
    options = {**OPTIONS, "classes": [0, 1, 2, 3, 4, 5, 6, 7]}
    manifest = {"n_classes": 10, "class_names": [f"c{i}" for i in range(10)], "options": options}
    lines = coverage(manifest, _keys(small_store)).lines()
    assert "the sweep covers 8 of the model's 10 classes" in lines
    assert any("2 classes have no octave image" in line for line in lines)


def test_pairs_that_cannot_be_listed_are_counted(small_store):
    cov = coverage(_manifest({**OPTIONS, "pairs": "random:2"}), _keys(small_store))
    addition = next(j for j in cov.jobs if j.job == "addition")
    assert (addition.present, addition.expected, addition.missing) == (4, 4, ())
