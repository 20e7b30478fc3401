"""The shipped hardware benchmarks end to end with the real tools: ``benchmarks/test_hardware.py`` on
``recipes/hardware.yaml`` and ``benchmarks/test_gguf.py`` on ``recipes/gguf.yaml`` with two tiny GGUF models.

Each run goes through verdicts, a saved baseline (with the tools' versions in its environment) and MLflow;
the recorded figures must equal what each tool printed for the same run. Sizes are tiny (fio 16 MiB for half
a second, 7-Zip -md16 one pass, one trial) so a busy 2-core machine gets through quickly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_hwbench.service_hub import unavailable

REPO = Path(__file__).resolve().parents[1]
CACHE = os.environ.get("HWBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwbench")


def need(*tools: str) -> None:
    for tool in tools:
        if not shutil.which(tool):
            unavailable(f"{tool} not installed (.ci/install-services.sh installs 7zip fio likwid gcc)")


def run_benchmarks(pytester: pytest.Pytester, bench: str, recipe: str, *args: str) -> tuple[Any, dict, Path]:
    shutil.copy(REPO / "benchmarks" / bench, pytester.path / bench)
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    # The shipped recipe, with one round of trials: saving a baseline otherwise spends every rerun round.
    text = (REPO / "recipes" / recipe).read_text()
    assert "\nbaseline:\n" in text
    (pytester.path / recipe).write_text(text.replace("\nbaseline:\n", "\nbaseline:\n  reruns: 0\n"))
    mlflow_uri = f"sqlite:///{pytester.path / 'mlflow.db'}"
    res = pytester.runpytest_subprocess("--recipe", recipe, "-p", "no:cacheprovider", "--hwbench-repetitions", "1",
                                        "--hwbench-save-baseline", "--hwbench-mlflow", mlflow_uri, "-rs", *args)
    runs = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    assert len(runs) == 1, res.stdout.str()[-3000:]
    results = json.loads((runs[0] / "results.json").read_text())
    tests = {t["test_id"].split("::", 1)[1]: t for t in results["tests"]}
    res.stdout.fnmatch_lines(["*hwbench MLflow run * at sqlite:*"])
    return res, tests, runs[0]


def trial_value(test: dict[str, Any], metric: str) -> float:
    (value,) = test["metrics"][metric]["trial_values"]
    return value


def baseline_tools(pytester: pytest.Pytester) -> dict[str, str]:
    """Tool versions in the saved baselines' environments (what a tool upgrade shows in the diff)."""
    tools: dict[str, str] = {}
    for path in (pytester.path / "baselines").rglob("*.json"):
        for entry in json.loads(path.read_text())["tests"].values():
            for saved in entry["sessions"]:
                tools.update(saved["environment"].get("tools", {}))
    return tools


def test_hardware_recipe_reports_each_tools_own_figures(pytester: pytest.Pytester,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    need("7zz", "fio", "likwid-bench", "gcc")
    monkeypatch.setenv("HWBENCH_CACHE", CACHE)  # the compiled STREAM kernel survives pytester's HOME
    monkeypatch.setenv("HWBENCH_FIO_SIZE_MIB", "16")
    monkeypatch.setenv("HWBENCH_FIO_RUNTIME_S", "0.5")
    # 7-Zip at max threads (one 7-Zip run is 5-20 s here), STREAM at 1 and max, 4 fio jobs; no GPU here
    res, tests, _ = run_benchmarks(pytester, "test_hardware.py", "hardware.yaml",
                                   "--deselect", "test_hardware.py::test_7zip[threads=1]")
    res.assert_outcomes(passed=7, skipped=1)
    assert "no usable NVIDIA GPU" in tests["test_gpu_telemetry"]["skip_reason"]

    z = tests["test_7zip[threads=max]"]
    parsed = z["extra"]["tools"]["7zip"]["parsed"]
    assert trial_value(z, "compress_mips") == parsed["compress_mips"]
    assert trial_value(z, "total_mips") == parsed["total_mips"]
    assert z["extra"]["tools"]["7zip"]["argv"][1:4] == ["b", "1", "-md16"]
    for threads in ("1", "max"):
        s = tests[f"test_stream[threads={threads}]"]
        sp = s["extra"]["tools"]["stream"]["parsed"]
        assert trial_value(s, "triad_gb_s") == pytest.approx(sp["best_mb_s"]["triad"] / 1000)
        cross = s["extra"]["stream_cross_check"]
        assert trial_value(s, "likwid_triad_gb_s") == pytest.approx(cross["triad"]["likwid_mb_s"] / 1000)
        assert s["extra"]["tools"]["stream"]["array_mib"] >= 64
    assert tests["test_stream[threads=1]"]["extra"]["tools"]["stream"]["threads"] == 1

    rr = tests["test_fio[fio_job=randread]"]
    fp = rr["extra"]["tools"]["fio"]["parsed"]
    assert trial_value(rr, "read_iops") == fp["iops"] and trial_value(rr, "clat_p99_us") == fp["clat_us"]["p99"]
    sw = tests["test_fio[fio_job=seqwrite]"]
    assert trial_value(sw, "write_mb_s") == sw["extra"]["tools"]["fio"]["parsed"]["bw_bytes_s"] / 1e6
    assert not list(pytester.path.rglob("hwbench-fio-*")), "fio's files are removed"
    for t in tests.values():
        if t["outcome"] == "passed":
            assert t["verdict"] == "PASS" and t["baseline_status"] == "SAVED", t["test_id"]
    assert len(tests) == 8
    tools = baseline_tools(pytester)
    assert tools["7zip"].startswith("7-Zip") and tools["fio"].startswith("fio-")
    assert tools["stream"].startswith("hwbench-stream") and "Version" in tools["likwid-bench"]


@pytest.fixture(scope="module")
def llama_bench_dir() -> Path:
    from tests.service_helpers import llama_bin_dir

    return llama_bin_dir()


def test_gguf_recipe_runs_llama_bench_on_two_tiny_models(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path, llama_bench_dir: Path) -> None:
    from pytest_hwbench.cli import main

    models = tmp_path / "models"
    assert main(["models", "tiny", str(models)]) == 0
    monkeypatch.setenv("HWBENCH_CACHE", CACHE)
    monkeypatch.setenv("HWBENCH_MODELS", str(models))
    monkeypatch.setenv("HWBENCH_LLAMA_BENCH_REPS", "3")
    res, tests, _ = run_benchmarks(pytester, "test_gguf.py", "gguf.yaml",
                                         "-o", "hwbench_recipe=", "--hwbench-testbed", "ci")
    res.assert_outcomes(passed=2)
    ids = sorted(tests)
    assert all("n_prompt=512" in i and "n_gen=128" in i and "threads=max" in i for i in ids), ids
    assert [re.search(r"model=(tiny-llama-e\d+)", i)[1] for i in ids] == ["tiny-llama-e128", "tiny-llama-e64"]
    for test in tests.values():
        (raw,) = test["extra"]["llama_bench_json"]  # llama-bench's own JSON of this trial
        pp = next(r for r in raw if r["n_gen"] == 0)
        tg = next(r for r in raw if r["n_prompt"] == 0)
        assert test["metrics"]["pp_tok_s"]["summary"]["count"] == len(pp["samples_ts"]) == 3
        assert sorted(test["metrics"]["tg_tok_s"]["trial_values"]) == [float(np.median(tg["samples_ts"]))]
        assert test["metrics"]["pp_tok_s"]["summary"]["max"] == max(pp["samples_ts"])
        assert test["metrics"]["tg_tok_s"]["summary"]["min"] == min(tg["samples_ts"])
        assert test["verdict"] == "PASS" and test["extra"]["model"]["architecture"] == "llama"
    assert "version" in baseline_tools(pytester)["llama-bench"]


def test_a_model_too_big_for_memory_is_skipped_with_the_reason(pytester: pytest.Pytester,
                                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               llama_bench_dir: Path) -> None:
    from pytest_hwbench.cli import main

    models = tmp_path / "models"
    main(["models", "tiny", str(models)])
    monkeypatch.setenv("HWBENCH_CACHE", CACHE)
    monkeypatch.setenv("HWBENCH_MODELS", str(models))
    monkeypatch.setenv("HWBENCH_MODEL_SELECT", "all")
    monkeypatch.setenv("HWBENCH_MODEL_MAX_GIB", str(1.0 / 1024))  # 1 MiB: the e128 model (1.5 MiB) is too big
    monkeypatch.setenv("HWBENCH_LLAMA_BENCH_REPS", "1")
    res, tests, _ = run_benchmarks(pytester, "test_gguf.py", "gguf.yaml")
    res.assert_outcomes(passed=1, skipped=1)
    (skipped,) = [t for t in tests.values() if t["outcome"] == "skipped"]
    assert "model=tiny-llama-e128" in skipped["test_id"]
    assert "above hardware.models.max_size_gib" in skipped["skip_reason"]
    res.stdout.fnmatch_lines(["*tiny-llama-e128 is 1.* MiB, above hardware.models.max_size_gib*"])


def test_a_missing_tool_skips_naming_the_package_and_fails_in_ci(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(REPO / "benchmarks" / "test_hardware.py", pytester.path / "test_hardware.py")
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    empty = pytester.mkdir("empty-bin")
    monkeypatch.setenv("PATH", str(empty))  # no 7zz, 7z, fio here
    monkeypatch.delenv("HWBENCH_FAIL_ON_UNAVAILABLE", raising=False)
    args = ("-p", "no:cacheprovider", "--no-hwbench-mlflow", "--hwbench-repetitions", "1", "-rs",
            "-k", "7zip or seqread")
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*7zz / 7z / 7za not found on PATH: apt-get install 7zip*",
                              "*fio not found on PATH: apt-get install fio*"])
    monkeypatch.setenv("HWBENCH_FAIL_ON_UNAVAILABLE", "1")
    res = pytester.runpytest_subprocess(*args)
    res.assert_outcomes(failed=2)
    res.stdout.fnmatch_lines(["*not available (HWBENCH_FAIL_ON_UNAVAILABLE=1): 7zz / 7z / 7za not found*"])


def test_stream_cross_check_rereads_then_judges_only_on_a_quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A disagreement is read once more (best of each kept); one that remains fails on a quiet machine and
    is a warning, not a verdict, on a busy one (a descheduled OpenMP thread can slow either tool)."""
    from types import SimpleNamespace

    from pytest_hwbench.workloads.hardware import bench, stream

    kernels = {k: 10_000.0 for k in stream.KERNELS}
    stream_reads = iter([kernels, {**kernels, "copy": 2_000.0, "triad": 2_000.0}] * 4)
    likwid_reads = iter([1_000.0, 40_000.0] * 8)
    monkeypatch.setattr(bench, "require", lambda fn, *a, **k: ("/bin/true", "v1"))
    monkeypatch.setattr(bench, "_cached_version", lambda *a: "v1")
    monkeypatch.setattr(bench, "run_tool", lambda *a, **k: SimpleNamespace(stdout="", stderr=""))
    monkeypatch.setattr(bench, "note_run", lambda *a, **k: None)
    monkeypatch.setattr(stream, "parse_stream", lambda out: SimpleNamespace(best_mb_s=next(stream_reads), threads=1))
    monkeypatch.setattr(stream, "parse_likwid", lambda out: SimpleNamespace(mb_s=next(likwid_reads), threads=1))
    hw = SimpleNamespace(stream_array_mib=1, stream_cross_check=True, stream_ntimes=2, timeout_s=10)
    hwbench = SimpleNamespace(recipe=SimpleNamespace(hardware=hw), extra={}, record=lambda *a, **k: None)
    # first reads: 10 GB/s vs likwid 1 GB/s (10x); reread: likwid 40 GB/s, best kept -> 10 vs 40 GB/s (4x)
    monkeypatch.setattr(bench, "_busy_machine", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="differ by more than 3x"):
        bench.stream_trial(hwbench, 1)
    monkeypatch.setattr(bench, "_busy_machine", lambda: "load average 9.0 on 2 CPUs")
    with pytest.warns(UserWarning, match="not judged"):
        bench.stream_trial(hwbench, 1)
    checks = hwbench.extra["stream_cross_check"]
    assert all(c["reread"] and "busy machine" in c["not_judged"] for c in checks.values()), checks
