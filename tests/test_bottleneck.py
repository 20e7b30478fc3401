"""Bottleneck attribution: the rules on hand-made summaries, then controlled cases where the cause is known —
the reference server burning CPU per token (a sweep past its knee), a capacity limit, a memory-growing
server, a disk-bound fio run, and a deliberately slow client — each run through the plugin and attributed."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.verdict.bottleneck import (
    BENCH_CPU,
    CLIENT_BOUND,
    GPU,
    MEMORY,
    NONE,
    NOT_SAMPLED,
    QUEUEING,
    SERVER_CPU,
    STORAGE,
    Attribution,
    TestFacts,
    attribute,
    attribute_sweep,
)
from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[1]
BENCH = (REPO / "benchmarks" / "test_llm_serving.py").read_text()
SERVICE = TestFacts(has_service=True, cpu_count=8)


def s(**series: dict[str, float]) -> dict[str, dict[str, float]]:
    return series


# -- rules ---------------------------------------------------------------------------------------------------
def test_nothing_sampled_says_how_to_get_an_attribution() -> None:
    att = attribute(None, SERVICE)
    assert att.cause == NOT_SAMPLED and "resources.enabled" in att.next_action


def test_a_saturated_server_thread_is_server_cpu_bound_with_the_numbers() -> None:
    att = attribute(s(service_hot_thread_pct={"p50": 99.0}, service_hot_thread_oncpu_pct={"p50": 60.0},
                      service_cpu_util={"mean": 61.0}, host_cpu_util={"mean": 100.0}), SERVICE)
    assert att.cause == SERVER_CPU and att.valid
    assert att.evidence[0] == "the server's busiest thread demanded 99% of a core (60% on a CPU, 39% waiting for one)"
    assert "host CPU 100% busy" in att.evidence and "more cores" in att.next_action


def test_a_multithreaded_server_using_all_its_cores_or_throttled_is_cpu_bound() -> None:
    assert attribute(s(service_cpu_util={"mean": 760.0}), SERVICE).cause == SERVER_CPU  # 8 cores
    assert attribute(s(service_cpu_util={"mean": 190.0}, container_cpu_limit={"last": 2.0}), SERVICE).cause \
        == SERVER_CPU
    att = attribute(s(service_cpu_util={"mean": 50.0}, container_cpu_throttled_pct={"mean": 35.0}), SERVICE)
    assert att.cause == SERVER_CPU and "throttled by its CPU quota 35%" in att.line()


def test_a_saturated_client_invalidates_the_measurement() -> None:
    att = attribute(s(loadgen_hot_thread_pct={"p50": 98.0}, service_hot_thread_pct={"p50": 99.0}), SERVICE)
    assert att.cause == CLIENT_BOUND and not att.valid and att.also == [SERVER_CPU]
    assert "(measurement invalid)" in att.line()
    via_engine = attribute(s(host_cpu_util={"mean": 20.0}),
                           TestFacts(has_service=True, client_bound_reasons=("event-loop lag p99 30 ms",)))
    assert via_engine.cause == CLIENT_BOUND and not via_engine.valid
    assert via_engine.evidence == [
        "load engine self-check: event-loop lag p99 30 ms"]
    # the engine's loop lagged, but its thread was not saturated and the server's was: the server is the limit
    shared = attribute(s(loadgen_hot_thread_pct={"p50": 60.0}, service_hot_thread_pct={"p50": 99.0}),
                       TestFacts(has_service=True, client_bound_reasons=("event-loop lag p99 12 ms",)))
    assert shared.cause == SERVER_CPU and shared.valid
    assert shared.evidence[-1] == "client lag is a side effect: load engine self-check: event-loop lag p99 12 ms"
    # without a service, a busy benchmark thread is the benchmark doing its work, not a client problem
    alone = attribute(s(loadgen_hot_thread_pct={"p50": 99.0}), TestFacts(has_service=False, cpu_count=8))
    assert alone.cause == BENCH_CPU and alone.valid


def test_memory_pressure_from_growth_swap_psi_and_oom() -> None:
    growth = s(service_rss_mb={"first": 100.0, "last": 400.0, "slope_per_s": 100.0, "span_s": 3.0})
    att = attribute(growth, SERVICE)
    assert att.cause == MEMORY and att.evidence == ["service RSS grew 100 -> 400 MB (100.0 MB/s over 3.0 s measured)"]
    small = s(service_rss_mb={"first": 1000.0, "last": 1050.0, "slope_per_s": 25.0, "span_s": 2.0})
    assert attribute(small, SERVICE).cause == NONE  # 50 MB on 1 GB: noise, not pressure
    assert attribute(s(host_swap_out_mb_s={"mean": 12.0}), SERVICE).cause == MEMORY
    assert attribute(s(psi_memory_pct={"mean": 25.0}), SERVICE).cause == MEMORY
    oom = attribute(s(container_oom_kills={"first": 0.0, "last": 1.0}), SERVICE)
    assert oom.cause == MEMORY and "1 OOM kill(s)" in oom.evidence[0]


def test_storage_and_gpu_bound() -> None:
    disk = attribute(s(disk_busy_pct={"mean": 97.0}, disk_queue={"mean": 12.0}, disk_read_mb_s={"mean": 400.0},
                       disk_write_mb_s={"mean": 1.0}), SERVICE)
    assert disk.cause == STORAGE
    assert disk.evidence[0] == "busiest disk busy 97% of the time, 12.0 requests in flight on average"
    assert attribute(s(disk_busy_pct={"mean": 30.0}, disk_queue={"mean": 9.0}), SERVICE).cause == STORAGE
    gpu = attribute(s(gpu_util={"mean": 98.0}, gpu_mem_mb={"max": 70000.0}, gpu_throttle={"max": 0x44},
                      service_hot_thread_pct={"p50": 40.0}), SERVICE)
    assert gpu.cause == GPU and gpu.evidence[-1] == "clocks held back: software power cap, hardware thermal slowdown"


def test_queueing_without_saturation_and_quiet_evidence() -> None:
    q = attribute(s(service_hot_thread_pct={"p50": 30.0}), TestFacts(has_service=True, error_rate=0.05))
    assert q.cause == QUEUEING and q.evidence == ["5.0% of requests failed"]
    open_loop = attribute(s(host_cpu_util={"mean": 10.0}),
                          TestFacts(has_service=True, offered_rps=100.0, achieved_rps=60.0))
    assert open_loop.cause == QUEUEING and "achieved 60.0 of 100.0 req/s offered" in open_loop.evidence
    quiet = attribute(s(service_hot_thread_pct={"p50": 30.0, "mean": 30.0}, host_cpu_util={"mean": 40.0}), SERVICE)
    assert quiet.cause == NONE and quiet.evidence == ["server's busiest thread 30%, host CPU 40%"]
    assert "server's configuration" in quiet.next_action
    assert Attribution.from_dict(json.loads(json.dumps(quiet.to_dict()))) == quiet


def _point(load: float, req_s: float, p99: float, series: dict[str, Any]) -> dict[str, Any]:
    return {"test_id": f"t[{load}]", "metrics": {"req_s": {"summary": {"p50": req_s}},
                                               "ttft_ms": {"summary": {"p99": p99}}},
            "resources": {"services": ["llm"], "series": series}}


def test_sweep_points_past_the_knee_get_queueing_evidence() -> None:
    idle = {"service_hot_thread_pct": {"mean": 20.0}}
    loads = [1.0, 2.0, 4.0, 8.0]
    results = [_point(1, 15, 10, idle), _point(2, 30, 12, idle), _point(4, 31, 70, idle), _point(8, 31, 200, idle)]
    points = attribute_sweep(loads, results, throughput="req_s", latency="ttft_ms.p99", knee_load=2.0)
    assert [p["past_knee"] for p in points] == [False, False, True, True]
    assert [p["cause"] for p in points] == [NONE, NONE, QUEUEING, QUEUEING]
    assert points[3]["evidence"][0].startswith("past the knee: req_s flat (31 vs 30 at load 2) while ttft_ms.p99 rose")


# -- controlled cases, through the plugin against the reference server ----------------------------------------
def _recipe(service: str, sweep: str | None, llm: str) -> str:
    sweep_text = f"sweep:\n  concurrency: {sweep}\n" if sweep else ""
    return f"""version: 1
repetitions: 1
resources: {{interval_ms: 100}}
services:
  llm: {{kind: reference, backend: process, seed: 0, {service}}}
{sweep_text}settings:
  llm: {{api: completions, prompt_tokens: 16, output_tokens: 16, warmup_requests: 1, {llm}}}
"""


def _run(pytester: pytest.Pytester, recipe: str, *args: str, bench: str = BENCH) -> tuple[Any, dict[str, Any]]:
    pytester.makepyfile(test_llm_serving=bench)
    pytester.makefile(".yaml", r=recipe)
    res = pytester.runpytest_subprocess("--recipe", "r.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider", *args)
    runs = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    assert len(runs) == 1, res.stdout.str()[-3000:]
    return res, json.loads((runs[0] / "results.json").read_text())


LAG_LIMITS = "self_check_limits: {max_loop_lag_p99_ms: 50, max_send_lag_p99_ms: 50}"


def test_cpu_burning_server_is_cpu_bound_past_the_knee(pytester: pytest.Pytester) -> None:
    """2 ms of CPU per token every 4 ms: the server's one thread saturates at about 2 users; past that the
    sweep must say "server CPU-bound" with the thread's CPU demand as evidence."""
    recipe = _recipe("ttft_ms: 5, itl_ms: 4, output_tokens: 16, cpu_ms_per_token: 2", "[1, 2, 4, 8]",
                     "requests_per_user: 6, self_check: warn")
    res, results = _run(pytester, recipe, "-k", "test_llm_throughput")
    (sweep,) = results["sweeps"]
    past = [p for p in sweep["bottlenecks"] if p["past_knee"]]
    assert past, sweep
    for point in past:
        assert point["cause"] == SERVER_CPU, point
        assert any("server's busiest thread demanded" in e for e in point["evidence"]), point
    assert "bottleneck server CPU-bound — the server's busiest thread demanded" in res.stdout.str()


def test_capacity_limit_is_queueing_with_no_resource_saturated(pytester: pytest.Pytester) -> None:
    # The client's loop-lag limit is raised to 50 ms (default 10): this test is about the server's queue, whose
    # waits are >= 65 ms past the knee, and a shared 2-core machine can lag the client's loop by 10-20 ms.
    recipe = _recipe("ttft_ms: 5, itl_ms: 4, output_tokens: 16, capacity: 2", "[1, 2, 4, 8]",
                     "requests_per_user: 4, self_check: warn, " + LAG_LIMITS)
    _, results = _run(pytester, recipe, "-k", "test_llm_throughput")
    (sweep,) = results["sweeps"]
    past = [p for p in sweep["bottlenecks"] if p["past_knee"]]
    # no resource is named: queueing, or (a point where this shared machine stalled the client) client-bound
    assert past and {p["cause"] for p in past} <= {QUEUEING, CLIENT_BOUND}, sweep["bottlenecks"]
    queueing = [p for p in past if p["cause"] == QUEUEING]
    assert queueing and queueing[-1]["evidence"][0].startswith("past the knee: req_s flat"), sweep["bottlenecks"]


def test_memory_growing_server_is_memory_pressure(pytester: pytest.Pytester) -> None:
    recipe = _recipe("ttft_ms: 5, itl_ms: 2, output_tokens: 8, leak_kb_per_request: 3072", "[4]",
                     "requests_per_user: 15, self_check: warn, " + LAG_LIMITS)
    recipe += "slo:\n  'test_llm_serving.py::*': ['service_rss_mb.max < 150']\n"  # an SLO on a resource metric
    res, results = _run(pytester, recipe, "-k", "test_llm_throughput")
    (test,) = results["tests"]
    assert test["bottleneck"]["cause"] == MEMORY, test["bottleneck"]
    assert test["bottleneck"]["evidence"][0].startswith("service RSS grew")
    assert test["metrics"]["service_rss_mb"]["summary"]["max"] > 150
    res.assert_outcomes(failed=1)  # the SLO caught it, and the failure says why
    res.stdout.fnmatch_lines(["*service_rss_mb.max*150*", "*bottleneck: memory pressure — service RSS grew *"])


SLOW_CLIENT = '''
import hashlib
import time
import urllib.request

import pytest

BLOCK = bytes(4 << 20)


@pytest.mark.hwbench(service="llm")
def test_slow_client(hwbench, hwbench_endpoint):
    """Deliberately slow client: 500 ms of its own CPU work per request (the server answers in about 1 ms),
    so it, not the server, sets the rate. The work is hashing, which runs outside the interpreter lock: a
    pure-Python spin in the test's own thread competes for that lock with the sampling thread, and its demand
    can read low (docs/resources.md). Five 100 ms ticks per request: the wait for an answer falls in one."""
    url = hwbench_endpoint.url + "/health"
    sent, end = 0, time.perf_counter() + 2.0
    while time.perf_counter() < end:
        urllib.request.urlopen(url, timeout=5).read()
        spin = time.perf_counter() + 0.5
        while time.perf_counter() < spin:
            hashlib.sha256(BLOCK).digest()
        sent += 1
    hwbench.record("req_s", sent / 2.0, unit="req/s")
'''


def test_slow_client_is_flagged_invalid_and_never_passes(pytester: pytest.Pytester) -> None:
    recipe = _recipe("ttft_ms: 5", None, "requests_per_user: 1")
    res, results = _run(pytester, recipe, bench=SLOW_CLIENT)
    (test,) = results["tests"]
    series = test["resources"]["series"]
    assert test["bottleneck"]["cause"] == CLIENT_BOUND, (
        test["bottleneck"], {k: v for k, v in series.items() if k.startswith(("loadgen", "sampler", "host_cpu"))})
    assert test["bottleneck"]["valid"] is False and test["invalid"] is True
    assert test["verdict"] == "WARN"  # an invalid measurement is never a PASS (verdict.decide)
    assert "load generator's busiest thread demanded" in test["invalid_reasons"][0]
    res.stdout.fnmatch_lines(["*invalid measurement*bottleneck: client-bound (measurement invalid) — load "
                              "generator's busiest thread demanded *% of a core*"])


FIO_TEST = '''
import json
import subprocess


def test_fio_randread(hwbench, tmp_path):
    """Random 4 KiB direct reads at queue depth 32: the disk, not the CPU, is the limit."""
    common = ["fio", "--name=r", f"--filename={tmp_path / 'f'}", "--size=128M", "--rw=randread", "--bs=4k",
              "--direct=1", "--ioengine=libaio", "--iodepth=32"]
    subprocess.run([*common, "--create_only=1"], check=True, capture_output=True)  # seeding: not measured
    with hwbench.measured_window():
        out = subprocess.run([*common, "--runtime=2", "--time_based", "--output-format=json"], check=True,
                             capture_output=True, text=True).stdout
    hwbench.record("read_iops", json.loads(out)["jobs"][0]["read"]["iops"], unit="IO/s")
'''


def test_fio_random_reads_are_storage_bound(pytester: pytest.Pytester) -> None:
    if shutil.which("fio") is None:
        unavailable("fio is not installed (apt-get install fio; .ci/install-services.sh installs it)")
    pytester.makepyfile(test_fio=FIO_TEST)
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nresources: {interval_ms: 100}\n")
    # /var/tmp, not /tmp: /tmp is often tmpfs, where direct I/O is refused and nothing reaches a disk
    base = Path(tempfile.mkdtemp(prefix="hwbench-fio-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None))
    try:
        res = pytester.runpytest_subprocess("--recipe", "r.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider",
                                            "--basetemp", str(base / "t"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    (run,) = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    (test,) = json.loads((run / "results.json").read_text())["tests"]
    assert test["bottleneck"]["cause"] == STORAGE, (test["bottleneck"], res.stdout.str()[-2000:])
