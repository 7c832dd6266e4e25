"""What a store is missing, relative to its manifest's options."""
from analysis.coverage import coverage
from analysis.load import open_store, read_rows
from handmade import NAMES, OPTIONS, make_small_store
from jobs.catalog import key_of


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
    drop = (key_of("octave", "", 5, -1, 0), key_of("addition", "merge", 2, 3, 0))
    store = make_small_store(tmp_path / "s", drop=drop)
    cov = coverage(_manifest(OPTIONS), _keys(store))
    assert not cov.complete and cov.classes_without_image == (5,)
    text = "\n".join(cov.lines(NAMES))
    assert "octave: 5 of 6 images; missing 1: octave:-:5:-1:0" in text
    assert "addition: 3 of 4 images; missing 1: addition:merge:2:3:0" in text
    assert "1 class has no octave image and is left out of the class tables: 5 fox" in text and "INCOMPLETE" in text


def test_job_planned_but_never_run(tmp_path):
    drop = tuple(key_of("opposite", "", c, -1, 0) for c in range(6))
    cov = coverage(_manifest(OPTIONS), _keys(make_small_store(tmp_path / "s", drop=drop)))
    assert "opposite: 0 of 6 images; missing 6" in "\n".join(cov.lines(NAMES))


def test_one_planned_image_is_one_image():
    one = {**_manifest({**OPTIONS, "jobs": ["octave"], "classes": [0]})}
    assert "octave: its one image present" in coverage(one, [key_of("octave", "", 0, -1, 0)]).lines(NAMES)
    assert "octave: 0 of 1 image; missing 1: octave:-:0:-1:0" in coverage(one, []).lines(NAMES)


def test_sweep_of_some_classes_only(small_store):
    options = {**OPTIONS, "classes": [0, 1, 2, 3, 4, 5, 6, 7]}
    manifest = {"n_classes": 10, "class_names": [f"c{i}" for i in range(10)], "options": options}
    lines = coverage(manifest, _keys(small_store)).lines()
    assert "the sweep covers 8 of the model's 10 classes" in lines
    assert "2 classes have no octave image and are left out of the class tables: 6, 7" in lines
    named = coverage(manifest, _keys(small_store)).lines(tuple(manifest["class_names"]))
    assert "2 classes have no octave image and are left out of the class tables: 6 c6, 7 c7" in named
    digits = {**manifest, "class_names": [f"digit {i}" for i in range(10)]}   # a name that says the number: once
    assert "2 classes have no octave image and are left out of the class tables: digit 6, digit 7" in \
        coverage(digits, _keys(small_store)).lines(tuple(digits["class_names"]))
    one_short = {**manifest, "options": {**options, "classes": list(range(7))}}
    assert "1 class has no octave image and is left out of the class tables: 6" in \
        coverage(one_short, _keys(small_store)).lines()


def test_image_jobs_are_expanded_by_the_plan(small_store):
    options = {**OPTIONS, "jobs": [*OPTIONS["jobs"], "dream"], "sources": ["a.png"], "layers": ["block2"]}
    cov = coverage(_manifest(options), _keys(small_store))
    dream = next(j for j in cov.jobs if j.job == "dream")
    assert (dream.present, dream.expected, dream.missing) == (0, 1, ("dream:block2:-1:-1:0:a.png",))
    assert not cov.complete


def test_jobs_present_but_not_planned_are_counted(small_store):
    cov = coverage(_manifest({**OPTIONS, "jobs": ["octave"]}), _keys(small_store))
    assert {j.job: j.expected for j in cov.jobs} == {"octave": 6, "addition": None, "opposite": None}


def test_an_image_dropped_for_outputs_not_finite_is_said_as_dropped_not_missing():
    """An image whose outputs are NaN or inf is held (a sweep run would not render it again) but left out of the
    tables: it was reported as missing, and its class as having no octave image, with "store INCOMPLETE"."""
    nan_octave, nan_addition = key_of("octave", "", 5, -1, 0), key_of("addition", "merge", 2, 3, 0)
    held = [key for key in _all_keys() if key not in (nan_octave, nan_addition)]
    cov = coverage(_manifest(OPTIONS), held, [nan_octave, nan_addition])
    octave = next(j for j in cov.jobs if j.job == "octave")
    assert (octave.present, octave.missing, octave.not_finite) == (5, (), (nan_octave,))
    assert cov.classes_without_image == () and cov.classes_not_finite == (5,) and cov.complete
    lines = cov.lines(NAMES)
    assert "octave: 5 of 6 images; 1 dropped, outputs not finite (NaN or inf): octave:-:5:-1:0" in lines
    assert "addition: 3 of 4 images; 1 dropped, outputs not finite (NaN or inf): addition:merge:2:3:0" in lines
    assert "1 class has only octave images whose outputs are not finite and is left out of the class tables: " \
           "5 fox" in lines
    assert not [line for line in lines if "missing" in line or "no octave image" in line]
    assert lines[-1] == "store complete"
    gone = coverage(_manifest(OPTIONS), held, [nan_addition])         # truly absent and dropped, apart
    assert "octave: 5 of 6 images; missing 1: octave:-:5:-1:0" in gone.lines(NAMES)
    assert gone.classes_without_image == (5,) and not gone.complete


def _all_keys() -> list[str]:
    from handmade import small_images
    return [key_of(im.job, im.variant, im.target, im.partner, im.seed) for im in small_images()]


def test_analyze_summary_and_report_say_dropped_for_outputs_not_finite(tmp_path):
    """Through `sweep analyze` and the report's summary: the class with a NaN octave image is not "missing"."""
    import numpy as np

    from analysis import analyze_store, write_figures
    from analysis.synthetic import Image, write_store
    from handmade import small_images
    images = [Image(im.job, im.target, np.full(6, np.nan), png=im.png) if (im.job, im.target) == ("octave", 5)
              else im for im in small_images()]
    store = write_store(str(tmp_path / "s"), NAMES, images, options=OPTIONS)
    lines = analyze_store(store).lines()
    assert "octave: 5 of 6 images; 1 dropped, outputs not finite (NaN or inf): octave:-:5:-1:0" in lines
    assert "1 image left out: outputs that are not finite (NaN or inf)" in lines
    assert "store complete" in lines and not [line for line in lines if "missing" in line]
    index = write_figures(store).read_text()
    assert "1 dropped, outputs not finite (NaN or inf): octave:-:5:-1:0" in index and "missing" not in index
