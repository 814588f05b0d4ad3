"""A floor for ``fasttrack train``: bench/apps/bare_fit.py's fit, then the least MLflow needs to keep it.

After the same fit as bare_fit.py (its functions, in this process), the model is recorded the plain MLflow way
into a SQLite store under ``--home`` (made on first use, by MLflow itself): a run with a few params and the two
test metrics, ``mlflow.sklearn.log_model`` with a signature and an input example (cloudpickle, explicit pip
requirements, as FastTrack logs it) and ``mlflow.register_model``. No cleaning report, plots, ONNX export,
baseline or load-back check: what is left of ``fasttrack train``'s overhead over this is FastTrack's own work.
One JSON line on stdout: bare_fit.py's report plus the MLflow steps' seconds.

Run: ``.venv/bin/python bench/apps/bare_mlflow_fit.py --home $(mktemp -d) --data ../shared/datasets/adult.csv
--target income``.
"""

from __future__ import annotations

import sys
import time

START = time.perf_counter()

import argparse  # noqa: E402 - timed from the first line on purpose
import json  # noqa: E402
import os  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bare_fit  # noqa: E402 - the same fit, imported from the script next to this one


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--home", required=True)
    known, rest = parser.parse_known_args()
    pipeline, x_test, report = bare_fit.fit(bare_fit.arguments(rest))
    seconds: dict[str, float] = report["seconds"]
    seconds["imports"] += bare_fit.START - START  # from this script's first line

    started = time.perf_counter()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    seconds["mlflow_imports"] = time.perf_counter() - started
    home = Path(known.home)
    home.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    started = time.perf_counter()
    # Artifacts beside the store: a new experiment's default location is ./mlruns of the working directory.
    known_experiment = mlflow.get_experiment_by_name("bare")  # opens (or creates and migrates) the store
    experiment_id = (
        known_experiment.experiment_id
        if known_experiment is not None
        else mlflow.create_experiment("bare", artifact_location=(home / "artifacts").as_uri())
    )
    seconds["store_open"] = time.perf_counter() - started

    started = time.perf_counter()
    example = x_test.head(5)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({"model": "hist_gradient_boosting", "seed": 42, "test_size": 0.2})
        mlflow.log_metrics({f"test_{name}": value for name, value in report["metrics"].items()})
        logged = time.perf_counter()
        requirements = [f"{name}=={version(name)}" for name in REQUIREMENTS]
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            pip_requirements=requirements,
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
        )
        modelled = time.perf_counter()
        mlflow.register_model(info.model_uri, "bare")
    done = time.perf_counter()
    seconds.update(
        {"run_params_metrics": logged - started, "log_model": modelled - logged, "register": done - modelled}
    )
    report["run_id"] = run.info.run_id
    print(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # as the fasttrack CLI does: no interpreter teardown


REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "cloudpickle")

if __name__ == "__main__":
    main()
