"""Random forest defaults: peak memory, model size and held-out accuracy for candidate bounds on the forest's size.

For each data set and each candidate (keyword arguments over the forest's defaults, ``{}`` being the defaults of
:func:`fasttrack.training.pipeline.build_estimator`), a process of its own ingests the file, fits the random forest
pipeline as ``fasttrack train --cv-folds 0`` does (:func:`fasttrack.training.train.train`), converts it to ONNX
with the agreement check on the held-out rows (:func:`fasttrack.training.publish.export_onnx`) and pickles it the
way MLflow stores it (cloudpickle). It reports the test ROC AUC and accuracy, the fit's seconds, the pickle's and
the ONNX file's sizes, the trees' total node count and the process's peak resident memory (``ru_maxrss``) after
each step, so that the step that sets the peak is visible. Cross-validation is off: its fold models are dropped
one by one and never hold more memory than the final fit does.

Run: ``.venv/bin/python bench/forest_bounds.py [--data adult.csv:income --data bank_additional.csv:y]
[--candidate '{"min_samples_leaf": 5}' ...] [--json FILE]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"

#: Candidate bounds measured by default, each over the forest's defaults.
CANDIDATES: list[dict[str, Any]] = [
    {"min_samples_leaf": 1, "max_depth": None, "n_estimators": 100},  # scikit-learn's own defaults
    {},  # FastTrack's defaults (whatever pipeline.py says now)
    {"min_samples_leaf": 2},
    {"min_samples_leaf": 5},
    {"min_samples_leaf": 10},
    {"max_depth": 16},
    {"max_depth": 12},
    {"max_leaf_nodes": 1024},
    {"max_samples": 0.5},
    {"min_samples_leaf": 5, "max_samples": 0.5},
    {"n_estimators": 50},
]


def peak_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(data: str, target: str, params: dict[str, Any]) -> dict[str, Any]:
    """Ingest, fit, export and pickle one forest in this process; the figures as a dict."""
    import cloudpickle

    from fasttrack.config import TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.data.ingest import ingest
    from fasttrack.training.publish import export_onnx
    from fasttrack.training.train import train

    peaks = {"imports": peak_mb()}
    config = TrainConfig(data=data, target=target, model="random_forest", params=params, cv_folds=0, name="rf")
    ingested = ingest(data, target=target)
    schema = infer_schema(ingested.frame, target, "auto")
    peaks["ingest"] = peak_mb()
    result = train(ingested.frame, config, schema)
    peaks["fit + test metrics"] = peak_mb()
    forest = result.pipeline.named_steps["model"]
    nodes = int(sum(tree.tree_.node_count for tree in forest.estimators_))
    depth = max(tree.tree_.max_depth for tree in forest.estimators_)
    pickled = len(cloudpickle.dumps(result.pipeline))
    peaks["pickle"] = peak_mb()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        exported = export_onnx(result, Path(tmp))
        onnx_seconds = time.perf_counter() - started
        onnx_bytes = exported.file.stat().st_size if exported.file else None
    peaks["onnx export + check"] = peak_mb()
    metrics = result.evaluation.metrics
    return {
        "params": params,
        "roc_auc": metrics.get("roc_auc"),
        "accuracy": metrics.get("accuracy"),
        "fit_s": result.fit_seconds,
        "onnx_s": onnx_seconds,
        "onnx_status": exported.info.status,
        "nodes": nodes,
        "max_depth": depth,
        "pickle_mb": pickled / 1e6,
        "onnx_mb": None if onnx_bytes is None else onnx_bytes / 1e6,
        "peak_mb": peaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", help="FILE:TARGET in ../shared/datasets (repeatable)")
    parser.add_argument("--candidate", action="append", help="JSON object of forest params (repeatable)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--one", nargs=3, metavar=("DATA", "TARGET", "PARAMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        data, target, params = args.one
        print(json.dumps(one(data, target, json.loads(params))))
        os._exit(0)  # no teardown, as the CLI
    sets = args.data or ["adult.csv:income", "bank_additional.csv:y"]
    candidates = [json.loads(c) for c in args.candidate] if args.candidate else CANDIDATES
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")
    rows: list[dict[str, Any]] = []
    for spec in sets:
        file, target = spec.rsplit(":", 1)
        for params in candidates:
            cmd = [sys.executable, __file__, "--one", str(DATASETS / file), target, json.dumps(params)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
            if done.returncode != 0:
                sys.exit(f"{file} {params}: {done.stderr.strip().splitlines()[-1:]}")
            row = {"data": file, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            peaks = row["peak_mb"]
            print(
                f"{file:22} {json.dumps(params):58} AUC {row['roc_auc']:.4f} acc {row['accuracy']:.4f} "
                f"fit {row['fit_s']:5.1f} s  nodes {row['nodes']:>9,}  depth {row['max_depth']:>3}  "
                f"pickle {row['pickle_mb']:6.1f} MB  onnx {row['onnx_mb'] or 0:6.1f} MB ({row['onnx_status']}, "
                f"{row['onnx_s']:.1f} s)  peak after fit {peaks['fit + test metrics']:6.0f} MB, "
                f"after ONNX {peaks['onnx export + check']:6.0f} MB",
                flush=True,
            )
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
