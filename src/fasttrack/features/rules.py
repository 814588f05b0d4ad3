"""The table of value rules: what any value means for each kind of feature. The one owner of that meaning.

A feature is ``numeric``, ``boolean`` or ``categorical`` (the kind the training schema recorded). Whatever
carries a value to the model -- a pandas frame (training, evaluation, promotion), an Arrow batch (batch
scoring), one JSON record, a CSV body, a V2 tensor, a query string -- it becomes the model's input by the rules
below, so the same value gives the same input on every path:

============  ==========================  =============================  ===================================
value         numeric                     boolean                        categorical
============  ==========================  =============================  ===================================
missing       missing                     missing                        missing
NaN           missing                     missing                        missing
true/false    1 / 0                       1 / 0                          ``"true"`` / ``"false"``
number        the number                  0 and 1 only                   its text: ``3``, ``3.0`` -> ``"3"``
infinity      refused                     refused                        its text (``"inf"``)
text          a number, or true/false     ``true``/``false`` or 0/1      stripped
marker text   missing                     missing                        missing
other         refused                     refused                        refused
============  ==========================  =============================  ===================================

Text is always stripped of surrounding white space first; empty text and the missing markers (``?``, ``NA``,
``N/A``, ``null``, ``None``, ``nan`` by default, compared ignoring ASCII case) are missing, for every kind.
Numbers written as text follow one grammar (:data:`NUMBER`: decimal, optional exponent, ``inf``/``nan``), the
one Arrow's string-to-float cast reads, so that columns and single values parse alike. A missing value is
accepted for every feature, as the pipeline imputes it; what a feature the training data always had may not be
is *absent* (a column or a field that is not there), which the drivers refuse. :func:`markdown_table` renders
the table above from the rules themselves (``docs/features.md``).

Drivers (:mod:`fasttrack.features.frames`, :mod:`~fasttrack.features.arrow`, :mod:`~fasttrack.features.records`)
apply these rules to whole columns or one record at a time; their fast paths are checked against
:meth:`Rules.convert` by property tests. This module imports only the standard library and numpy.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

FeatureKind = Literal["numeric", "categorical", "boolean"]
KINDS: Final[tuple[FeatureKind, ...]] = ("numeric", "boolean", "categorical")

#: Text values that mean "missing" unless a schema says otherwise (compared ignoring ASCII case, stripped).
DEFAULT_MISSING_MARKERS: Final = ("", "?", "NA", "N/A", "null", "None", "nan")
#: The white space stripped from text: Unicode's White_Space characters, which are exactly what both Python's
#: ``str.strip()`` and Arrow's ``utf8_trim_whitespace`` strip (a test checks all three agree).
WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: Numbers written as text: the grammar Arrow's string-to-float64 cast reads (a test compares the two).
NUMBER: Final = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])\Z"
)
TRUE_TEXT: Final = "true"
FALSE_TEXT: Final = "false"
_FLAGS: Final = {TRUE_TEXT: 1.0, FALSE_TEXT: 0.0}
_LONGEST_FLAG: Final = len(FALSE_TEXT)
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SHOWN: Final = 60


def _container_repr() -> reprlib.Repr:
    shower = reprlib.Repr()  # Python 3.11's takes no arguments
    shower.maxlevel, shower.maxlist, shower.maxdict, shower.maxtuple = 3, 4, 4, 4
    shower.maxstring = shower.maxother = _SHOWN
    return shower


_CONTAINER: Final = _container_repr()


def ascii_lower(text: str) -> str:
    """Text with its ASCII letters in lower case, nothing else changed (what Arrow's ``ascii_lower`` does)."""
    return text.translate(_ASCII_LOWER)


def shown(value: Any) -> str:
    """A value as an error message shows it: its ``repr``, cut at 60 characters.

    Lists and objects are shown a few levels and items deep (``reprlib``): a value from a request may be nested a
    thousand levels deep (a full ``repr`` would exhaust the recursion limit) or hold millions of items.
    """
    text = _CONTAINER.repr(value) if isinstance(value, list | dict | tuple) else repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def quoted(values: Sequence[Any], limit: int = 3) -> str:
    """Up to ``limit`` values as :func:`shown` shows them, and ``...`` when there are more."""
    return ", ".join(shown(v) for v in values[:limit]) + (", ..." if len(values) > limit else "")


@dataclass(frozen=True, slots=True)
class Invalid:
    """A value a feature cannot take: what was expected, and the value."""

    expected: str
    value: Any

    @property
    def reason(self) -> str:
        """One line for people: ``expected a number, got 'abc'``."""
        return f"expected {self.expected}, got {shown(self.value)}"


#: What a rule gives for one value: the model's value, ``None`` for missing, or why it is refused.
Converted = float | str | Invalid | None

EXPECTED: Final[dict[str, str]] = {
    "numeric": "a number",
    "finite": "a finite number",
    "boolean": "true or false (or 0/1)",
    "categorical": "a category (text)",
}


def plain(value: Any) -> Any:
    """A value as the plain Python scalar the rules take: numpy scalars unwrapped; pandas' NA and NaT missing."""
    if isinstance(value, np.generic):
        return value.item()
    if value is not None and type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def number_text(text: str) -> float | Invalid | None:
    """Stripped, non-marker text as a number: the number, ``None`` for NaN (missing), or why not."""
    if not NUMBER.match(text):
        return Invalid(EXPECTED["numeric"], text)
    number = float(text)
    if math.isnan(number):
        return None
    if math.isinf(number):
        return Invalid(EXPECTED["finite"], text)
    return number


def float_text(number: float) -> str:
    """A float as category text: as Python writes it, whole numbers without ``.0`` (``3.0`` -> ``"3"``)."""
    return str(number).removesuffix(".0")


class Rules:
    """The value rules of one training schema: :data:`DEFAULT_MISSING_MARKERS` unless it recorded others.

    :meth:`convert` is the reference: one value of any kind in, the model's value out. The column drivers
    reach the same answers faster, and use :meth:`convert` for whatever their fast paths do not cover.
    """

    def __init__(self, missing_markers: Iterable[str] = DEFAULT_MISSING_MARKERS) -> None:
        #: The markers, stripped and in ASCII lower case (``""`` always among them: empty text is missing).
        self.markers: frozenset[str] = frozenset({"", *(ascii_lower(m.strip(WHITESPACE)) for m in missing_markers)})
        #: Length of the longest marker: longer text is never one (a cheap first check on the hot path).
        self.longest_marker = max(len(m) for m in self.markers)
        #: Whether a marker reads as a number other than NaN (say ``-999``): then numeric text cannot be cast
        #: before the markers are taken out (``nan`` is missing either way).
        self.numeric_markers = any(NUMBER.match(m) and not math.isnan(float(m)) for m in self.markers)
        self._converters: dict[str, Callable[[Any], Converted]] = {
            "numeric": self.number,
            "boolean": self.flag,
            "categorical": self.category,
        }

    def converter(self, kind: FeatureKind) -> Callable[[Any], Converted]:
        """The rule of ``kind``, to call once per value."""
        return self._converters[kind]

    def convert(self, kind: FeatureKind, value: Any) -> Converted:
        """``value`` as the model input of a ``kind`` feature (see the module docstring)."""
        return self._converters[kind](value)

    def is_marker(self, stripped: str) -> bool:
        """Whether stripped text means missing."""
        return len(stripped) <= self.longest_marker and ascii_lower(stripped) in self.markers

    def text(self, value: str) -> str | None:
        """Text stripped, or ``None`` when it is empty or a missing marker."""
        stripped = value.strip()  # exactly WHITESPACE (a test checks), on str.strip's fast path
        return None if self.is_marker(stripped) else stripped

    # -- one rule per kind ---------------------------------------------------------------------------------
    def number(self, value: Any) -> float | Invalid | None:
        """A numeric feature's value: a float, ``None`` (missing) or :class:`Invalid`."""
        value = plain(value)
        kind = type(value)
        if kind is float:
            if math.isnan(value):
                return None
            return value if not math.isinf(value) else Invalid(EXPECTED["finite"], value)
        if kind is int:
            try:
                return float(value)
            except OverflowError:
                return Invalid(EXPECTED["finite"], value)
        if kind is bool:
            return 1.0 if value else 0.0
        if value is None:
            return None
        if isinstance(value, str):
            stripped = self.text(value)
            if stripped is None:
                return None
            flag = _FLAGS.get(ascii_lower(stripped)) if len(stripped) <= _LONGEST_FLAG else None
            return flag if flag is not None else number_text(stripped)
        return Invalid(EXPECTED["numeric"], value)

    def flag(self, value: Any) -> float | Invalid | None:
        """A boolean feature's value: 1.0 or 0.0, ``None`` (missing) or :class:`Invalid`."""
        value = plain(value)
        if value is None:
            return None
        if isinstance(value, bool):
            return 1.0 if value else 0.0
        if isinstance(value, str):
            stripped = self.text(value)
            if stripped is None:
                return None
            flag = _FLAGS.get(ascii_lower(stripped)) if len(stripped) <= _LONGEST_FLAG else None
            if flag is not None:
                return flag
            number = number_text(stripped)
            if number is None or (isinstance(number, float) and number in (0.0, 1.0)):
                return number
            return Invalid(EXPECTED["boolean"], value)
        if isinstance(value, int | float):
            if isinstance(value, float) and math.isnan(value):
                return None
            if value in (0, 1):
                return float(value)
        return Invalid(EXPECTED["boolean"], value)

    def category(self, value: Any) -> str | Invalid | None:
        """A categorical feature's value: its category text, ``None`` (missing) or :class:`Invalid`."""
        value = plain(value)
        if isinstance(value, str):
            return self.text(value)
        if value is None:
            return None
        if isinstance(value, bool):
            return TRUE_TEXT if value else FALSE_TEXT
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return None if math.isnan(value) else float_text(value)
        return Invalid(EXPECTED["categorical"], value)


DEFAULT_RULES: Final = Rules()


def category_text(value: Any) -> str | None:
    """One value as category text under the default rules (``None`` for missing or a value that is not one).

    For code that compares labels and categories as text (drift buckets, feedback labels).
    """
    converted = DEFAULT_RULES.category(value)
    return None if isinstance(converted, Invalid) else converted


# ------------------------------------------------------------------------------------------------ the table
#: The values the rendered table shows, one per row: (what the value is, an example).
TABLE_ROWS: Final[tuple[tuple[str, Any], ...]] = (
    ("null", None),
    ("NaN", math.nan),
    ("a boolean", True),
    ("0 or 1", 1),
    ("a whole number", 3),
    ("a whole float", 3.0),
    ("a float", 2.5),
    ("infinity", math.inf),
    ("text", " red "),
    ("a number as text", " 5.3 "),
    ("true or false as text", " TRUE"),
    ("a missing marker", "?"),
    ("empty text", ""),
    ("a list or an object", [1, 2]),
)


def markdown_table(rules: Rules = DEFAULT_RULES, rows: Sequence[tuple[str, Any]] = TABLE_ROWS) -> str:
    """The table of rules as Markdown, computed by applying :meth:`Rules.convert` to example values."""

    def cell(converted: Converted) -> str:
        if converted is None:
            return "missing"
        if isinstance(converted, Invalid):
            return f"refused: expected {converted.expected}"
        return f"`{converted!r}`"

    lines = [
        "| value | example | numeric | boolean | categorical |",
        "| --- | --- | --- | --- | --- |",
    ]
    for what, example in rows:
        cells = [cell(rules.convert(kind, example)) for kind in KINDS]
        lines.append(f"| {what} | `{example!r}` | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
