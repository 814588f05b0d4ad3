"""Threads outside the fit: small predictions run on one OpenMP thread.

scikit-learn's histogram gradient boosting predicts every tree as an OpenMP parallel region over the rows, on
every core. For a few thousand rows each region is a fraction of a millisecond of work, and its threads wait
for one another at the end of it: when another process holds one of the cores, a waiting thread can lose a
whole scheduler time slice, so predicting a held-out part or a 5-row input example took anywhere from 10 ms
to over a second on a shared two-core machine, against a steady 15-110 ms on one thread (and about the same
time on an idle machine). :func:`prediction_threads` therefore runs small predictions on one thread. The fit
keeps scikit-learn's own threading.

Cross-validation stays in this process, fold after fold, each fit on every core. Fitting the folds in joblib
worker processes (one per fold, one thread each) was measured too: with the workers already running it was as
fast on an idle two-core machine and far steadier on a loaded one, but a ``fasttrack train`` process has to
start them, and importing scikit-learn and pandas in two fresh processes made cross-validation of the adult
data set slower (8-10 s against 6-9 s), as did threads (the fits hold the GIL too often to overlap).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: Predictions of at most this many rows run on one OpenMP thread (see the module docstring).
SMALL_PREDICTION_ROWS = 50_000


@contextmanager
def prediction_threads(rows: int) -> Iterator[None]:
    """Within the block, scikit-learn's OpenMP code runs on one thread if ``rows`` is a small batch."""
    if rows > SMALL_PREDICTION_ROWS:
        yield
        return
    # A dependency of scikit-learn's (it controls sklearn's own threads the same way); it has no type hints.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield
