"""The class, opposite and addition tables against answers worked out by hand (see handmade.py)."""
import numpy as np
import pandas as pd
import pytest

from analysis.load import Rows, open_store, read_rows, representatives
from analysis.tables import (additions_summary, article_margin_opposite, additions_table, classes_table,
                             opposites_summary, opposites_table, output_neighbours)
from analysis.transfer import Outputs, transfer_table
from handmade import NAMES


@pytest.fixture
def rows(small_store):
    return read_rows(open_store(small_store))


def test_classes_table(rows):
    t = classes_table(representatives(rows.job("octave")), NAMES).set_index("target")
    assert list(t.index) == [0, 1, 2, 3, 4, 5]
    assert t["correct"].all() and list(t["label"]) == [0, 1, 2, 3, 4, 5]
    # most activated class other than the target, on the class's own image
    assert t["nn_article"].to_dict() == {0: 1, 1: 0, 2: 3, 3: 4, 4: 2, 5: 4}
    assert t.loc[2, "nn_article_name"] == "dog" and t.loc[2, "nn_article_logit"] == 6
    assert t.loc[0, "least_activated"] == 5
    # eel [0,0,8,1,10,0]: euclidean (squared, the default): cat 94 < dog 127; cosine with cat 106/152.5 = .695
    # beats dog 96/159.4 = .602
    assert t.loc[4, "nn_output"] == 2 and t.loc[4, "nn_output_distance"] == pytest.approx(np.sqrt(94), abs=1e-5)
    c = classes_table(representatives(rows.job("octave")), NAMES, "cosine").set_index("target")
    assert c.loc[4, "nn_output"] == 2
    assert c.loc[4, "nn_output_distance"] == pytest.approx(1 - 106 / np.sqrt(165 * 141), abs=1e-6)
    assert list(t.loc[3, "top5"]) == [3, 4, 2, 5, 0]  # ties (0 and 0) in class order
    assert list(t.loc[3, "top5_names"]) == ["dog", "eel", "cat", "fox", "apple"]
    assert t.loc[3, "top5_probs"][0] == pytest.approx(np.exp(10) / np.exp([0, 0, 2, 10, 7, 1]).sum(), rel=1e-5)


def test_output_neighbours_match_brute_force(rows):
    vectors = rows.logits
    for metric in ("cosine", "euclidean"):
        nearest, dist = output_neighbours(vectors, metric)
        for i, v in enumerate(vectors):
            if metric == "cosine":
                d = [1 - v @ w / np.linalg.norm(v) / np.linalg.norm(w) for w in vectors]
            else:
                d = [np.linalg.norm(v - w) for w in vectors]
            d[i] = np.inf
            assert nearest[i] == int(np.argmin(d)) and dist[i] == pytest.approx(min(d), abs=1e-5)
    with pytest.raises(ValueError):
        output_neighbours(vectors, "manhattan")


def test_output_neighbours_break_cosine_ties_toward_the_lower_index():
    # parallel outputs are all at cosine distance 0 from each other, which floating point computes as 0 or 1e-16:
    # the tie goes to the lower index all the same, as every table breaks ties
    vectors = np.array([[1, 2, 3, 4], [3, 6, 9, 12], [2, 4, 6, 8]], dtype=np.float32)
    nearest, distance = output_neighbours(vectors, "cosine")
    assert list(nearest) == [1, 0, 0]
    assert distance == pytest.approx([0, 0, 0], abs=1e-12)


def test_opposites_table(rows):
    t = opposites_table(representatives(rows.job("opposite")), NAMES).set_index("target")
    assert t["opposite"].to_dict() == {0: 1, 1: 0, 2: 5, 3: 5, 4: 0, 5: 3}
    assert t.loc[2, "opposite_name"] == "fox"
    assert t["standout_opposite"].to_dict() == {0: 3, 1: 3, 2: 4, 3: 0, 4: 5, 5: 0}  # the stored column, not argmax
    assert t["opposite_of_opposite"].to_dict() == {0: 0, 1: 1, 2: 3, 3: 3, 4: 1, 5: 5}
    assert t["mutual"].to_dict() == {0: True, 1: True, 2: False, 3: True, 4: False, 5: True}
    assert t["standout_mutual"].to_dict() == {0: True, 1: False, 2: False, 3: True, 4: False, 5: False}
    assert t.loc[3, "target_logit"] == -9
    assert "margin_opposite" not in t   # the article's margin opposite needs the class images


def test_opposite_whose_own_opposite_is_unknown(rows):
    opps = representatives(rows.job("opposite"))
    without_fox = opps.select(opps.meta["target"] != 5)
    t = opposites_table(without_fox, NAMES).set_index("target")
    assert t.loc[3, "opposite_of_opposite"] == -1 and t.loc[3, "opposite_of_opposite_name"] == ""
    assert t["mutual"].isna().to_dict() == {0: False, 1: False, 2: True, 3: True, 4: False}


def test_opposites_summary(rows):
    s = opposites_summary(opposites_table(representatives(rows.job("opposite")), NAMES), NAMES)
    argmax, margin = s[s.criterion == "argmax"], s[s.criterion == "standout"]
    assert set(s.criterion) == {"argmax", "standout"}
    assert argmax["distinct"].iloc[0] == 4 and margin["distinct"].iloc[0] == 4
    # 0 and 5 are each the opposite of two classes; ties broken by class index
    assert list(argmax["opposite"]) == [0, 5, 1, 3] and list(argmax["count"]) == [2, 2, 1, 1]
    assert argmax["mutual_pairs"].iloc[0] == 2 and argmax["mutual_share"].iloc[0] == pytest.approx(4 / 6)
    assert margin["mutual_pairs"].iloc[0] == 1 and margin["mutual_share"].iloc[0] == pytest.approx(2 / 6)
    assert list(margin["opposite_name"][:2]) == ["apple", "dog"]


def test_additions_table(rows):
    t = additions_table(rows.job("addition"), NAMES).set_index(["target", "partner", "variant"])
    assert t.loc[(0, 1, "merge"), ["target_rank", "partner_rank", "top_two"]].tolist() == [1, 2, True]
    assert t.loc[(0, 1, "juxtapose"), ["target_rank", "partner_rank", "top_two"]].tolist() == [1, 3, False]
    assert t.loc[(2, 3, "merge"), ["target_rank", "partner_rank", "top_two"]].tolist() == [3, 2, False]
    # the class that got in: the strongest outside the pair, with its rank (2+3 merge: class 4 at #1)
    assert t.loc[(2, 3, "merge"), ["intruder", "intruder_name", "intruder_rank"]].tolist() == [4, NAMES[4], 1]
    assert t.loc[(0, 1, "juxtapose"), ["intruder", "intruder_rank"]].tolist() == [2, 2]
    assert t.loc[(2, 3, "merge"), "label_name"] == "eel"
    assert t.loc[(2, 3, "juxtapose"), ["target_rank", "partner_rank", "top_two"]].tolist() == [1, 1, True]
    assert t.loc[(2, 3, "merge"), "partner_logit"] == 6
    s = additions_summary(t.reset_index()).set_index("variant")
    assert s.loc["merge", "top_two"] == 1 and s.loc["juxtapose", "top_two_share"] == pytest.approx(0.5)


def test_article_margin_opposite_is_the_low_output_furthest_below_the_next():
    """Latent space, "Opposites": not the minimum, which many outputs crowd, but the low output with the largest
    distance to the next larger one; the target is never its own opposite; ties go to the lower class."""
    crowded = np.array([[9.0, -5.0, -5.1, -5.05, 3.0, 4.0, 2.0, 6.0, -1.0]])   # target 0
    # ascending (target left out): -5.1(2) -5.05(3) -5.0(1) -1(8) 2(6) 3(4) 4(5) 6(7); the lowest half (4 outputs)
    # compete: gaps .05, .05, 4.0, 3.0 -> class 1 at -5.0 lies 4.0 below -1, the argmin (2) only .05 below 3
    assert article_margin_opposite(crowded, np.array([0])).tolist() == [1]
    assert crowded[0, 1:].argmin() + 1 == 2
    alone = np.array([[0.0, -9.0, 1.0, 1.5, 2.0, 2.5, 8.0]])     # a lone minimum is its own margin opposite
    assert article_margin_opposite(alone, np.array([6])).tolist() == [1]
    tie = np.array([[5.0, 0.0, 0.0, 3.0, 3.0]])   # equal outputs sort in class order: class 2 is the one below 3
    assert article_margin_opposite(tie, np.array([0])).tolist() == [2]
    # --margin-share: over every output (1.0) the largest gap sits at the top: class 5 (4.0) lies 8 below class 7
    high = crowded.copy()
    high[0, 7] = 12.0
    assert article_margin_opposite(high, np.array([0])).tolist() == [1]
    assert article_margin_opposite(high, np.array([0]), 1.0).tolist() == [5]
    assert article_margin_opposite(high, np.array([0]), 0.25).tolist() == [2]   # 2 compete: gaps .05, .05, a tie


def test_classes_and_opposites_tables_carry_the_articles_margin_opposite(rows):
    classes = classes_table(representatives(rows.job("octave")), NAMES)
    reps = representatives(rows.job("octave"))
    expected = article_margin_opposite(reps.logits, reps.meta["target"].to_numpy())
    assert classes["margin_opposite"].tolist() == expected.tolist()
    assert (classes["margin_opposite"] != classes["target"]).all()
    t = opposites_table(representatives(rows.job("opposite")), NAMES, classes).set_index("target")
    by_class = dict(zip(classes["target"], classes["margin_opposite"]))
    assert t["margin_opposite"].to_dict() == {c: by_class[c] for c in t.index}
    for c in t.index:   # mutual: the margin opposite's own margin opposite is the class
        o = by_class[c]
        assert t.loc[c, "margin_mutual"] == (by_class.get(o) == c and o != c)
    s = opposites_summary(t.reset_index(), NAMES)
    assert set(s.criterion) == {"argmax", "standout", "margin", "least"}


def _rows(meta: dict, logits) -> Rows:
    return Rows(pd.DataFrame(meta), np.asarray(logits, np.float32))


def test_top_two_breaks_a_three_way_tie_in_class_order_as_the_transfer_table_does():
    """Equal outputs: the tables break ties toward the lower class index; the additions table's `top_two` must
    then agree with the transfer table's both-in-the-top-2 (ranks in class order) on the generating model, and not
    call a pair the top two while the intruder ranks first with it."""
    key = "addition:merge:2:3:0"
    adds = _rows({"key": [key], "variant": ["merge"], "seed": [0], "target": [2], "partner": [3], "label": [1]},
                 [[0.0, 5.0, 5.0, 5.0]])   # classes 1, 2, 3 tie on top: in class order 1 and 2 are the top two
    t = additions_table(adds, ["a", "b", "c", "d"])
    assert t["intruder"].tolist() == [1] and t["top_two"].tolist() == [False]
    images = pd.DataFrame({"key": [key], "job": ["addition"], "variant": ["merge"], "target": [2], "partner": [3]})
    both = transfer_table(images, {"g": Outputs([key], adds.logits)}, "g")["both_top2_share"]
    assert both.tolist() == [float(t["top_two"].mean())]


def test_a_two_class_models_margin_opposite_is_the_other_class():
    """Two outputs: the only candidate is the other class, even on a failed class image where the target is the
    lower output (the argmin, which was taken instead, is then the target itself)."""
    reps = _rows({"key": ["octave:-:1:-1:0"], "seed": [0], "target": [1], "label": [0], "target_logit": [0.0],
                  "target_prob": [0.27]}, [[1.0, 0.0]])
    t = classes_table(reps, ["x", "y"])
    assert t["margin_opposite"].tolist() == [0] and t["nn_article"].tolist() == [0]


def test_a_two_class_additions_intruder_is_none():
    """With two classes no class lies outside the pair: no intruder (-1, no name), not one of the pair."""
    adds = _rows({"key": ["addition:merge:0:1:0"], "variant": ["merge"], "seed": [0], "target": [0], "partner": [1],
                  "label": [0]}, [[2.0, 1.0]])
    t = additions_table(adds, ["x", "y"])
    assert t[["top_two", "intruder", "intruder_name", "intruder_rank"]].iloc[0].tolist() == [True, -1, "", -1]


def test_a_margin_mutual_pair_counts_when_one_class_lacks_an_opposite_image(rows):
    """The margin opposite is read from the class images, so a pair is mutual whether or not both classes have an
    opposite image; a class in a mutual pair means at least one pair (1 // 2 gave none)."""
    classes = classes_table(representatives(rows.job("octave")), NAMES)
    by_class = dict(zip(classes["target"], classes["margin_opposite"]))
    assert by_class[1] == 5 and by_class[5] == 1   # handmade: 1 <-> 5 is the one margin-mutual pair
    opps = representatives(rows.job("opposite"))
    without_bear = opposites_table(opps.select(opps.meta["target"] != 1), NAMES, classes)
    s = opposites_summary(without_bear, NAMES).groupby("criterion").first()
    assert s.loc["margin", "mutual_classes"] == 1 and s.loc["margin", "mutual_pairs"] == 1
    full = opposites_summary(opposites_table(opps, NAMES, classes), NAMES).groupby("criterion").first()
    assert full.loc["margin", "mutual_pairs"] == 1 and full.loc["argmax", "mutual_pairs"] == 2


def test_the_opposites_summary_counts_the_articles_first_criterion_the_least_activated_output(rows):
    """Faithfulness audit: the article first takes a class's opposite as the least activated output of its class
    image, `k = argmin_i O_i(a)`, and rejects it on a number: "the opposites of many ImageNet categories tend to be
    only a few classes" (Latent space, "Opposites"). The classes table had the argmin per class, but the summary
    counted the other criteria only, so that number was not reported beside theirs.
    Handmade class images: argmins 0 -> 5, 1 -> 5, 2 -> 0, 3 -> 0, 4 -> 0, 5 -> 1 (ties to the lower class);
    3 distinct among 6, the one mutual pair 1 <-> 5."""
    classes = classes_table(representatives(rows.job("octave")), NAMES)
    t = opposites_table(representatives(rows.job("opposite")), NAMES, classes).set_index("target")
    assert t["least_activated"].to_dict() == {0: 5, 1: 5, 2: 0, 3: 0, 4: 0, 5: 1}
    assert t["least_activated_name"].to_dict()[2] == "apple"
    assert t["least_mutual"].to_dict() == {0: False, 1: True, 2: False, 3: False, 4: False, 5: True}
    s = opposites_summary(t.reset_index(), NAMES)
    least = s[s.criterion == "least"]
    assert least[["classes", "distinct", "mutual_pairs"]].iloc[0].tolist() == [6, 3, 1]
    assert list(zip(least["opposite"], least["count"])) == [(0, 3), (5, 2), (1, 1)]
    assert list(dict.fromkeys(s.criterion)) == ["argmax", "standout", "margin", "least"]
