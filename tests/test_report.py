"""The report stage end to end: report.md/html, ``hwbench report``, ``compare``, ``rerun`` and ``export``.

Three real runs of a small synthetic suite (``report_helpers``) are shared by the module: A, a slowed run B
(``SLOWDOWN=1.5``: ``latency_ms`` 50 % worse, ``ops_s`` a third lower) and C, made by ``hwbench rerun A``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_hwbench.measure.metric import Metric
from pytest_hwbench.recipe.model import BaselinePolicy
from pytest_hwbench.report import compare as cmp
from pytest_hwbench.report.run_data import load_run
from tests.report_helpers import hwbench, manifest, run_suite, write_suite


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = write_suite(tmp_path_factory.mktemp("suite"))
    a, proc = run_suite(where, HWBENCH_TEST_API_TOKEN="s3cr3t-value")
    assert proc.returncode == 1, proc.stdout[-2000:]  # the SLO at concurrency=8 fails, on purpose
    b, _ = run_suite(where, mlflow=True, SLOWDOWN="1.5", HWBENCH_TEST_API_TOKEN="s3cr3t-value")
    rerun = hwbench("rerun", a, cwd=where, HWBENCH_TEST_API_TOKEN="s3cr3t-value")
    assert "-m pytest" in rerun.stdout, rerun.stdout + rerun.stderr
    c = next(p.parent for p in (where / "reports").glob("*/run.json")
             if (manifest(p.parent).get("rerun") or {}).get("rerun_of") == a.name)
    return {"where": where, "a": a, "b": b, "c": c}


# ---------------------------------------------------------------------------------------------- report

def test_report_files_and_decision_summary(runs: dict[str, Path]) -> None:
    a = runs["a"]
    md = (a / "report.md").read_text()
    html = (a / "report.html").read_text()
    pngs = sorted((a / "plots").glob("*.png"))
    assert len(pngs) >= 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    for link in (f"plots/{p.name}" for p in pngs):
        assert link in md
    # decision summary first: counts, the failing SLO with bound, observed and CI; the sweep; errors seen
    summary = md.split("## Tests")[0]
    assert "**1 FAIL**" in summary and "**5 PASS**" in summary
    assert "| FAIL | test_suite.py::test_serve[concurrency=8] | SLO | ttft_ms.p99 | < 30 ms |" in summary
    assert "concurrency=4 (first failing 8)" in summary and "ttft_ms.p99" in summary
    assert "| test_suite.py::test_serve[concurrency=8] | timeout 1 |" in summary
    assert "docs/metrics.md" in md and "python -m pytest" in md.replace(sys.executable, "python")
    # self-contained html: inline SVG, no script, no external reference
    assert html.count("<svg") == len(pngs) and "<script" not in html.lower()
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert "prefers-color-scheme: dark" in html and "var(--fg)" in html
    assert "s3cr3t-value" not in md + html + (a / "run.json").read_text()


def test_hwbench_report_regenerates(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / runs["a"].name
    shutil.copytree(runs["a"], copy)
    for name in ("report.md", "report.html"):
        (copy / name).unlink()
    shutil.rmtree(copy / "plots")
    proc = hwbench("report", copy, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (copy / "report.html").is_file() and (copy / "report.md").is_file() and any((copy / "plots").iterdir())


def test_report_of_a_killed_run_says_incomplete(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "killed"
    shutil.copytree(runs["a"], copy)
    (copy / "results.json").unlink()  # a killed run has only results.jsonl
    lines = (copy / "results.jsonl").read_text().splitlines()
    (copy / "results.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:50])  # torn last line
    assert hwbench("report", copy, cwd=tmp_path).returncode == 0
    md = (copy / "report.md").read_text()
    assert "incomplete" in md and md.count("\n### test_suite.py::") == 3


def test_report_on_a_bad_run_dir_is_a_clear_error(tmp_path: Path) -> None:
    proc = hwbench("report", tmp_path / "nope", cwd=tmp_path)
    assert proc.returncode == 2 and "no run directory" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{not json")
    proc = hwbench("report", tmp_path / "bad", cwd=tmp_path)
    assert proc.returncode == 2 and "run.json" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------- compare

def test_compare_unchanged_runs_exit_0(runs: dict[str, Path]) -> None:
    proc = hwbench("compare", runs["a"], runs["c"], cwd=runs["where"])
    assert proc.returncode == 0, proc.stdout
    assert "no regression" in proc.stdout


def test_compare_slowed_run_exit_1_naming_the_metrics(runs: dict[str, Path]) -> None:
    proc = hwbench("compare", runs["a"], runs["b"], cwd=runs["where"])
    assert proc.returncode == cmp.EXIT_REGRESSION, proc.stdout
    assert "REGRESSED: test_suite.py::test_slow latency_ms, test_suite.py::test_slow ops_s" in proc.stdout
    doc = json.loads(hwbench("compare", runs["a"], runs["b"], "--format", "json", cwd=runs["where"]).stdout)
    rows = {(r["test"], r["metric"]): r for r in doc["rows"]}
    slow = rows[("test_suite.py::test_slow", "latency_ms")]
    assert slow["status"] == "FAIL" and slow["change"] == pytest.approx(0.5, abs=0.02)
    assert 0.1 < slow["change_ci"][0] < 0.5 < slow["change_ci"][1] and doc["exit_code"] == 1
    assert rows[("test_suite.py::test_slow", "ops_s")]["better"] == "higher"
    md = hwbench("compare", runs["a"], runs["b"], "--format", "md", cwd=runs["where"]).stdout
    assert md.startswith("# hwbench compare") and "| FAIL | test_suite.py::test_slow | latency_ms |" in md


def test_compare_shows_rows_present_on_one_side(runs: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "partial"
    shutil.copytree(runs["c"], copy)
    doc = json.loads((copy / "results.json").read_text())
    doc["tests"] = [t for t in doc["tests"] if "test_noisy" not in t["test_id"]]
    (copy / "results.json").write_text(json.dumps(doc))
    proc = hwbench("compare", runs["a"], copy, "--format", "json", cwd=tmp_path)
    rows = json.loads(proc.stdout)["rows"]
    assert [r["status"] for r in rows if r["test"] == "test_suite.py::test_noisy"] == ["ONLY_A"]
    assert proc.returncode == 0


def test_compare_usage_errors_exit_2(runs: dict[str, Path], tmp_path: Path) -> None:
    proc = hwbench("compare", runs["a"], tmp_path / "missing", cwd=tmp_path)
    assert proc.returncode == cmp.EXIT_USAGE and "neither a run directory" in proc.stderr
    assert hwbench("compare", runs["a"], cwd=tmp_path).returncode == cmp.EXIT_USAGE  # argparse


def _metric(name: str, trials: list[float], unit: str = "ms") -> object:
    m = Metric(name, unit=unit, better="higher" if "/" in unit else "lower")
    for i, v in enumerate(trials):
        m.add(np.array([v]), i)
    return m.result()


def _side(label: str, metrics: dict[str, object]) -> cmp.Side:
    return cmp.Side(label=label, kind="run", tests={"t::x": metrics},  # type: ignore[dict-item]
                    sessions={"t::x": {n: [list(m.trial_values)] for n, m in metrics.items()}})  # type: ignore[attr-defined]


def test_compare_exit_3_for_inconclusive_under_fail_policy() -> None:
    a = _side("A", {"lat": _metric("lat", [10, 13, 8, 11, 9])})
    b = _side("B", {"lat": _metric("lat", [11, 8, 13, 10, 9.5])})
    warn = cmp.compare_sides(a, b, BaselinePolicy(tolerance=0.05, inconclusive="warn"), "test")
    assert [r.status for r in warn.rows] == ["INCONCLUSIVE"] and warn.exit_code == cmp.EXIT_OK
    fail = cmp.compare_sides(a, b, BaselinePolicy(tolerance=0.05, inconclusive="fail"), "test")
    assert fail.exit_code == cmp.EXIT_INCONCLUSIVE


def test_compare_missing_metric_is_a_regression_like_the_gate() -> None:
    a = _side("A", {"lat": _metric("lat", [10, 10.1, 9.9]), "tput": _metric("tput", [5, 5, 5], "op/s")})
    b = _side("B", {"lat": _metric("lat", [10, 10.1, 9.9])})
    res = cmp.compare_sides(a, b, BaselinePolicy(), "test")
    status = {r.metric: r.status for r in res.rows}
    assert status["tput"] == "MISSING_METRIC" and status["lat"] in ("PASS", "INCONCLUSIVE")
    assert res.exit_code == cmp.EXIT_REGRESSION


def test_compare_a_baseline_testbed_with_a_run(runs: dict[str, Path], tmp_path: Path) -> None:
    where = runs["where"]
    saved, _ = run_suite(where, "--hwbench-save-baseline", "--hwbench-testbed", "tb1",
                         "--hwbench-baseline-dir", str(tmp_path / "baselines"), "-k", "slow")
    proc = hwbench("compare", "tb1", runs["b"], "--baseline-dir", tmp_path / "baselines", cwd=where)
    assert proc.returncode == 1 and "latency_ms" in proc.stdout, proc.stdout + proc.stderr
    files = list((tmp_path / "baselines" / "tb1").glob("*.json"))
    proc = hwbench("compare", files[0], runs["a"], cwd=where)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert saved.is_dir()


# ----------------------------------------------------------------------------------------------- rerun

def test_rerun_reproduces_tests_and_settings(runs: dict[str, Path]) -> None:
    a, c = manifest(runs["a"]), manifest(runs["c"])
    assert c["rerun"]["rerun_of"] == a["run_id"]
    assert c["rerun"]["node_ids"] == a["rerun"]["node_ids"] and len(a["rerun"]["node_ids"]) == 6
    assert c["rerun"]["options"] == a["rerun"]["options"]
    assert c["recipe"]["sha256"] == a["recipe"]["sha256"]
    assert [t.test_id for t in load_run(runs["c"]).tests] == [t.test_id for t in load_run(runs["a"]).tests]
    # secrets: the name is recorded, never the value
    assert a["rerun"]["secret_env"] == ["HWBENCH_TEST_API_TOKEN"]
    assert "s3cr3t-value" not in json.dumps(a)
    assert a["command_line"][1:3] == ["-m", "pytest"]


def test_rerun_command_runs_as_recorded(runs: dict[str, Path]) -> None:
    argv = manifest(runs["a"])["rerun"]["argv"]
    assert argv[1:3] == ["-m", "pytest"] and argv[-1] == "test_suite.py::test_noisy"
    proc = subprocess.run([*argv, "--collect-only", "-q"], cwd=runs["where"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "6 tests collected" in proc.stdout, proc.stdout + proc.stderr


def test_rerun_without_the_secret_names_it(runs: dict[str, Path]) -> None:
    proc = hwbench("rerun", runs["a"], "--dry-run", cwd=runs["where"], HWBENCH_TEST_API_TOKEN="")
    assert proc.returncode == 2 and "HWBENCH_TEST_API_TOKEN" in proc.stderr and "Traceback" not in proc.stderr


def test_rerun_of_a_changed_recipe_uses_the_recorded_text(runs: dict[str, Path], tmp_path: Path) -> None:
    from pytest_hwbench.report.rerun import plan

    recipe = runs["where"] / "recipe.yaml"
    original = recipe.read_text()
    try:
        recipe.write_text(original.replace("repetitions: 5", "repetitions: 2"))
        argv, env, _cwd, tmp = plan(runs["a"], environ={"HWBENCH_TEST_API_TOKEN": "x"})
        assert tmp is not None and Path(tmp).read_text() == original
        assert argv[argv.index("--recipe") + 1] == tmp and env["HWBENCH_RERUN_OF"] == runs["a"].name
        Path(tmp).unlink()
    finally:
        recipe.write_text(original)


# ---------------------------------------------------------------------------------------------- export

def test_export_prometheus_parses_with_prometheus_client(runs: dict[str, Path], tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    proc = hwbench("export", runs["a"], "--format", "prometheus", "--textfile-dir", tmp_path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    families = {f.name: f for f in text_string_to_metric_families(proc.stdout)}
    assert {"hwbench_run_info", "hwbench_metric", "hwbench_metric_ci_lower", "hwbench_test_verdict"} <= set(families)
    p50 = [s for s in families["hwbench_metric"].samples
           if s.labels["test"] == "test_suite.py::test_slow" and s.labels["metric"] == "latency_ms"
           and s.labels["stat"] == "p50"]
    assert len(p50) == 1 and p50[0].value == pytest.approx(5.0, rel=0.02) and p50[0].labels["unit"] == "ms"
    fail = [s for s in families["hwbench_test_verdict"].samples if s.value == 1 and s.labels["verdict"] == "FAIL"]
    assert [s.labels["test"] for s in fail] == ["test_suite.py::test_serve[concurrency=8]"]
    textfile = (tmp_path / "hwbench.prom").read_text()
    assert list(text_string_to_metric_families(textfile)) and not list(tmp_path.glob("*.tmp*"))


def test_export_bmf_has_value_and_ci_bounds(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bmf.json"
    assert hwbench("export", runs["a"], "--format", "bmf", "-o", out, cwd=tmp_path).returncode == 0
    doc = json.loads(out.read_text())
    m = doc["test_suite.py::test_slow"]["latency_ms"]
    assert m["lower_value"] <= m["value"] <= m["upper_value"]
    assert set(doc) == {t.test_id for t in load_run(runs["a"]).measured()}


def test_export_pytest_benchmark_is_read_by_pytest_benchmark_compare(runs: dict[str, Path], tmp_path: Path) -> None:
    a, b = tmp_path / "0001_a.json", tmp_path / "0002_b.json"
    assert hwbench("export", runs["a"], "--format", "pytest-benchmark", "-o", a, cwd=tmp_path).returncode == 0
    assert hwbench("export", runs["b"], "--format", "pytest-benchmark", "-o", b, cwd=tmp_path).returncode == 0
    doc = json.loads(a.read_text())
    names = {x["name"] for x in doc["benchmarks"]}
    assert "test_slow:latency_ms" in names and not any(n.endswith(":req_s") for n in names)  # time metrics only
    slow = next(x for x in doc["benchmarks"] if x["name"] == "test_slow:latency_ms")
    assert slow["stats"]["median"] == pytest.approx(0.005, rel=0.02) and slow["stats"]["rounds"] == 200
    proc = subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", str(a), str(b),
                           "--columns", "min,median,max,rounds"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "test_slow:latency_ms" in proc.stdout and "0001_a" in proc.stdout and "0002_b" in proc.stdout


# --------------------------------------------------------------------------------------------- browser

def test_report_html_in_headless_chromium(runs: dict[str, Path]) -> None:
    """Open report.html from file:// in Chromium (fresh profile): every plot renders with a real size, the page
    makes no request but for itself, dark mode switches the colours; full-page screenshots of both are kept
    as CI artifacts (``reports/screenshots/``)."""
    from tests.browser_helpers import chromium, full_page_screenshot, requested_urls, screenshot_dir

    report = runs["a"] / "report.html"
    url = report.resolve().as_uri()
    html = report.read_text()
    probe = ("return {bg: getComputedStyle(document.body).backgroundColor, plots: "
             "[...document.querySelectorAll('figure.plot svg')].map(s => {"
             "const r = s.getBoundingClientRect(); "
             "return {w: r.width, h: r.height, marks: s.querySelectorAll('path, use, line, polyline').length}})}")
    seen: dict[str, dict] = {}
    requests: list[str] = []
    with chromium(network_log=True) as driver:
        for scheme in ("light", "dark"):
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                                   {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
            requested_urls(driver)  # drop what the browser's own start page loaded
            driver.get(url)
            seen[scheme] = driver.execute_script(probe)
            requests += requested_urls(driver)
            suffix = "" if scheme == "light" else "-dark"
            full_page_screenshot(driver, runs["a"] / f"report-screenshot{suffix}.png")
    light, dark = seen["light"], seen["dark"]
    assert len(light["plots"]) == html.count("<svg") >= 4
    for plot in light["plots"]:
        assert plot["w"] > 200 and plot["h"] > 100 and plot["marks"] > 10, plot
    assert requests and set(requests) == {url}, f"the report fetched something: {requests}"
    assert light["bg"] != dark["bg"]
    for name in ("report-screenshot.png", "report-screenshot-dark.png"):
        shot = runs["a"] / name
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        shutil.copy(shot, screenshot_dir() / name)


def test_compare_a_session_fetched_from_mlflow(runs: dict[str, Path]) -> None:
    """B was logged to MLflow (sqlite under reports/); ``mlflow:host=...`` finds it by its host tag."""
    host = manifest(runs["b"])["fingerprint"]["hostname"]
    proc = hwbench("compare", runs["a"], f"mlflow:host={host}", cwd=runs["where"])
    assert proc.returncode == 1 and "latency_ms" in proc.stdout, proc.stdout + proc.stderr
    assert f"run {runs['b'].name}" in proc.stdout
    proc = hwbench("compare", runs["a"], "mlflow:host=no-such-box", cwd=runs["where"])
    assert proc.returncode == 2 and "0 logged session(s)" in proc.stderr and "Traceback" not in proc.stderr
