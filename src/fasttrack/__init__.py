"""FastTrack: tabular data to a trained, tracked, served and monitored model.

The pipeline's stages are plain functions here (:mod:`fasttrack.api` documents them)::

    import fasttrack

    trained = fasttrack.train("configs/sample.yaml")
    model = fasttrack.load(f"models:/{trained.name}@champion")
    model.predict([{"feature_1": 5.3, "feature_2": 2.1}])

They are imported on first use, so ``import fasttrack`` stays cheap (no pandas, scikit-learn or MLflow).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("fasttrack")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from fasttrack.api import (
        check_data,
        dataset_from_log,
        drift_report,
        evaluate,
        ingest,
        load,
        promote,
        score_file,
        train,
    )

_API = (
    "ingest",
    "check_data",
    "train",
    "load",
    "evaluate",
    "promote",
    "score_file",
    "dataset_from_log",
    "drift_report",
)

__all__ = [
    "__version__",
    "check_data",
    "dataset_from_log",
    "drift_report",
    "evaluate",
    "ingest",
    "load",
    "promote",
    "score_file",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        from fasttrack import api

        return getattr(api, name)
    raise AttributeError(f"module 'fasttrack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
