"""Small generated churn data for the orchestration tests (the DAGs and the cron scripts)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def churn(rows: int, seed: int, *, noise: float = 0.0, labelled: bool = True) -> pd.DataFrame:
    """Customers: tenure and monthly charges (numbers), plan (categories), autopay (booleans) -> churned yes/no.

    ``noise`` is the share of labels flipped at random: data a model learns worse from.
    """
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows).astype(float)
    monthly = rng.normal(70, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "pro"], rows)
    autopay = rng.random(rows) < 0.5
    signal = -tenure / 12 + (monthly - 70) / 10 + np.where(plan == "basic", 1.5, -0.5) - autopay * 1.0
    churned = signal + rng.normal(0, 0.5, rows) > -1.5
    flip = rng.random(rows) < noise
    frame = pd.DataFrame({"tenure": tenure, "monthly": monthly, "plan": plan, "autopay": autopay})
    if labelled:
        frame["churned"] = np.where(churned ^ flip, "yes", "no")
    return frame
