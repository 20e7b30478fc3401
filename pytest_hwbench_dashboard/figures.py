"""Plotly figures for the dashboard pages, built from the data layer's records.

Every value axis says which direction is better; every figure carries Plotly's modebar, whose camera button
downloads it as PNG (``GRAPH_CONFIG``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from pytest_hwbench.report.fleet import FleetComparison
from pytest_hwbench_dashboard.data import ModelPoint, SystemPoint, SystemRow, TrendPoint, better_label

#: dcc.Graph config: the modebar always shown, its download button saving a PNG.
GRAPH_CONFIG: dict[str, Any] = {"displayModeBar": True, "displaylogo": False, "showSendToCloud": False,
                "modeBarButtonsToRemove": ["sendDataToCloud"],
                "toImageButtonOptions": {"format": "png", "scale": 2, "filename": "hwbench"}}
VERDICT_COLORS = {"PASS": "#2e7d32", "STALE": "#66bb6a", "NO_BASELINE": "#90a4ae", "SKIP": "#cfd8dc",
                  "WARN": "#f9a825", "INCONCLUSIVE": "#ffb300", "FAIL": "#c62828", "ERROR": "#6a1b9a"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", margin={"l": 70, "r": 30, "t": 60, "b": 60},
                      legend={"orientation": "h", "y": -0.18})
    return fig


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def overview_figure(rows: Sequence[SystemRow]) -> go.Figure:
    """Verdicts of each host's newest session, stacked."""
    fig = go.Figure()
    labels = [f"{r.host} ({r.testbed})" for r in rows]
    verdicts = [v for v in VERDICT_COLORS if any(v in r.counts for r in rows)]
    for v in verdicts:
        fig.add_bar(name=v, x=labels, y=[r.counts.get(v, 0) for r in rows], marker_color=VERDICT_COLORS[v])
    fig.update_layout(barmode="stack", yaxis_title="tests in the latest session")
    return _layout(fig, "Latest verdicts per system")


def cross_system_figure(points: Sequence[SystemPoint], comparisons: Sequence[FleetComparison], test_id: str,
                        metric: str) -> go.Figure:
    fig = go.Figure()
    testbeds = sorted({p.testbed for p in points})
    outliers = {c.outlier.host for c in comparisons if c.outlier}
    for i, tb in enumerate(testbeds):
        mine = [p for p in points if p.testbed == tb]
        fig.add_trace(go.Bar(
            name=tb, x=[p.host for p in mine], y=[p.median for p in mine],
            marker_color=PALETTE[i % len(PALETTE)],
            marker_line={"color": ["#c62828" if p.host in outliers else "rgba(0,0,0,0)" for p in mine],
                         "width": 3},
            error_y={"type": "data", "symmetric": False, "array": [p.ci[1] - p.median for p in mine],
                     "arrayminus": [p.median - p.ci[0] for p in mine]},
            hovertemplate="%{x}: %{y:.4g} (%{customdata} sessions)<extra>" + tb + "</extra>",
            customdata=[p.sessions for p in mine]))
    unit = points[0].unit if points else ""
    better = points[0].better if points else "lower"
    fig.update_layout(yaxis_title=f"{metric} [{unit}]  {better_label(better)}", xaxis_title="host")
    notes = []
    for c in comparisons:
        s = f"{c.testbed}: ICC {c.icc:.2f}" if c.icc is not None else f"{c.testbed}: ICC -"
        s += f", best/worst {c.best_worst_ratio:.3f}"
        if c.outlier:
            s += f", {c.outlier.host} {c.outlier.direction} ({(c.outlier.ratio - 1) * 100:+.1f} %)"
        notes.append(s)
    if notes:
        fig.add_annotation(text="<br>".join(notes), xref="paper", yref="paper", x=1, y=1.12, showarrow=False,
                           align="right", font={"size": 11})
    return _layout(fig, f"{test_id} · {metric} across systems (median of the last sessions, 95 % CI)")


def model_figure(points: Sequence[ModelPoint], host: str) -> go.Figure:
    fig = go.Figure()
    metrics = sorted({p.metric for p in points})
    for i, m in enumerate(metrics):
        mine = [p for p in points if p.metric == m]
        fig.add_trace(go.Scatter(
            name=m, x=[p.size_gb for p in mine], y=[p.median for p in mine], mode="lines+markers+text",
            text=[p.model for p in mine], textposition="top center", line={"color": PALETTE[i % len(PALETTE)]},
            error_y={"type": "data", "symmetric": False, "array": [p.ci[1] - p.median for p in mine],
                     "arrayminus": [p.median - p.ci[0] for p in mine]}))
    fig.update_layout(xaxis_title="model size [GB]", yaxis_title=f"tokens/s  {better_label('higher')}")
    return _layout(fig, f"Model performance on {host}: tokens/s by model size")


def model_bandwidth_figure(points: Sequence[ModelPoint], host: str) -> go.Figure:
    fig = go.Figure()
    fig.add_bar(x=[f"{p.model} ({p.size_gb:g} GB)" for p in points], y=[p.gb_s for p in points],
                marker_color=PALETTE[0], name="tokens/s × GB")
    fig.update_layout(xaxis_title="model", yaxis_title=f"tokens/s × model GB [GB/s]  {better_label('higher')}")
    return _layout(fig, f"Per GB on {host}: tokens/s × model size (weights streamed per second)")


def trend_figure(series: Mapping[str, Sequence[TrendPoint]], metric: str, unit: str, better: str) -> go.Figure:
    fig = go.Figure()
    marks: list[tuple[float, str]] = []
    for i, (host, points) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        xs = [_iso(p.time) for p in points]
        # the 95 % CI band: upper edge forward, lower edge back, filled
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=[p.ci[1] for p in points] + [p.ci[0] for p in points][::-1],
                                 fill="toself", fillcolor=color, opacity=0.18, line={"width": 0},
                                 hoverinfo="skip", showlegend=False, name=f"{host} CI"))
        fig.add_trace(go.Scatter(x=xs, y=[p.median for p in points], mode="lines+markers", name=host,
                                 line={"color": color}, customdata=[p.run_id for p in points],
                                 hovertemplate="%{x}<br>%{y:.4g}<br>run %{customdata}<extra>" + host + "</extra>"))
        reg = [p for p in points if p.regression]
        if reg:
            fig.add_trace(go.Scatter(x=[_iso(p.time) for p in reg], y=[p.median for p in reg], mode="markers",
                                     marker={"symbol": "x", "size": 14, "color": "#c62828"},
                                     name=f"{host}: regression / failed", hovertext=[p.verdict for p in reg]))
        for p in points:
            if p.env_changes:
                marks.append((p.time, f"{host}: " + "; ".join(str(c) for c in p.env_changes[:2])
                               + (f" (+{len(p.env_changes) - 2})" if len(p.env_changes) > 2 else "")))
    for j, (t, text) in enumerate(marks):
        fig.add_shape(type="line", x0=_iso(t), x1=_iso(t), yref="paper", y0=0, y1=1,
                      line={"dash": "dot", "color": "#555", "width": 1})
        fig.add_annotation(x=_iso(t), yref="paper", y=1 - 0.07 * (j % 4), text="env: " + text, showarrow=False,
                           xanchor="left", font={"size": 10}, bgcolor="rgba(255,255,255,0.8)")
    fig.update_layout(xaxis_title="session start (UTC)", yaxis_title=f"{metric} [{unit}]  {better_label(better)}")
    return _layout(fig, f"{metric} over time (median and 95 % CI per session)")
