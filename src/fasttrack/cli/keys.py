"""``fasttrack keys``: API keys for the server's access control (``FASTTRACK_AUTH``; docs/security.md)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fasttrack.cli.render import err, out
from fasttrack.errors import ConfigError

keys_app = typer.Typer(help="API keys for the model server's access control.", no_args_is_help=True)

KeyId = Annotated[str, typer.Argument(help="The key's name, shown in logs and metrics instead of the key.")]
Scopes = Annotated[
    str,
    typer.Option(
        help="Comma-separated scopes: predict (/predict, /invocations, /v2, /model, /docs), feedback (/feedback), "
        "admin (/admin/*); empty: probes and /metrics only, when those are closed."
    ),
]


def _scopes(text: str) -> list[str]:
    return [part for part in text.split(",") if part.strip()]


@keys_app.command("new")
def keys_new(key_id: KeyId, scopes: Scopes = "predict") -> None:
    """Make a random API key: print the key (give it to the client, once) and the entry for the server.

    The entry (`ID:SCOPES:SHA256`) holds only the key's SHA-256: add it to FASTTRACK_API_KEYS or as a line of
    FASTTRACK_API_KEYS_FILE (re-read within a second). The key itself is stored nowhere: a lost key is replaced.
    """
    from fasttrack.api import new_api_key

    made = new_api_key(key_id, _scopes(scopes))
    out.print(f"key:   {made.secret}", highlight=False)
    out.print(f"entry: {made.entry}", highlight=False)
    err.print("The key is shown only now. Send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.")


@keys_app.command("hash")
def keys_hash(key_id: KeyId, scopes: Scopes = "predict") -> None:
    """Print the server's entry for an existing key, read from standard input (never from the command line,
    which other users and the shell's history can see)."""
    from fasttrack.api import api_key_entry

    if sys.stdin.isatty():
        err.print("Paste the key, then Enter:")
    secret = sys.stdin.readline().strip()
    if not secret:
        raise ConfigError("no key on standard input: pipe it in, e.g. `fasttrack keys hash NAME < key.txt`")
    out.print(api_key_entry(key_id, _scopes(scopes), secret).entry(), highlight=False)
