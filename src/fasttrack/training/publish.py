"""Publishing a trained model: the work that runs it, done here, then the run recorded and registered.

The registry stores models and runs none, so what registration needs a model run for is computed here and handed
to :func:`fasttrack.registry.runs.log_training`: the ONNX export with its agreement check against scikit-learn on
the held-out rows (:func:`export_onnx`), and the check that the copy downloaded back from the store loads and
predicts its input example (:func:`predicts_input_example`). :func:`publish` is what ``fasttrack train`` calls.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fasttrack.config import Settings

if TYPE_CHECKING:
    from fasttrack.data.clean import CleanReport
    from fasttrack.registry.model_folder import ModelMetadata
    from fasttrack.registry.runs import OnnxExport, TrackedRun
    from fasttrack.runtime.base import Prediction
    from fasttrack.training.train import TrainResult


def publish(
    result: TrainResult,
    *,
    settings: Settings,
    source: str,
    fingerprint: str,
    clean_report: CleanReport | None = None,
    plots: list[Path] | None = None,
    register: bool = True,
    lineage: Mapping[str, str] | None = None,
) -> TrackedRun:
    """Export ``result`` to ONNX, then record the run and, if its gate passed and ``register`` is set, register it.

    The arguments other than ``result`` are :func:`~fasttrack.registry.runs.log_training`'s; the version is
    registered only after :func:`predicts_input_example` passed on the stored copy. The export never fails the
    run: a pipeline that does not convert, or whose graph disagrees with it, is registered without ``model.onnx``
    and served by scikit-learn.
    """
    from fasttrack.registry import runs
    from fasttrack.training.threads import prediction_threads

    with tempfile.TemporaryDirectory(prefix="fasttrack-onnx-") as tmp:
        exported = export_onnx(result, Path(tmp))
        # MLflow's log_model predicts the input example to validate it: a few rows, so on one OpenMP thread.
        with prediction_threads(len(result.input_example)):
            return runs.log_training(
                result,
                settings=settings,
                source=source,
                fingerprint=fingerprint,
                clean_report=clean_report,
                plots=plots,
                register=register,
                lineage=lineage,
                onnx=exported,
                check=predicts_input_example,
            )


def export_onnx(result: TrainResult, folder: Path) -> OnnxExport:
    """The pipeline as ONNX in ``folder``, checked against scikit-learn on the held-out rows (against the
    predictions ``train()`` made of them). Never raises (see :func:`fasttrack.export.check.export_to_folder`)."""
    from fasttrack.export.check import export_to_folder
    from fasttrack.registry.runs import OnnxExport

    info, file = export_to_folder(
        result.pipeline,
        result.schema,
        result.task,
        result.X_test,
        folder,
        labels=result.labels,
        reference=_reference(result),
    )
    return OnnxExport(info=info, file=file)


def predicts_input_example(folder: Path, metadata: ModelMetadata) -> None:
    """The check before registration: the stored model folder loads (its manifest included), and its skops
    pipeline, read with the trusted types of the settings (what serves when the model has no ONNX graph or with the
    sklearn runtime), predicts the input example; raises a ``FastTrackError`` otherwise."""
    import pandas as pd

    from fasttrack.features.frames import frame_input
    from fasttrack.registry.model_folder import load_model_folder
    from fasttrack.runtime.select import open_runtime
    from fasttrack.training.threads import prediction_threads

    loaded = load_model_folder(folder)
    example = frame_input(pd.DataFrame(metadata.input_example, columns=metadata.features), loaded.schema)
    example.raise_for_violations()
    with prediction_threads(example.rows):
        open_runtime(loaded, "sklearn").predict(example.columns, example.rows)


def _reference(result: TrainResult) -> Prediction | None:
    """The predictions train() made of the held-out rows, for the ONNX agreement check (``None`` if none)."""
    from fasttrack.runtime.base import Prediction

    if result.test_predictions is None:
        return None
    return Prediction(result.test_predictions, result.test_proba)
