"""The drift report as one self-contained HTML file: inline CSS, figures as inline PNG (base64), no external asset.

The report opens offline and can be mailed or attached to a ticket as it is: nothing in it is fetched (no CDN, no
font, no script). Figures are :class:`matplotlib.figure.Figure` objects drawn on the Agg canvas directly, as
:mod:`fasttrack.training.plots` draws them (no ``pyplot``, no global backend), with fixed margins: measuring a
constrained layout costs as much as drawing the figure, and a report draws dozens.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
from pathlib import Path
from typing import Any, Final

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fasttrack.errors import DataError
from fasttrack.monitoring.drift_report import FeatureDrift, ReportData, VersionDrift, WindowPerformance, Windows
from fasttrack.monitoring.statistics import DEFAULT_PSI_THRESHOLD

#: Categories drawn per feature (the most common on either side); the rest are summed as "(other)" in the profile.
MAX_BARS: Final = 12
_DPI: Final = 80
_TRAINING = "#9aa5b1"
_LIVE = "#d9480f"
_ESTIMATE = "#1c7ed6"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #1f2933; padding: 0 1rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #d9e2ec; padding-bottom: 0.2rem; margin-top: 2.5rem; }
.meta { color: #52606d; } .note { background: #fff8e1; border-left: 4px solid #f0b429; padding: 0.4rem 0.8rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 0.25rem 0.7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; } tr.drifted td { background: #ffe3e3; font-weight: 600; }
ul.drifted li { color: #c92a2a; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 0.8rem; }
.grid figure, figure { margin: 0; } figure img { max-width: 100%; }
figcaption { font-size: 0.85rem; color: #52606d; }
.legend { font-size: 0.88rem; color: #52606d; }
"""


def write_report(report: ReportData, path: Path) -> Path:
    """Write the report to ``path``, atomically (written beside it, then renamed); ``DataError`` when it cannot be."""
    text = render(report)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise DataError(f"cannot write the report to {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):  # nothing to remove where nothing could be written
            tmp.unlink(missing_ok=True)
    return path


def render(report: ReportData) -> str:
    """The report as one HTML document."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Drift report: {_e(report.model)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Drift report: {_e(report.model)}</h1>",
        f'<p class="meta">{_e(report.source)} · {_e(report.period)} · generated {report.generated:%Y-%m-%d %H:%M} UTC'
        + (f" · time windows of {_duration(report.windows.width)}" if report.windows else "")
        + "</p>",
        _legend(),
    ]
    parts += [f'<p class="note">{_e(note)}</p>' for note in report.notes]
    if len(report.versions) > 1:
        links = " · ".join(
            f'<a href="#version-{_e(v.version)}">version {_e(v.version)}</a> ({v.rows:,} rows)' for v in report.versions
        )
        parts.append(f"<p>Versions: {links}</p>")
    for version in report.versions:
        parts.append(_version_section(version, report.windows))
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- sections
def _legend() -> str:
    return (
        '<p class="legend">PSI (population stability index) compares the shares of rows in the training profile\'s '
        "buckets: below 0.1 no real change, 0.1 to 0.2 some, above the threshold (default "
        f"{DEFAULT_PSI_THRESHOLD}) a significant shift. KS (numbers) is the largest gap between the training and "
        "live cumulative distributions at the profile's bin edges, 0 to 1. JS (categories) is the Jensen-Shannon "
        "distance of the category shares, 0 (same) to 1 (disjoint).</p>"
    )


def _version_section(version: VersionDrift, windows: Windows | None) -> str:
    parts = [
        f'<section id="version-{_e(version.version)}">',
        f"<h2>Version {_e(version.version)}</h2>",
        f'<p class="meta">{version.rows:,} rows'
        + (f", {version.labelled:,} with a label" if version.performance is not None or version.labelled else "")
        + "</p>",
    ]
    parts += [f'<p class="note">{_e(note)}</p>' for note in version.notes]
    drifted = version.drifted
    if drifted:
        items = "".join(f"<li>{_e(f.name)} (PSI {_n(f.psi)})</li>" for f in drifted)
        parts.append(f'<p>Drifted features ({len(drifted)}):</p><ul class="drifted">{items}</ul>')
    else:
        parts.append('<p>No feature drifted: every PSI is at or below its threshold.</p><ul class="drifted"></ul>')
    parts.append(_summary_table(version))
    if version.prediction is not None:
        parts.append("<h3>Predictions</h3>")
        parts.append(_figure(_distribution_figure(version.prediction), _caption(version.prediction)))
    if windows is not None and windows.count > 1:
        parts.append("<h3>Drift over time</h3>")
        parts.append(_figure(_heatmap(version, windows), "PSI per feature and time window (blank: too few rows)"))
    if version.performance is not None and windows is not None:
        parts.append("<h3>Live performance</h3>")
        parts.append(_performance_table(version.performance))
        if windows.count > 1:
            parts.append(_figure(_performance_figure(version.performance, windows), "per time window"))
    if version.calibration_note:
        parts.append(f'<p class="note">{_e(version.calibration_note)}</p>')
    parts.append("<h3>Features</h3>")
    parts.append('<div class="grid">')
    parts += [_figure(_distribution_figure(f), _caption(f)) for f in version.features]
    parts.append("</div></section>")
    return "\n".join(parts)


def _summary_table(version: VersionDrift) -> str:
    rows = [
        "<table><tr><th>feature</th><th>kind</th><th>PSI</th><th>KS</th><th>JS</th><th>threshold</th>"
        "<th>drifted</th></tr>"
    ]
    for f in [*version.features, *([version.prediction] if version.prediction else [])]:
        rows.append(
            f"<tr{' class=drifted' if f.drifted else ''}><td>{_e(f.name)}</td><td>{f.kind}</td>"
            f"<td>{_n(f.scores.get('psi'))}</td><td>{_n(f.scores.get('ks'))}</td><td>{_n(f.scores.get('js'))}</td>"
            f"<td>{f.threshold:g}</td><td>{'yes' if f.drifted else 'no'}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _performance_table(live: WindowPerformance) -> str:
    cells = "".join(
        f"<tr><td>{_e(name)} (labelled rows)</td><td>{_n(value)}</td></tr>" for name, value in live.overall.items()
    )
    if live.estimated_overall is not None:
        estimate = _n(live.estimated_overall)
        cells += f"<tr><td>estimated accuracy (every row, from the probabilities)</td><td>{estimate}</td></tr>"
    return f"<table>{cells}</table>"


def _caption(f: FeatureDrift) -> str:
    scores = ", ".join(f"{method.upper()} {value:.3f}" for method, value in f.scores.items())
    return f"{f.name}: {scores or 'no score'}" + (" — drifted" if f.drifted else "")


# ----------------------------------------------------------------------------------------------- figures
def _distribution_figure(f: FeatureDrift) -> Figure:
    """Training shares against live shares on the profile's buckets: overlaid bars."""
    names, expected, actual = f.buckets, f.expected / max(float(f.expected.sum()), 1e-12), f.actual
    keep = list(range(len(names)))
    if f.kind != "numeric" and len(names) > MAX_BARS + 2:
        named = sorted(range(len(names) - 2), key=lambda i: -max(expected[i], actual[i]))[:MAX_BARS]
        keep = [*sorted(named), len(names) - 2, len(names) - 1]
    # Empty on both sides (no missing value, no other category): not drawn.
    keep = [i for i in keep if expected[i] > 0 or actual[i] > 0] or keep
    x = np.arange(len(keep))
    fig = Figure(figsize=(6.0, 3.0))
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.36, top=0.88)
    ax = fig.add_subplot()
    ax.bar(x, expected[keep], width=0.8, color=_TRAINING, alpha=0.75, label="training")
    ax.bar(x, actual[keep], width=0.5, color=_LIVE, alpha=0.7, label="live")
    labels = [_clip(names[i]) for i in keep]
    ax.set_xticks(x, labels, rotation=35 if len(keep) > 4 else 0, ha="right" if len(keep) > 4 else "center", fontsize=8)
    ax.set_ylabel("share of rows")
    title = f"{f.name}: PSI {_n(f.psi)}"
    for method, value in f.scores.items():
        if method != "psi":
            title += f", {method.upper()} {value:.3f}"
    ax.set_title(title, color="#c92a2a" if f.drifted else "#1f2933", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _heatmap(version: VersionDrift, windows: Windows) -> Figure:
    """PSI per feature (rows) and time window (columns); cells above the threshold in bold."""
    columns = [
        f
        for f in [*version.features, *([version.prediction] if version.prediction else [])]
        if f.window_psi is not None
    ]
    rows = [f.window_psi for f in columns if f.window_psi is not None]
    matrix = np.vstack(rows) if rows else np.full((1, windows.count), np.nan)
    names = [f.name for f in columns] or ["(none)"]
    high = max(0.5, 2 * max((f.threshold for f in columns), default=DEFAULT_PSI_THRESHOLD))
    height = 1.2 + 0.32 * len(names)
    fig = Figure(figsize=(max(6.0, 0.45 * windows.count + 2.5), height))
    fig.subplots_adjust(left=0.18, right=0.9, bottom=min(0.6, 1.1 / height), top=1 - min(0.25, 0.35 / height))
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(matrix)
    colours = mpl.colormaps["Reds"].with_extremes(bad="#f0f4f8")
    image = ax.imshow(masked, aspect="auto", cmap=colours, vmin=0.0, vmax=high, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="PSI", fraction=0.03, pad=0.01)
    ax.set_yticks(range(len(names)), [_clip(n) for n in names], fontsize=8)
    step = max(1, windows.count // 12)
    ticks = list(range(0, windows.count, step))
    ax.set_xticks(ticks, [windows.label(i) for i in ticks], rotation=35, ha="right", fontsize=8)
    if matrix.size <= 24 * 20:
        for (i, j), value in np.ndenumerate(matrix):
            if math.isnan(value):
                continue
            over = bool(columns) and value > columns[i].threshold
            ax.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if value > high * 0.6 else "black",
                fontweight="bold" if over else "normal",
            )
    return fig


def _performance_figure(live: WindowPerformance, windows: Windows) -> Figure:
    """The live metric(s) per window, with the estimated accuracy beside the real one when there is one."""
    x = np.arange(windows.count)
    fig = Figure(figsize=(max(6.0, 0.45 * windows.count + 2.0), 3.2))
    fig.subplots_adjust(left=0.1, right=0.9, bottom=0.3, top=0.9)
    ax = fig.add_subplot()
    for name, values in live.metrics.items():
        ax.plot(x, values, marker="o", label=f"{name} (labelled rows)", color=_LIVE if name != "mae" else "#7048e8")
    if live.estimated is not None:
        ax.plot(x, live.estimated, marker="s", linestyle="--", color=_ESTIMATE, label="estimated accuracy")
    if "accuracy" in live.metrics:
        ax.set_ylim(0.0, 1.02)
    ax.set_ylabel(" / ".join(live.metric_names))
    step = max(1, windows.count // 12)
    ticks = list(range(0, windows.count, step))
    ax.set_xticks(ticks, [windows.label(i) for i in ticks], rotation=35, ha="right", fontsize=8)
    counts = ax.twinx()
    counts.bar(x, live.labelled, color=_TRAINING, alpha=0.25, width=0.8)
    counts.set_ylabel("labelled rows", fontsize=8)
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    return fig


def _figure(fig: Figure, caption: str) -> str:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return (
        f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


# -------------------------------------------------------------------------------------------------- details
def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _clip(text: str, length: int = 24) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _duration(seconds: int) -> str:
    for unit, size in (("week", 7 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} s"
