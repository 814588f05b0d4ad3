"""The JSON schema of one input record, generated from the feature rules, for the server's OpenAPI document.

What each feature accepts is read off :mod:`fasttrack.features.rules` by applying the rule of its kind to
sample values of every JSON type (:data:`JSON_SAMPLES`), so the document says what the server does: a numeric
feature takes a number, a number written as text, ``true``/``false`` (1/0) or ``null``; a categorical one text,
a number or a boolean (as their text) or ``null``; and so on. A feature the training data always had is
required (present; ``null`` is a missing value, which the model imputes); the other columns the training data
had are listed too, as accepted and ignored.
"""

from __future__ import annotations

from typing import Any, Final

from fasttrack.config import ExtraFields
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.features.rules import EXPECTED, Invalid, Rules

#: Sample values of each JSON type, and how a type that the rule accepts is described.
JSON_SAMPLES: Final[dict[str, tuple[Any, ...]]] = {
    "number": (0, 1, 2.5, -3),
    "string": ("5.3", "true", "red"),
    "boolean": (True, False),
    "null": (None,),
    "array": ([1],),
    "object": ({"a": 1},),
}
_STRINGS: Final = {
    "numeric": 'a number written as text, e.g. "5.3"',
    "boolean": '"true" or "false" (any case), "1" or "0"',
    "categorical": "a category",
}
_BOOLEANS: Final = {"numeric": "true is 1, false is 0", "boolean": "", "categorical": '"true" or "false"'}


def accepted_types(kind: str, rules: Rules) -> list[str]:
    """The JSON types whose sample values the rule of ``kind`` accepts, in :data:`JSON_SAMPLES` order."""
    convert = rules.converter(kind)  # type: ignore[arg-type]
    return [
        json_type
        for json_type, samples in JSON_SAMPLES.items()
        if any(not isinstance(convert(sample), Invalid) for sample in samples)
    ]


def value_schema(feature: FeatureSchema, rules: Rules) -> dict[str, Any]:
    """The JSON schema of one feature's value: the accepted types, a description with the training range or
    categories, and the training data's typical value as the example."""
    options: list[dict[str, Any]] = []
    for json_type in accepted_types(feature.kind, rules):
        option: dict[str, Any] = {"type": json_type}
        if json_type == "number" and feature.kind == "boolean":
            option["enum"] = [0, 1]
        elif json_type == "string":
            option["description"] = _STRINGS[feature.kind]
        elif json_type == "boolean" and _BOOLEANS[feature.kind]:
            option["description"] = _BOOLEANS[feature.kind]
        elif json_type == "null":
            option["description"] = "missing (the model imputes it)"
        options.append(option)
    described: dict[str, Any] = {"title": feature.name, "description": describe(feature), "anyOf": options}
    if feature.example is not None:
        described["examples"] = [feature.example]
    return described


def describe(feature: FeatureSchema) -> str:
    """One line about a feature for people: its kind, and its range or categories in training."""
    if feature.kind == "numeric" and feature.min is not None and feature.max is not None:
        detail = f"{EXPECTED['numeric']}; {feature.min:g} to {feature.max:g} in training"
    elif feature.kind == "categorical":
        categories = feature.categories or []
        listed = ", ".join(categories[:10]) + (", ..." if len(categories) > 10 else "")
        detail = f"a category; seen in training: {listed}" if categories else "a category"
    else:
        detail = "true or false" if feature.kind == "boolean" else EXPECTED["numeric"]
    return detail + ("; may be left out" if feature.nullable else "")


def record_schema(schema: Schema, *, extra: ExtraFields = "refuse", title: str = "PredictionRecord") -> dict[str, Any]:
    """The JSON schema of one input record of ``schema`` (OpenAPI 3.1 flavour), with an example from training.

    ``extra`` says whether fields the model never saw are refused (``additionalProperties: false``) or ignored.
    """
    rules = Rules(schema.missing_markers)
    properties: dict[str, Any] = {f.name: value_schema(f, rules) for f in schema.features}
    for column in schema.training_columns:
        if column not in properties:
            properties[column] = {
                "title": column,
                "description": "a column of the training data the model does not use: accepted and ignored",
            }
    return {
        "title": title,
        "type": "object",
        "properties": properties,
        "required": [f.name for f in schema.features if not f.nullable],
        "additionalProperties": extra == "ignore",
        "examples": [schema.example_record()],
    }


def query_type(feature: FeatureSchema) -> str:
    """The JSON type a query parameter of ``feature`` is written as (query values are text, read by the rules)."""
    return {"numeric": "number", "boolean": "boolean", "categorical": "string"}[feature.kind]
