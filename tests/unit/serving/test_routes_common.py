"""What every route shares: parsing hostile JSON, the bound on a body's values, and error bodies that never fail."""

from __future__ import annotations

import orjson
import pytest

from fasttrack.errors import BadRequestError, PayloadTooLargeError
from fasttrack.features.rules import shown
from fasttrack.serving.routes.common import (
    MAX_DEPTH,
    check_json_values,
    error_body,
    json_budget,
    parse_json,
)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (rb'{"\ud800": 1}', "$ key '\\ud800'"),
        (rb'[{"feature_1": "x\udc00"}]', "$[0].feature_1"),
        (rb'{"dataframe_records": [{"a": 1, "\udfff": 2}]}', "$.dataframe_records[0] key '\\udfff'"),
    ],
)
def test_a_lone_surrogate_is_400_naming_where_it_is(body: bytes, where: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        parse_json(body)
    assert where in str(refused.value) and "lone surrogate" in str(refused.value)


def test_a_surrogate_pair_is_text_and_non_standard_numbers_still_parse() -> None:
    assert parse_json(rb'["\ud83d\ude00", NaN]')[0] == "\U0001f600"
    assert parse_json(b"[1e400]") == [float("inf")]  # validation then names the field: "a finite number"


def test_json_nested_past_the_parser_depth_is_400_saying_so() -> None:
    assert parse_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(BadRequestError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json(nested(MAX_DEPTH + 1))  # also checks orjson still words its refusal as parse_json expects


def test_duplicate_keys_the_last_one_wins() -> None:
    assert parse_json(b'{"feature_1": 1, "feature_1": 2}') == {"feature_1": 2}


@pytest.mark.parametrize("body", [b'"a\x00b"', b"\xff\xfe{}", b'{"a": "\xc3"}'])
def test_nul_bytes_and_invalid_utf8_are_400(body: bytes) -> None:
    with pytest.raises(BadRequestError, match="malformed JSON"):
        parse_json(body)


def test_a_deeply_nested_value_is_shown_briefly() -> None:
    value: list[object] = []
    for _ in range(5000):
        value = [value]
    assert shown(value) == "[[[[...]]]]"
    assert shown(list(range(1_000_000))) == "[0, 1, 2, 3, ...]"
    assert shown("abc") == "'abc'"


def test_an_error_body_holding_a_lone_surrogate_is_still_json() -> None:
    status, body = error_body("/predict", 422, "bad field '\ud800'", [{"field": "\ud800", "reason": "unknown field"}])
    assert status == 422
    answer = orjson.loads(body)
    assert answer["error"] == "bad field '\\ud800'" and answer["details"][0]["field"] == "\\ud800"
    assert orjson.loads(error_body("/invocations", 400, "\udc00")[1])["message"] == "\\udc00"


def test_a_body_of_tiny_values_is_refused_before_it_is_parsed() -> None:
    budget = json_budget(100, 2)
    tiny = b"[" + b",".join([b"[0]"] * budget) + b"]"
    with pytest.raises(PayloadTooLargeError, match=r"more than 100 rows may carry .* FASTTRACK_MAX_BATCH_ROWS"):
        check_json_values(tiny, budget, 100, "FASTTRACK_MAX_BATCH_ROWS")


def test_a_full_batch_of_real_records_is_within_the_bound() -> None:
    record = {f"f{i}": f"text, with, commas {i}" for i in range(30)}
    check_json_values(orjson.dumps([record] * 100), json_budget(100, 30), 100, "rows")
    check_json_values(b"[" + b" " * 10_000_000 + b"]", json_budget(100, 2), 100, "rows")  # blanks are no values
