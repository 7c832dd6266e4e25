"""Latent directions: a fitted direction separates two separable groups, and the line walk moves across them."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from analysis.directions import (GroupsError, fit_bottleneck_direction, fit_direction, group_order, line_neighbours,
                                 neighbour_separations, read_groups)


def _two_groups(n=60, d=100, seed=0):
    rng = np.random.default_rng(seed)
    shift = np.zeros(d)
    shift[:5] = 3.0  # the groups differ along a few output dimensions only
    vectors = rng.normal(size=(2 * n, d))
    vectors[n:] += shift
    groups = pd.Series(["cat"] * n + ["dog"] * n)
    return vectors, groups


def test_direction_separates_separable_groups():
    vectors, groups = _two_groups()
    fit = fit_direction(vectors, groups, n_components=50)
    assert fit.components.shape == (120, 50)
    assert (fit.negative, fit.positive) == ("cat", "dog")
    assert roc_auc_score(groups == "dog", fit.positions) >= 0.95
    assert np.isclose(np.linalg.norm(fit.direction), 1.0)
    # the PCA step is scikit-learn's own
    reference = PCA(n_components=50, random_state=0).fit(vectors)
    assert np.isclose(fit.explained_variance, reference.explained_variance_ratio_.sum())


def test_unlabelled_images_are_projected_not_fitted():
    vectors, groups = _two_groups()
    groups.iloc[::3] = ""
    fit = fit_direction(vectors, groups, n_components=10)
    assert fit.positions.shape == (120,)
    held_out = groups == ""
    truth = np.arange(120) >= 60
    assert roc_auc_score(truth[held_out], fit.positions[held_out]) >= 0.95


def test_line_walk_runs_from_one_group_to_the_other():
    vectors, groups = _two_groups()
    fit = fit_direction(vectors, groups, n_components=10)
    picks = line_neighbours(fit, start=0, n_points=6)
    assert len(picks) == 6
    positions = fit.positions[picks]
    assert positions[0] < positions[-1]
    assert groups[picks[0]] == "cat" and groups[picks[-1]] == "dog"


def test_exactly_two_groups_are_required():
    vectors, _ = _two_groups(n=10)
    with pytest.raises(GroupsError, match="exactly two groups, found 3: .*--method bottleneck, or auto"):
        fit_direction(vectors, pd.Series(list("abc") * 6 + ["a", "b"]))


def test_groups_file_by_key_and_by_class(tmp_path):
    frame = pd.DataFrame({"key": ["k0", "k1", "k2", "k3"], "job": "octave", "target": [0, 0, 1, 2],
                          "target_name": ["zero", "zero", "one", "two"]})
    by_key = tmp_path / "keys.csv"
    by_key.write_text("key,group\nk1,a\nk3,b\n")
    assert read_groups(str(by_key), frame).tolist() == ["", "a", "", "b"]
    by_class = tmp_path / "classes.csv"
    by_class.write_text("class,group\n0,a\ntwo,b\n")
    assert read_groups(str(by_class), frame).tolist() == ["a", "a", "", "b"]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\nx,y\n")
    with pytest.raises(GroupsError, match="needs a 'group' column"):
        read_groups(str(bad), frame)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("class,group\nseven,a\n")
    with pytest.raises(GroupsError, match="unknown class 'seven'"):
        read_groups(str(unknown), frame, ("zero", "one", "two"))
    unknown.write_text("class,group\n0,a\n3,b\n")
    with pytest.raises(GroupsError, match="class 3 is out of range"):
        read_groups(str(unknown), frame, ("zero", "one", "two"))
    unknown.write_text("class,group\n0,a\n\u00b2,b\n", encoding="utf-8")   # "²": not an index, so looked up as a name
    with pytest.raises(GroupsError, match="unknown class"):
        read_groups(str(unknown), frame, ("zero", "one", "two"))


def test_a_class_means_its_class_images_unless_jobs_are_named(tmp_path):
    """Issue 10.6: opposites and additions of a class (target = the class) are not in its group by default."""
    jobs = ["octave", "opposite", "addition", "transfigure", "octave", "opposite"]
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(6)], "job": jobs, "target": [0, 0, 0, 0, 1, 1],
                          "target_name": ["zero"] * 4 + ["one"] * 2})
    names = ("zero", "one")
    by_class = tmp_path / "classes.csv"
    by_class.write_text("class,group\nzero,a\none,b\n")
    assert read_groups(str(by_class), frame, names).tolist() == ["a", "", "", "a", "b", ""]
    assert read_groups(str(by_class), frame, names, ("opposite",)).tolist() == ["", "a", "", "", "", "b"]
    with_jobs = tmp_path / "with_jobs.csv"
    with_jobs.write_text("class,group,job\nzero,a,addition\none,b,opposite\n")
    assert read_groups(str(with_jobs), frame, names).tolist() == ["", "", "a", "", "", "b"]
    with_jobs.write_text("class,group,job\nzero,a,dream\none,b,octave\n")
    with pytest.raises(GroupsError, match="no dream images in the store"):
        read_groups(str(with_jobs), frame, names)
    only_opposites = frame[frame.job == "opposite"].reset_index(drop=True)
    with pytest.raises(GroupsError, match="none of its rows.*--jobs"):
        read_groups(str(by_class), only_opposites, names)


def test_the_strip_never_shows_an_image_twice_and_keeps_to_the_candidates():
    vectors, groups = _two_groups()
    vectors[60:] += 40.0                         # a wide gap: without care, points in it all pick the same image
    fit = fit_direction(vectors, groups, n_components=10)
    picks = line_neighbours(fit, start=0, n_points=12)
    assert len(picks) == len(set(picks)) == 12
    allowed = np.arange(120) % 2 == 0
    picks = line_neighbours(fit, start=0, n_points=12, candidates=allowed)
    assert len(set(picks)) == 12 and allowed[picks].all()
    assert len(line_neighbours(fit, start=0, n_points=12, candidates=np.arange(120) < 5)) == 5


def test_directions_stage_on_a_store_with_two_separable_groups(tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    from PIL import Image as PILImage

    from analysis.directions import run_directions
    from analysis.load import StoreError
    from analysis.synthetic import Image, noise_png, write_store

    rng = np.random.default_rng(1)
    n_classes = 20
    names = [f"class {i}" for i in range(n_classes)]
    images = []
    for seed in range(6):
        for target in range(n_classes):
            logits = rng.normal(size=n_classes)
            logits[target] += 6
            logits[:3] += 4.0 if target < 10 else -4.0   # classes 0-9 and 10-19 differ along a few outputs
            images.append(Image("octave", target, logits, seed=seed, png=noise_png(rng, 16)))
    for target in range(n_classes):   # opposites look like the other half: in a class's group they would skew it
        logits = rng.normal(size=n_classes)
        logits[:3] += -4.0 if target < 10 else 4.0
        images.append(Image("opposite", target, logits, png=noise_png(rng, 16)))
    store = write_store(str(tmp_path / "store"), names, images)
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n" + "".join(f"{c},{'low' if c < 10 else 'high'}\n" for c in range(n_classes)))

    from analysis import figures
    strips = []
    strip = figures.direction_strip
    monkeypatch.setattr(figures, "direction_strip", lambda images, thumbs, title: (
        strips.append((images, title)), strip(images, thumbs, title))[1])
    summary = run_directions(store, str(groups), n_components=10, n_points=6)
    assert summary.auc >= 0.95 and summary.counts == {"high": 60, "low": 60, "(no group)": 20}
    (images, title), = strips   # the start image named in words, not by its key (audit); each cell's job known
    start = images[images.start].iloc[0]
    assert title == f"Nearest stored images along the line through {start.target_name} (octave, seed 0)"
    assert {"job", "seed", "source"} <= set(images.columns)
    monkeypatch.undo()
    table = pq.read_table(f"{store}/analysis/directions.parquet").to_pandas()
    assert (table.group[table.job == "opposite"] == "").all()
    table = table[table.job == "octave"]
    assert len(table) == 120 and set(table.columns) >= {"key", "target", "group", "position"}
    assert roc_auc_score(table["group"] == summary.fit.positive, table["position"]) >= 0.95
    for name in ("directions-distribution.png", "directions-distribution.svg", "directions-strip.png"):
        assert (tmp_path / "store" / "figures" / name).stat().st_size > 0
    strip = PILImage.open(tmp_path / "store" / "figures" / "directions-strip.png")
    assert strip.width > 6 * 96  # the start image and six picks side by side
    assert any("ROC AUC" in line for line in summary.lines())
    with pytest.raises(StoreError, match="no image with key"):
        run_directions(store, str(groups), start="octave:-:99:-1:0")
    (tmp_path / "store" / "analysis" / "directions.parquet").unlink()
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(StoreError, match="is a file, not a folder"):   # refused before the table is written
        run_directions(store, str(groups), n_components=10, out=str(afile))
    assert not (tmp_path / "store" / "analysis" / "directions.parquet").exists() and afile.read_text() == "mine"


def _three_groups(n=40, d=60, seed=0):
    """Three groups placed in order along one hidden axis (the article's long / short / sleeveless sleeves)."""
    rng = np.random.default_rng(seed)
    axis = np.zeros(d)
    axis[:4] = 0.5
    vectors = rng.normal(size=(3 * n, d))
    for k, shift in enumerate((-3.0, 0.0, 3.0)):
        vectors[k * n:(k + 1) * n] += shift * axis
    return vectors, pd.Series(["long"] * n + ["short"] * n + ["sleeveless"] * n), axis / np.linalg.norm(axis)


def test_bottleneck_direction_orders_several_groups_along_one_line():
    """Latent directions: a network forced through a one-unit layer finds the line along which three groups lie
    in order; logistic regression takes two groups only."""
    vectors, groups, axis = _three_groups()
    fit = fit_bottleneck_direction(vectors, groups, n_components=20)
    means = [fit.positions[(groups == g).to_numpy()].mean() for g in ("long", "short", "sleeveless")]
    assert means[0] < means[1] < means[2] and (fit.negative, fit.positive) == ("long", "sleeveless")
    pca = PCA(n_components=20, random_state=0).fit(vectors)
    true = pca.components_ @ axis                                       # the hidden axis in PCA coordinates
    assert abs(fit.direction @ true / np.linalg.norm(true)) > 0.8   # 0.85 measured; noise in 20 dims
    again = fit_bottleneck_direction(vectors, groups, n_components=20)
    assert np.array_equal(again.direction, fit.direction)               # seeded
    with pytest.raises(GroupsError, match="exactly two"):
        fit_direction(vectors, groups)
    with pytest.raises(GroupsError, match="at least two"):
        fit_bottleneck_direction(vectors, pd.Series(["long"] * len(vectors)))



@pytest.mark.parametrize("fitter", [fit_direction, fit_bottleneck_direction])
def test_groups_whose_images_have_the_same_outputs_are_refused(fitter):
    """Two classes whose images all came out the same (a saturated model): logistic regression's normal was 0 / 0
    and `sweep directions` ended in a NaN traceback from the ROC AUC; the bottleneck gave its random start."""
    vectors, groups = _two_groups(n=10)
    vectors[:20] = vectors[0]                       # every grouped image the same; the unlabelled ones not
    labelled = pd.concat([groups, pd.Series([""] * 5)], ignore_index=True)
    vectors = np.concatenate([vectors, np.random.default_rng(1).normal(size=(5, vectors.shape[1]))])
    with pytest.raises(GroupsError, match=r"^the images of cat, dog all have the same output vectors: no direction "
                                          r"tells the groups apart$"):
        fitter(vectors, labelled, n_components=5)



def test_two_groups_of_the_same_mean_output_are_refused_by_logistic_regression():
    """Each group the other's images again (duplicated images): the logistic normal came out exactly 0, the
    direction 0 / 0, and `sweep directions` ended in a NaN traceback from the ROC AUC."""
    vectors, groups = _two_groups(n=10)
    vectors[10:20] = vectors[:10][::-1]             # dog's images are cat's, in another order
    with pytest.raises(GroupsError, match=r"^the images of cat and dog have the same mean output vector: logistic "
                                          r"regression finds no direction between them"):
        fit_direction(vectors, groups, n_components=5)

# --- walk-through audit: missing keys and classes, several groups, the strip's order -----------------------------

def test_a_key_of_the_groups_file_that_is_not_in_the_store_is_refused_by_name(tmp_path):
    frame = pd.DataFrame({"key": ["k0", "k1", "k2"], "job": "octave", "target": [0, 1, 2],
                          "target_name": ["zero", "one", "two"]})
    groups = tmp_path / "keys.csv"
    groups.write_text("group,key\na,k0\nb,k1\nb,nokey\n")
    with pytest.raises(GroupsError, match=r"keys.csv: key matches no image in the store: 'nokey'$"):
        read_groups(str(groups), frame)
    groups.write_text("group,key\na,k0\nb,k1\n" + "".join(f"b,typo{i}\n" for i in range(5)))
    with pytest.raises(GroupsError, match=r"5 keys match no image in the store: 'typo0', 'typo1', 'typo2' and 2 more"):
        read_groups(str(groups), frame)


def test_a_class_without_images_in_the_store_is_refused_by_name(tmp_path):
    """A store with classes 0-2 only: a groups file that also lists 4, 6, 7 and 8 names them, as an out-of-range
    class is."""
    names = tuple(f"digit {i}" for i in range(10))
    frame = pd.DataFrame({"key": [f"k{i}" for i in range(3)], "job": "octave", "target": [0, 1, 2],
                          "target_name": list(names[:3])})
    groups = tmp_path / "classes.csv"
    groups.write_text("class,group\n0,round\n6,round\n8,round\n1,straight\n4,straight\n7,straight\n")
    with pytest.raises(GroupsError, match=r"classes.csv: 4 classes 6, 8, 4 and 1 more have no octave/transfigure "
                                          r"images in the store$"):
        read_groups(str(groups), frame, names)
    groups.write_text("class,group\n0,round\n1,straight\ndigit 7,straight\n")
    with pytest.raises(GroupsError, match=r"class digit 7 has no octave/transfigure images"):
        read_groups(str(groups), frame, names)
    groups.write_text("class,group,job\n0,round,octave\n1,straight,octave\n2,straight,opposite\n")
    frame = pd.concat([frame, frame.assign(key=["o0", "o1", "o2"], job="opposite").iloc[:2]], ignore_index=True)
    with pytest.raises(GroupsError, match=r"class 2 \(opposite\) has no images of their job"):
        read_groups(str(groups), frame, names)
    groups.write_text("class,group\n0,round\n1,straight\n")
    assert read_groups(str(groups), frame, names).tolist() == ["round", "straight", "", "", ""]


def test_neighbouring_groups_are_each_compared_along_the_direction():
    positions = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0])
    labels = np.array(["loop", "loop", "round", "round", "straight", "straight", ""])
    order = group_order(positions, labels)
    assert order == ["loop", "round", "straight"]
    assert neighbour_separations(positions, labels, order) == [("loop", "round", 1.0), ("round", "straight", 1.0)]
    split = np.array([0.0, 1.0, -1.0, 6.0, 4.0, 5.0, 9.0])   # 'round' lies at both ends: mean 2.5, the middle
    pairs = neighbour_separations(split, labels, group_order(split, labels))
    assert [(a, b) for a, b, _ in pairs] == [("loop", "round"), ("round", "straight")]
    assert [auc for _, _, auc in pairs] == [0.5, 0.5]   # neither neighbour is told apart from the split group


def octaves_along_an_axis(n_classes: int, seeds: int, shift, *, axes: int, png_side: int, seed: int):
    """Class names and octave images of `n_classes` classes x `seeds` seeds: random outputs with the target raised
    by 6 and the first `axes` outputs shifted by `shift(target)`, so the classes lie along one axis in that order."""
    from analysis.synthetic import Image, noise_png
    rng = np.random.default_rng(seed)
    images = []
    for image_seed in range(seeds):
        for target in range(n_classes):
            logits = rng.normal(size=n_classes)
            logits[target] += 6
            logits[:axes] += shift(target)
            images.append(Image("octave", target, logits, seed=image_seed, png=noise_png(rng, png_side)))
    return [f"class {i}" for i in range(n_classes)], images


def test_the_summary_of_three_groups_reports_every_group_and_every_neighbouring_pair(tmp_path):
    from analysis.directions import run_directions
    from analysis.synthetic import write_store

    # classes 0-2, 3-5 and 6-8 lie in order along one axis
    names, images = octaves_along_an_axis(9, 4, lambda target: 8.0 * (target // 3 - 1), axes=2, png_side=8, seed=2)
    store = write_store(str(tmp_path / "store"), names, images)
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n" + "".join(f"{c},{('loop', 'round', 'straight')[c // 3]}\n" for c in range(9)))
    summary = run_directions(store, str(groups), n_components=5, n_points=4)   # auto: three groups, bottleneck
    assert summary.method == "bottleneck" and "by the one-unit bottleneck network" in summary.lines()[0]
    assert summary.fit.order == ("loop", "round", "straight")
    assert list(summary.means) == ["loop", "round", "straight"]
    assert summary.means["loop"] < summary.means["round"] < summary.means["straight"]
    assert [(a, b) for a, b, _ in summary.separations] == [("loop", "round"), ("round", "straight")]
    lines = summary.lines()
    assert lines[0].startswith("direction from 'loop' through 'round' to 'straight'")
    assert lines[1].startswith("groups along it, mean position (images): loop -") and "round" in lines[1] \
        and "straight +" in lines[1] and "(12)" in lines[1]
    assert "loop|round" in lines[2] and "round|straight" in lines[2] and "separation ROC AUC" in lines[2]
    assert not any(line.startswith("note:") for line in lines)
    two = tmp_path / "two.csv"
    two.write_text("class,group\n" + "".join(f"{c},{('loop', 'straight')[c // 5]}\n" for c in range(9)))
    pair = run_directions(store, str(two), n_components=5, n_points=4)   # auto: two groups, the article's logistic
    assert pair.method == "logistic" and "by logistic regression" in pair.lines()[0]


def test_a_group_of_one_image_gets_a_note(tmp_path):
    from analysis.directions import DirectionsSummary

    vectors, groups = _two_groups(n=10)
    fit = fit_direction(vectors, groups, n_components=5)
    summary = DirectionsSummary("t", (), fit, {"cat": -1.0, "dog": 1.0}, (("cat", "dog", 1.0),),
                                {"cat": 1, "dog": 1, "(no group)": 160})
    assert summary.auc == 1.0
    assert "groups along it, mean position (images): cat -1.00 (1), dog +1.00 (1); in no group: 160 images" \
        in summary.lines()
    assert "note: cat, dog have fewer than 5 images" in "\n".join(summary.lines())


def test_the_strip_reads_left_to_right_by_position_and_marks_the_start():
    import re

    from PIL import Image as PILImage

    from analysis.figures import direction_strip

    shown = pd.DataFrame({"key": list("sabcd"), "target_name": "x", "position": [0.5, -5.25, -5.52, 7.01, 6.88],
                          "group": "", "start": [True, False, False, False, False]})
    thumbs = {k: PILImage.new("RGB", (8, 8)) for k in shown["key"]}
    figure = direction_strip(shown, thumbs, "strip")
    numbers = [t.get_text() for t in figure.texts if re.fullmatch(r"(start )?[+-]\d+\.\d\d", t.get_text())]
    assert numbers == ["-5.52", "-5.25", "start +0.50", "+6.88", "+7.01"]


def test_each_strip_cell_says_which_job_made_it_and_from_which_photograph():
    """Audit: three "digit 0 / round" cells (the octave image and two transfigurations) could not be told apart."""
    from PIL import Image as PILImage

    from analysis.figures import direction_strip, image_label

    shown = pd.DataFrame({"key": list("abc"), "target_name": ["digit 0", "digit 0", "Chesapeake Bay retriever"],
                          "job": ["octave", "transfigure", "transfigure"], "seed": [0, 1, 0],
                          "source": ["", "cat.jpg", "dog.jpg"], "position": [0.0, 1.0, 2.0], "group": "round",
                          "start": [True, False, False]})
    figure = direction_strip(shown, {k: PILImage.new("RGB", (8, 8)) for k in "abc"},
                             "Nearest stored images along the line through " + image_label("digit 0", "octave", 0))
    texts = [t.get_text() for t in figure.texts]
    assert texts[texts.index("start +0.00") + 1:texts.index("+1.00")] == ["digit 0", "octave", "seed 0", "round"]
    assert texts[texts.index("+1.00") + 1:texts.index("+2.00")] == ["digit 0", "transfigure", "of cat.jpg",
                                                                    "seed 1", "round"]
    assert texts[texts.index("+2.00") + 1:texts.index("+2.00") + 3] == ["Chesapeake Bay", "retriever"]   # wrapped
    renderer = figure.canvas.get_renderer()   # a title longer than the strip widens it rather than being cut
    assert 0 <= figure._suptitle.get_window_extent(renderer).x0 < figure._suptitle.get_window_extent(renderer).x1 \
        <= figure.bbox.width
    assert image_label("digit 0", "octave", 0) == "digit 0 (octave, seed 0)"
    assert image_label("digit 0", "transfigure", 1, "cat.jpg") == "digit 0 (transfigure of cat.jpg, seed 1)"


def test_a_groups_file_of_many_keys_reads_the_stored_keys_once(tmp_path):
    """Scale audit: each key of the file was looked up in a set of the stored keys built again for that key (a file of
    2000 keys against 10^4 images took 12 s; 2 * 10^4 against 10^5, about 20 minutes)."""
    reads = []

    class Counted(pd.DataFrame):
        def __getitem__(self, item):
            reads.append(item)
            return super().__getitem__(item)
    frame = Counted({"key": [f"k{i}" for i in range(200)], "job": "octave", "target": range(200),
                     "target_name": [f"c{i}" for i in range(200)]})
    groups = tmp_path / "keys.csv"
    groups.write_text("key,group\n" + "".join(f"k{i},{'a' if i < 50 else 'b'}\n" for i in range(100)))
    assert read_groups(str(groups), frame).tolist() == ["a"] * 50 + ["b"] * 50 + [""] * 100
    assert reads.count("key") <= 2


# --- float32 PCA (audit ascale A10): faithful to float64, and no float64 copy of the outputs ----------------------

def _outputs_with_offsets(n=3000, d=120, seed=0):
    """float32 outputs as a network's: a decaying spectrum (separate eigenvalues, so each axis is well defined) and
    column means up to 30 times the smaller columns' spread (the case where a float32 covariance loses digits)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    spread = 4.0 * 0.93 ** np.arange(d)                                  # standard deviation along each axis
    vectors = (rng.normal(size=(n, d)) * spread) @ basis.T + rng.uniform(-30, 30, d)
    return vectors.astype(np.float32)


def test_float32_pca_agrees_with_a_float64_svd():
    """The reference: numpy's SVD of the centred outputs in float64. Tolerances: the explained variance to 1e-6
    (relative), each of the 10 axes' coordinates to 1e-5 of their spread, and the fitted direction's positions to
    1e-4 of theirs (logistic regression fitted on the reference coordinates, to its own tolerance)."""
    from sklearn.linear_model import LogisticRegression

    vectors = _outputs_with_offsets()
    centred = vectors.astype(np.float64) - vectors.astype(np.float64).mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    reference = u[:, :10] * s[:10]                                        # N x 10 coordinates
    ratio = float((s[:10] ** 2).sum() / (s ** 2).sum())
    groups = pd.Series(np.where(reference[:, 2] + reference[:, 5] > 0, "b", "a"))
    fit = fit_direction(vectors, groups, n_components=10)
    assert fit.explained_variance == pytest.approx(ratio, rel=1e-6)
    signs = np.sign(np.sum(fit.components * reference, axis=0))         # an axis's sign is a convention
    assert (np.abs(fit.components * signs - reference).max(axis=0) <= 1e-5 * reference.std(axis=0)).all()
    classifier = LogisticRegression(max_iter=2000, random_state=0).fit(reference, groups == "b")
    positions = reference @ (classifier.coef_[0] / np.linalg.norm(classifier.coef_[0]))
    assert np.abs(fit.positions - positions).max() <= 1e-4 * positions.std()


def test_the_pca_holds_no_float64_copy_of_the_outputs():
    """A float64 copy of 10^5 images' outputs is 800 MB: the fit's traced peak stays under twice the float32
    outputs' bytes (the float64 copy alone is that), and centring in place (`copy=False`) adds under half (the
    D x D covariance and the N x k coordinates)."""
    import tracemalloc

    def traced_peak(call) -> int:
        tracemalloc.start()
        try:
            call()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(25_000, 400)).astype(np.float32)         # 40 MB
    groups = pd.Series(np.where(vectors[:, 0] > 0, "b", "a"))
    copied = traced_peak(lambda: fit_direction(vectors, groups))
    assert copied < 2 * vectors.nbytes, f"{copied / 2**20:.0f} MB traced for {vectors.nbytes / 2**20:.0f} MB"
    from analysis.directions import principal_components
    in_place = traced_peak(lambda: principal_components(vectors, 20, copy=False))
    assert in_place < vectors.nbytes / 2, f"{in_place / 2**20:.0f} MB traced in place"


@pytest.mark.parametrize("start", [None, "octave:-:12:-1:1"])
def test_directions_read_each_file_s_keys_once(tmp_path, monkeypatch, start):
    """`sweep directions` read every images/ file's key column again to find the strip's pictures, after reading
    every file's numbers, keys included: now the numbers' key index names the files to open. Each file is opened
    once for its numbers, and again only when it holds a picture of the strip."""
    import os

    from analysis.directions import run_directions
    from analysis.synthetic import write_store
    from test_image_figures import counted_reads
    names, images = octaves_along_an_axis(20, 3, lambda target: 4.0 if target < 10 else -4.0, axes=3, png_side=16,
                                          seed=1)
    store = write_store(str(tmp_path / "store"), names, images, rows_per_file=7)
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n" + "".join(f"{c},{'low' if c < 10 else 'high'}\n" for c in range(20)))
    with monkeypatch.context() as patch:
        opened, read = counted_reads(patch, store)
        run_directions(store, str(groups), start=start, n_components=10, n_points=6)
    files = [f"images/{name}" for name in sorted(os.listdir(os.path.join(store, "images")))]
    assert [opened[path] - read[path].count("png") for path in files] == [1] * len(files), (opened, read)
    assert sum(read[path].count("png") for path in files) >= 2


# --- dirhunt audit: groups files as people write them, images the fit cannot use, the start key ------------------

def _frame_of_cranes():
    """ImageNet names two classes "crane" (134, the bird; 517, the machine): a store of three classes, two so named."""
    frame = pd.DataFrame({"key": ["k0", "k1", "k2", "k3"], "job": "octave", "target": [0, 1, 2, 2],
                          "target_name": ["crane", "goldfish", "crane", "crane"]})
    return frame, ("crane", "goldfish", "crane")


def test_a_class_name_two_classes_share_is_refused_naming_their_indices(tmp_path):
    frame, names = _frame_of_cranes()
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\ncrane,a\ngoldfish,b\n")
    with pytest.raises(GroupsError, match=r"groups.csv: class name 'crane' is shared by classes 0 and 2: give "
                                          r"the index instead"):
        read_groups(str(groups), frame, names)
    groups.write_text("class,group\n2,a\ngoldfish,b\n")     # by index each is one class
    assert read_groups(str(groups), frame, names).tolist() == ["", "b", "a", "a"]


def test_a_class_name_written_in_another_case_is_refused_naming_the_stored_spelling(tmp_path):
    """"Digit 0" for "digit 0" was refused with three unrelated example names."""
    frame, names = _frame_of_cranes()
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\nGoldFish,a\ncrane,b\n")
    with pytest.raises(GroupsError, match=r"groups.csv: unknown class 'GoldFish': not a class name of the store's "
                                          r"model \(did you mean 'goldfish'\? names are matched as written\)$"):
        read_groups(str(groups), frame, names)


@pytest.mark.parametrize("column, rows", [("key", "k0,a\nk1,b\nk0,b\n"), ("class", "0,a\n1,b\ncrane,b\n")])
def test_an_image_placed_in_two_groups_is_refused(tmp_path, column, rows):
    """The later row used to win silently, emptying the first group ("found 1 group") or moving a class."""
    frame, names = _frame_of_cranes()
    names = ("crane", "goldfish", "heron")
    groups = tmp_path / "groups.csv"
    groups.write_text(f"{column},group\n{rows}")
    with pytest.raises(GroupsError,
                       match=rf"groups.csv: {column} .*0.* is in two groups, 'a' and 'b': give each image one group"):
        read_groups(str(groups), frame, names)
    groups.write_text(f"{column},group\n{rows.splitlines()[0]}\n{rows.splitlines()[0]}\n{rows.splitlines()[1]}\n")
    assert read_groups(str(groups), frame, names).tolist()[:2] == ["a", "b"]   # a line repeated is one line


def test_groups_file_cells_are_read_as_written(tmp_path):
    """Cells are text: a group named None or NA stays a group (pandas read them as missing), a spreadsheet's
    empty trailing line is skipped (it made the class column floats: 'unknown class 0.0'), spaces around cells
    and column names are dropped, and a byte-order mark and CRLF line ends are read through."""
    frame, names = _frame_of_cranes()
    names = ("crane", "goldfish", "heron")
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n0,None\n1,NA\n,\n")
    assert read_groups(str(groups), frame, names).tolist() == ["None", "NA", "", ""]
    groups.write_bytes("\ufeffkey , group\r\n k0 , a \r\n\r\nk1,b\r\n,\r\n".encode())
    assert read_groups(str(groups), frame, names).tolist() == ["a", "b", "", ""]


@pytest.mark.parametrize("text, message", [
    ("key,group\nk0,a\nk1,\n", r"groups.csv line 3: no group for key 'k1': give it one, or leave the line out"),
    ("class,group\n0,a\n,b\n", r"groups.csv line 3: no class for group 'b'"),
    ("key,class,group\nk0,,a\n,1,b\n", r"groups.csv: both a 'key' and a 'class' column: .*a file of its own"),
    ("class,group,job\n0,a,octave\n1,b,\n", r"groups.csv line 3: no job for class '1': give it one"),
])
def test_a_line_missing_a_cell_is_refused_by_its_line_number(tmp_path, text, message):
    frame, _ = _frame_of_cranes()
    groups = tmp_path / "groups.csv"
    groups.write_text(text)
    with pytest.raises(GroupsError, match=message):
        read_groups(str(groups), frame, ("crane", "goldfish", "heron"))


@pytest.mark.parametrize("text, jobs, message", [
    ("key,group,job\nk0,a,octave\nk1,b,octave\n", None, r"groups.csv places images by key, each of its own job: "
                                                      r"its 'job' column applies to a 'class' column"),
    ("key,group\nk0,a\nk1,b\n", ("opposite",), r"groups.csv places images by key, each of its own job: --jobs "
                                               r"applies to a 'class' column"),
    ("class,group,job\n0,a,octave\n1,b,octave\n", ("opposite",), r"groups.csv has a 'job' column and --jobs names "
                                                                r"jobs too"),   # --jobs was dropped unsaid
])
def test_jobs_given_to_a_file_of_keys_are_refused(tmp_path, text, jobs, message):
    """A key names one image, of its own job: a job column or --jobs beside it was ignored without a word; beside a
    class, a job column and --jobs both: the column won, --jobs was ignored."""
    frame, _ = _frame_of_cranes()
    groups = tmp_path / "groups.csv"
    groups.write_text(text)
    with pytest.raises(GroupsError, match=message):
        read_groups(str(groups), frame, ("crane", "goldfish", "heron"), jobs)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # the store's writer, on NaN outputs
def test_images_whose_outputs_are_not_finite_are_left_out_and_counted(tmp_path):
    """`sweep analyze` leaves them out; the PCA stopped on them with scikit-learn's traceback."""
    from analysis.directions import run_directions
    from analysis.load import StoreError
    from analysis.synthetic import Image, write_store

    names, images = octaves_along_an_axis(6, 3, lambda target: 8.0 * (target // 3), axes=2, png_side=8, seed=2)
    broken = np.full(6, np.nan)
    images += [Image("octave", 1, broken, seed=7), Image("octave", 4, np.where(np.arange(6) == 2, np.inf, 0.0), seed=8)]
    store = write_store(str(tmp_path / "store"), names, images)
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n" + "".join(f"{c},{'low' if c < 3 else 'high'}\n" for c in range(6)))
    summary = run_directions(store, str(groups), n_components=3, n_points=4)
    assert summary.counts == {"high": 9, "low": 9} and np.isfinite(summary.fit.positions).all()
    assert "left out: 2 images whose outputs are not finite (as `sweep analyze` leaves them out)" in summary.lines()
    with pytest.raises(StoreError, match=r"^--start 'octave:-:1:-1:7': its outputs are not finite"):
        run_directions(store, str(groups), start="octave:-:1:-1:7")


def test_a_start_key_that_is_a_frame_or_no_image_says_which_keys_it_takes(tmp_path):
    from analysis.directions import run_directions
    from analysis.load import StoreError
    from analysis.synthetic import Image, write_store

    names, images = octaves_along_an_axis(4, 2, lambda target: 8.0 * (target // 2), axes=2, png_side=8, seed=2)
    images += [Image("interpolate", 0, np.zeros(4), partner=1, frame=3),
               Image("interpolate", 0, np.zeros(4), partner=1)]
    store = write_store(str(tmp_path / "store"), names, images)
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n0,low\n1,low\n2,high\n3,high\n")
    with pytest.raises(StoreError, match=r"^--start 'interpolate:-:0:1:0#frame3' is an interpolation frame: the "
                                         r"direction places images only; give an image's key, as "
                                         r"'interpolate:-:0:1:0' \(its interpolation's final image\)$"):
        run_directions(store, str(groups), start="interpolate:-:0:1:0#frame3")
    with pytest.raises(StoreError, match=r"^no image with key 'octave:-:9:-1:0' in .*store: --start takes a key of "
                                         r"its images/, as 'octave:-:\d:-1:0'$"):
        run_directions(store, str(groups), start="octave:-:9:-1:0")


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # the store's writer, on NaN outputs
def test_a_group_whose_every_image_is_not_finite_is_refused_by_name(tmp_path):
    """Left out, its group was gone unsaid: three groups were fitted as two (by logistic regression), and two as
    one ("need at least two groups, found 1")."""
    from analysis.directions import run_directions
    from analysis.load import StoreError
    from analysis.synthetic import Image, write_store

    names, images = octaves_along_an_axis(6, 3, lambda target: 8.0 * (target // 3), axes=2, png_side=8, seed=2)
    images = [Image(im.job, im.target, np.full(6, np.nan), seed=im.seed) if im.target == 5 else im
              for im in images]
    store = write_store(str(tmp_path / "store"), names, images)
    groups = tmp_path / "groups.csv"
    groups.write_text("class,group\n0,low\n1,low\n2,mid\n3,mid\n4,mid\n5,high\n")
    with pytest.raises(StoreError, match=r"^group high: every image's outputs are not finite \(NaN or inf\), so it "
                                         r"has no image left to place along a direction"):
        run_directions(store, str(groups), n_components=3, n_points=4)
    groups.write_text("class,group\n0,low\n1,low\n2,mid\n3,mid\n4,high\n5,high\n")   # some of its images left
    assert run_directions(store, str(groups), n_components=3, n_points=4).counts["high"] == 3
