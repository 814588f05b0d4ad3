"""The record's JSON schema says what the record driver accepts, because it is read off the same rules."""

from __future__ import annotations

from fasttrack.data.schema import Schema
from fasttrack.features.openapi import accepted_types, record_schema, value_schema
from fasttrack.features.rules import Rules


def test_each_kind_lists_the_json_types_its_rule_accepts() -> None:
    rules = Rules()
    assert accepted_types("numeric", rules) == ["number", "string", "boolean", "null"]
    assert accepted_types("boolean", rules) == ["number", "string", "boolean", "null"]
    assert accepted_types("categorical", rules) == ["number", "string", "boolean", "null"]


def test_a_boolean_feature_takes_only_0_and_1_as_numbers(schema: Schema) -> None:
    member = value_schema(schema.feature("member"), Rules())
    assert {"type": "number", "enum": [0, 1]} in member["anyOf"]
    assert member["description"] == "true or false"


def test_the_record(schema: Schema) -> None:
    document = record_schema(schema)
    assert document["required"] == ["rooms", "income", "colour", "member"]  # age had missing values: optional
    assert document["additionalProperties"] is False
    assert set(document["properties"]) == {"age", "rooms", "income", "colour", "member", "id", "y"}
    assert "ignored" in document["properties"]["id"]["description"]
    assert document["properties"]["colour"]["description"].startswith("a category; seen in training: red, blue")
    assert document["examples"] == [schema.example_record()]
    assert record_schema(schema, extra="ignore")["additionalProperties"] is True
