"""The model manager: which :class:`Predictor` serves, and how a new version replaces it without a failed request.

A manager loads its model in a background thread (so the server answers ``/health`` at once and ``/ready`` once
loaded), then follows the registry: every ``reload_interval`` seconds (and on :meth:`ModelManager.reload`, which
``POST /admin/reload`` calls) it resolves the model URI again. When the alias (``models:/NAME@champion``) or the
latest version (``models:/NAME``) points at another version, that version is downloaded, loaded and checked by
predicting its input example, all in the background, and only then swapped in with one reference assignment.
Requests read :attr:`ModelManager.current` once and finish on the predictor they got, so in-flight requests end
on the old version and no request fails during a swap. A version that fails to load or check is refused: the old
one keeps serving, and the failure is logged and counted (``fasttrack_model_reloads_total{outcome="failure"}``,
under the version that keeps serving, whose failure counter exists at 0 from the moment it was swapped in). A
check that gets no answer from the registry (unreachable, the alias gone) is counted as well in
``fasttrack_registry_check_failures_total``, and the served version keeps serving too.

Labels sent to ``POST /feedback`` are joined by :meth:`ModelManager.feedback` with the served version's predictions
and, for ids it does not know, with those of the version served before the last swap (labels often arrive after a
promotion for predictions made before it).

URIs that name one fixed thing (``models:/NAME/3``, ``runs:/...``, a local folder) are not polled.

With ``FASTTRACK_INFERENCE_LOG`` set, the manager owns the process' inference log
(:class:`~fasttrack.monitoring.log_writer.InferenceLog`): it hands each version it swaps in its way into the log
(so every prediction is logged, with the class probabilities of a classifier), logs the labels
:meth:`ModelManager.feedback` receives, starts the writer with the manager and closes it (writing everything
queued) when the manager stops, as the server does on SIGTERM.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Literal

from fasttrack.config import Settings
from fasttrack.errors import FastTrackError, ModelLoadError
from fasttrack.registry.cache import evict
from fasttrack.registry.resolve import ResolvedModel, default_model_uri, resolve_model
from fasttrack.serving.feedback import FeedbackItem, FeedbackResult
from fasttrack.serving.metrics import ModelMetrics, ServerMetrics
from fasttrack.serving.predictor import Predictor

if TYPE_CHECKING:
    from fasttrack.monitoring.log_writer import InferenceLog

log = logging.getLogger(__name__)

#: The error of a poll that skipped a version refused before (``POST /admin/reload`` tries it again).
REFUSED_BEFORE: Final = "refused before"

Outcome = Literal["reloaded", "unchanged", "refused", "not_followed"]
Resolver = Callable[[str, Settings], ResolvedModel]
Loader = Callable[[ResolvedModel, ServerMetrics], Predictor]


@dataclass(frozen=True)
class ReloadResult:
    """What one registry check did, and the version served after it."""

    outcome: Outcome
    model: str | None
    version: str | None
    candidate: str | None = None
    error: str | None = None
    #: What a client may be told of ``error`` (no paths, no exception text): the error's ``public`` reason.
    reason: str | None = None


def load_checked(resolved: ResolvedModel, metrics: ServerMetrics, settings: Settings | None = None) -> Predictor:
    """Load a resolved model folder and check it predicts its input example (``ModelLoadError`` if not).

    ``settings`` size the version's monitoring windows; drift thresholds naming a feature the model does not
    monitor refuse it (``ConfigError``). A folder of the download cache that fails to load or to predict is
    dropped from the cache (:func:`~fasttrack.registry.cache.evict`), so that the next try, once the store is
    repaired, downloads it again instead of refusing the same broken copy.
    """
    try:
        try:
            predictor = Predictor.from_resolved(resolved, metrics, settings)
        except FastTrackError:
            raise
        except Exception as exc:  # anything a broken folder can raise means "cannot load"
            raise ModelLoadError(f"cannot load {resolved.uri}: {type(exc).__name__}: {exc}") from None
        predictor.check()
    except ModelLoadError:
        if settings is not None and resolved.version is not None:
            evict(settings, resolved.path)
        raise
    return predictor


def open_inference_log(settings: Settings, metrics: ServerMetrics) -> InferenceLog | None:
    """The inference log ``settings`` ask for (``None`` when off), counting in ``metrics``; not started yet.

    Imported only when on: a server without the log never imports pyarrow. ``ConfigError`` for a location
    FastTrack cannot write to (an unknown scheme, an object store whose fsspec backend is missing).
    """
    if not settings.inference_log:
        return None
    from fasttrack.monitoring.log_writer import InferenceLog

    return InferenceLog(
        settings.inference_log,
        queue_rows=settings.inference_log_queue_rows,
        rotate_rows=settings.inference_log_rotate_rows,
        rotate_seconds=settings.inference_log_rotate_seconds,
        counters=metrics.inference_log,
    )


def follows_registry(uri: str) -> bool:
    """Whether the URI can point at another version later: an alias or the latest version of a registered model."""
    if not uri.startswith("models:/"):
        return False
    rest = uri.removeprefix("models:/").strip("/")
    return "@" in rest or "/" not in rest


class ModelManager:
    """Owns the served predictor: the first load, registry polling, and checked, atomic swaps."""

    def __init__(
        self,
        settings: Settings,
        metrics: ServerMetrics,
        *,
        predictor: Predictor | None = None,
        resolver: Resolver = resolve_model,
        loader: Loader | None = None,
        on_fatal: Callable[[FastTrackError], None] | None = None,
        after_swap: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.uri = default_model_uri(settings)
        self.follows = follows_registry(self.uri)
        self.load_error: FastTrackError | None = None
        self._current: Predictor | None = None
        self._retired: ModelMetrics | None = None  # the version served before the last swap (for /feedback)
        self._resolver = resolver
        self._loader: Loader = loader if loader is not None else partial(load_checked, settings=settings)
        self._on_fatal = on_fatal
        self._after_swap = after_swap
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._settled = threading.Event()  # set once the first load succeeded or failed
        self._thread: threading.Thread | None = None
        self._refused: set[tuple[str | None, str | None]] = set()
        #: The process' inference log (``None`` when ``FASTTRACK_INFERENCE_LOG`` is not set).
        self.inference_log = open_inference_log(settings, metrics)
        metrics.not_ready()
        if predictor is not None:
            self._swap(predictor)

    @property
    def current(self) -> Predictor | None:
        """The predictor serving now (``None`` until the first load); read it once per request."""
        return self._current

    @property
    def ready(self) -> bool:
        """Whether a model is loaded."""
        return self._current is not None

    # --------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Load the model (unless given) and poll the registry, in a background thread."""
        if self._thread is not None:
            return
        if self.inference_log is not None:
            self.inference_log.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fasttrack-model-manager", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (a load in progress finishes in its daemon thread; it is not waited for past ``timeout``),
        then write what the inference log holds and close it (see :meth:`InferenceLog.close
        <fasttrack.monitoring.log_writer.InferenceLog.close>`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.inference_log is not None:
            self.inference_log.close()

    def wait_ready(self, timeout: float | None) -> bool:
        """Block until a model is loaded, the first load failed, or ``timeout`` passes; whether one is loaded."""
        self._settled.wait(timeout)
        return self.ready

    def _run(self) -> None:
        if self._current is None and not self._first_load():
            return
        interval = self.settings.reload_interval
        if not self.follows or interval <= 0:
            return
        while not self._stop.wait(interval):
            try:
                self.reload()
            except Exception:  # never let the poller die: the next poll tries again
                log.exception("registry check failed")

    @property
    def load_reason(self) -> str | None:
        """Why no model is loaded, as a client may be told (no paths, no exception text); ``None``: still loading."""
        if self.load_error is None:
            return None
        return self.load_error.public or "the model failed to load; the server log says why"

    def _first_load(self) -> bool:
        """The first load: at start, or again at each poll while none has worked."""
        while True:
            try:
                result = self.reload(force=True)
            except Exception as exc:  # an unexpected failure must still settle the first load
                log.exception("loading %s failed", self.uri)
                result = self._result("refused", error=f"{type(exc).__name__}: {exc}")
            if self._current is not None:
                return True
            self.load_error = ModelLoadError(
                result.error or f"cannot load {self.uri}",
                public=result.reason or "the model failed to load; the server log says why",
            )
            self._settled.set()
            if self._on_fatal is not None:
                self._on_fatal(self.load_error)
                return False
            interval = self.settings.reload_interval
            if interval <= 0 or self._stop.wait(interval):
                return False

    # ------------------------------------------------------------------------------------------------ reload
    def reload(self, *, force: bool = False) -> ReloadResult:
        """Resolve the model URI again and swap in the version it points at, if new and it passes its check.

        Polls skip a version already refused; ``force`` (``POST /admin/reload``) tries it again.
        """
        with self._lock:
            current = self._current
            if current is not None and not self.follows and not force:
                return self._result("not_followed")
            try:
                resolved = self._resolver(self.uri, self.settings)
            except FastTrackError as exc:
                log.error("checking %s failed: %s", self.uri, exc)
                # A ModelLoadError: the registry answered and the download it gave failed its check (not counted).
                if not isinstance(exc, ModelLoadError):
                    self.metrics.registry_check_failed(current.name if current is not None else _name_of(self.uri))
                if current is not None:
                    self.metrics.reload(current.name, current.version, "failure")
                else:
                    self.metrics.reload(_name_of(self.uri), "unknown", "failure")
                return self._result("refused", error=str(exc), reason=exc.public)
            name = resolved.name or (current.name if current else _name_of(self.uri))
            key = (name, resolved.version)
            if current is not None and (current.name, current.source.version) == key:
                return self._result("unchanged", candidate=resolved.version)
            if key in self._refused and not force:
                return self._result("refused", candidate=resolved.version, error=REFUSED_BEFORE)
            try:
                candidate = self._loader(resolved, self.metrics)
            except FastTrackError as exc:
                self._refused.add(key)
                if current is not None:  # counted under the version that keeps serving (see the module doc)
                    self.metrics.reload(current.name, current.version, "failure")
                else:
                    self.metrics.reload(name, resolved.version or "local", "failure")
                if current is None:
                    log.error("cannot load %s: %s", self.uri, exc)
                else:
                    log.error(
                        "refused %s version %s: %s; still serving version %s",
                        name,
                        resolved.version or "local",
                        exc,
                        current.version,
                    )
                return self._result("refused", candidate=resolved.version, error=str(exc), reason=exc.public)
            self._refused.discard(key)
            previous = current.version if current else None
            self._swap(candidate)
            self.metrics.reload(candidate.name, candidate.version, "success")
            if previous is None:
                log.info("serving %s version %s (%s)", candidate.name, candidate.version, candidate.runtime.name)
            else:
                log.info("swapped %s version %s in for version %s", candidate.name, candidate.version, previous)
            return self._result("reloaded", candidate=candidate.version)

    def _swap(self, predictor: Predictor) -> None:
        if self.inference_log is not None:  # before it serves: its first prediction is logged too
            predictor.inference_log = self.inference_log.source(
                predictor.name,
                predictor.version,
                predictor.schema.features,
                classifier=predictor.is_classifier,
                labels=predictor.labels or (),
            )
            predictor.track_probabilities = predictor.track_probabilities or predictor.is_classifier
        previous = self._current
        self._current = predictor  # one reference assignment: requests see the old or the new, never half
        self._retired = previous.metrics if previous is not None else None  # its windows, not its model
        self.load_error = None
        self._settled.set()
        self.metrics.serving(
            predictor.name,
            predictor.version,
            (previous.name, previous.version) if previous else None,
            metrics=predictor.metadata.metrics,
            live=predictor.metrics,
        )
        if self._after_swap is not None:
            self._after_swap()

    # ---------------------------------------------------------------------------------------------- feedback
    def feedback(self, predictor: Predictor, pairs: Sequence[tuple[str, Any]]) -> FeedbackResult:
        """Join (prediction id, true label) pairs with ``predictor``'s predictions (the version serving the
        request) and, for ids it does not know, with the previous version's; count each outcome under the version
        that answered it (``fasttrack_feedback_total``); with the inference log on, log every label but the invalid
        ones, with its outcome, under ``predictor``'s version."""
        items = list(predictor.feedback.join(pairs).items)
        retired = self._retired
        unknown = [row for row, item in enumerate(items) if item.outcome == "unknown"]
        older: list[FeedbackItem] = []
        if unknown and retired is not None and retired is not predictor.metrics and retired.feedback_window is not None:
            answers = retired.feedback_window.join([pairs[row] for row in unknown]).items
            for row, answer in zip(unknown, answers, strict=True):
                if answer.outcome != "unknown":
                    items[row] = answer
                    older.append(answer)
            retired.feedback(Counter(item.outcome for item in older))
        counted = Counter(item.outcome for item in items)
        counted.subtract(Counter(item.outcome for item in older))
        predictor.metrics.feedback(counted)
        if predictor.inference_log is not None:  # every label but the invalid, to join predictions across processes
            predictor.inference_log.feedback(
                [(item.id, item.actual, item.outcome) for item in items if item.outcome != "invalid"]
            )
        return FeedbackResult(items)

    def _result(
        self, outcome: Outcome, candidate: str | None = None, error: str | None = None, reason: str | None = None
    ) -> ReloadResult:
        current = self._current
        return ReloadResult(
            outcome=outcome,
            model=current.name if current else None,
            version=current.version if current else None,
            candidate=candidate,
            error=error,
            reason=reason,
        )


def _name_of(uri: str) -> str:
    """The registered model name in a ``models:/`` URI (else the URI itself), for labels and logs."""
    rest = uri.removeprefix("models:/").strip("/")
    return rest.split("@", 1)[0].split("/", 1)[0] if uri.startswith("models:/") else uri
