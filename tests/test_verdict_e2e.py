"""Issue #8 "done when", end to end: the gate against the reference LLM server on a loaded machine.

A background process keeps one core busy half the time for the whole test. Three sessions are saved as the
baseline history, then ten unchanged runs must give no FAIL, and a run whose server answers with a 15 %
longer time to first token must FAIL on ``ttft_ms`` with the full failure text (both medians, the change and
its CI, the tolerance, the baseline file, testbed, sessions and commits, and the environment diff).
Plus: an external server's self-description is part of the environment, so an upgrade behind the same
URL shows in the diff.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
from pytest_hwbench.services.self_description import describe_server

TEST_FILE = """
import pytest
from pytest_hwbench.workloads.engine import LoadSpec
from pytest_hwbench.workloads.llm_bench import llm_settings, run_llm_load, trial_prompts

@pytest.mark.hwbench(service="llm")
def test_llm_latency(hwbench, hwbench_endpoint):
    s = llm_settings(hwbench)
    prompts = trial_prompts(hwbench, s, count=s.warmup_requests + s.requests)
    run_llm_load(hwbench, hwbench_endpoint, settings=s, prompts=prompts, max_tokens=s.output_tokens,
                 load=LoadSpec.closed(1, requests=s.requests, warmup_requests=s.warmup_requests))
"""

RECIPE = """
version: 1
name: e2e
repetitions: 3
services:
  llm:
    kind: reference
    backend: process
    ttft_ms: ${E2E_TTFT_MS:-100}
    itl_ms: 2
    output_tokens: 4
    capacity: 4
    seed: 0
baseline:
  tolerance: 0.05
settings:
  llm:
    api: completions
    prompt_tokens: 32
    output_tokens: 4
    requests: 4
    warmup_requests: 1
    self_check: warn
    # a 100 ms TTFT, so that the few ms a loaded machine adds to any request stay small against a 15 % change;
    # the gate, not the load generator's self-check, is under test: on a shared 2-core box (plus the
    # half-busy core) the event loop lags past the default 10 ms, which would flag every run client-bound
    self_check_limits: {max_loop_lag_p99_ms: 200, max_cpu_fraction: 1.0}
"""

BUSY_HALF_A_CORE = """
import time
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < 0.01:
        pass
    time.sleep(0.01)
"""


@pytest.fixture
def half_busy_core() -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-c", BUSY_HALF_A_CORE])
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _results(pytester: pytest.Pytester) -> dict:
    runs = sorted(p for p in (pytester.path / "reports").iterdir() if p.is_dir())
    doc = json.loads((runs[-1] / "results.json").read_text())
    for p in runs:
        shutil.rmtree(p)
    return {t["test_id"]: t for t in doc["tests"]}


def test_three_sessions_then_unchanged_runs_pass_and_slower_ttft_fails(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, half_busy_core: None) -> None:
    pytester.makepyfile(test_llm=TEST_FILE)
    recipe = pytester.path / "e2e.yaml"
    recipe.write_text(RECIPE)
    args = ["--recipe", str(recipe), "--no-hwbench-mlflow", "--hwbench-testbed", "e2e", "-p", "no:randomly"]
    for _ in range(3):
        pytester.runpytest(*args, "--hwbench-save-baseline").assert_outcomes(passed=1)
        _results(pytester)
    stored = json.loads((pytester.path / "baselines" / "e2e" / "test_llm.json").read_text())
    assert len(stored["tests"]["test_llm.py::test_llm_latency"]["sessions"]) == 3

    verdicts = []
    for _ in range(10):
        res = pytester.runpytest(*args)
        result = _results(pytester)["test_llm.py::test_llm_latency"]
        verdicts.append((result["verdict"], result["baseline_status"], result["failures"]))
        assert result["verdict"] != "FAIL", "\n".join(result["failures"])
        res.assert_outcomes(passed=1)

    monkeypatch.setenv("E2E_TTFT_MS", "115")  # +15 % time to first token
    res = pytester.runpytest(*args)
    res.assert_outcomes(failed=1)
    result = _results(pytester)["test_llm.py::test_llm_latency"]
    ttft = next(m for m in result["baseline"]["metrics"] if m["metric"] == "ttft_ms")
    assert ttft["status"] == "FAIL" and 1.10 < ttft["ratio"] < 1.25, ttft
    text = "\n".join(result["failures"])
    assert "baseline regression: ttft_ms:" in text and "% worse:" in text
    assert " ms vs baseline " in text and "(medians)" in text and "95% CI" in text and "tolerance 5%" in text
    assert "baseline: " in text and "test_llm.json (testbed e2e; 3 sessions saved " in text
    assert "at commit(s)" in text and "environment diff vs baseline" in text
    res.stdout.fnmatch_lines(["*baseline regression: ttft_ms*"])


def test_external_server_describes_itself_for_the_environment_diff() -> None:
    with ReferenceServerProcess(ReferenceConfig(ttft_ms=1, itl_ms=1, output_tokens=2)) as srv:
        facts = describe_server("ollama", srv.base_url)
        models = describe_server("openai", srv.base_url)
    assert facts.get("version"), facts
    assert models.get("models"), models
