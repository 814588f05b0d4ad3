"""The ``fasttrack`` Typer app: global options, the commands of each group, and how failures end the process.

Every failure FastTrack expects prints one readable line (``error: ...``) and exits 1; usage errors exit 2; the
other codes (``models promote``'s outcomes, Ctrl-C) are in :mod:`fasttrack.exit_codes`. ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from fasttrack import __version__, exit_codes, process
from fasttrack.cli import data, dataset, keys, models, report, scoring, serve, training
from fasttrack.cli.render import err, out
from fasttrack.errors import FastTrackError

app = typer.Typer(
    name="fasttrack",
    help="FastTrack: tabular data to a trained, tracked, served and monitored model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.command()(data.ingest)
app.command()(data.check)
app.command()(training.train)
app.command()(training.evaluate)
app.command()(scoring.predict)
app.add_typer(models.models_app, name="models")
app.add_typer(dataset.dataset_app, name="dataset")
app.add_typer(report.report_app, name="report")
app.add_typer(keys.keys_app, name="keys")
app.command()(serve.serve)


def _version(value: bool) -> None:
    if value:
        out.print(f"fasttrack {__version__}")
        raise typer.Exit


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    # Read by MLflow when it is first imported, which happens later, inside the commands. Not even its errors: MLflow
    # logs a failed database write with its traceback (a full disk) and then raises it, and the command reports
    # what it raises in one line; --debug shows everything.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if debug else "CRITICAL")
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        for noisy in ("alembic", "urllib3", "botocore"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore")


def _interrupted(done: BaseException) -> bool:
    """Whether Ctrl-C ended the command: Typer turns ``KeyboardInterrupt`` into ``Exit(130)``, raised from it."""
    seen: set[int] = set()
    cause: BaseException | None = done
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fasttrack`` command: one readable line per failure, tracebacks with ``--debug``.

    A command that succeeded or failed with a ``FastTrackError`` exits without the interpreter's teardown
    (:func:`fasttrack.process.exit_without_teardown`); Ctrl-C (exit 130) and unexpected errors (exit 1) exit the
    ordinary way.
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    process.skip_teardown_on_exit()
    try:
        app(args=args, standalone_mode=True)
    except SystemExit as done:  # how Click's standalone mode ends every command, successful or not
        if debug:
            raise
        if _interrupted(done):
            err.print("interrupted")
            sys.exit(exit_codes.INTERRUPTED)
        code = done.code if isinstance(done.code, int) else (exit_codes.OK if done.code is None else exit_codes.ERROR)
        if isinstance(done.code, str):
            err.print(done.code, highlight=False, soft_wrap=True)
        process.exit_without_teardown(code)
    except FastTrackError as exc:
        if debug:
            raise
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        process.exit_without_teardown(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(exit_codes.INTERRUPTED)
    except Exception as exc:
        if debug:
            raise
        # One line even for a library's multi-line message (SQLAlchemy adds the statement and a link below it).
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        err.print(
            f"[red]error:[/] unexpected {type(exc).__name__}: {escape(first)} (run with --debug for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(exit_codes.ERROR)
