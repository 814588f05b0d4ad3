"""Generate FastTrack's bundled sample data (fixed seed, so the files are identical on every run).

- ``classification.csv``: ``feature_1``, ``feature_2`` and ``label`` (``negative``/``positive``). The positive
  class grows with ``feature_1 - feature_2``, with a noisy boundary and 4 % flipped labels, so that the
  README's example ``{"feature_1": 5.3, "feature_2": 2.1}`` is clearly ``positive``.
- ``regression.csv``: one feature ``x`` and ``y = 2x + 1 + noise``, for ``GET /predict?x=``.

Run: ``python data/sample/generate.py`` (writes next to this file).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SEED = 20261123
HERE = Path(__file__).resolve().parent


def classification(rng: np.random.Generator, rows: int = 4000) -> list[tuple[float, float, str]]:
    """Two features, logistic boundary ``feature_1 - feature_2 = 1``, 4 % label noise."""
    f1 = rng.normal(4.0, 2.0, rows)
    f2 = rng.normal(3.0, 1.5, rows)
    p = 1.0 / (1.0 + np.exp(-1.6 * (f1 - f2 - 1.0)))
    positive = rng.random(rows) < p
    flip = rng.random(rows) < 0.04
    labels = np.where(positive ^ flip, "positive", "negative")
    return [(round(a, 2), round(b, 2), str(c)) for a, b, c in zip(f1, f2, labels, strict=True)]


def regression(rng: np.random.Generator, rows: int = 2000) -> list[tuple[float, float]]:
    """``y = 2x + 1 + N(0, 0.5)`` for ``x`` uniform in [0, 10]."""
    x = rng.uniform(0.0, 10.0, rows)
    y = 2.0 * x + 1.0 + rng.normal(0.0, 0.5, rows)
    return [(round(a, 3), round(b, 3)) for a, b in zip(x, y, strict=True)]


def write(path: Path, header: list[str], rows: list[tuple[object, ...]]) -> None:
    """Write a CSV atomically."""
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    tmp.replace(path)


def main() -> None:
    """Write both sample files."""
    rng = np.random.default_rng(SEED)
    write(HERE / "classification.csv", ["feature_1", "feature_2", "label"], list(classification(rng)))
    write(HERE / "regression.csv", ["x", "y"], list(regression(rng)))


if __name__ == "__main__":
    main()
