"""Reading a model folder's scikit-learn pipeline file: skops with trusted types from settings, pickle only if allowed.

Loading a pickle runs whatever code the file names, so a model folder is code. FastTrack saves pipelines with skops
(``model.skops``, MLflow's ``serialization_format="skops"``), which rebuilds only the types it is told to trust, and
this module is the one place a pipeline file is read:

* ``skops``: loaded with skops' own list of scikit-learn and NumPy types plus :data:`DEFAULT_TRUSTED_TYPES` (those
  FastTrack's own pipelines need beyond it, declared here; a test checks every model kind against it) plus
  ``FASTTRACK_TRUSTED_TYPES``. Never the list MLflow writes into ``MLmodel`` (``skops_trusted_types``): whoever
  can write the artifact can write that list too (an MLflow advisory). skops is safer than pickle, not safe (it
  has had CVEs), so the list stays short.
* ``pickle`` / ``cloudpickle`` (folders saved before FastTrack used skops): refused unless ``FASTTRACK_ALLOW_PICKLE``
  is true, and refused whatever it says when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is false, MLflow's own switch,
  which FastTrack's loader honours as MLflow's does. A model with a checked ONNX graph serves through ONNX Runtime
  without its pipeline being read at all (:class:`~fasttrack.registry.model_folder.LoadedModel` reads it lazily).
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasttrack.config import Settings
from fasttrack.errors import ModelLoadError

SKOPS = "skops"
PICKLE_FORMATS = ("pickle", "cloudpickle")
MLFLOW_PICKLE_VARIABLE = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"

#: Types FastTrack's pipelines hold that skops does not trust by itself (skops 0.16, scikit-learn 1.9, XGBoost 3):
#: NumPy dtypes, the fitted trees of random forests and histogram gradient boosting, XGBoost's estimators and
#: booster, and FastTrack's label-encoding wrapper of XGBoost classifiers. tests/unit/registry/test_pipeline_file.py
#: fits every model kind for every task and fails when one needs a type that is not here.
DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "xgboost.core.Booster",
    "xgboost.sklearn.XGBClassifier",
    "xgboost.sklearn.XGBRegressor",
    "fasttrack.training.estimators.LabelEncodedClassifier",
)


@dataclass(frozen=True)
class LoadPolicy:
    """What a pipeline file may be read as: the types skops may rebuild, and whether pickle may run.

    ``pickle_refusal`` is why pickle is refused (``None`` when it is allowed), quoted in the error.
    """

    trusted_types: tuple[str, ...] = DEFAULT_TRUSTED_TYPES
    pickle_refusal: str | None = "FASTTRACK_ALLOW_PICKLE is not set"

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadPolicy:
        """The policy of ``settings`` (``trusted_types``, ``allow_pickle``) and of MLflow's pickle switch."""
        extra = tuple(t for t in settings.trusted_types if t not in DEFAULT_TRUSTED_TYPES)
        return cls(trusted_types=DEFAULT_TRUSTED_TYPES + extra, pickle_refusal=pickle_refusal(settings))

    @property
    def allows_pickle(self) -> bool:
        """Whether pickled pipelines may be loaded."""
        return self.pickle_refusal is None


def pickle_refusal(settings: Settings) -> str | None:
    """Why pickle is refused under ``settings`` and the environment (``None``: allowed).

    ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` is read as MLflow reads it (``true``/``1``, ``false``/``0``, any case);
    MLflow defaults it to true, so it can only forbid: a value it would not accept forbids too (the safe reading).
    """
    value = os.environ.get(MLFLOW_PICKLE_VARIABLE)
    if value is not None and value.strip().lower() not in ("true", "1"):
        shown = "false" if value.strip().lower() in ("false", "0") else f"{value!r} (not true or false)"
        return f"{MLFLOW_PICKLE_VARIABLE} is {shown}"
    if not settings.allow_pickle:
        return "FASTTRACK_ALLOW_PICKLE is not set"
    return None


def load_pipeline(model_file: Path, serialization_format: str, policy: LoadPolicy) -> Any:
    """The fitted pipeline in ``model_file``, read as ``serialization_format`` under ``policy``.

    Raises :class:`~fasttrack.errors.ModelLoadError` (one line, naming the file and what to do) for pickle when it
    is refused, for skops types outside the trusted list, and for a file that cannot be read.
    """
    if serialization_format == SKOPS:
        return _load_skops(model_file, policy)
    if serialization_format not in PICKLE_FORMATS:
        raise ModelLoadError(f"{model_file.name}: unsupported serialization format {serialization_format!r}")
    if policy.pickle_refusal is not None:
        raise ModelLoadError(
            f"{model_file.name} is a pickle (a model saved before FastTrack used skops), refused because "
            f"{policy.pickle_refusal}: unpickling runs code from the file. Serve it through its ONNX graph, "
            "retrain it, or set FASTTRACK_ALLOW_PICKLE=true if you trust its store"
        )
    try:
        with model_file.open("rb") as handle:
            # Allowed by the operator's setting, for folders saved before skops (see the module docstring).
            return pickle.load(handle)
    except Exception as exc:  # a pickle can fail in many ways; all mean "cannot load"
        raise ModelLoadError(f"{model_file.name}: cannot load the model ({type(exc).__name__}: {exc})") from None


def _load_skops(model_file: Path, policy: LoadPolicy) -> Any:
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return skops.io.load(model_file, trusted=list(policy.trusted_types))
    except UntrustedTypesFoundException as exc:
        untrusted = [t for t in _untrusted(model_file) if t not in policy.trusted_types] or [str(exc)]
        raise ModelLoadError(
            f"{model_file.name} holds types FastTrack does not trust: {', '.join(untrusted)}; add them to "
            "FASTTRACK_TRUSTED_TYPES only if you trust the model's store and code"
        ) from None
    except Exception as exc:  # a damaged archive fails in zipfile, json or skops itself: all mean "cannot load"
        raise ModelLoadError(
            f"{model_file.name}: cannot load the model ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        ) from None


def _untrusted(model_file: Path) -> list[str]:
    """The types of ``model_file`` skops does not trust by itself, for a message (empty when unreadable)."""
    import skops.io

    try:
        return sorted(skops.io.get_untrusted_types(file=model_file))
    except Exception:  # only for a message: the load has already failed and says why
        return []
