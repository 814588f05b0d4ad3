"""A loaded model predicts any input the way the server and batch scoring do."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fasttrack.errors import ConfigError, SchemaValidationError
from fasttrack.registry.resolve import ResolvedModel
from fasttrack.runtime.model import Model
from fasttrack.runtime.select import open_runtime
from fasttrack.serving.predictor import Predictor

RECORDS = [
    {"amount": 30.0, "colour": "red", "member": True},
    {"amount": "75.5", "colour": " blue", "member": "false"},
    {"colour": "?", "member": 0, "label": "yes"},  # a training column, ignored
]


@pytest.fixture
def model(mixed: Predictor) -> Model:
    return Model(
        mixed.model, open_runtime(mixed.model), ResolvedModel("models:/mixed/1", mixed.model.path, "mixed", "1")
    )


def test_every_kind_of_input_gives_the_servers_answer(model: Model, mixed: Predictor) -> None:
    served = mixed.predict_input(mixed.validate(RECORDS), probabilities=True)
    frame = pd.DataFrame(RECORDS)
    table = pa.table({k: pa.array([str(r.get(k)) if r.get(k) is not None else None for r in RECORDS]) for k in frame})
    for data in (RECORDS, frame, table):
        assert model.predict(data).tolist() == served.values
        np.testing.assert_allclose(model.predict_proba(data), served.probabilities, atol=1e-6)
    assert model.predict(RECORDS[0]).tolist() == served.values[:1]
    assert model.labels == ["no", "yes"] and model.task == "classification"
    assert repr(model) == "<Model mixed version 1 (classification, onnx)>"


def test_problems_are_named(model: Model) -> None:
    with pytest.raises(SchemaValidationError, match="member: expected true or false"):
        model.predict([{"colour": "red", "member": "maybe"}])
    with pytest.raises(SchemaValidationError, match="unknown field"):
        model.predict([{"colour": "red", "member": True, "size": 3}], extra="refuse")
    assert len(model.predict([{"colour": "red", "member": True, "size": 3}])) == 1
    with pytest.raises(ConfigError, match="cannot predict from str"):
        model.predict("colour=red")


def test_a_regressor_has_no_probabilities(regressor: Predictor) -> None:
    model = Model(regressor.model, open_runtime(regressor.model))
    assert model.predict([{"x": 3.1}]).dtype == np.float32
    with pytest.raises(ConfigError, match="regressor"):
        model.predict_proba([{"x": 3.1}])
