"""The README stays true to the code: every runtime setting is documented in its configuration table."""

from __future__ import annotations

import re

from fasttrack.config import Settings
from support import REPO


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(FASTTRACK_[A-Z_]+)` \|", readme, re.M))
    expected = {f"FASTTRACK_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_every_setting_has_a_description() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


def test_the_python_api_reference_is_generated_from_the_code() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", REPO / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    page = (REPO / "docs" / "python-api.md").read_text(encoding="utf-8")
    assert page == generate.render(page), "docs/python-api.md is out of date: run python docs/generate.py"
    assert "### `train`" in page and "#### `predict_proba`" in page
