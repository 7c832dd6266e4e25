"""Work planning: parsing the selections, refusing bad ones, keys and fixed batch boundaries."""
from __future__ import annotations

import itertools

import pytest

from jobs.catalog import JobSpec
from sweep.plan import (ALL_PAIRS, MAX_DEFAULT_PAIRS, Batch, Plan, PlanError, canonical_options, make_plan,
                        parse_classes, parse_features, parse_pairs)


@pytest.mark.parametrize("text, expected", [
    ("all", tuple(range(10))),
    ("0-3", (0, 1, 2, 3)),
    ("1,5,7-9", (1, 5, 7, 8, 9)),
    ("9,1,1,2-3", (1, 2, 3, 9)),
    (" 4 ", (4,)),
    ("3-3", (3,)),
])
def test_parse_classes_good(text, expected):
    assert parse_classes(text, 10) == expected


@pytest.mark.parametrize("text, n, fragment", [
    ("1000", 1000, "out of range"),
    ("0-1000", 1000, "1000"),
    ("7-3", 10, "backwards"),
    ("abc", 10, "not a class index"),
    ("1,,2", 10, "empty"),
    ("-1", 10, "not a class index"),
    ("1.5", 10, "not a class index"),
    ("\u00b2", 10, "not a class index"),    # "²": str.isdigit() says yes, int() refuses it with a traceback
])
def test_parse_classes_bad(text, n, fragment):
    with pytest.raises(PlanError, match=fragment) as error:
        parse_classes(text, n)
    assert "\n" not in str(error.value)


def test_parse_pairs_list_file_random_all(tmp_path):
    assert parse_pairs("1+2,3+4,1+2", 10, range(10)) == ((1, 2), (3, 4))
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("# favourite pairs\n1+2\n\n 5 + 7  # comment\n")
    assert parse_pairs(str(pairs_file), 10, range(10)) == ((1, 2), (5, 7))
    drawn = parse_pairs("random:5", 10, (0, 2, 4, 6, 8))
    assert len(set(drawn)) == 5 and all(a in (0, 2, 4, 6, 8) and b in (0, 2, 4, 6, 8) and a < b for a, b in drawn)
    assert parse_pairs("random:5", 10, (0, 2, 4, 6, 8)) == drawn       # seeded: the same draw every time
    assert parse_pairs(None, 10, (0, 1, 2)) == ((0, 1), (0, 2), (1, 2))
    assert len(parse_pairs("all", 10, range(10))) == 45


@pytest.mark.parametrize("text, fragment", [
    ("1+1", "itself"),
    ("1+10", "out of range"),
    ("1+2+3", "not a pair"),
    ("random:0", "positive"),
    ("random:99", "distinct pairs"),
    ("nosuchfile", "neither"),
    ("a+b", "not a class index"),
    ("random:\u00b2", "positive"),
])
def test_parse_pairs_bad(text, fragment):
    with pytest.raises(PlanError, match=fragment):
        parse_pairs(text, 10, range(10))


def test_a_pair_list_on_the_command_line_takes_a_plus_in_every_pair():
    """`--pairs "1 2"` was refused but `--pairs "1+2,3 4"` read `3 4` as a pair (a pairs file's spelling)."""
    for text in ("1+2,3 4", "1+2,3,4"):
        with pytest.raises(PlanError, match=r"'3 4' is not a pair|'3' is not a pair"):
            parse_pairs(text, 10, range(10))
    assert parse_pairs(" 1 + 2 , 3+4", 10, range(10)) == ((1, 2), (3, 4))


def test_pairs_file_error_names_the_line(tmp_path):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1+2\n3+12\n")
    with pytest.raises(PlanError, match=r"pairs.txt:2"):
        parse_pairs(str(pairs_file), 10, range(10))


def test_a_pairs_file_saved_by_a_windows_editor_reads_as_any_other(tmp_path):
    """Notepad saves UTF-8 with a byte-order mark and CRLF line ends: the mark is not part of the first pair."""
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_bytes("1+2\r\n# the second\r\n3+4\r\n".encode("utf-8-sig"))
    assert parse_pairs(str(pairs_file), 10, range(10)) == ((1, 2), (3, 4))


def test_a_pairs_file_line_splits_a_pair_at_any_whitespace_as_at_a_plus(tmp_path):
    """`2 3` was read as a pair but `2<TAB>3`, a spreadsheet's TSV line, was refused."""
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text("1+2\n3 4\n5\t6\n7,8\n 0 \t + 9\n")
    assert parse_pairs(str(pairs_file), 10, range(10)) == ((1, 2), (3, 4), (5, 6), (7, 8), (0, 9))


@pytest.mark.parametrize("name, message", [
    # a path holding `+` was read as a pair list: "class '/x/no' is not a class index"
    ("no+file.txt", "--pairs '{path}': no such file (give an existing pairs file, or pairs as 1+2,3+4)"),
    ("pairs.csv", "--pairs '{path}': no such file (give an existing pairs file, or pairs as 1+2,3+4)"),
    ("", "--pairs '{path}' is a folder, not a pairs file: give a file in it with one A+B pair per line"),
])
def test_a_pairs_path_that_is_missing_or_a_folder_is_named_as_such(tmp_path, name, message):
    path = str(tmp_path / name) if name else str(tmp_path)
    with pytest.raises(PlanError) as error:
        parse_pairs(path, 10, range(10))
    assert str(error.value) == message.format(path=path)


def test_too_few_pairs_to_draw_are_counted_in_words():
    with pytest.raises(PlanError, match=r"^--pairs random:1: only 0 distinct pairs exist among 1 class$"):
        parse_pairs("random:1", 10, (3,))
    with pytest.raises(PlanError, match=r"^--pairs random:2: only 1 distinct pair exists among 2 classes$"):
        parse_pairs("random:2", 10, (3, 4))


def test_a_pairs_file_that_is_not_utf8_text_is_named(tmp_path):
    """It was "a file given is not text", naming no file (Windows PowerShell 5's `>` writes UTF-16)."""
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_bytes("1+2\n".encode("utf-16"))
    with pytest.raises(PlanError, match=r"^pairs file .*pairs.txt is not UTF-8 text \(byte 0xff at 0\): save it as "
                                        r"UTF-8, one A\+B pair per line$"):
        parse_pairs(str(pairs_file), 10, range(10))


def test_default_pairs_of_a_full_class_sweep_are_a_seeded_sample():
    """Issue 10.1 (behaviour changed: this was refused): all 499500 pairs of 1000 classes are too many, so the
    default is the sample `--pairs random:1000` draws, noted in the plan and recorded in the manifest's options."""
    plan = make_plan(n_classes=1000)
    assert len(plan.pairs) == MAX_DEFAULT_PAIRS == len(set(plan.pairs))
    assert all(0 <= a < b < 1000 for a, b in plan.pairs)
    assert plan.pairs == make_plan(n_classes=1000, pairs=f"random:{MAX_DEFAULT_PAIRS}").pairs   # same draw
    assert plan.pairs_drawn == f"random:{MAX_DEFAULT_PAIRS} of 499500"
    assert plan.options()["pairs_drawn"] == plan.pairs_drawn and Plan.from_options(plan.options()) == plan
    assert "499500" in plan.notes()[0] and "--pairs" in plan.notes()[0]
    # explicit pairs, few classes, or no paired job: nothing drawn, nothing noted, the options as before
    for quiet in (make_plan(n_classes=1000, pairs="1+2"), make_plan(n_classes=10),
                  make_plan(n_classes=1000, jobs="octave")):
        assert not quiet.pairs_drawn and not quiet.notes() and "pairs_drawn" not in quiet.options()
    assert make_plan(n_classes=10).pairs == tuple(itertools.combinations(range(10), 2))
    assert make_plan(n_classes=1000, jobs="octave").pairs == ()


@pytest.mark.parametrize("kwargs, fragment", [
    ({"jobs": "octave,dance"}, "unknown job 'dance'"),
    ({"variants": "blend"}, "unknown variant"),
    ({"seeds": 0}, "--seeds"),
    ({"batch_size": 0}, "--batch-size"),
    ({"jobs": "addition", "classes": "3"}, "^addition needs at least two classes"),
    ({"jobs": "interpolate,addition", "classes": "3", "sources": ("a.png",)},
     "^addition and interpolate need at least two classes"),
    # interpolation with its own pairs does not read --pairs: only the addition lacks them
    ({"jobs": "interpolate,addition", "classes": "3", "sources": ("a.png",), "interpolate_pairs": "1+2"},
     "^addition needs at least two classes or explicit --pairs$"),
    ({"jobs": "interpolate", "classes": "3", "sources": ("a.png",), "interpolate_pairs": "all"},
     "^interpolation needs at least two classes"),
])
def test_make_plan_bad(kwargs, fragment):
    with pytest.raises(PlanError, match=fragment):
        make_plan(n_classes=10, **kwargs)


@pytest.mark.parametrize("interpolate_pairs, fragment", [
    ("1+1", "--interpolate-pairs: pair 1+1 pairs a class with itself (a pair needs two classes)"),
    ("random:99", "--interpolate-pairs random:99: only 45 distinct pairs"),
    ("nosuchfile.txt", "--interpolate-pairs 'nosuchfile.txt': no such file"),
])
def test_a_bad_interpolate_pairs_is_named_as_the_option_given(interpolate_pairs, fragment):
    with pytest.raises(PlanError) as error:
        make_plan(n_classes=10, jobs="interpolate", sources=("a.png",), interpolate_pairs=interpolate_pairs)
    assert str(error.value).startswith(fragment)


def test_items_keys_and_counts():
    plan = make_plan(n_classes=10, classes="0-4", pairs="0+1,2+3,1+4", seeds=2, batch_size=3)
    items = plan.items()
    # octave and opposite: 5 classes x 2 seeds; addition: 3 pairs x 2 variants x 2 seeds
    assert len(items) == 5 * 2 * 2 + 3 * 2 * 2
    keys = [item.key for item in items]
    assert len(set(keys)) == len(keys)
    assert "octave:-:4:-1:1" in keys and "addition:juxtapose:1:4:0" in keys
    assert JobSpec("addition", 2, seed=1, variant="merge", partner=3).key == "addition:merge:2:3:1"
    assert items[0] == JobSpec("octave", 0) and items[-1] == JobSpec("addition", 1, 1, "juxtapose", 4)


def test_batches_are_fixed_and_homogeneous():
    plan = make_plan(n_classes=10, classes="0-6", pairs="0+1,2+3", batch_size=3)
    batches = plan.batches()
    assert [b.index for b in batches] == list(range(len(batches)))
    assert sum(len(b.items) for b in batches) == len(plan.items())
    assert all(len(b.items) <= 3 and len({(i.job, i.variant) for i in b.items}) == 1 for b in batches)
    # Same options -> same boundaries and names, also after a round trip through the manifest's JSON form.
    again = Plan.from_options(plan.options()).batches()
    assert [b.name for b in again] == [b.name for b in batches]
    assert len({b.name for b in batches}) == len(batches)


def test_batch_name_depends_on_the_items_run():
    batch = make_plan(n_classes=10, jobs="octave", classes="0-3", batch_size=4).batches()[0]
    rest = batch.without(["octave:-:0:-1:0"])
    assert rest.index == batch.index and len(rest.items) == 3
    assert rest.name != batch.name and rest.name.startswith(f"part-{batch.index:06d}-octave-")
    assert Batch(batch.index, batch.items).name == batch.name


def test_parse_features():
    assert parse_features("inception5a:0,4") == ("inception5a", (0, 4))
    assert parse_features("net.block2:3") == ("net.block2", (3,))
    for bad in ("inception5a", "inception5a:", ":1", "block2:a", "block2:\u00b2", "block2: , "):
        with pytest.raises(PlanError):
            parse_features(bad)


@pytest.mark.parametrize("typed", ["inception5a:0,,4", "inception5a:0,", "inception5a:,4"])
def test_parse_features_refuses_an_empty_entry_as_classes_does(typed):
    with pytest.raises(PlanError, match=f"^empty entry in --features '{typed}'$"):
        parse_features(typed)


@pytest.mark.parametrize("selections, words", [
    (dict(classes="1,,2"), "empty entry in --classes '1,,2'"),
    (dict(classes=""), "empty entry in --classes ''"),                          # as before: its own words kept
    (dict(jobs="octave,,opposite"), "empty entry in --jobs 'octave,,opposite'"),
    (dict(jobs=",octave"), "empty entry in --jobs ',octave'"),
    (dict(jobs="addition", variants="merge,"), "empty entry in --variants 'merge,'"),
    (dict(jobs="addition", pairs="1+2,,3+4"), "empty entry in --pairs '1+2,,3+4'"),
    (dict(jobs="interpolate", sources=("a",), interpolate_pairs=",1+2"), "empty entry in --interpolate-pairs ',1+2'"),
    (dict(jobs="dream", sources=("a",), layers=("block2:4,,0",)), "empty entry in --layers 'block2:4,,0'"),
    (dict(jobs="", ), "no job given ('')"),                                     # an empty whole value: as before
    (dict(jobs=" , "), "no job given (' , ')"),
    (dict(jobs="addition", variants=""), "no variant given ('')"),
])
def test_an_empty_entry_of_a_comma_list_is_refused_in_one_line(selections, words):
    """`--classes 1,,2` was refused, but `--jobs octave,,opposite` (and the other comma lists) dropped the empty
    entry: a doubled comma is a typo, maybe of the job meant."""
    with pytest.raises(PlanError) as raised:
        make_plan(n_classes=10, **selections)
    assert str(raised.value).startswith(words) and "\n" not in str(raised.value)


def test_options_are_refused_only_when_no_chosen_job_reads_them():
    from sweep.plan import refuse_unused_options
    given = dict(pairs="1+2", variants="merge", layers=("block2",), interpolate_pairs="3+4")
    refuse_unused_options(("addition", "interpolate", "dream"), **given)            # every option has a reader
    none = dict(pairs=None, variants=None, layers=("",), interpolate_pairs=None)
    refuse_unused_options(("octave",), **none)                                       # nothing given: nothing to say
    with pytest.raises(PlanError, match=r"--pairs given \(read by addition\)"):     # interpolate has its own pairs
        refuse_unused_options(("interpolate",), **{**none, "pairs": "1+2", "interpolate_pairs": "3+4"})
    refuse_unused_options(("interpolate",), **{**none, "pairs": "1+2"})             # without them it reads --pairs


def test_the_notes_of_a_pairs_file_of_every_pair_name_only_the_repeats_in_the_other_order(tmp_path):
    """`--pairs all` of 1000 classes has 499500 pairs: the notes look them up in a set (this file's 44850 pairs took
    12 s as lookups in a tuple, quadratic, half an hour for all pairs of 1000 classes)."""
    pairs = [f"{a}+{b}" for a, b in itertools.combinations(range(300), 2)] + ["7+3", "299+0"]
    listed = tmp_path / "pairs.txt"
    listed.write_text("\n".join(pairs))
    plan = make_plan(n_classes=300, jobs="addition", pairs=str(listed), variants="merge")
    assert len(plan.items()) == 300 * 299 // 2
    assert plan.notes() == ["addition: 7+3, 299+0 left out, the same images as the pairs in the other order"]


def test_an_addition_renders_a_pair_once_whichever_order_it_is_given_in():
    plan = make_plan(n_classes=10, jobs="addition,interpolate", classes="0-2", pairs="1+2,2+1,0+1,1+0,3+4",
                     variants="merge", sources=["cat.png"])
    additions = [(i.target, i.partner) for i in plan.items() if i.job == "addition"]
    interpolations = [(i.target, i.partner) for i in plan.items() if i.job == "interpolate"]
    assert additions == [(1, 2), (0, 1), (3, 4)]                          # the first order given is kept
    assert interpolations == [(1, 2), (2, 1), (0, 1), (1, 0), (3, 4)]     # a -> b is not b -> a
    assert plan.notes() == ["addition: 2+1, 1+0 left out, the same images as the pairs in the other order"]
    assert make_plan(n_classes=10, jobs="addition", classes="0-2", pairs="1+2").notes() == []


def test_every_pair_of_the_classes_is_kept_as_all_and_read_back_as_the_pairs():
    """F8: the manifest of `--pairs all` over 1000 classes listed 499500 pairs (14 MB); every pair of the classes in
    their order is "all" however it was asked for, any other selection stays a list."""
    every = "0+1,0+2,0+3,1+2,1+3,2+3"
    for pairs in (None, "all", every, "random:6"):
        plan = make_plan(n_classes=10, classes="0-3", pairs=pairs, jobs="addition")
        assert plan.options()["pairs"] == ALL_PAIRS and Plan.from_options(plan.options()) == plan
    for pairs in ("0+1,2+3", "1+0,0+2,0+3,1+2,1+3,2+3", "0+1,0+2,0+3,1+2,1+3,2+3,0+9", "random:5"):
        plan = make_plan(n_classes=10, classes="0-3", pairs=pairs, jobs="addition")
        assert plan.options()["pairs"] == [list(p) for p in plan.pairs] and Plan.from_options(plan.options()) == plan
    octaves = make_plan(n_classes=10, classes="0-3", jobs="octave")                 # no paired job: no pairs
    assert octaves.options()["pairs"] == [] and Plan.from_options(octaves.options()) == octaves
    own = make_plan(n_classes=10, classes="0-3", jobs="interpolate", sources=("a.png",), interpolate_pairs="all")
    assert own.options()["interpolate_pairs"] == ALL_PAIRS and Plan.from_options(own.options()) == own


def test_all_pairs_of_1000_classes_round_trip():
    plan = make_plan(n_classes=1000, pairs="all", jobs="addition", variants="merge")
    assert len(plan.pairs) == 499500 and plan.options()["pairs"] == ALL_PAIRS
    assert Plan.from_options(plan.options()) == plan


def test_canonical_options_read_an_older_list_of_every_pair_as_all():
    plan = make_plan(n_classes=10, classes="0-3", pairs="all", jobs="addition")
    older = {**plan.options(), "pairs": [list(p) for p in plan.pairs]}              # as stores kept it before
    assert canonical_options(older) == plan.options() and Plan.from_options(older) == plan
    other = {**older, "pairs": [[1, 0], [0, 2]]}
    assert canonical_options(other) == other
    for damaged in ({**older, "pairs": [1, 2]}, {**older, "classes": "0-3"}, {**older, "classes": [0, "a"]}, {}):
        assert canonical_options(damaged) == damaged                                # compared as they are


def test_the_same_selections_listed_in_another_order_are_the_same_sweep():
    """`--jobs`, `--variants`, `--layers` and `--pairs` listed in another order plan the same items, so the manifest
    comparison takes them as the same sweep (as `--classes 3,1` and the `--images` are sorted already); the order of
    A+B and B+A, which decides the addition's image, still counts."""
    def options(**selections):
        return canonical_options(make_plan(n_classes=10, classes="0-3", **selections).options())
    first = options(jobs="octave,opposite,addition", pairs="0+1,2+3,1+0", variants="merge,juxtapose")
    again = options(jobs="addition,opposite,octave", pairs="2+3,0+1,1+0", variants="juxtapose,merge")
    assert first == again
    assert first != options(jobs="octave,opposite,addition", pairs="1+0,0+1,2+3", variants="merge,juxtapose")
    dreams = dict(jobs="dream", sources=("a.png",))
    assert options(**dreams, layers=("block2", "block1")) == options(**dreams, layers=("block1", "block2"))


@pytest.mark.parametrize("options", [dict(), dict(jobs="octave,addition", pairs="0+1,1+0,2+3", seeds=3),
                                     dict(jobs="transfigure,interpolate,dream,directed-dream", sources=("a", "b"),
                                          layers=("block2", "block3:0"), pairs="0+1", interpolate_pairs="2+3,4+5")])
def test_the_count_of_a_plan_is_its_number_of_items(options):
    plan = make_plan(n_classes=10, **options)
    assert plan.count() == len(plan.items()) > 0


def test_a_sweep_too_large_to_hold_is_refused_before_any_item_is_made(monkeypatch):
    """`--seeds` 10^12 grew the driver's memory until the machine stopped it: the count is checked first."""
    monkeypatch.setattr(Plan, "items", lambda self: pytest.fail("the items were made"))
    with pytest.raises(PlanError, match=r"^the sweep would have 14,000,000,000,000 items, more than 20,000,000: "):
        make_plan(n_classes=10, jobs="octave,opposite,addition", classes="0-4", pairs="0+1,2+3", seeds=10**12)
