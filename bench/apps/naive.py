"""The brief-style server: a pydantic body, a one-row pandas DataFrame, ``model.predict`` (bench/serving.py).

It loads the scikit-learn pipeline of a FastTrack model folder (``model.pkl``, with ``mlflow.sklearn.load_model``)
named by ``NAIVE_MODEL_DIR``; the request model is made from the folder's ``extra_files/schema.json`` (numbers as
``float``, everything else as ``str``). Run: ``NAIVE_MODEL_DIR=... uvicorn naive:app --app-dir bench/apps``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow.sklearn
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, create_model

MODEL_DIR = Path(os.environ["NAIVE_MODEL_DIR"])
model = mlflow.sklearn.load_model(str(MODEL_DIR))
_schema = json.loads((MODEL_DIR / "extra_files" / "schema.json").read_text())
_fields: dict[str, Any] = {
    f["name"]: ((float | None) if f["kind"] == "numeric" else (str | None), None) for f in _schema["features"]
}
Features: type[BaseModel] = create_model("Features", **_fields)

app = FastAPI()


@app.get("/ready")
def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(features: Features) -> dict[str, Any]:  # type: ignore[valid-type]
    frame = pd.DataFrame([features.model_dump()])  # type: ignore[attr-defined]
    prediction = model.predict(frame)[0]
    return {"prediction": prediction.item() if hasattr(prediction, "item") else prediction}
