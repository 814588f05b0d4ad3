"""The model folder's manifest: the SHA-256 digest of every file, written at registration, checked before a load.

A registered version is immutable, so any difference between its files and the manifest means the folder was
corrupted (a partial upload, a bad disk) or altered after registration (someone with write access to the artifact
store replaced ``model.onnx``). :func:`verify` names the first file that differs -- changed, missing or added --
and the caller refuses the folder: a server keeps serving the version it has, and the download cache
(:mod:`fasttrack.registry.cache`) never keeps a copy that fails.

The manifest (``fasttrack-manifest.json``, at the top of the model folder) lists every file but itself and
``registered_model_meta``, which MLflow's download of ``models:/NAME/VERSION`` adds to the copy. It guards against
accidents and against an attacker who changes files but not the manifest beside them; one who can rewrite both
would need a digest kept outside the artifact store (docs/security.md, "Safe model loading").
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from fasttrack.errors import ModelLoadError

MANIFEST_FILE = "fasttrack-manifest.json"
FORMAT = 1
#: What MLflow's download of ``models:/NAME/VERSION`` writes into the copy (see
#: :data:`fasttrack.registry.mlflow_private.REGISTERED_MODEL_META`): never part of what was registered.
_ADDED_BY_DOWNLOAD = "registered_model_meta"
_NOT_LISTED = frozenset({MANIFEST_FILE, _ADDED_BY_DOWNLOAD})
_CHUNK = 1 << 20


class IntegrityError(ModelLoadError):
    """A model folder whose files differ from its manifest (or whose manifest cannot be read)."""


def digests(folder: Path) -> dict[str, str]:
    """The SHA-256 (hex) of every file under ``folder`` by its POSIX path relative to it, the manifest and
    MLflow's ``registered_model_meta`` left out."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative in _NOT_LISTED or path.is_dir():
            continue
        found[relative] = _sha256(path)
    return found


def write(folder: Path) -> Path:
    """Write the manifest of ``folder``'s files into it (atomically: a reader sees the whole file or none)."""
    body = json.dumps({"format": FORMAT, "algorithm": "sha256", "files": digests(folder)}, indent=1, sort_keys=True)
    target = folder / MANIFEST_FILE
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read(folder: Path) -> dict[str, str] | None:
    """The digests ``folder``'s manifest records (``None`` when it has none; :class:`IntegrityError` when it is
    not a manifest this version of FastTrack reads)."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        files = body["files"]
        if body.get("format") != FORMAT or body.get("algorithm") != "sha256" or not isinstance(files, dict):
            raise ValueError(f"format {body.get('format')!r}, algorithm {body.get('algorithm')!r}")
        return {str(name): str(digest) for name, digest in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise IntegrityError(
            f"model folder refused: its {MANIFEST_FILE} cannot be read ({exc})",
            public=f"its {MANIFEST_FILE} cannot be read",
        ) from None


def verify(folder: Path) -> bool:
    """Check ``folder``'s files against its manifest: ``True`` when they match, ``False`` when it has no manifest
    (a folder registered before manifests were written), :class:`IntegrityError` naming the first file that was
    changed, is missing or was added otherwise."""
    recorded = read(folder)
    if recorded is None:
        return False
    actual = digests(folder)
    for name in sorted(recorded.keys() | actual.keys()):
        if name not in actual:
            problem = "is missing"
        elif name not in recorded:
            problem = "was added after registration (it is not in the manifest)"
        elif actual[name] != recorded[name]:
            problem = "changed since registration (its SHA-256 differs from the manifest)"
        else:
            continue
        raise IntegrityError(f"model folder refused: {name} {problem}", public=f"{name} {problem}")
    return True


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
