"""Small text rules every layer shares: an error's message as one line, what counts as a whole number, a
short listing of many items, a count with its noun, how a class is named, and at what size a feature pass saw its
images.

`jobs` is the bottom layer (`sweep` and `analysis` import it, never the reverse), so these live here, with no
import beyond the standard library.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

_WHOLE_NUMBER = re.compile(r"[0-9]+")


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def utf8_prefix(text: str, size: int) -> str:
    """The longest start of `text` whose UTF-8 encoding has at most `size` bytes (no character cut in two)."""
    return text.encode()[:size].decode(errors="ignore")


def counted(count: int, noun: str, plural: str = "") -> str:
    """"1 item", "3 items", "0 items"; `plural` where adding an s is wrong ("classes")."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def flattened(error: BaseException) -> str:
    """An exception's whole message on one line (YAML's and decoders' span several; its type's name when empty)."""
    return " ".join(str(error).split()) or type(error).__name__


def is_whole_number(text: str) -> bool:
    """True for ASCII digits only: `str.isdigit()` also accepts "²", which `int()` then refuses with a traceback."""
    return _WHOLE_NUMBER.fullmatch(text) is not None


def listing(items, limit: int = 3) -> str:
    """The first `limit` items, comma-separated, then "and N more" for the rest: an error names a few, not all."""
    items = [str(i) for i in items]
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def class_label(c: int, names: Sequence[str]) -> str:
    """How pages and terminal lines name class `c`: its number and name ("1 goldfish"), or the name alone where it
    says the number already (the demo model's "digit 2", which would otherwise read "2 digit 2"); the number alone
    outside `names`."""
    if not 0 <= c < len(names):
        return str(c)
    return named_class(c, names[c])


def named_class(c: int, name: str) -> str:
    """`class_label` of class `c` whose name is at hand (a table row's `name`): "1 goldfish", "digit 2"."""
    return name if str(c) in name.split() else f"{c} {name}"


def size_note(size: str | None, sides: Iterable[int]) -> str:
    """The size the model saw a features table's images at, from its `feature_size` and `side` values (None: a
    table made before `--feature-size`, computed at the stored size): "at 299 px (resized, --feature-size input)", the
    article's; "at the stored size (490 px)"; "at the stored sizes (380-490 px)". One wording for the line
    `sweep analyze --features` prints and the feature scatter's subtitle."""
    sides = sorted(set(sides))
    if size is None:
        return "at the stored size (computed before --feature-size)"
    if size == "input":   # one side: where the job started (`sweep.features.input_side`)
        return f"at {', '.join(map(str, sides))} px (resized, --feature-size input)"
    if len(sides) == 1:
        return f"at the stored size ({sides[0]} px)"
    return "at the stored sizes" + (f" ({sides[0]}-{sides[-1]} px)" if sides else "")
