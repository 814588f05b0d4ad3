"""docs/orchestration.md stays true to dags/ and deploy/cron/: every variable they read is documented, and every
FastTrack variable the page names is read by them, or is one of FastTrack's settings, or is the actor they set."""

from __future__ import annotations

import re

from fasttrack.config import Settings
from support import REPO

PAGE = REPO / "docs" / "orchestration.md"
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
SCRIPTS = sorted((REPO / "deploy" / "cron").glob("*.sh"))
SETTINGS = {f"FASTTRACK_{name.upper()}" for name in Settings.model_fields}
#: Set by the DAGs and the scripts for the commands they run (the alias history's "who").
SET_FOR_TASKS = {"FASTTRACK_ACTOR"}


def read_by_dags() -> set[str]:
    names: set[str] = set()
    for path in DAG_FILES:
        names |= set(re.findall(r"os\.environ\.get\(\"(FASTTRACK_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    return names


def read_by_scripts() -> set[str]:
    names: set[str] = set()
    for path in SCRIPTS:
        names |= set(re.findall(r"\$\{(FASTTRACK_[A-Z_]+)", path.read_text(encoding="utf-8")))
    return names


def test_the_dags_and_scripts_read_what_the_page_documents() -> None:
    documented = set(re.findall(r"^\| `(FASTTRACK_[A-Z_]+)` \|", PAGE.read_text(encoding="utf-8"), re.M))
    assert read_by_dags(), "no variable found in dags/: the pattern no longer matches how they are read"
    assert documented == read_by_dags(), "docs/orchestration.md's table of variables differs from what dags/ read"
    undocumented = read_by_scripts() - documented - SETTINGS - SET_FOR_TASKS
    assert not undocumented, f"deploy/cron/ reads {sorted(undocumented)}, which the page does not document"


def test_every_fasttrack_variable_the_page_names_exists() -> None:
    named = set(re.findall(r"\bFASTTRACK_[A-Z][A-Z0-9_]*", PAGE.read_text(encoding="utf-8")))
    unknown = named - read_by_dags() - read_by_scripts() - SETTINGS - SET_FOR_TASKS
    assert not unknown, f"docs/orchestration.md names {sorted(unknown)}, which nothing reads"


def test_the_page_is_linked_from_the_readme_and_the_deploy_guide() -> None:
    assert "(docs/orchestration.md)" in (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/orchestration.md" in (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")


def test_the_cron_scripts_are_executable() -> None:
    assert [p.name for p in SCRIPTS] == ["retrain.sh", "score.sh"]
    for script in SCRIPTS:
        assert script.stat().st_mode & 0o100, f"{script} is not executable"
