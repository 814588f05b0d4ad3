"""The exit codes of the ``fasttrack`` command, in one place.

The CLI exits with these, ``fasttrack models promote --help`` and the README quote them (a test compares), and
schedulers act on them: Airflow's ``BashOperator`` marks a task that exits 99 as skipped (its default
``skip_on_exit_code``), so a retraining DAG shows "the challenger was not better" as skipped, not failed. The
numbers are part of FastTrack's interface: DAGs and scripts are written against them, so they never change.
"""

from __future__ import annotations

from typing import Final

#: The command did what it was asked (for ``models promote``: the alias moved after a comparison, promoted or
#: forced, or the challenger already held it).
OK: Final = 0
#: A :class:`~fasttrack.errors.FastTrackError` (and any unexpected error): one readable line on stderr.
ERROR: Final = 1
#: A usage error: an unknown option, a bad value (:class:`~fasttrack.errors.ConfigError`).
USAGE: Final = 2
#: ``models promote``: no version held the alias, so the challenger took it without a comparison.
NO_CHAMPION: Final = 98
#: ``models promote``: the challenger was not better; the alias stays where it was (the reason on stderr).
NOT_BETTER: Final = 99
#: ``check --skip-missing``: no such model yet (a first training run), so nothing to check against. The same 99
#: as :data:`NOT_BETTER`: both say "nothing to do this time, and no failure", which a DAG shows as skipped.
NO_MODEL_YET: Final = 99
#: Ctrl-C.
INTERRUPTED: Final = 130

#: What each code means, in the order the README's table lists them.
MEANINGS: Final[dict[int, str]] = {
    OK: "done; for `models promote`: the alias moved after a comparison (promoted or forced), or the challenger "
    "already held it",
    ERROR: "an error, said in one line on stderr",
    USAGE: "a usage error: a bad option or value",
    NO_CHAMPION: "`models promote`: no version held the alias; the challenger took it without a comparison",
    NOT_BETTER: "`models promote`: the challenger was not better; the alias stays (the reason in one line on "
    "stderr); `check --skip-missing`: no such model yet, nothing to check against; Airflow's BashOperator shows "
    "either as skipped",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
