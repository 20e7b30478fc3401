"""Resource samplers: host, process tree, cgroup, NVML (a fake one, and the real one when there is a GPU), the
sampling thread's measured windows, and the metrics and raw samples a test run gets from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.measure.gpu import gpu_skip_reason
from pytest_hwbench.measure.recorder import Recorder
from pytest_hwbench.measure.samplers import ResourceMonitor, Target, Timeline, is_resource_metric, nvml
from pytest_hwbench.measure.samplers.container import CgroupSource, cgroup_dirs
from pytest_hwbench.measure.samplers.host import HostSource
from pytest_hwbench.measure.samplers.metrics import summarize_series, timeline_arrays, trial_metrics
from pytest_hwbench.measure.samplers.nvml import NvmlSource, nvml_source, throttle_names
from pytest_hwbench.measure.samplers.proc import ProcessTreeSource
from pytest_hwbench.measure.samplers.targets import service_pid
from pytest_hwbench.recipe.loader import load_recipe_text
from pytest_hwbench.report.files import read_samples
from tests.fake_nvml import FakeGpu, fake_pynvml
from tests.service_helpers import need_redis_image, spec

BURN = "import time\nwhile True:\n    pass\n"


@pytest.fixture(autouse=True)
def fresh_nvml_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML's absence is remembered per process; each test here decides what ``pynvml`` is."""
    monkeypatch.setattr(nvml, "_UNAVAILABLE", [])


@pytest.fixture
def burner() -> subprocess.Popen[bytes]:
    """A child process with one thread that wants a whole core, forever (stopped at teardown)."""
    proc = subprocess.Popen([sys.executable, "-c", BURN])
    yield proc
    proc.kill()
    proc.wait(10)


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


# -- timeline ------------------------------------------------------------------------------------------------
def test_timeline_keeps_ticks_whose_midpoint_is_inside_a_window() -> None:
    tl = Timeline(0.1)
    for i in range(1, 11):  # ticks ending at 100, 200, ... 1000 ms, each 100 ms long
        tl.add(i * 100_000_000, 100_000_000, {"x": float(i)} if i != 5 else {})
    assert tl.series["x"][4] != tl.series["x"][4]  # a missing value is NaN, columns stay aligned
    kept = tl.within([(300_000_000, 620_000_000)])
    assert kept.series["x"][:2] == [4.0, 5.0] or kept.t_ns == [400_000_000, 500_000_000, 600_000_000]
    assert kept.t_ns == [400_000_000, 500_000_000, 600_000_000]  # midpoints 350, 450, 550
    assert Timeline.from_dict(json.loads(json.dumps(kept.to_dict()))).t_ns == kept.t_ns


def test_summary_slope_shows_growth_and_arrays_hold_every_trial() -> None:
    tls = []
    for trial in range(2):
        tl = Timeline(0.2)
        for i in range(5):
            t = (trial * 5 + i + 1) * 200_000_000
            tl.add(t, 200_000_000, {"service_rss_mb": 100.0 + 10.0 * (trial * 5 + i), "host_cpu_core0": 5.0})
        tls.append(tl)
    s = summarize_series(tls)
    assert s["service_rss_mb"]["slope_per_s"] == pytest.approx(50.0)  # 10 MB per 0.2 s tick
    assert s["service_rss_mb"]["first"] == 100.0 and s["service_rss_mb"]["last"] == 190.0
    assert "host_cpu_core0" not in s  # per-core series stay in the timeline only
    arrays = timeline_arrays(tls)
    assert arrays["resource.trial"].tolist() == [0.0] * 5 + [1.0] * 5
    assert arrays["resource.t_s"][0] == 0.0 and arrays["resource.service_rss_mb"].size == 10


# -- sources -------------------------------------------------------------------------------------------------
def test_host_source_reads_cpu_memory_disk_network() -> None:
    src = HostSource()
    src.prime()
    busy(0.15)
    values = src.sample()
    assert 0.0 <= values["host_cpu_util"] <= 100.0 and 0.0 <= values["host_cpu_core_max"] <= 100.0
    assert 0.0 < values["host_mem_used_pct"] < 100.0 and values["host_mem_avail_mb"] > 0
    assert values["net_rx_mb_s"] >= 0 and values["host_swap_in_mb_s"] >= 0
    if Path("/proc/diskstats").exists() and src.disks:
        assert 0.0 <= values["disk_busy_pct"] <= 100.0 and values["disk_queue"] >= 0


def test_a_cpu_burning_service_thread_shows_full_demand(burner: subprocess.Popen[bytes]) -> None:
    """Demand (on a CPU + waiting for one) of a thread that never sleeps is ~100 % even on a busy machine,
    where its on-CPU share alone may be far lower: that is what tells CPU-bound from starved."""
    src = ProcessTreeSource(burner.pid, "service")
    time.sleep(0.2)
    src.prime()
    time.sleep(0.6)
    values = src.sample()
    assert values["service_hot_thread_pct"] >= 90.0, values
    assert values["service_cpu_util"] > 10.0 and values["service_rss_mb"] > 1.0
    assert values["service_alive"] == 1.0 and values["service_threads"] >= 1


def test_load_generator_excludes_services_and_the_sampler(burner: subprocess.Popen[bytes]) -> None:
    """This process is the parent of the burning child: the load generator's figures must not include it."""
    src = ProcessTreeSource(os.getpid(), "loadgen", exclude_pids=lambda: {burner.pid})
    src.prime()
    time.sleep(0.5)
    values = src.sample()
    assert values["loadgen_cpu_util"] < 60.0, values  # the child burns ~100 %; we sleep


def test_cgroup_of_this_process_reads_or_says_why() -> None:
    dirs = cgroup_dirs(os.getpid())
    src = CgroupSource(os.getpid())
    if not src.available:
        assert dirs == {}
        return
    src.prime()
    busy(0.1)
    values = src.sample()
    assert values.get("container_mem_mb", 1.0) > 0


# -- NVML ----------------------------------------------------------------------------------------------------
def test_fake_nvml_gpus_are_aggregated_with_throttle_reasons(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu(util=97.0, mem_used_mib=30_000, power_mw=650_000, throttle=0x4 | 0x1),
            FakeGpu(util=40.0, mem_used_mib=10_000, power_mw=300_000, throttle=0x40, unsupported={"temp"})]
    fake = fake_pynvml(gpus)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    src, why = nvml_source()
    assert isinstance(src, NvmlSource) and why == ""
    values = src.sample()
    assert values["gpu_util"] == 97.0 and values["gpu0_util"] == 97.0 and values["gpu1_util"] == 40.0
    assert values["gpu_mem_mb"] == pytest.approx(40_000.0) and values["gpu_power_w"] == pytest.approx(950.0)
    assert values["gpu_temp_c"] == 71.0  # the second GPU's unsupported query is left out, not fatal
    assert throttle_names(int(values["gpu_throttle"])) == ["software power cap", "hardware thermal slowdown"]
    src.close()
    assert fake.calls == {"init": 1, "shutdown": 1}


def test_monitor_samples_fake_gpus_into_gpu_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([FakeGpu(util=99.0)]))
    rec = Recorder("t::gpu")
    rec.monitor = ResourceMonitor(interval_s=0.05)
    rec.begin_trial(0)
    time.sleep(0.3)
    rec.end_trial()
    rec.monitor.close()
    assert rec.result("gpu_util").summary.stat("p50") == 99.0
    assert rec.result("gpu_mem_mb").summary.max == pytest.approx(30_000.0)


def test_no_pynvml_means_no_gpu_series_and_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    mon = ResourceMonitor(interval_s=0.05)
    mon.begin_trial()
    time.sleep(0.12)
    tl = mon.end_trial()
    mon.close()
    assert tl is not None and not any(n.startswith("gpu") for n in tl.series)
    assert any(n.startswith("GPU not sampled: pynvml not installed") for n in mon.notes)


def test_real_gpu_is_sampled_through_nvml() -> None:
    """Runs on a machine with an NVIDIA GPU and a driver; elsewhere it skips with NVML's exact reason (no GPU
    is a fact of the machine, not a missing install, so this is a skip even where CI fails on unavailable)."""
    reason = gpu_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    src, why = nvml_source()
    assert src is not None, why
    try:
        values = src.sample()
    finally:
        src.close()
    assert 0.0 <= values["gpu_util"] <= 100.0 and values["gpu_mem_mb"] > 0
    assert values.get("gpu_power_w", 1.0) > 0 and values.get("gpu_sm_clock_mhz", 1.0) > 0


# -- monitor, windows, recorder --------------------------------------------------------------------------------
def test_measured_window_keeps_only_its_ticks_and_warmup_is_not_sampled(burner: subprocess.Popen[bytes]) -> None:
    rec = Recorder("t::window")
    rec.monitor = ResourceMonitor(interval_s=0.05, targets=lambda: [Target("svc", burner.pid)], gpu=False)
    rec.begin_trial(0, warmup=True)
    assert not rec.monitor.running  # warm-up trials are not sampled
    rec.begin_trial(0)
    time.sleep(0.4)  # "seeding": outside the window
    t0 = time.perf_counter_ns()
    with rec.measured_window():
        time.sleep(0.3)
    t1 = time.perf_counter_ns()
    time.sleep(0.3)  # "teardown"
    rec.end_trial()
    rec.monitor.close()
    (tl,) = rec.monitor.timelines
    assert 3 <= len(tl) <= 9, tl.t_ns
    assert all(t0 <= t - dt // 2 <= t1 for t, dt in zip(tl.t_ns, tl.dt_ns, strict=True))
    assert rec.result("service_hot_thread_pct").summary.stat("p50") >= 90.0
    assert rec.metrics["service_cpu_util"].trials and is_resource_metric("service_cpu_util")


def test_mark_measured_after_the_fact_trims_like_a_window() -> None:
    mon = ResourceMonitor(interval_s=0.05, gpu=False, loadgen=False)
    mon.begin_trial()
    time.sleep(0.2)
    t0 = time.perf_counter_ns()
    time.sleep(0.25)
    t1 = time.perf_counter_ns()
    time.sleep(0.2)
    from pytest_hwbench.measure.samplers.monitor import mark_active

    mark_active(t0, t1)  # what the load engine does with its first measured send and last answer
    tl = mon.end_trial()
    mon.close()
    assert tl is not None and 2 <= len(tl) <= 7
    assert all(t0 <= t - dt // 2 <= t1 for t, dt in zip(tl.t_ns, tl.dt_ns, strict=True))


def test_trial_metrics_are_the_defined_series_only() -> None:
    tl = Timeline(0.1)
    tl.add(1, 1, {"host_cpu_util": 50.0, "host_cpu_core0": 50.0, "service_rss_mb": 10.0, "psi_cpu_pct": 3.0,
                  "service_web_cpu_util": 20.0})
    names = {d.name for d, _ in trial_metrics(tl)}
    assert names == {"host_cpu_util", "service_rss_mb", "service_web_cpu_util"}


def test_recipe_resources_settings_are_validated() -> None:
    r = load_recipe_text("version: 1\nresources: {enabled: false, interval_ms: 100}\n", "r.yaml")
    assert (r.resources.enabled, r.resources.interval_ms, r.resources.gpu) == (False, 100, True)
    with pytest.raises(Exception, match=r"r.yaml: resources.interval_ms: 5 is not an integer >= 50"):
        load_recipe_text("version: 1\nresources: {interval_ms: 5}\n", "r.yaml")


# -- through the plugin --------------------------------------------------------------------------------------
PLAIN_TEST = """
import time

def test_sleepy(hwbench):
    time.sleep(0.4)
    hwbench.record("work_s", 0.4, unit="s")
"""


def test_a_run_records_resource_metrics_and_timelines_with_the_raw_samples(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN_TEST)
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 2\nwarmup: 1\nresources: {interval_ms: 100}\n"
                                 "slo:\n  'test_plain.py::*': ['host_mem_used_pct.max < 100']\n")
    res = pytester.runpytest_subprocess("--recipe", "r.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    (run,) = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    (test,) = json.loads((run / "results.json").read_text())["tests"]
    assert test["metrics"]["host_cpu_util"]["trial_values"] and len(test["metrics"]["work_s"]["trial_values"]) == 2
    assert test["slo"][0]["metric"] == "host_mem_used_pct" and test["slo"][0]["passed"]
    assert test["resources"]["ticks"] >= 4 and "timelines" not in test["resources"]
    assert test["bottleneck"]["cause"] in ("no resource saturated", "CPU-bound", "storage-bound", "memory pressure")
    data = read_samples(run)[test["test_id"]]  # timelines are stored with the test's raw samples
    assert set(data["resource.trial"].tolist()) == {0.0, 1.0}  # two measured trials, no warm-up
    assert data["resource.host_cpu_util"].size == data["resource.t_s"].size
    out = res.stdout.str()
    assert "host_mem_used_pct" in out and "host_cpu_util" not in out  # only SLO-named resource rows shown
    if (run / "report.md").exists():  # the report draws the timelines (and the bottleneck) per test
        report = (run / "report.md").read_text()
        assert "Resources" in report and "resource timelines of test_sleepy" in report, report[-2000:]
        assert "Bottleneck" in report


def test_resources_disabled_records_none(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN_TEST)
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nresources: {enabled: false}\n")
    res = pytester.runpytest_subprocess("--recipe", "r.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    (run,) = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    (test,) = json.loads((run / "results.json").read_text())["tests"]
    assert set(test["metrics"]) == {"work_s"} and test["resources"] is None
    assert test["bottleneck"]["cause"] == "not sampled"


# -- real services: a process service and a container, found by their pids -----------------------------------
@pytest.fixture
def services(tmp_path: Path) -> Any:
    from pytest_hwbench.services import ServiceSet

    run_id = f"r{os.getpid()}-{time.monotonic_ns() % 10**8}"
    with ServiceSet(log_dir=tmp_path / "logs", state_dir=tmp_path / "state", run_id=run_id,
                    handle_signals=False) as s:
        yield s


def test_process_service_is_found_and_sampled(services: Any) -> None:
    svc = services.start(spec("reference", "process", name="llm", ttft_ms=5))
    found = service_pid(svc)
    assert found == {"pid": svc.info["pid"], "container": False}
    mon = ResourceMonitor(interval_s=0.05, targets=lambda: [Target("llm", found["pid"])], gpu=False)
    mon.begin_trial()
    time.sleep(0.3)
    tl = mon.end_trial()
    mon.close()
    assert tl is not None and max(tl.values("service_rss_mb")) > 10  # a Python interpreter with aiohttp


def test_external_service_on_this_host_is_found_by_its_listening_port() -> None:
    from pytest_hwbench.reference_server import ReferenceServerProcess
    from pytest_hwbench.services.base import Endpoint

    with ReferenceServerProcess() as srv:
        port = int((srv.base_url or "").rsplit(":", 1)[1])
        handle = types.SimpleNamespace(backend="external", info={},
                                       endpoint=Endpoint(host="127.0.0.1", port=port, url=srv.base_url or ""))
        assert service_pid(handle) == {"pid": srv._proc.pid, "container": False}  # type: ignore[union-attr]


def test_container_is_sampled_from_its_cgroup(services: Any) -> None:
    image = need_redis_image()
    svc = services.start(spec("redis", "docker", name="cache", image=image, pull="never"))
    found = service_pid(svc)
    assert found is not None and found["container"] is True
    src = CgroupSource(found["pid"])
    assert src.available, f"cgroup of container pid {found['pid']} not readable: {cgroup_dirs(found['pid'])}"
    src.prime()
    time.sleep(0.2)
    values = src.sample()
    assert values["container_mem_mb"] > 0 and values["container_cpu_util"] >= 0
    mon = ResourceMonitor(interval_s=0.05, targets=lambda: [Target("cache", found["pid"], container=True)],
                          gpu=False)
    mon.begin_trial()
    time.sleep(0.3)
    tl = mon.end_trial()
    mon.close()
    assert tl is not None and tl.values("container_mem_mb") and tl.values("service_rss_mb")


PING_TEST = """
import time
import urllib.request

import pytest


@pytest.mark.hwbench(service="llm")
@pytest.mark.parametrize("i", [1, 2])
def test_ping(hwbench, hwbench_endpoint, i):
    t0 = time.perf_counter()
    for _ in range(10):
        urllib.request.urlopen(hwbench_endpoint.url + "/health", timeout=5).read()
    time.sleep(0.3)
    hwbench.record("ping_s", time.perf_counter() - t0, unit="s")
"""


def test_xdist_workers_sample_the_controllers_services(pytester: pytest.Pytester) -> None:
    """Under xdist the controller starts the service; workers get its pid with the endpoint and sample it."""
    pytester.makepyfile(test_ping=PING_TEST)
    pytester.makefile(".yaml", r="version: 1\nrepetitions: 1\nresources: {interval_ms: 100}\n"
                                 "services:\n  llm: {kind: reference, backend: process}\n")
    res = pytester.runpytest_subprocess("--recipe", "r.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider",
                                        "-n", "2")
    res.assert_outcomes(passed=2)
    (run,) = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    tests = json.loads((run / "results.json").read_text())["tests"]
    assert {t["worker"] for t in tests} <= {"gw0", "gw1"} and len(tests) == 2
    for t in tests:
        assert t["resources"]["services"] == ["llm"], t["resources"]
        assert t["metrics"]["service_rss_mb"]["summary"]["max"] > 10  # the reference server's interpreter
