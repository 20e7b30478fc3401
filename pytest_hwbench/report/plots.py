"""The report's plots, drawn once with matplotlib and written twice: PNG beside ``report.md``, SVG inline in
``report.html``.

Why one drawing serves both: the figure is drawn with two placeholder colours — a near-black foreground and a
light-grey grid — on a transparent background. The PNG is saved on white, where those placeholders are just
the light theme. In the SVG text the placeholders are replaced by CSS variables (``var(--fg)``,
``var(--grid)``), which the HTML page sets per ``prefers-color-scheme``; so the same inline SVG reads in light
and in dark mode, with no JavaScript. Data colours are mid-tones that read on both backgrounds.

Large sample sets are drawn from at most ``ECDF_POINTS`` evenly spaced quantiles: the curve is the same to the
eye and the SVG stays small however many requests a run made.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.measure.metric import MetricResult

FG = "#1a1b1c"      # placeholder: text, axes, ticks  -> var(--fg)
GRID = "#d0d1d2"    # placeholder: grid lines         -> var(--grid)
PALETTE = ("#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4")
ECDF_POINTS = 800
#: Metrics drawn first in a test's distribution figure (LLM serving: TTFT, ITL, TPOT, end-to-end).
PREFERRED = ("ttft_ms", "itl_ms", "tpot_ms", "e2el_ms", "latency_from_intended_ms", "latency_ms", "latency_us")
MAX_PANELS = 4
TIME_UNITS = ("ns", "us", "µs", "ms", "s")


@dataclass(frozen=True)
class Plot:
    """A figure of the report: file stem, caption, and how to draw it (called once, lazily)."""

    key: str
    caption: str
    draw: Callable[[], object]  # -> matplotlib Figure


@dataclass(frozen=True)
class Rendered:
    png: bytes
    svg: str


def render(plot: Plot) -> Rendered:
    """Draw ``plot`` once; return the PNG (light, white background) and the themable inline SVG."""
    import matplotlib.pyplot as plt

    with plt.rc_context(_rc(plot.key)):  # type: ignore[arg-type]  # the stubs want each rc key as a Literal
        fig = plot.draw()
        try:
            png, svg = io.BytesIO(), io.StringIO()
            fig.savefig(png, format="png", dpi=100, facecolor="white")  # type: ignore[attr-defined]
            fig.savefig(svg, format="svg", transparent=True)  # type: ignore[attr-defined]
        finally:
            plt.close(fig)  # type: ignore[arg-type]
    return Rendered(png=png.getvalue(), svg=_themable(svg.getvalue()))


def _rc(salt: str) -> dict[str, object]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    return {"text.color": FG, "axes.labelcolor": FG, "axes.edgecolor": FG, "xtick.color": FG, "ytick.color": FG,
            "axes.titlecolor": FG, "grid.color": GRID, "axes.grid": True, "grid.linewidth": 0.6,
            "axes.prop_cycle": matplotlib.cycler(color=list(PALETTE)),  # type: ignore[attr-defined]  # runtime re-export
            "figure.facecolor": "none",
            "axes.facecolor": "none", "savefig.facecolor": "none", "legend.framealpha": 0.0,
            "legend.labelcolor": FG, "svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 9,
            "axes.spines.top": False, "axes.spines.right": False}


def _themable(svg: str) -> str:
    """Inline-ready SVG: no XML prolog, DOCTYPE or RDF metadata block (it names external vocabularies),
    placeholder colours replaced by CSS variables."""
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    for placeholder, var in ((FG, "var(--fg)"), (GRID, "var(--grid)")):
        svg = svg.replace(placeholder, var).replace(placeholder.upper(), var)
    return svg


# ------------------------------------------------------------------------------------------- figures

def ecdf_points(values: np.ndarray, limit: int = ECDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(x, F(x)) of the empirical CDF, thinned to at most ``limit`` points by quantile."""
    import numpy as np
    x = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    n = x.size
    if n == 0:
        return x, x
    y = np.arange(1, n + 1) / n
    if n > limit:
        idx = np.unique(np.linspace(0, n - 1, limit).round().astype(int))
        x, y = x[idx], y[idx]
    return x, y


def distribution_plot(key: str, title: str, samples: dict[str, np.ndarray],
                      metrics: dict[str, MetricResult]) -> Plot | None:
    """ECDF panels of a test's raw samples: the LLM latency metrics first, then the others; p50 and p99
    marked. None when no metric has two or more samples."""
    names = [n for n in PREFERRED if samples.get(n) is not None and samples[n].size > 1]
    names += sorted(n for n, v in samples.items() if n not in names and v.size > 1)
    names = names[:MAX_PANELS]
    if not names:
        return None

    def draw() -> object:
        import matplotlib.pyplot as plt
        import numpy as np

        fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names) + 0.6, 2.8), squeeze=False)
        for i, (ax, name) in enumerate(zip(axes[0], names, strict=True)):
            x, y = ecdf_points(samples[name])
            color = PALETTE[i % len(PALETTE)]
            ax.step(x, y, where="post", color=color, linewidth=1.4)
            unit = metrics[name].unit if name in metrics else ""
            for q, style in ((0.5, "--"), (0.99, ":")):
                v = float(np.quantile(samples[name], q))
                ax.axvline(v, color=FG, linestyle=style, linewidth=0.8)
            ax.set_title(f"{name}  (n={samples[name].size})", fontsize=9)
            ax.set_xlabel(unit or name)
            if x.size and x[0] > 0 and x[-1] / x[0] > 50:
                ax.set_xscale("log")
            ax.set_ylim(0, 1.02)
            if i == 0:
                ax.set_ylabel("fraction ≤ x  (-- p50, ··· p99)")
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return fig

    return Plot(key=key, caption=f"Distribution of the raw samples (ECDF): {', '.join(names)}", draw=draw)


def trials_plot(key: str, title: str, metrics: dict[str, MetricResult],
                sessions: Mapping[str, Sequence[Sequence[float]]]) -> Plot | None:
    """Per metric, each stored baseline session's per-trial values, then this run's (one dot per trial,
    the median as a bar): a shift of this run against the spread of the sessions is what the gate judges."""
    names = [n for n in sorted(metrics) if sessions.get(n)][:MAX_PANELS]
    if not names:
        return None

    def draw() -> object:
        import matplotlib.pyplot as plt
        import numpy as np

        most = max(len(sessions[n]) for n in names)
        fig, axes = plt.subplots(1, len(names), figsize=((0.5 * most + 1.6) * len(names) + 0.6, 2.8),
                                 squeeze=False)
        for ax, name in zip(axes[0], names, strict=True):
            groups = [(f"s{i + 1}", [v for v in s if math.isfinite(v)], PALETTE[0])
                      for i, s in enumerate(sessions[name])]
            groups.append(("this run", [v for v in metrics[name].trial_values if math.isfinite(v)], PALETTE[1]))
            for pos, (_, vals, color) in enumerate(groups):
                jitter = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else np.zeros(len(vals))
                ax.scatter(pos + jitter, vals, color=color, s=14, zorder=3)
                if vals:
                    ax.hlines(float(np.median(vals)), pos - 0.25, pos + 0.25, color=color, linewidth=2)
            ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=7)
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.set_title(name, fontsize=9)
            ax.set_ylabel(metrics[name].unit)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        return fig

    return Plot(key=key, caption="Per-trial values: stored baseline sessions s1… (oldest first) vs this run "
                                 "(bar = median)", draw=draw)


@dataclass(frozen=True)
class SweepSeries:
    """What a sweep plot needs: loads, throughput medians and latency p99 per point, SLO outcome per point."""

    load_param: str
    loads: Sequence[float]
    throughput_name: str
    throughput_unit: str
    throughput: Sequence[float | None]
    latency_name: str | None
    latency_unit: str
    latency_p99: Sequence[float | None]
    slo_ok: Sequence[bool]
    knee: float | None
    max_sustainable: float | None
    has_slo: bool


def sweep_plot(key: str, title: str, s: SweepSeries) -> Plot:
    """Throughput (left axis) and p99 latency (right axis) against load, with the knee and the SLO limit."""

    def draw() -> object:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 3.4))
        loads = list(s.loads)
        tput = [math.nan if v is None else v for v in s.throughput]
        ax.plot(loads, tput, marker="o", color=PALETTE[0], label=f"{s.throughput_name} (median)")
        bad = [(x, y) for x, y, ok in zip(loads, tput, s.slo_ok, strict=True) if not ok]
        if s.has_slo and bad:
            ax.scatter(*zip(*bad, strict=True), marker="x", color=PALETTE[3], s=60, zorder=4,  # type: ignore[misc]
                       label="SLO missed")  # (x, y) pairs unzip to exactly x and y; mypy cannot count them
        ax.set_xlabel(s.load_param)
        ax.set_ylabel(f"{s.throughput_name} [{s.throughput_unit}]", color=PALETTE[0])
        handles, labels = ax.get_legend_handles_labels()
        if s.latency_name:
            ax2 = ax.twinx()
            ax2.spines["right"].set_visible(True)
            ax2.grid(False)
            lat = [math.nan if v is None else v for v in s.latency_p99]
            ax2.plot(loads, lat, marker="s", linestyle="--", color=PALETTE[1], label=f"{s.latency_name}")
            ax2.set_ylabel(f"{s.latency_name} [{s.latency_unit}]", color=PALETTE[1])
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if s.knee is not None:
            line = ax.axvline(s.knee, color=FG, linestyle=":", linewidth=1.2)
            handles.append(line)
            labels.append(f"throughput knee ({s.knee:.3g})")
        if s.has_slo:
            hi = max(loads) if loads else 0
            if s.max_sustainable is not None:
                span = ax.axvspan(min(loads), s.max_sustainable, color=PALETTE[2], alpha=0.12)
                handles.append(span)
                labels.append(f"max load under SLO ({s.max_sustainable:g})")
            elif loads:
                span = ax.axvspan(min(loads), hi, color=PALETTE[3], alpha=0.08)
                handles.append(span)
                labels.append("SLOs fail at the lowest load")
        if len(set(loads)) > 2 and min(loads) > 0 and max(loads) / min(loads) >= 8:
            ax.set_xscale("log", base=2)
            ax.set_xticks(loads, [f"{v:g}" for v in loads])
        ax.legend(handles, labels, fontsize=7, loc="best")
        ax.set_title(title, fontsize=9)
        fig.tight_layout()
        return fig

    return Plot(key=key, caption=f"{s.throughput_name} and {s.latency_name or 'latency'} vs {s.load_param}", draw=draw)
