"""API keys: made random, written down as hashes only, parsed strictly, and a key file read again when it changes."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from fasttrack.config import get_settings
from fasttrack.errors import ConfigError
from fasttrack.serving.keys import (
    KEY_PREFIX,
    KeyFile,
    KeyRing,
    hash_key,
    merge,
    new_key,
    parse_entries,
    parse_entry,
)


def write_atomically(path: Path, text: str) -> None:
    """As the docs ask: a new file renamed over the old one."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def test_a_new_key_is_random_and_its_entry_holds_only_its_sha256() -> None:
    first, second = new_key("ci", ["predict", "feedback"]), new_key("ci", ["predict"])
    assert first.secret.startswith(KEY_PREFIX) and len(first.secret) >= 43 and first.secret != second.secret
    assert first.entry == f"ci:predict,feedback:{hashlib.sha256(first.secret.encode()).hexdigest()}"
    assert first.secret not in first.entry
    assert parse_entry(first.entry, "here") == first.key


def test_entries_parse_with_comments_and_any_spacing() -> None:
    a, b, c = new_key("a", ["admin"]), new_key("b.2", []), new_key("c_3", ["feedback", "predict"])
    text = f"# keys\n{a.entry}  # the operator\n\n   {b.entry}\n{c.entry}\n"
    keys = parse_entries(text, "file")
    assert [k.id for k in keys] == ["a", "b.2", "c_3"]
    assert keys[1].scopes == frozenset() and keys[2].scopes == {"feedback", "predict"}
    assert [k.id for k in parse_entries(f"{a.entry} {b.entry}", "setting")] == ["a", "b.2"]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("ci:predict", "ID:SCOPES:SHA256"),
        ("ft_thisIsAPlainKeyPastedByMistake0123456789abc", "ID:SCOPES:SHA256, got 46 characters that are not one"),
        ("c i:predict:" + "a" * 64, "invalid key id"),
        ("ci:predict,root:" + "a" * 64, "unknown scope 'root'"),
        ("ci:predict:" + "a" * 63, "SHA-256 in hexadecimal"),
        ("ci:predict:ft_thisIsAPlainKeyPastedByMistake0123456789abc", "never the key itself"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_problem(entry: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as refused:
        parse_entry(entry, "FASTTRACK_API_KEYS")
    assert "thisIsAPlainKey" not in str(refused.value)  # a key pasted by mistake is not echoed


def test_the_same_id_or_the_same_key_twice_is_refused() -> None:
    a = new_key("a", ["predict"])
    with pytest.raises(ConfigError, match="'a' is given twice"):
        merge([a.key], [new_key("a", ["admin"]).key])
    same = parse_entry(a.entry.replace("a:", "b:", 1), "x")
    with pytest.raises(ConfigError, match="'a' and 'b' are the same key"):
        merge([a.key, same])


def test_an_existing_key_is_hashed_only_when_long_enough() -> None:
    secret = "x" * 40
    assert hash_key("vault", ["predict"], f" {secret}\n").digest == hashlib.sha256(secret.encode()).digest()
    with pytest.raises(ConfigError, match="at least 32 characters"):
        hash_key("weak", ["predict"], "hunter2")


def test_settings_check_entries_and_refuse_auth_without_keys() -> None:
    key = new_key("ci", ["predict"])
    assert get_settings(auth=True, api_keys=key.entry).auth
    with pytest.raises(ConfigError, match=r"invalid FASTTRACK_AUTH: .*no key is given"):
        get_settings(auth=True)
    with pytest.raises(ConfigError, match=r"FASTTRACK_API_KEYS.*never the key itself") as refused:
        get_settings(api_keys=f"ci:predict:{key.secret}")
    assert key.secret not in str(refused.value)


def test_a_key_file_is_read_again_when_it_changes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old, new = new_key("old", ["predict"]), new_key("new", ["predict"])
    path = tmp_path / "keys"
    write_atomically(path, old.entry + "\n")
    ring = KeyRing([], KeyFile(path))
    assert ring.find(old.secret.encode()) is not None and ring.find(new.secret.encode()) is None
    ring.refresh()  # unchanged: nothing read
    write_atomically(path, f"{old.entry}\n{new.entry}\n")
    ring.refresh()
    assert {ring.find(k.secret.encode()).id for k in (old, new)} == {"old", "new"}  # type: ignore[union-attr]
    write_atomically(path, new.entry + "\n")
    ring.refresh()
    assert ring.find(old.secret.encode()) is None and ring.find(new.secret.encode()) is not None

    caplog.set_level(logging.ERROR)
    write_atomically(path, new.entry + "\nhalf-writ")  # an edit that does not parse: the keys before stay
    ring.refresh()
    assert ring.find(new.secret.encode()) is not None and ring.file is not None and ring.file.failures == 1
    assert "not reloaded" in caplog.text and new.secret not in caplog.text

    path.unlink()  # removed: every key in it is revoked
    ring.refresh()
    assert ring.find(new.secret.encode()) is None and len(ring) == 0


def test_a_missing_or_bad_key_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        KeyFile(tmp_path / "nowhere")
    bad = tmp_path / "keys"
    bad.write_text("ci:predict:" + "z" * 64 + "\n")
    with pytest.raises(ConfigError, match=f"{bad} line 1: key 'ci'"):
        KeyFile(bad)
