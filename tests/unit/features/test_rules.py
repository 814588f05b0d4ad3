"""The table of value rules: every kind of value for every kind of feature, and the grammars Arrow shares."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fasttrack.features.rules import (
    DEFAULT_MISSING_MARKERS,
    NUMBER,
    WHITESPACE,
    Invalid,
    Rules,
    category_text,
    markdown_table,
)

RULES = Rules()
REPO = Path(__file__).resolve().parents[3]


def converted(kind: str, value: Any) -> Any:
    """What the rule gives, with a refusal shown as ``("invalid", expected)``."""
    result = RULES.convert(kind, value)  # type: ignore[arg-type]
    return ("invalid", result.expected) if isinstance(result, Invalid) else result


CASES: list[tuple[Any, Any, Any, Any]] = [
    # value, numeric, boolean, categorical
    (None, None, None, None),
    (math.nan, None, None, None),
    (np.float32("nan"), None, None, None),
    (True, 1.0, 1.0, "true"),
    (np.bool_(False), 0.0, 0.0, "false"),
    (0, 0.0, 0.0, "0"),
    (1.0, 1.0, 1.0, "1"),
    (7, 7.0, ("invalid", "true or false (or 0/1)"), "7"),
    (np.int64(3), 3.0, ("invalid", "true or false (or 0/1)"), "3"),
    (3.0, 3.0, ("invalid", "true or false (or 0/1)"), "3"),
    (2.5, 2.5, ("invalid", "true or false (or 0/1)"), "2.5"),
    (1e16, 1e16, ("invalid", "true or false (or 0/1)"), "1e+16"),
    (10**400, ("invalid", "a finite number"), ("invalid", "true or false (or 0/1)"), "1" + "0" * 400),
    (math.inf, ("invalid", "a finite number"), ("invalid", "true or false (or 0/1)"), "inf"),
    (-math.inf, ("invalid", "a finite number"), ("invalid", "true or false (or 0/1)"), "-inf"),
    (" red ", ("invalid", "a number"), ("invalid", "true or false (or 0/1)"), "red"),
    (" 5.3 ", 5.3, ("invalid", "true or false (or 0/1)"), "5.3"),
    ("\u20035\u3000", 5.0, ("invalid", "true or false (or 0/1)"), "5"),
    ("1e400", ("invalid", "a finite number"), ("invalid", "true or false (or 0/1)"), "1e400"),
    ("Infinity", ("invalid", "a finite number"), ("invalid", "true or false (or 0/1)"), "Infinity"),
    ("-nan", None, None, "-nan"),
    ("1_000", ("invalid", "a number"), ("invalid", "true or false (or 0/1)"), "1_000"),
    ("\u0661\u0662", ("invalid", "a number"), ("invalid", "true or false (or 0/1)"), "\u0661\u0662"),
    (" TRUE", 1.0, 1.0, "TRUE"),
    ("false", 0.0, 0.0, "false"),
    ("1", 1.0, 1.0, "1"),
    ("0.0", 0.0, 0.0, "0.0"),
    ("2", 2.0, ("invalid", "true or false (or 0/1)"), "2"),
    ("yes", ("invalid", "a number"), ("invalid", "true or false (or 0/1)"), "yes"),
    ("?", None, None, None),
    (" n/A ", None, None, None),
    ("NONE", None, None, None),
    ("", None, None, None),
    ("   ", None, None, None),
    ([1, 2], ("invalid", "a number"), ("invalid", "true or false (or 0/1)"), ("invalid", "a category (text)")),
    ({"a": 1}, ("invalid", "a number"), ("invalid", "true or false (or 0/1)"), ("invalid", "a category (text)")),
]


@pytest.mark.parametrize(("value", "numeric", "boolean", "categorical"), CASES)
def test_the_table(value: Any, numeric: Any, boolean: Any, categorical: Any) -> None:
    assert converted("numeric", value) == numeric
    assert converted("boolean", value) == boolean
    assert converted("categorical", value) == categorical


def test_refusals_say_what_was_expected_and_quote_the_value() -> None:
    refused = RULES.number("abc")
    assert isinstance(refused, Invalid)
    assert refused.reason == "expected a number, got 'abc'"
    long = RULES.number("x" * 200)
    assert isinstance(long, Invalid)
    assert len(long.reason) < 100 and long.reason.endswith("...")


def test_markers_a_schema_recorded() -> None:
    rules = Rules(["-999", " unknown "])
    assert rules.number("-999") is None
    assert rules.number(-999) == -999.0  # markers are text: the number itself is a number
    assert rules.category("UNKNOWN") is None
    assert rules.category("?") == "?"  # not one of this schema's markers
    assert rules.category("") is None  # empty text is always missing
    assert rules.numeric_markers
    assert not RULES.numeric_markers  # "nan" reads as a number, but NaN is missing either way


def test_category_text_for_comparisons() -> None:
    assert category_text(3.0) == "3"
    assert category_text(" a ") == "a"
    assert category_text([1]) is None
    assert category_text("NA") is None


def test_whitespace_is_what_python_and_arrow_strip() -> None:
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    wrapped = [f"{c}x{c}" for c in points]
    arrow = {c for c, s in zip(points, pc.utf8_trim_whitespace(pa.array(wrapped)).to_pylist(), strict=True) if s == "x"}
    python = {c for c, s in zip(points, wrapped, strict=True) if s.strip() == "x"}
    assert arrow == python == set(WHITESPACE)


NUMERIC_TEXT = st.from_regex(
    re.compile(
        r"\A[+\-]?[0-9]{0,4}\.?[0-9]{0,4}([eE][+\-]?[0-9]{0,4})?\Z|\A[+\-]?(inf|infinity|nan|INF|Infinity|NaN)\Z"
    )
)


@given(st.one_of(NUMERIC_TEXT, st.text(alphabet="0123456789+-.eEinfatyINFATY_x ", max_size=10), st.text(max_size=6)))
def test_the_number_grammar_is_arrows(text: str) -> None:
    try:
        arrow: float | None = pc.cast(pa.array([text]), pa.float64())[0].as_py()
    except pa.ArrowInvalid:
        arrow = None
    ours = float(text) if NUMBER.match(text) else None
    if arrow is None or ours is None:
        assert arrow is ours, (text, arrow, ours)
    else:
        assert arrow == ours or (math.isnan(arrow) and math.isnan(ours)), text


def test_default_markers_are_as_documented() -> None:
    assert set(DEFAULT_MISSING_MARKERS) == {"", "?", "NA", "N/A", "null", "None", "nan"}


def test_the_docs_show_the_table_the_rules_make() -> None:
    docs = (REPO / "docs" / "features.md").read_text(encoding="utf-8")
    start = docs.index("<!-- rules table: generated, do not edit -->\n") + len(
        "<!-- rules table: generated, do not edit -->\n"
    )
    end = docs.index("<!-- end of rules table -->")
    assert docs[start:end] == markdown_table(), "docs/features.md: regenerate the table with markdown_table()"
