"""``fasttrack keys``: a new key and its entry, the entry of an existing key read from stdin, one-line errors."""

from __future__ import annotations

import hashlib
from typing import Any

from typer.testing import CliRunner

from fasttrack.cli import app
from fasttrack.config import get_settings
from fasttrack.errors import ConfigError
from fasttrack.serving.keys import parse_entry


def invoke(*args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "200"}, catch_exceptions=True)


def test_keys_new_prints_a_key_and_an_entry_holding_only_its_hash() -> None:
    made = invoke("keys", "new", "ci", "--scopes", "predict,feedback")
    assert made.exit_code == 0, made.output
    lines = dict(line.split(": ", 1) for line in made.stdout.splitlines())
    key, entry = lines["key"].strip(), lines["entry"].strip()
    assert entry == f"ci:predict,feedback:{hashlib.sha256(key.encode()).hexdigest()}" and key not in entry
    assert get_settings(auth=True, api_keys=entry).auth  # the server takes the entry as printed
    other = invoke("keys", "new", "ci").stdout
    assert key not in other and ":predict:" in other  # random each time; predict by default


def test_keys_hash_reads_the_key_from_stdin() -> None:
    secret = "s" * 40
    done = invoke("keys", "hash", "vault", "--scopes", "admin", stdin=secret + "\n")
    assert done.exit_code == 0, done.output
    assert parse_entry(done.stdout.strip(), "out").digest == hashlib.sha256(secret.encode()).digest()
    assert secret not in done.stdout


def refused(*args: str, stdin: str | None = None) -> str:
    """The message of the ConfigError the command ended with (``main`` prints it as one line, exit 2)."""
    result = invoke(*args, stdin=stdin)
    assert isinstance(result.exception, ConfigError), result.output
    return str(result.exception)


def test_bad_input_is_a_config_error_saying_what_is_wrong() -> None:
    assert "unknown scope 'root'" in refused("keys", "new", "x", "--scopes", "root")
    assert "invalid key id" in refused("keys", "new", "two words")
    assert "at least 32 characters" in refused("keys", "hash", "x", stdin="hunter2\n")
    assert "no key on standard input" in refused("keys", "hash", "x", stdin="")


def test_the_help_says_what_the_scopes_cover() -> None:
    helped = " ".join(invoke("keys", "new", "--help").stdout.split())
    assert "predict (/predict, /invocations, /v2, /model, /docs)" in helped and "admin (/admin/*)" in helped
