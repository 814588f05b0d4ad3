"""Which runtime predicts for a model folder: the one place an engine is chosen.

``sklearn`` always runs the fitted pipeline; ``onnx`` runs the folder's ``model.onnx`` and refuses a model without
one that agreed with scikit-learn at registration; ``auto`` runs ONNX when the model was registered with such a
graph, else scikit-learn, saying why in the log. A model registered with a checked graph whose ``model.onnx`` is
missing or does not open is refused under ``auto`` as under ``onnx``: the folder is broken or was altered, and
falling back would serve it (and read its pickled pipeline) as if nothing had happened. The server, batch scoring,
``evaluate`` and promotion all ask here, so they choose alike and fail alike
(:class:`~fasttrack.errors.ModelLoadError`, one readable line).
"""

from __future__ import annotations

import logging
import os

from fasttrack.config import Engine
from fasttrack.errors import ConfigError, ModelLoadError
from fasttrack.registry.model_folder import LoadedModel
from fasttrack.runtime.base import Runtime

log = logging.getLogger(__name__)

ENGINES: tuple[Engine, ...] = ("auto", "onnx", "sklearn")


def open_runtime(model: LoadedModel, engine: Engine = "auto", *, threads: int = 1) -> Runtime:
    """The runtime for a loaded model folder, the same for one request and for a file of millions of rows.

    ``threads`` is how many slices of a big batch ONNX Runtime runs at once (each row computed exactly as with
    one): 1 for the server (one request per web worker thread), :func:`batch_threads` for batch scoring.
    scikit-learn's pipelines keep their own settings.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; use auto, onnx or sklearn")
    where = f"{model.metadata.name} ({model.path})"
    if engine == "sklearn":
        log.info("%s: predicting with scikit-learn (engine sklearn)", where)
        return _sklearn(model)
    if model.onnx_path is None:
        reason = no_onnx_reason(model)
        if engine == "onnx":
            raise ModelLoadError(f"{where} has no usable ONNX model ({reason}); use the sklearn engine")
        if _registered_with_onnx(model):
            raise ModelLoadError(
                f"{model.metadata.name}: refused: it was registered with a checked ONNX graph but {reason}"
            )
        log.info("%s: predicting with scikit-learn: %s", where, reason)
        return _sklearn(model)
    from fasttrack.runtime.onnx import OnnxRuntime

    try:
        runtime = OnnxRuntime.open(
            model.onnx_path, model.schema, model.metadata.task, model.metadata.labels, threads=threads
        )
    except Exception as exc:  # onnxruntime raises its own exception types; all mean "cannot open"
        # Never a fall-back to scikit-learn: the graph agreed with it at registration, so a graph that no longer
        # opens is a damaged or altered folder (the operator may still choose the sklearn engine on purpose).
        raise ModelLoadError(
            f"{model.metadata.name}: refused: cannot load the ONNX model extra_files/{model.onnx_path.name} "
            f"({' '.join(str(exc).split())[:300]})",
            public=f"cannot load the ONNX model extra_files/{model.onnx_path.name}",
        ) from None
    log.info("%s: predicting with ONNX Runtime (model.onnx agreed with scikit-learn at registration)", where)
    return runtime


def batch_threads() -> int:
    """How many slices of a batch ONNX Runtime runs at once in batch scoring: the cores this process may use.

    A tree ensemble's trees are most of a file's scoring time and its slices are independent; reading and writing
    run on threads of their own and mostly wait on the scoring, so they do not need a core of their own.
    """
    return max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1), 1)


def no_onnx_reason(model: LoadedModel) -> str:
    """Why a model folder has no ONNX model that may be used."""
    info = model.metadata.onnx
    if info is None:
        return "it was registered without an ONNX export"
    if info.status != "ok":
        return f"its ONNX export {info.status}" + (f": {info.reason}" if info.reason else "")
    return "extra_files/model.onnx is missing"


def _registered_with_onnx(model: LoadedModel) -> bool:
    """Whether the model's metadata says a checked ONNX graph was stored with it."""
    return model.metadata.onnx is not None and model.metadata.onnx.status == "ok"


def _sklearn(model: LoadedModel) -> Runtime:
    from fasttrack.runtime.sklearn import SklearnRuntime

    return SklearnRuntime(model.pipeline, model.schema, model.metadata.task, model.metadata.labels)
