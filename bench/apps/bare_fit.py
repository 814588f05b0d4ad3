"""The bare scikit-learn baseline of bench/training.py: what ``fasttrack train`` does to fit, and nothing else.

It reads the CSV with pandas, cleans it the way FastTrack's ingest does for this kind of file (surrounding spaces
stripped, ``?`` marked missing, exact duplicate rows dropped), makes the same stratified train/test split and fits
the same ``Pipeline`` as ``fasttrack.training.pipeline.build_pipeline`` builds for ``hist_gradient_boosting``:
numeric features median-imputed; categorical ones imputed with ``"__missing__"`` and one-hot encoded over the
categories seen at least ``--min-category-count`` times (at most ``--max-categories``, plus ``"__missing__"``
where values are missing), unknown ones ignored; then ``HistGradientBoostingClassifier(random_state=SEED)``.
It is written in plain pandas and scikit-learn on purpose: FastTrack is not imported.

With ``--cv-folds K`` (K >= 2) it first cross-validates the pipeline on the training part with the same folds
(``StratifiedKFold(K, shuffle=True, random_state=SEED)``) and the same seven metrics FastTrack reports, as
``fasttrack train`` does by default; then it fits on the training part and scores the test part (accuracy and
ROC AUC, so the two models can be seen to be the same). One JSON line on stdout: timings and metrics.

With ``--import-mlflow`` it then imports MLflow and its SQL tracking store (``mlflow``,
``mlflow.store.tracking.sqlalchemy_store``) and does nothing with them: the least any training pays that keeps its
runs in MLflow's embedded SQLite store, reported as ``seconds.mlflow_import``.

Run: ``.venv/bin/python bench/apps/bare_fit.py --data ../shared/datasets/adult.csv --target income [--cv-folds 3]
[--import-mlflow]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

START = time.perf_counter()

import numpy as np  # noqa: E402 - timed from the first line on purpose
import pandas as pd  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.metrics import accuracy_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder  # noqa: E402

MISSING = "__missing__"
CV_SCORING = ["accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "neg_log_loss"]


def categories(values: pd.Series, min_count: int, most: int) -> list[str]:
    counts = values.value_counts(dropna=True)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    kept = {str(value) for value, count in ranked if count >= min_count}
    kept = set(sorted(kept, key=lambda value: (-counts[value], value))[:most])
    if values.isna().any() or not kept:
        kept.add(MISSING)
    return sorted(kept)


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--test-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--max-categories", type=int, default=50)
    parser.add_argument("--min-category-count", type=int, default=5)
    parser.add_argument("--import-mlflow", action="store_true", help="then import MLflow's SQL tracking store")
    return parser.parse_args(argv)


def fit(args: argparse.Namespace) -> tuple[Pipeline, pd.DataFrame, dict[str, Any]]:
    """The fit and its report (what main() prints), with the fitted pipeline and the test features."""
    imported = time.perf_counter()

    frame = pd.read_csv(args.data, skipinitialspace=True, na_values=["?"]).drop_duplicates().reset_index(drop=True)
    frame = frame[frame[args.target].notna()].reset_index(drop=True)
    y = pd.Series(frame[args.target].astype(object).to_numpy(), name=args.target, dtype=object)
    features = frame.drop(columns=[args.target])
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    x = pd.DataFrame(
        {
            c: features[c].astype("float64") if c in numeric else features[c].astype(object).where(features[c].notna())
            for c in features.columns
        }
    )
    encoder = OneHotEncoder(
        categories=[categories(x[c], args.min_category_count, args.max_categories) for c in categorical],
        handle_unknown="ignore",
        sparse_output=False,
        dtype=np.float64,
    )
    preprocess = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True))]), numeric),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value=MISSING, keep_empty_features=True)),
                        ("encode", encoder),
                    ]
                ),
                categorical,
            ),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )
    pipeline = Pipeline([("preprocess", preprocess), ("model", HistGradientBoostingClassifier(random_state=args.seed))])
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=args.test_size, random_state=args.seed, shuffle=True, stratify=y
    )
    x_train, x_test = x_train.reset_index(drop=True), x_test.reset_index(drop=True)
    y_train, y_test = y_train.reset_index(drop=True), y_test.reset_index(drop=True)
    prepared = time.perf_counter()

    cv_auc = None
    if args.cv_folds >= 2:
        splitter = StratifiedKFold(n_splits=args.cv_folds, shuffle=True, random_state=args.seed)
        scores = cross_validate(pipeline, x_train, y_train, cv=splitter, scoring=CV_SCORING)
        cv_auc = float(np.mean(scores["test_roc_auc"]))
    cross_validated = time.perf_counter()

    pipeline.fit(x_train, y_train)
    fitted = time.perf_counter()
    classes = list(pipeline.classes_)
    proba = pipeline.predict_proba(x_test)[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(y_test, pipeline.predict(x_test))),
        "roc_auc": float(roc_auc_score(y_test == classes[1], proba)),
    }
    done = time.perf_counter()
    report = {
        "rows": len(frame),
        "train_rows": len(x_train),
        "test_rows": len(x_test),
        "n_iter": int(pipeline.named_steps["model"].n_iter_),
        "metrics": metrics,
        "cv_roc_auc": cv_auc,
        "seconds": {
            "imports": imported - START,
            "read_and_prepare": prepared - imported,
            "cross_validation": cross_validated - prepared,
            "fit": fitted - cross_validated,
            "score": done - fitted,
        },
    }
    return pipeline, x_test, report


def main() -> None:
    args = arguments()
    report = fit(args)[2]
    if args.import_mlflow:
        started = time.perf_counter()
        import mlflow
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

        report["seconds"]["mlflow_import"] = time.perf_counter() - started
        print(json.dumps(report), flush=True)
        os._exit(0)  # as the fasttrack CLI and bare_mlflow_fit.py do: MLflow's teardown is not counted
    print(json.dumps(report))


if __name__ == "__main__":
    main()
