"""API keys: how they are made, written down, hashed and looked up (no web framework here; the middleware is
:mod:`fasttrack.serving.auth`).

A key is a random token (``ft_`` and 43 URL-safe characters: 256 bits from :mod:`secrets`); the server only ever
holds its SHA-256. It is written down as one entry ``ID:SCOPES:SHA256``:

- ``ID`` names the key in logs and metrics (never the secret): letters, digits, ``.``, ``_`` and ``-``;
- ``SCOPES`` is a comma-separated list of ``predict``, ``feedback`` and ``admin``, or empty (a key that reads only
  the probes and ``/metrics`` when those are closed: a Prometheus scraper's);
- ``SHA256`` is the key's SHA-256 in hexadecimal.

``FASTTRACK_API_KEYS`` holds such entries separated by spaces or newlines; ``FASTTRACK_API_KEYS_FILE`` names a file
of them, one per line (blank lines and ``#`` comments allowed), re-read when it changes (:class:`KeyFile`).

Why a plain SHA-256 and not a password hash (bcrypt, scrypt, Argon2): those are slow on purpose, so that guessing
a *low-entropy* password from its stored hash is slow too. A 256-bit random key cannot be guessed however fast the
hash, and the server hashes the presented key on every request, where a deliberately slow hash would cost
milliseconds per prediction. :func:`hash_key` refuses keys shorter than :data:`MIN_KEY_CHARS` for that reason.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

from fasttrack.errors import ConfigError

KeyScope = Literal["predict", "feedback", "admin"]
#: Every scope a key can hold, in the order they are shown.
SCOPES: Final[tuple[KeyScope, ...]] = get_args(KeyScope)
#: What every new key starts with: secret scanners (and people) can tell a FastTrack key from other tokens.
KEY_PREFIX: Final = "ft_"
#: Bytes of randomness in a new key (256 bits).
KEY_BYTES: Final = 32
#: The shortest key :func:`hash_key` accepts: a key that short could be guessed offline from its SHA-256.
MIN_KEY_CHARS: Final = 32
_ID: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiKey:
    """One key as the server knows it: its id, its scopes and the SHA-256 of the secret (never the secret)."""

    id: str
    scopes: frozenset[KeyScope]
    digest: bytes

    def entry(self) -> str:
        """The key's ``ID:SCOPES:SHA256`` entry."""
        return f"{self.id}:{','.join(s for s in SCOPES if s in self.scopes)}:{self.digest.hex()}"


@dataclass(frozen=True)
class NewKey:
    """A key just made: the secret (shown once, to the person who made it) and its entry for the server."""

    secret: str
    key: ApiKey

    @property
    def entry(self) -> str:
        """The line to add to ``FASTTRACK_API_KEYS`` or the key file."""
        return self.key.entry()


def digest(secret: str | bytes) -> bytes:
    """The SHA-256 of a key (what the server stores and looks presented keys up by)."""
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


def parse_scopes(text: str) -> frozenset[KeyScope]:
    """Scopes from a comma-separated list (empty: none); an unknown scope is a :class:`ConfigError`."""
    found: set[KeyScope] = set()
    for part in text.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in SCOPES:
            raise ConfigError(f"unknown scope {part.strip()!r}; scopes are {', '.join(SCOPES)}")
        found.add(name)
    return frozenset(found)


def check_id(key_id: str) -> str:
    """``key_id`` when it is a valid key id, else a :class:`ConfigError` saying what one is."""
    if not _ID.fullmatch(key_id):
        raise ConfigError(f"invalid key id {key_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
    return key_id


def new_key(key_id: str, scopes: Iterable[str]) -> NewKey:
    """Make a new random key named ``key_id`` with ``scopes`` (:func:`secrets.token_urlsafe`, 256 bits)."""
    secret = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return NewKey(secret, ApiKey(check_id(key_id), parse_scopes(",".join(scopes)), digest(secret)))


def hash_key(key_id: str, scopes: Iterable[str], secret: str) -> ApiKey:
    """The entry of an existing key (e.g. one kept in a secret manager), refused when it is too short to be safe."""
    secret = secret.strip()
    if len(secret) < MIN_KEY_CHARS:
        raise ConfigError(
            f"a key must have at least {MIN_KEY_CHARS} characters of a random token (got {len(secret)}); "
            "`fasttrack keys new` makes one"
        )
    return ApiKey(check_id(key_id), parse_scopes(",".join(scopes)), digest(secret))


def parse_entry(entry: str, where: str) -> ApiKey:
    """One ``ID:SCOPES:SHA256`` entry; ``where`` (the file and line; empty for none) names it in errors."""
    at = f"{where}: " if where else ""
    parts = entry.strip().split(":")
    if len(parts) != 3:
        raise ConfigError(f"{at}an API key entry is ID:SCOPES:SHA256, got {_shown(entry)}")
    key_id, scopes, hexdigest = parts
    try:
        check_id(key_id)
        parsed = parse_scopes(scopes)
    except ConfigError as exc:
        raise ConfigError(f"{at}{exc}") from None
    hexdigest = hexdigest.lower()
    if not _SHA256.fullmatch(hexdigest):
        raise ConfigError(
            f"{at}key {key_id!r}: the third part must be the key's SHA-256 in hexadecimal (64 characters), "
            "never the key itself: `fasttrack keys new` prints the entry"
        )
    return ApiKey(key_id, parsed, bytes.fromhex(hexdigest))


def _shown(entry: str) -> str:
    # An entry that does not parse may be a key pasted by mistake: never echo anything that long.
    text = entry.strip()
    return repr(text) if len(text) <= 12 else f"{len(text)} characters that are not one"


def parse_entries(text: str, where: str, *, numbered: bool = False) -> list[ApiKey]:
    """Entries separated by whitespace or lines (``#`` starts a comment); ``numbered``: errors name the line."""
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0]
        for entry in content.split():
            keys.append(parse_entry(entry, f"{where} line {number}" if numbered else where))
    return keys


def merge(*groups: Iterable[ApiKey]) -> dict[bytes, ApiKey]:
    """Keys by digest, refusing an id or a key given twice (two entries for one key would be ambiguous)."""
    by_digest: dict[bytes, ApiKey] = {}
    ids: set[str] = set()
    for group in groups:
        for key in group:
            if key.id in ids:
                raise ConfigError(f"API key id {key.id!r} is given twice")
            if key.digest in by_digest:
                raise ConfigError(f"API keys {by_digest[key.digest].id!r} and {key.id!r} are the same key")
            ids.add(key.id)
            by_digest[key.digest] = key
    return by_digest


class KeyFile:
    """A key file, read again when it changes (size, modification time or inode), for rotation without restart.

    :meth:`refresh` looks at the file (a ``stat``; it is read only when it changed); the middleware calls it at
    most once a second. A file that changed but no longer parses keeps the keys read before (an edit half-saved must not
    lock every client out) and is logged; a file that was removed gives no keys (every key in it is revoked).
    Write the file atomically (a new file renamed over it) so that a reader never sees half of it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[ApiKey] = []
        self.failures = 0
        self._read(strict=True)

    def _read(self, *, strict: bool) -> bool:
        """Read the file if it changed; ``strict`` (start-up) raises what a later read only logs. Whether it
        changed."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            if strict:
                raise ConfigError(f"cannot read the API key file {self.path}: {exc.strerror}") from None
            if self._stamp is not None:
                log.warning("API key file %s is gone (%s): its keys are revoked", self.path, exc.strerror)
                self._stamp, self._keys = None, []
                return True
            return False
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamp:
            return False
        try:
            keys = parse_entries(self.path.read_text(encoding="utf-8"), str(self.path), numbered=True)
            merge(keys)
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            if strict:
                raise ConfigError(str(exc) if isinstance(exc, ConfigError) else f"{self.path}: {exc}") from None
            self.failures += 1
            log.error("API key file %s not reloaded, the keys read before stay in force: %s", self.path, exc)
            self._stamp = stamp  # not read again until it changes again
            return False
        self._stamp, self._keys = stamp, keys
        if not strict:
            log.info("API key file %s reloaded: %d keys (%s)", self.path, len(keys), ", ".join(k.id for k in keys))
        return True

    def refresh(self) -> bool:
        """Read the file again if it changed since the last look; whether its keys changed."""
        return self._read(strict=False)

    @property
    def keys(self) -> list[ApiKey]:
        """The keys the file held when last read successfully."""
        return self._keys


class KeyRing:
    """Every key in force: those of the setting and those of the key file (re-read when it changed).

    :meth:`find` looks a presented key up by its SHA-256 in a dict. Timing: the presented key is hashed whatever
    it is, and the dict compares digests, so how long a lookup takes can only tell an attacker something about
    the SHA-256 of their own guess compared with the stored digests, which does not help to find a key (that
    would need a SHA-256 preimage). No stored secret is ever compared byte by byte with the guess.
    """

    def __init__(self, fixed: Iterable[ApiKey], file: KeyFile | None = None) -> None:
        self._fixed = list(fixed)
        self.file = file
        self.by_digest: Mapping[bytes, ApiKey] = merge(self._fixed, file.keys if file else ())

    def refresh(self) -> None:
        """Take the key file's new keys if it changed (a file that clashes with the setting keeps the old ones)."""
        if self.file is None or not self.file.refresh():
            return
        try:
            self.by_digest = merge(self._fixed, self.file.keys)
        except ConfigError as exc:
            self.file.failures += 1
            log.error("API key file %s not taken, the keys read before stay in force: %s", self.file.path, exc)

    def find(self, secret: bytes) -> ApiKey | None:
        """The key whose secret this is, or ``None``."""
        return self.by_digest.get(digest(secret))

    def __len__(self) -> int:
        return len(self.by_digest)
