"""FastAPI hello world: the ceiling a Python web server reaches on this machine (bench/serving.py's baseline).

Run: ``uvicorn bench.apps.hello:app`` (from the repository root) or ``uvicorn hello:app --app-dir bench/apps``.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
async def predict() -> dict[str, str]:
    return {"prediction": "positive"}
