"""Domain errors, shared by the CLI and the HTTP layer.

No web framework is imported here: each error carries the HTTP status and the CLI exit code it maps to, and
the transports (``fasttrack.cli``, ``fasttrack.serving``) translate them with one handler each.
"""

from __future__ import annotations

from dataclasses import dataclass

from fasttrack import exit_codes


class FastTrackError(Exception):
    """Base class of every error FastTrack raises on purpose.

    ``str(error)`` is one readable line meant for a person: it says what is wrong and, where it helps, what
    to do about it. It may hold what only the server should know (a path, a library's exception text): an HTTP
    answer that is not about the client's own input shows ``public`` instead, a short reason written to be seen
    by anyone (``None``: only a generic one).
    """

    status_code: int = 500
    exit_code: int = exit_codes.ERROR

    def __init__(self, message: str, *, public: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.public = public

    def __str__(self) -> str:
        return self.message


class ConfigError(FastTrackError):
    """A configuration value or command-line option is invalid (a usage error)."""

    status_code = 400
    exit_code = exit_codes.USAGE


class DataError(FastTrackError):
    """Input data cannot be read or used: missing or empty file, unknown format, absent target, ..."""

    status_code = 422


@dataclass(frozen=True)
class Violation:
    """One problem found while validating data against a schema: which field and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class SchemaValidationError(DataError):
    """Data does not match the training schema; carries every violation found."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = list(violations)
        shown = "; ".join(str(v) for v in self.violations[:5])
        more = f" (and {len(self.violations) - 5} more)" if len(self.violations) > 5 else ""
        super().__init__(f"input does not match the model's schema: {shown}{more}")


class ClusterError(FastTrackError):
    """A Dask cluster cannot be reached or started, or lost work it could not recover (docs/scale.md)."""

    status_code = 503


class QualityGateError(FastTrackError):
    """A trained model did not pass the quality gate and was not registered for serving."""


class AliasError(FastTrackError):
    """An alias cannot be moved as asked: nothing to roll back to, or its lock could not be taken in time."""

    status_code = 409


class AliasMovedError(AliasError):
    """An alias no longer points where a decision to move it was made against (another promotion or a rollback
    moved it meanwhile): nothing was moved or recorded, and the caller decides again against ``holder``."""

    def __init__(self, message: str, *, holder: str | None) -> None:
        super().__init__(message)
        self.holder = holder


class ModelNotFoundError(FastTrackError):
    """A model URI, registered model, version or alias does not exist."""

    status_code = 404


class ModelLoadError(FastTrackError):
    """A model exists but cannot be loaded or fails its load-time checks."""

    status_code = 503


class RegistryError(FastTrackError):
    """The tracking server or model registry refused or failed an operation."""

    status_code = 502


class BadRequestError(FastTrackError):
    """A request cannot be read at all: malformed JSON, a body of the wrong shape, a bad parameter."""

    status_code = 400


class PayloadTooLargeError(FastTrackError):
    """A request body or batch is over the server's size limit."""

    status_code = 413


class UnsupportedMediaTypeError(FastTrackError):
    """A request body has a content type the endpoint does not read."""

    status_code = 415


class ModelNotReadyError(FastTrackError):
    """The server has no model loaded yet (still loading, or the first load failed)."""

    status_code = 503
