"""How the commands show things: the consoles, progress (spinners and the scoring bar) and result tables.

Results go to stdout (``out``); progress, errors and notes to stderr (``err``), so that output can be piped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fasttrack.config import higher_is_better

if TYPE_CHECKING:
    from collections.abc import Callable

    from fasttrack.data.clean import CleanReport
    from fasttrack.data.dask_ingest import DaskIngestResult
    from fasttrack.data.ingest import IngestResult
    from fasttrack.data.schema import Schema
    from fasttrack.training.evaluate import Evaluation

out = Console(soft_wrap=True)
err = Console(stderr=True)


@contextmanager
def steps() -> Iterator[Callable[[str], None]]:
    """A spinner per long step on stderr: call the yielded function with each step's description."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True
    ) as progress:
        current: list[Any] = []

        def step(description: str) -> None:
            if current:
                progress.update(current[-1], completed=1, total=1)
            current.append(progress.add_task(description, total=None))

        try:
            yield step
        finally:
            if current:
                progress.update(current[-1], completed=1, total=1)


class ScoreBar:
    """A progress bar on stderr for :func:`fasttrack.score_file` (bytes or rows read, rows scored)."""

    def __init__(self, source: str) -> None:
        from rich.progress import BarColumn, TaskProgressColumn, TimeRemainingColumn

        self.source = source
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rows]:,} rows"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> ScoreBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, stream: Any) -> None:
        self.task = self.progress.add_task(f"scoring {self.source}", total=stream.total, rows=0)

    def update(self, rows: int, position: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=position, rows=rows)


class PartitionBar:
    """A progress bar on stderr for scoring on a Dask cluster: partitions done of all (the ``progress`` of
    :func:`fasttrack.batch.dask_score.score_dataset`), after a spinner while the cluster starts."""

    def __init__(self, source: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

        self.source = source
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("partitions"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task: Any = None

    def __enter__(self) -> PartitionBar:
        self.progress.start()
        self.task = self.progress.add_task(f"scoring {self.source} on Dask", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)


def number(value: float | None) -> str:
    """A metric for a table: four decimals, blank when absent."""
    return "" if value is None else f"{value:.4f}"


def clean_report(report: CleanReport) -> None:
    out.print("[bold]cleaning[/]")
    for line in report.summary():
        out.print(f"  - {line}")


def schema(schema: Schema) -> None:
    table = Table(title=f"schema (target {schema.target.name}: {schema.target.task})", title_justify="left")
    for column in ("feature", "kind", "missing", "range / categories"):
        table.add_column(column)
    for f in schema.features:
        if f.kind == "numeric":
            detail = f"{f.min:g} .. {f.max:g}" if f.min is not None and f.max is not None else ""
        else:
            cats = f.categories or []
            detail = ", ".join(cats[:5]) + (f" (+{len(cats) - 5})" if len(cats) > 5 else "")
        table.add_row(f.name, f.kind, f"{f.missing_ratio:.1%}", detail)
    out.print(table)


def lineage(result: IngestResult | DaskIngestResult) -> None:
    extra = {k: v for k, v in result.lineage.items() if k not in ("kind", "db")}
    out.print(f"source: {result.source}" + "".join(f"\n{k}: {v}" for k, v in extra.items()), highlight=False)


def training_metrics(ev: Evaluation, *, title: str) -> None:
    """Test, baseline and cross-validation metrics, then the confusion matrix of a classifier (up to 10 labels)."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("test", justify="right")
    table.add_column("baseline", justify="right")
    if ev.cv:
        table.add_column(f"CV ({ev.cv_folds} folds)", justify="right")
    for metric, value in ev.metrics.items():
        mark = " *" if metric == ev.primary_metric else ""
        row = [f"{metric}{mark}", f"{value:.4f}", number(ev.baseline.get(metric))]
        if ev.cv:
            cv = ev.cv.get(metric)
            row.append(f"{cv[0]:.4f} ± {cv[1]:.4f}" if cv else "")
        table.add_row(*row)
    out.print(table)
    out.print(f"* primary metric ({'higher' if higher_is_better(ev.primary_metric) else 'lower'} is better)")
    if ev.confusion_matrix is not None and ev.labels is not None and len(ev.labels) <= 10:
        out.print("confusion matrix (rows: true label, columns: predicted)")
        cm = Table()
        cm.add_column("")
        for label in ev.labels:
            cm.add_column(str(label), justify="right")
        for label, counts in zip(ev.labels, ev.confusion_matrix, strict=True):
            cm.add_row(str(label), *map(str, counts))
        out.print(cm)


def calibration(ev: Evaluation, *, max_error: float) -> None:
    """A classifier's calibration on the test part, and whether the server will estimate its accuracy from its
    confidences before labels arrive (judged against ``max_error``, FASTTRACK_CALIBRATION_MAX_ERROR)."""
    from fasttrack.monitoring.performance import calibration_verdict

    if ev.calibration is None:
        return
    verdict = calibration_verdict(ev.calibration, max_error)
    judged = "[green]accuracy estimate trusted[/]" if verdict.trusted else "[yellow]accuracy estimate not trusted[/]"
    out.print(
        f"calibration: ECE {ev.calibration.error:.4f} (mean confidence {ev.calibration.confidence:.4f}, accuracy "
        f"{ev.calibration.accuracy:.4f}); {judged}: {verdict.reason}",
        highlight=False,
    )
