"""The shared one-line error rules, the whole-number rule and class names (`jobs.text`)."""
from __future__ import annotations

import pytest

from jobs.text import class_label, counted, first_line, flattened, is_whole_number, listing, named_class, \
    utf8_prefix


@pytest.mark.parametrize("text, expected", [
    ("0", True), ("42", True), ("007", True),
    ("", False), ("-1", False), ("1.5", False), (" 3", False), ("3 ", False), ("1e3", False),
    ("\u00b2", False),        # "²": str.isdigit() accepts it, int() refuses it
    ("\u0663", False),        # Arabic-Indic three: int() would take it, but a class index is written in ASCII
])
def test_a_whole_number_is_ascii_digits_only(text, expected):
    assert is_whole_number(text) is expected


def test_first_line_keeps_the_first_line_and_names_the_type_of_an_empty_error():
    assert first_line(ValueError("  bad value\nTraceback (most recent call last):\n  File x  ")) == "bad value"
    assert first_line(KeyError()) == "KeyError"
    assert first_line(ValueError("\n\n")) == "ValueError"


def test_flattened_joins_every_line_into_one():
    yaml_error = ValueError("while parsing a mapping\n  in \"s.yaml\", line 3\n    ^")
    assert flattened(yaml_error) == 'while parsing a mapping in "s.yaml", line 3 ^'
    assert flattened(OSError()) == "OSError"


def test_listing_names_a_few_then_counts_the_rest():
    assert listing([]) == "" and listing(["a"]) == "a" and listing("abc") == "a, b, c"
    assert listing("abcde") == "a, b, c and 2 more" and listing(range(5), limit=1) == "0 and 4 more"


def test_class_label_names_a_class_once():
    digits = tuple(f"digit {d}" for d in range(10))
    assert [class_label(2, digits), class_label(1, ("tench", "goldfish")), class_label(7, ("tench",))] == [
        "digit 2", "1 goldfish", "7"]
    assert class_label(12, tuple(f"class {c}" for c in range(20))) == "class 12"
    assert class_label(2, ("a", "b", "2 seater")) == "2 seater" and class_label(1, ("a", "12 b")) == "1 12 b"


def test_named_class_is_class_label_of_a_name_at_hand():
    assert [named_class(2, "digit 2"), named_class(1, "goldfish"), named_class(1, "12 b")] == [
        "digit 2", "1 goldfish", "1 12 b"]


def test_a_count_takes_its_noun_in_the_singular_only_for_one():
    assert [counted(n, "item") for n in (0, 1, 2)] == ["0 items", "1 item", "2 items"]
    assert counted(1, "class", "classes") == "1 class" and counted(3, "class", "classes") == "3 classes"


def test_utf8_prefix_cuts_to_whole_characters():
    assert utf8_prefix("a\u00e9b", 2) == "a" and utf8_prefix("a\u00e9b", 3) == "a\u00e9"   # é takes 2 bytes
    assert utf8_prefix("\u4e2d\u6587", 5) == "\u4e2d" and utf8_prefix("short", 255) == "short"
