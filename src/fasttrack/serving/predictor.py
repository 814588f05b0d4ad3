"""The data plane: a loaded model that validates records against its schema and predicts. No HTTP in here."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fasttrack.config import Settings
from fasttrack.errors import SchemaValidationError, Violation
from fasttrack.registry.model_folder import LoadedModel, load_model_folder
from fasttrack.registry.tracking import ResolvedModel, resolve_model

Record = dict[str, Any]


@dataclass(frozen=True)
class Prediction:
    """One row's output: the prediction (a label or a number) and, when asked, class probabilities."""

    value: Any
    probabilities: dict[str, float] | None = None


class Predictor:
    """A model ready to serve: ``predict(records)`` validates each record against the training schema."""

    def __init__(self, model: LoadedModel, source: ResolvedModel) -> None:
        self.model = model
        self.source = source
        self.schema = model.schema
        self._features = {f.name: f for f in model.schema.features}

    @classmethod
    def load(cls, uri: str | None, settings: Settings) -> Predictor:
        """Resolve ``uri`` (default: the settings' model) to a folder and load it."""
        resolved = resolve_model(uri, settings)
        return cls(load_model_folder(resolved.path), resolved)

    @property
    def name(self) -> str:
        """Registered model name (or the name recorded in the folder)."""
        return self.source.name or self.model.metadata.name

    @property
    def version(self) -> str:
        """Registered version, or ``local`` for a folder served directly."""
        return self.source.version or "local"

    def validate(self, records: list[Record]) -> None:
        """Check field names and value types of every record; raises one error listing every problem."""
        violations: list[Violation] = []
        for index, record in enumerate(records):
            where = f"[{index}]." if len(records) > 1 else ""
            for key in record:
                if key not in self._features:
                    violations.append(Violation(f"{where}{key}", "unknown field"))
            for name, feature in self._features.items():
                value = record.get(name)
                if value is None:
                    if not feature.nullable:
                        reason = "field required" if name not in record else "must not be null"
                        violations.append(Violation(f"{where}{name}", reason))
                    continue
                if feature.kind == "numeric":
                    if isinstance(value, bool) or not isinstance(value, int | float):
                        violations.append(Violation(f"{where}{name}", f"expected a number, got {value!r}"))
                    elif not math.isfinite(value):
                        violations.append(Violation(f"{where}{name}", "must be a finite number"))
                elif feature.kind == "boolean":
                    if not isinstance(value, bool):
                        violations.append(Violation(f"{where}{name}", f"expected true or false, got {value!r}"))
                elif not isinstance(value, str | int | float) or isinstance(value, bool):
                    violations.append(Violation(f"{where}{name}", f"expected a category (string), got {value!r}"))
        if violations:
            raise SchemaValidationError(violations)

    def predict(self, records: list[Record], *, probabilities: bool = False) -> list[Prediction]:
        """Validate and predict a batch of records, in order."""
        self.validate(records)
        frame = pd.DataFrame.from_records(records, columns=self.schema.feature_names)
        values = self.model.predict(frame)
        if probabilities and self.model.is_classifier:
            probas = self.model.predict_proba(frame)
            return [Prediction(v, p) for v, p in zip(values, probas, strict=True)]
        return [Prediction(v) for v in values]
