"""The Dash app: ``hwbench dashboard --mlflow URI``.

Four pages over the sessions on a tracking server — systems at a glance, one test across systems with the
fleet spread, model performance on one system, trends over time — with filters by testbed, host, recipe and
test. Filters are also read from the URL query (``/trends?test=...&metric=...&host=...``), so a view can be
bookmarked or linked from a CI job. Sessions are re-read from MLflow at most every ``refresh_s`` seconds.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from dash import Dash, Input, Output, State, dcc, html

from pytest_hwbench.report.fleet import headline
from pytest_hwbench.report.fleet_data import SessionRecord, load_mlflow
from pytest_hwbench_dashboard import data as D
from pytest_hwbench_dashboard import figures as F

PAGES = (("/", "Systems"), ("/compare", "Compare systems"), ("/models", "Models"), ("/trends", "Trends"))
FILTERS = ("testbed", "host", "recipe", "test", "metric")
CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #222; }
header { background: #263238; color: white; padding: 10px 20px; display: flex; gap: 24px; align-items: center; }
header h1 { font-size: 20px; margin: 0 12px 0 0; }
header a { color: #cfd8dc; text-decoration: none; } header a:hover { color: white; }
.filters { display: flex; gap: 12px; padding: 10px 20px; background: #eceff1; flex-wrap: wrap; }
.filters > div { min-width: 180px; flex: 1; }
.page { padding: 10px 20px; }
table.systems { border-collapse: collapse; width: 100%; font-size: 14px; }
table.systems td, table.systems th { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }
.health-ok { color: #2e7d32; } .health-failing { color: #c62828; font-weight: bold; }
.health-stale, .health-incomplete { color: #ef6c00; }
.empty { color: #777; font-style: italic; padding: 20px; }
"""


class SessionSource:
    """Sessions from a loader, cached for ``refresh_s`` seconds (one MLflow search per refresh)."""

    def __init__(self, loader: Callable[[], list[SessionRecord]], refresh_s: float = 60.0) -> None:
        self._loader = loader
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._cached: list[SessionRecord] | None = None
        self._at = 0.0

    def sessions(self) -> list[SessionRecord]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._at > self._refresh_s:
                self._cached = self._loader()
                self._at = time.monotonic()
            return self._cached


def _graph(fig: Any, name: str) -> dcc.Graph:
    # Any: dash >= 3 types ``config`` as a TypedDict that a plain dict does not satisfy (dash 2 does not type it)
    config: Any = {**F.GRAPH_CONFIG, "toImageButtonOptions": {**F.GRAPH_CONFIG["toImageButtonOptions"],
                                                         "filename": f"hwbench-{name}"}}
    return dcc.Graph(figure=fig, config=config, id=f"fig-{name}", className="hwbench-figure")


def _empty(text: str) -> html.Div:
    return html.Div(text, className="empty")


def _options(values: Sequence[str]) -> list[dict[str, str]]:
    return [{"label": v, "value": v} for v in values]


def page_systems(sessions: list[SessionRecord]) -> list[Any]:
    rows = D.systems_overview(sessions)
    if not rows:
        return [_empty("No sessions for these filters.")]
    head = ["testbed", "host", "sessions", "last run", "verdict", "tests", "health", "kernel", "GPU driver", "BIOS"]
    body = [html.Tr([html.Td(r.testbed), html.Td(r.host), html.Td(r.sessions), html.Td(r.last_run),
                     html.Td(r.verdict, style={"color": F.VERDICT_COLORS.get(r.verdict, "#222")}),
                     html.Td(", ".join(f"{n} {v}" for v, n in r.counts.items())),
                     html.Td(r.health, className=f"health-{r.health}"), html.Td(r.kernel), html.Td(r.driver),
                     html.Td(r.bios)], className="system-row") for r in rows]
    return [html.H2("Systems at a glance"),
            html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(body)], className="systems"),
            _graph(F.overview_figure(rows), "systems")]


def _pick(sessions: list[SessionRecord], test: str | None, metric: str | None,
          want: Callable[[str, str], bool] | None = None) -> tuple[str | None, str | None]:
    tests = D.filter_options(sessions).tests
    test = test if test in tests else (tests[0] if tests else None)
    metrics = D.metrics_of(sessions, test)
    metric = metric if metric in metrics else (metrics[0] if metrics else None)
    return test, metric


def page_compare(sessions: list[SessionRecord], test: str | None, metric: str | None) -> list[Any]:
    test, metric = _pick(sessions, test, metric)
    if test is None or metric is None:
        return [_empty("No measured test for these filters.")]
    points = D.cross_system(sessions, test, metric)
    comps = D.fleet_spread(sessions, test, metric)
    notes = []
    for c in comps:
        lines: list[Any] = [html.B(f"{c.testbed}: "), headline(c)]
        if c.outlier and c.outlier.env_diff:
            lines += [html.Br(), f"environment of {c.outlier.host} vs the rest: "
                      + "; ".join(f"{ch.key}: {ch.baseline} -> {ch.current}" for ch in c.outlier.env_diff[:5])]
        notes.append(html.P(lines, className="fleet-note"))
    return [html.H2(f"Cross-system comparison: {test} · {metric}"),
            _graph(F.cross_system_figure(points, comps, test, metric), "compare"),
            html.Div(notes or [_empty("Fleet spread needs two or more hosts of one testbed.")])]


def page_models(sessions: list[SessionRecord], host: str | None, metric: str | None) -> list[Any]:
    hosts = sorted({s.host for s in sessions})
    candidates = [host] if host else hosts
    for h in candidates:
        points = D.model_points(sessions, h, metric if metric and metric.endswith("tok_s") else None)
        if points:
            return [html.H2(f"Model performance on {h}"),
                    _graph(F.model_figure(points, h), "models"),
                    _graph(F.model_bandwidth_figure(points, h), "models-per-gb"),
                    html.P("Per GB: tokens/s × model size is the rate at which the weights are read; on a "
                           "memory-bound decode it stays flat across sizes until the model stops fitting.")]
    return [_empty("No test with a model size (hwbench.extra['model_size_gb']) for these filters.")]


def page_trends(sessions: list[SessionRecord], test: str | None, metric: str | None) -> list[Any]:
    test, metric = _pick(sessions, test, metric)
    if test is None or metric is None:
        return [_empty("No measured test for these filters.")]
    series = D.trend(sessions, test, metric)
    unit, better = D.unit_and_better(sessions, test, metric)
    events = []
    for host, points in series.items():
        for p in points:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.time))
            if p.regression:
                events.append(html.Li(f"{when} {host}: {p.verdict} (run {p.run_id})", className="event-regression"))
            if p.env_changes:
                events.append(html.Li(f"{when} {host}: environment changed: "
                                      + "; ".join(str(c) for c in p.env_changes[:6]), className="event-env"))
    return [html.H2(f"Trends: {test} · {metric}"), _graph(F.trend_figure(series, metric, unit, better), "trends"),
            html.H3("Regressions and environment changes"), html.Ul(events or [html.Li("none")])]


def make_app(source: SessionSource, title: str = "hwbench") -> Dash:
    app = Dash(__name__, title=title, suppress_callback_exceptions=True, serve_locally=True)
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
    app.layout = html.Div([
        dcc.Location(id="url", refresh=False),
        html.Header([html.H1(title)] + [dcc.Link(name, href=path, id=f"nav-{name.split()[0].lower()}")
                                        for path, name in PAGES]),
        html.Div([html.Div([html.Label(f), dcc.Dropdown(id=f"f-{f}", placeholder=f"all {f}s" if f != "metric"
                                                        else "first metric", clearable=True)])
                  for f in FILTERS], className="filters"),
        dcc.Loading(html.Div(id="page", className="page"), type="dot"),
    ])

    @app.callback([Output(f"f-{f}", "options") for f in FILTERS[:4]] + [Output(f"f-{f}", "value") for f in FILTERS],
                  Input("url", "search"))
    def init_filters(search: str | None) -> list[Any]:
        sessions = source.sessions()
        opts = D.filter_options(sessions)
        query = dict(urllib.parse.parse_qsl((search or "").lstrip("?")))
        return [_options(opts.testbeds), _options(opts.hosts), _options(opts.recipes), _options(opts.tests),
                *[query.get(f) for f in FILTERS]]

    @app.callback(Output("f-metric", "options"), Input("f-test", "value"))
    def metric_options(test: str | None) -> list[dict[str, str]]:
        return _options(D.metrics_of(source.sessions(), test))

    @app.callback(Output("page", "children"), Input("url", "pathname"),
                  *[Input(f"f-{f}", "value") for f in FILTERS], State("url", "search"))
    def render(pathname: str | None, testbed: str | None, host: str | None, recipe: str | None,
               test: str | None, metric: str | None, search: str | None) -> list[Any]:
        # the metric dropdown drops a value its options do not hold yet; the URL's metric still counts
        metric = metric or dict(urllib.parse.parse_qsl((search or "").lstrip("?"))).get("metric")
        sessions = D.filter_sessions(source.sessions(), D.Filters(testbed, host, recipe, test))
        if pathname == "/compare":
            return page_compare(sessions, test, metric)
        if pathname == "/models":
            return page_models(sessions, host, metric)
        if pathname == "/trends":
            return page_trends(sessions, test, metric)
        return page_systems(sessions)

    return app


def serve(uri: str, experiment: str = "hwbench", *, host: str = "127.0.0.1", port: int = 8050,
          refresh_s: float = 60.0) -> int:
    source = SessionSource(lambda: load_mlflow(uri, experiment), refresh_s)
    source.sessions()  # fail now, with a clear message, if the server or experiment is not there
    app = make_app(source, title=f"hwbench · {experiment}")
    print(f"hwbench dashboard on http://{host}:{port}/ (MLflow {uri}, experiment {experiment})", flush=True)
    app.run(host=host, port=port, debug=False)
    return 0
