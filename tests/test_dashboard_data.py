"""The dashboard's data layer and figures, without a browser (the browser test is in test_team_server.py).

Sessions are run directories written like a session writes them; each page's data function is checked
against what was written, and each figure builder against the points it was given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hwbench.report.fleet_data import SessionRecord, load_run_dirs
from tests.fleet_helpers import fleet_dirs, metric, write_run

dash = pytest.importorskip("dash", reason="the dashboard extra is not installed (pip install -e '.[dashboard]')")

from pytest_hwbench_dashboard import data as D  # noqa: E402
from pytest_hwbench_dashboard import figures as F  # noqa: E402

COPY = "benchmarks/test_host.py::test_copy"
T0 = 1.78e9


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> list[SessionRecord]:
    root = tmp_path_factory.mktemp("dash")
    fleet_dirs(root / "old", {"a1": 20.0, "a2": 17.0}, sessions=2, testbed="tb-a", t0=T0)
    fleet_dirs(root / "new", {"a1": 20.0, "a2": 17.0}, sessions=2, testbed="tb-a", t0=T0 + 86400, seed=9,
               env={"a1": {"kernel": "6.1.0-21-amd64"}})
    sizes = {"tiny": 0.7, "mid": 4.9, "small": 2.0}
    tests = {f"benchmarks/test_llm.py::test_gen[{m}]": {"output_tok_s": metric([60 / s, 61 / s, 59 / s], "tok/s",
                                                                                "higher")} for m, s in sizes.items()}
    write_run(root / "b", host="b1", testbed="tb-b", tests=tests, started_at=T0 + 2 * 86400,
              extra={f"benchmarks/test_llm.py::test_gen[{m}]": {"model": m, "model_size_gb": s}
                     for m, s in sizes.items()},
              verdicts={"benchmarks/test_llm.py::test_gen[mid]": "FAIL"})
    return load_run_dirs([root / "old", root / "new", root / "b"])


def test_plugin_never_imports_the_dashboard() -> None:
    code = ("import sys, pytest_hwbench.plugin, pytest_hwbench.cli, pytest_hwbench.session\n"
            "from pytest_hwbench.cli import main\n"
            "print(sorted(m for m in sys.modules if m.startswith(('pytest_hwbench_dashboard', 'dash', 'plotly'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_filters(sessions: list[SessionRecord]) -> None:
    opts = D.filter_options(sessions)
    assert opts.testbeds == ("tb-a", "tb-b") and opts.hosts == ("a1", "a2", "b1") and opts.recipes == ("fleet",)
    assert COPY in opts.tests
    assert {s.host for s in D.filter_sessions(sessions, D.Filters(testbed="tb-a"))} == {"a1", "a2"}
    assert {s.host for s in D.filter_sessions(sessions, D.Filters(host="b1"))} == {"b1"}
    assert D.metrics_of(sessions, COPY) == ["copy_gb_s"]
    assert D.better_label("higher") == "↑ higher is better" and D.better_label("lower") == "↓ lower is better"


def test_systems_overview(sessions: list[SessionRecord]) -> None:
    rows = D.systems_overview(sessions, now=T0 + 2 * 86400 + 60)
    by_host = {r.host: r for r in rows}
    assert list(by_host) == ["a1", "a2", "b1"]
    assert by_host["a1"].sessions == 4 and by_host["a1"].kernel == "6.1.0-21-amd64"
    assert by_host["b1"].verdict == "FAIL" and by_host["b1"].health == "failing"
    assert by_host["b1"].counts == {"FAIL": 1, "PASS": 2}
    assert by_host["a2"].health == "ok"
    assert D.systems_overview(sessions, now=T0 + 30 * 86400)[0].health == "stale"
    fig = F.overview_figure(rows)
    assert {t.name for t in fig.data} == {"PASS", "FAIL"}


def test_cross_system_with_fleet_spread(sessions: list[SessionRecord]) -> None:
    points = D.cross_system(sessions, COPY, "copy_gb_s")
    assert [(p.testbed, p.host, p.sessions) for p in points] == [("tb-a", "a1", 3), ("tb-a", "a2", 3)]
    a1, a2 = points
    assert a1.median == pytest.approx(20.0, rel=0.02) and a1.ci[0] <= a1.median <= a1.ci[1]
    assert a2.median == pytest.approx(17.0, rel=0.02) and a1.better == "higher"
    comps = D.fleet_spread(sessions, COPY, "copy_gb_s")
    assert comps[0].outlier.host == "a2"
    fig = F.cross_system_figure(points, comps, COPY, "copy_gb_s")
    assert "higher is better" in fig.layout.yaxis.title.text
    assert "a2 slower" in fig.layout.annotations[0].text


def test_model_points(sessions: list[SessionRecord]) -> None:
    points = D.model_points(sessions, "b1")
    assert [(p.model, p.size_gb) for p in points] == [("tiny", 0.7), ("small", 2.0), ("mid", 4.9)]
    assert points[0].median == pytest.approx(60 / 0.7) and points[0].gb_s == pytest.approx(60.0)
    assert D.model_points(sessions, "a1") == []
    fig = F.model_figure(points, "b1")
    assert list(fig.data[0].x) == [0.7, 2.0, 4.9] and fig.layout.xaxis.title.text == "model size [GB]"
    assert "tokens/s × model GB" in F.model_bandwidth_figure(points, "b1").layout.yaxis.title.text


def test_model_points_from_the_gguf_benchmark(tmp_path: Path) -> None:
    """``benchmarks/test_gguf.py`` stores the model as ``extra["model"]`` (a dict with size_bytes and id)."""
    tests, extra = {}, {}
    for mid, size in (("qwen-0.5b-q4", 4.0e8), ("llama-3b-q4", 2.0e9)):
        tid = f"benchmarks/test_gguf.py::test_llama_bench[model={mid}]"
        tests[tid] = {"pp_tok_s": metric([900.0, 910.0], "tok/s", "higher"),
                      "tg_tok_s": metric([40.0 / size * 1e9, 41.0 / size * 1e9], "tok/s", "higher")}
        extra[tid] = {"model": {"id": mid, "size_bytes": size, "name": mid, "parameters": None}}
    write_run(tmp_path, host="h", testbed="t", tests=tests, extra=extra)
    points = D.model_points(load_run_dirs([tmp_path]), "h")
    assert [(p.metric, p.model, p.size_gb) for p in points] == [
        ("pp_tok_s", "qwen-0.5b-q4", 0.4), ("pp_tok_s", "llama-3b-q4", 2.0),
        ("tg_tok_s", "qwen-0.5b-q4", 0.4), ("tg_tok_s", "llama-3b-q4", 2.0)]
    assert [round(p.gb_s, 1) for p in points if p.metric == "tg_tok_s"] == [40.5, 40.5]


def test_trend_marks_env_changes_and_regressions(sessions: list[SessionRecord]) -> None:
    series = D.trend(sessions, COPY, "copy_gb_s")
    assert set(series) == {"a1", "a2"}
    a1 = series["a1"]
    assert len(a1) == 4 and [p.time for p in a1] == sorted(p.time for p in a1)
    changed = [p for p in a1 if p.env_changes]
    assert len(changed) == 1 and [str(c) for c in changed[0].env_changes] == ["kernel: 6.1.0-18-amd64 -> "
                                                                             "6.1.0-21-amd64"]
    assert not any(p.env_changes for p in series["a2"])
    gen = D.trend(sessions, "benchmarks/test_llm.py::test_gen[mid]", "output_tok_s")
    assert gen["b1"][0].regression and gen["b1"][0].verdict == "FAIL"
    fig = F.trend_figure(series, "copy_gb_s", "GB/s", "higher")
    assert any(a.text.startswith("env: a1: kernel") for a in fig.layout.annotations)
    bands = [t for t in fig.data if t.fill == "toself"]
    assert len(bands) == 2 and len(bands[0].x) == 8  # upper edge + lower edge of 4 sessions


def test_app_pages_render_without_a_browser(sessions: list[SessionRecord]) -> None:
    from pytest_hwbench_dashboard.app import (
        SessionSource,
        make_app,
        page_compare,
        page_models,
        page_systems,
        page_trends,
    )

    calls = []

    def loader() -> list[SessionRecord]:
        calls.append(1)
        return sessions

    source = SessionSource(loader, refresh_s=3600)
    make_app(source)
    assert source.sessions() is source.sessions() and len(calls) == 1  # cached between refreshes
    assert page_systems(sessions)[0].children == "Systems at a glance"
    assert "a2 is slower" in str(page_compare(sessions, COPY, "copy_gb_s"))
    assert "Model performance on b1" in str(page_models(sessions, None, None))
    assert "No test with a model size" in str(page_models(sessions, "a1", None))
    assert "environment changed: kernel" in str(page_trends(sessions, COPY, "copy_gb_s"))
    assert "No sessions" in str(page_systems([]))
