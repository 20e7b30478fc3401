"""The shipped LLM benchmarks (benchmarks/test_llm_serving.py) run end to end through the plugin, in a
subprocess, against servers started from the shipped recipes:

* the reference server (recipes/reference.yaml: TTFT 20 ms, ITL 4 ms, 16 tokens, capacity 4): the recorded
  ttft/itl/tpot/e2el/req_s must agree with that configuration, an injected error rate must show up in
  ``error_rate``, and the concurrency sweep's ``req_s`` must flatten at capacity / service time;
* the real llama-server built from llama.cpp (recipes/llamacpp.yaml) on the tiny random GGUF model, with
  ``ignore_eos`` so every answer is exactly ``output_tokens`` long (skipped — a failure in CI — when the
  llama.cpp build is missing).

Tolerances are generous on purpose: this machine is shared and noisy, and the point is "the pipeline
measures what the server does", which a wrong definition or unit misses by far more than the noise. The
client self-check is set to ``warn`` for the timing runs (a busy shared machine must not turn a correct
pipeline red) and exercised on its own with limits nothing can meet.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.verdict.knee import find_knee
from tests.conftest import unavailable
from tests.service_helpers import llama_bin_dir

REPO = Path(__file__).resolve().parents[1]
BENCH = (REPO / "benchmarks" / "test_llm_serving.py").read_text()

# recipes/reference.yaml's configuration (the ground truth)
TTFT_MS, ITL_MS, TOKENS, CAPACITY = 20.0, 4.0, 16, 4
SERVICE_MS = TTFT_MS + (TOKENS - 1) * ITL_MS  # 80 ms per request
SAMPLE_METRICS = ("ttft_ms", "itl_ms", "tpot_ms", "e2el_ms")
SCALARS = ("output_tok_s", "total_tok_s", "req_s", "error_rate")


def run_suite(pytester: pytest.Pytester, recipe: str, *args: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    """Run the shipped LLM benchmarks with a shipped recipe; return the outcome and results by test id tail."""
    pytester.makepyfile(test_llm_serving=BENCH)
    shutil.copy(REPO / "recipes" / recipe, pytester.path / recipe)
    res = pytester.runpytest_subprocess("--recipe", recipe, "--no-hwbench-mlflow", "-p", "no:cacheprovider",
                                        *args)
    runs = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    assert len(runs) == 1, res.stdout.str()[-3000:]
    results = json.loads((runs[0] / "results.json").read_text())
    tests = {t["test_id"].split("::", 1)[1]: t for t in results["tests"]}
    return res, tests


def median(test: dict[str, Any], metric: str) -> float:
    assert metric in test["metrics"], f"{test['test_id']} did not record {metric}: {sorted(test['metrics'])}"
    return test["metrics"][metric]["summary"]["p50"]


def test_reference_server_figures_match_its_configuration(pytester: pytest.Pytester,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_LLM_SELF_CHECK", "warn")
    res, tests = run_suite(pytester, "reference.yaml")
    res.assert_outcomes(passed=10)  # latency, 5 concurrencies, long prompt, 3 rates
    assert set(tests) == {"test_llm_latency", "test_llm_long_prompt",
                          *(f"test_llm_throughput[concurrency={c}]" for c in (1, 2, 4, 8, 12)),
                          *(f"test_llm_goodput[rate={r}]" for r in (10, 25, 40))}

    lat = tests["test_llm_latency"]
    for name in (*SAMPLE_METRICS, *SCALARS):
        assert lat["metrics"][name]["trial_values"], name
        assert not lat["metrics"][name]["estimated"], f"{name}: the reference server reports usage"
    assert lat["metrics"]["ttft_ms"]["unit"] == "ms" and lat["metrics"]["ttft_ms"]["better"] == "lower"
    assert lat["metrics"]["req_s"]["unit"] == "req/s" and lat["metrics"]["req_s"]["better"] == "higher"
    assert lat["metrics"]["ttft_ms"]["summary"]["count"] == 3 * 8  # repetitions x requests
    assert TTFT_MS * 0.9 < median(lat, "ttft_ms") < TTFT_MS * 2
    assert ITL_MS * 0.75 < median(lat, "itl_ms") < ITL_MS * 2
    assert ITL_MS * 0.9 < median(lat, "tpot_ms") < ITL_MS * 2
    assert SERVICE_MS * 0.95 < median(lat, "e2el_ms") < SERVICE_MS * 1.6
    assert 1000 / SERVICE_MS / 1.6 < median(lat, "req_s") < 1000 / SERVICE_MS * 1.05
    assert median(lat, "output_tok_s") == pytest.approx(TOKENS * median(lat, "req_s"), rel=0.02)
    assert median(lat, "error_rate") == 0
    note = lat["extra"]["llm"]
    assert note["target"]["model"] == "hwbench-reference" and note["target"]["protocol"] == "openai"
    assert note["totals"] == {"attempted": 24, "succeeded": 24, "failed": 0, "errors": {},
                              "client_bound_trials": note["totals"]["client_bound_trials"]}
    assert [t["counts"]["output_tokens"] for t in note["trials"]] == [8 * TOKENS] * 3

    # closed-loop sweep: req_s = users / service time up to the capacity, then flat at capacity / service time
    loads = [1, 2, 4, 8, 12]
    rps = [median(tests[f"test_llm_throughput[concurrency={c}]"], "req_s") for c in loads]
    ceiling = CAPACITY * 1000 / SERVICE_MS  # 50 req/s
    for users, value in zip(loads, rps, strict=True):
        expected = min(users, CAPACITY) * 1000 / SERVICE_MS
        assert expected / 1.6 < value < expected * 1.1, (users, rps)
    assert max(rps[3:]) < 1.15 * rps[2] and max(rps) < ceiling * 1.1, rps
    knee = find_knee(loads, rps)
    assert knee.load is not None and abs(knee.load - CAPACITY) <= 1.5, (knee, rps)
    queued = tests["test_llm_throughput[concurrency=12]"]
    assert median(queued, "ttft_ms") > TTFT_MS + SERVICE_MS  # 8 of 12 users wait a whole service time or two

    long = tests["test_llm_long_prompt"]
    assert TTFT_MS * 0.9 < median(long, "ttft_ms") < TTFT_MS * 2
    assert not long["metrics"]["prefill_tok_s"]["estimated"]  # the server's usage gives the prompt length
    assert median(long, "prefill_tok_s") == pytest.approx(2048 / (median(long, "ttft_ms") / 1000), rel=0.3)
    assert long["extra"]["llm"]["request"]["max_tokens"] == 4

    for rate in (10, 25, 40):
        good = tests[f"test_llm_goodput[rate={rate}]"]
        assert "latency_from_intended_ms" in good["metrics"] and "goodput_req_s" in good["metrics"]
        assert good["extra"]["llm"]["request_slos"] == {"ttft_ms": 300.0}  # from the recipe's ttft_ms.p99 < 300
        assert good["extra"]["llm"]["load"]["mode"] == "open" and good["extra"]["llm"]["load"]["rate"] == rate
        assert median(good, "latency_from_intended_ms") >= median(good, "e2el_ms")
        assert SERVICE_MS * 0.95 < median(good, "e2el_ms") < SERVICE_MS * 2
        assert median(good, "goodput_req_s") <= median(good, "req_s") + 1e-9


def test_injected_errors_show_up_in_error_rate(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_LLM_SELF_CHECK", "warn")
    monkeypatch.setenv("HWBENCH_REFERENCE_ERROR_RATE", "0.25")
    res, tests = run_suite(pytester, "reference.yaml", "-k", "test_llm_latency")
    res.assert_outcomes(failed=1)  # the recipe's error_rate <= 0.01 must catch it
    res.stdout.fnmatch_lines(["*error_rate*<= 0.01*"])
    lat = tests["test_llm_latency"]
    assert 0.05 < lat["metrics"]["error_rate"]["summary"]["mean"] < 0.5
    totals = lat["extra"]["llm"]["totals"]
    assert totals["attempted"] == 24 and set(totals["errors"]) == {"http_5xx"}
    assert totals["failed"] == totals["errors"]["http_5xx"] > 0
    examples = [e for t in lat["extra"]["llm"]["trials"] for e in t["error_examples"].get("http_5xx", [])]
    assert examples and all(e.startswith("HTTP 500: injected error") for e in examples)
    # the successful requests still give the configured timing
    assert TTFT_MS * 0.9 < median(lat, "ttft_ms") < TTFT_MS * 2


SELF_CHECK_RECIPE = """
version: 1
services:
  llm: {kind: reference, backend: process, ttft_ms: 5, itl_ms: 1, output_tokens: 4}
settings:
  llm:
    requests: 4
    self_check_limits: {max_loop_lag_p99_ms: 0.000001}
"""


def test_a_client_bound_run_fails_with_the_self_check_evidence(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_llm_serving=BENCH)
    pytester.makefile(".yaml", strict=SELF_CHECK_RECIPE)
    res = pytester.runpytest_subprocess("--recipe", "strict.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider",
                                        "--hwbench-repetitions", "1", "-k", "test_llm_latency")
    res.assert_outcomes(failed=1)
    # Which party is blamed depends on the machine: a saturated client, or (on a busy box) a contended one.
    res.stdout.re_match_lines([r".*(the load generator, not the server, was the bottleneck|the machine was "
                               r"contended, not the client saturated): event-loop lag p99.*",
                               r".*event-loop lag p99 .* ms; client CPU .*% of a core.*"])


@pytest.fixture(scope="module")
def llama_bin() -> Path:
    """The cached llama.cpp build, found before pytester points HOME at its temporary directory."""
    return llama_bin_dir()  # unavailable() when scripts/build_llama_cpp.sh has not run


def test_real_llama_server_through_the_llamacpp_recipe(llama_bin: Path, pytester: pytest.Pytester, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = llama_bin
    try:
        from pytest_hwbench.services.tiny_gguf import tiny_gguf
    except ImportError as err:  # pragma: no cover - gguf is a test dependency
        unavailable(f"the gguf package is needed for the tiny model ({err})")
    model = tiny_gguf(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")  # the build found above
    # Small sizes for a tiny model on a shared CPU. Its byte-level vocabulary makes a "token" of the ~4
    # chars/token estimate about 5 real ones, hence the modest prompt lengths (usage reports the real count).
    # Temperature 1: greedy decoding of random weights can loop on a token that renders as nothing (<unk>,
    # an unfinished UTF-8 byte), and an answer without visible content is an "empty" error, not a timing.
    for name, value in {"HWBENCH_GGUF": str(model), "HWBENCH_LLM_PROMPT_TOKENS": "32",
                        "HWBENCH_LLM_OUTPUT_TOKENS": "16", "HWBENCH_LLM_LONG_PROMPT_TOKENS": "192",
                        "HWBENCH_LLM_LONG_OUTPUT_TOKENS": "16", "HWBENCH_LLM_REQUESTS": "4",
                        "HWBENCH_LLM_REQUESTS_PER_USER": "2", "HWBENCH_LLM_GOODPUT_S": "2",
                        "HWBENCH_LLM_GOODPUT_MIN_REQUESTS": "2", "HWBENCH_LLM_SELF_CHECK": "warn",
                        "HWBENCH_LLM_TEMPERATURE": "1"}.items():
        monkeypatch.setenv(name, value)
    res, tests = run_suite(pytester, "llamacpp.yaml", "--hwbench-repetitions", "1")
    res.assert_outcomes(passed=9)
    run_dir = next(d for d in (pytester.path / "reports").iterdir() if d.is_dir())
    info = json.loads((run_dir / "run.json").read_text())["services"]["llm"]
    assert info["kind"] == "llamacpp" and info["binary"].endswith("llama-server")

    for test_id, test in tests.items():
        note = test["extra"]["llm"]
        assert note["target"]["model"] == model.name, test_id  # the alias llama-server reports
        for name in (*SAMPLE_METRICS, "req_s", "output_tok_s", "error_rate"):
            assert name in test["metrics"], (test_id, name)
        assert not test["metrics"]["tpot_ms"]["estimated"], "llama-server reports usage"
        assert median(test, "error_rate") == 0
        assert median(test, "ttft_ms") > 0 and median(test, "e2el_ms") >= median(test, "ttft_ms")
        (trial,) = note["trials"]
        # ignore_eos: every answer is exactly max_tokens long (16), counted by the server
        assert trial["counts"]["output_tokens"] == 16 * trial["counts"]["succeeded"] > 0, test_id
        assert trial["counts"]["input_tokens"] > trial["counts"]["succeeded"] * 32, test_id  # byte tokens
    lat = tests["test_llm_latency"]
    assert median(lat, "output_tok_s") == pytest.approx(16 * median(lat, "req_s"), rel=0.02)
    assert median(lat, "tpot_ms") < median(lat, "e2el_ms")
    assert "prefill_tok_s" in tests["test_llm_long_prompt"]["metrics"]


# ---------------------------------------------------------------------------------------------- the glue alone

def test_settings_are_validated_with_the_field_and_the_fix() -> None:
    from pytest_hwbench.errors import HwbenchInputError
    from pytest_hwbench.workloads.llm_bench import LLMSettings, parse_llm_settings

    s = parse_llm_settings({"prompt_tokens": "256", "ignore_eos": "true", "model": "", "goodput": {"ttft_ms": 500},
                            "self_check_limits": {"max_loop_lag_p99_ms": 25}}, source="r.yaml")
    assert (s.prompt_tokens, s.ignore_eos, s.model, s.goodput) == (256, True, None, {"ttft_ms": 500.0})
    assert parse_llm_settings(None) == LLMSettings()
    with pytest.raises(HwbenchInputError, match=r"r.yaml: settings.llm.prompt_token: unknown .*prompt_tokens"):
        parse_llm_settings({"prompt_token": 5}, source="r.yaml")
    # the same words as every other recipe field: one declaration, one validator
    with pytest.raises(HwbenchInputError, match=r"settings.llm.requests: 0 is not an integer >= 1"):
        parse_llm_settings({"requests": 0})
    with pytest.raises(HwbenchInputError, match=r"settings.llm.goodput.ttft: unknown key, did you mean 'ttft_ms'"):
        parse_llm_settings({"goodput": {"ttft": 5}})
    with pytest.raises(HwbenchInputError, match=r"settings.llm.api: 'responses' is not one of chat, completions"):
        parse_llm_settings({"api": "responses"})


def test_goodput_slos_come_from_the_runs_upper_bounds() -> None:
    from types import SimpleNamespace

    from pytest_hwbench.recipe.loader import load_recipe_text
    from pytest_hwbench.workloads.llm_bench import LLMSettings, request_slos_for

    recipe = load_recipe_text("version: 1\nslo:\n  'test_x.py::*': [error_rate <= 0.01, 'ttft_ms.p99 < 500',"
                              " 'ttft_ms.p50 < 200', 'tpot_ms <= 40', 'itl_ms.p99 < 30', 'req_s > 5']\n", "r.yaml")
    hw = SimpleNamespace(recipe=recipe, test_id="b/test_x.py::test_goodput[rate=2]", settings={})
    assert request_slos_for(hw, settings=LLMSettings()) == {"ttft_ms": 200.0, "tpot_ms": 40.0}
    assert request_slos_for(hw, settings=LLMSettings(goodput={"e2el_ms": 900.0})) == {"e2el_ms": 900.0}
    hw.test_id = "b/test_other.py::t"
    assert request_slos_for(hw, settings=LLMSettings()) == {}


def test_glue_discovers_the_model_and_speaks_ollama_natively() -> None:
    """Without a model name the first served one is used; an ``ollama`` endpoint gets the native API (the
    reference server speaks both), with the same metrics recorded and nothing secret in ``extra``."""
    from pytest_hwbench.measure.recorder import Recorder
    from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
    from pytest_hwbench.services.base import Endpoint
    from pytest_hwbench.workloads.engine import LoadSpec
    from pytest_hwbench.workloads.llm_bench import LLMSettings, redact_url, resolve_target, run_llm_load
    from pytest_hwbench.workloads.prompts import synthetic_prompts

    assert redact_url("http://u:pw@h:8000/v1") == "http://h:8000/v1"
    with ReferenceServerProcess(ReferenceConfig(model="m-1", ttft_ms=10, itl_ms=2, output_tokens=8)) as srv:
        host, port = srv.base_url.removeprefix("http://").split(":")
        generic = Endpoint(host=host, port=int(port), url=srv.base_url, name="llm", kind="generic")
        target = resolve_target(generic, LLMSettings())
        assert (target.protocol, target.model, target.model_source, target.api) == \
            ("openai", "m-1", "served models", "completions")
        assert target.base_url == srv.base_url + "/v1"

        ollama = Endpoint(host=host, port=int(port), url=srv.base_url, name="llm", kind="ollama")
        hw = Recorder("t::ollama")
        settings = LLMSettings(self_check="warn", api_key_env="HWBENCH_TEST_NO_SUCH_KEY")
        metrics = run_llm_load(hw, ollama, load=LoadSpec.closed(1, requests=4, warmup_requests=1),
                               prompts=synthetic_prompts(5, 16), max_tokens=8, settings=settings)
    assert metrics.counts["succeeded"] == 4 and not metrics.estimated
    note = hw.extra["llm"]
    assert note["target"] == {"protocol": "ollama", "url": srv.base_url, "model": "m-1", "api": "generate",
                              "model_source": "served models"}
    assert {"ttft_ms", "itl_ms", "tpot_ms", "e2el_ms", "req_s", "error_rate"} <= set(hw.metrics)
    assert 10 <= hw.result("ttft_ms").summary.stat("p50") < 30
    assert "KEY" not in json.dumps(note)
