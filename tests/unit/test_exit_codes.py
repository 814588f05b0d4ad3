"""The exit codes have one owner: the errors, the README's table and the docs quote fasttrack.exit_codes."""

from __future__ import annotations

import re

from fasttrack import exit_codes
from fasttrack.errors import AliasError, ConfigError, FastTrackError
from support import REPO


def test_the_numbers_schedulers_rely_on() -> None:
    # DAGs are written against these: Airflow's BashOperator skips a task that exits 99 by default.
    assert (exit_codes.NOT_BETTER, exit_codes.NO_CHAMPION) == (99, 98)
    assert (exit_codes.OK, exit_codes.ERROR, exit_codes.USAGE, exit_codes.INTERRUPTED) == (0, 1, 2, 130)


def test_errors_exit_with_the_codes() -> None:
    assert FastTrackError("x").exit_code == AliasError("x").exit_code == exit_codes.ERROR
    assert ConfigError("x").exit_code == exit_codes.USAGE


def test_the_readme_table_is_the_modules() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Exit codes") :]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", section[: section.index("\n\n", section.index("| code"))], re.M))
    assert {int(code): meaning for code, meaning in rows.items()} == exit_codes.MEANINGS


def test_the_alias_page_quotes_the_promotion_codes() -> None:
    page = (REPO / "docs" / "aliases.md").read_text(encoding="utf-8")
    for code in (exit_codes.OK, exit_codes.NO_CHAMPION, exit_codes.NOT_BETTER):
        assert f"| {code} | {exit_codes.MEANINGS[code]} |" in page


def test_the_dags_exit_codes_are_fasttracks() -> None:
    # The DAGs run in Airflow's interpreter, which cannot import FastTrack: they repeat the numbers, read here.
    import ast

    tree = ast.parse((REPO / "dags" / "fasttrack_common.py").read_text())
    values = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert values["EXIT_SKIPPED"] == exit_codes.NOT_BETTER == exit_codes.NO_MODEL_YET
    assert values["EXIT_FIRST_CHAMPION"] == exit_codes.NO_CHAMPION
