"""CPU, memory, storage and GPU measured with the tools hardware engineers already trust.

- ``test_7zip``: 7-Zip's built-in benchmark (``7zz b``): compress/decompress/total ratings in MIPS, per
  thread count (sweep ``threads``; ``max`` = every CPU). Needs ``apt-get install 7zip``.
- ``test_stream``: STREAM Copy/Scale/Add/Triad GB/s from the project's STREAM-method kernel (compiled with gcc
  on first use, arrays 4x the last-level cache), cross-checked with likwid-bench's copy and stream (triad)
  kernels in the same test (``likwid_copy_gb_s``, ``likwid_triad_gb_s``). Needs gcc and ``apt-get install
  likwid`` (or ``hardware.stream_cross_check: false``).
- ``test_fio``: fio on ``settings.scratch_dir`` (default: pytest's temporary directory): sequential read/write
  MB/s (1 MiB blocks) and 4k random read/write IOPS with completion-latency p50/p99/p99.9 in µs; direct I/O
  where the filesystem allows it; files removed afterwards. Needs ``apt-get install fio``.
- ``test_gpu_telemetry``: NVML clocks, power, temperature and throttle reasons of each NVIDIA GPU; skips
  with the reason on a machine without one.

Sizes and options live in the recipe's ``hardware:`` section (see recipes/hardware.yaml).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pytest_hwbench.workloads.hardware import bench
from pytest_hwbench.workloads.hardware.gpu import gpu_skip_reason, gpu_telemetry


@pytest.mark.hwbench(sweep={"threads": ["max"]})
def test_7zip(hwbench, threads) -> None:
    bench.sevenzip_trial(hwbench, threads)


@pytest.mark.hwbench(sweep={"threads": ["max"]})
def test_stream(hwbench, threads) -> None:
    bench.stream_trial(hwbench, threads)


@pytest.mark.hwbench(sweep={"fio_job": ["seqread", "seqwrite", "randread", "randwrite"]})
def test_fio(hwbench, scratch_dir: Path, fio_job: str) -> None:
    bench.fio_trial(hwbench, fio_job, scratch_dir)


@pytest.fixture
def nvidia_gpu() -> None:
    """Skip (at setup, so the report lists it) on a machine without a usable NVIDIA GPU. A plain skip even
    with HWBENCH_FAIL_ON_UNAVAILABLE=1: no GPU is a fact about the machine, not a missing install."""
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.hwbench
def test_gpu_telemetry(hwbench, nvidia_gpu) -> None:
    """Ten NVML readings over about a second, per GPU: clocks, power and temperature as metrics, the
    throttle reasons and the inventory in ``extra``."""
    readings = []
    for _ in range(10):
        readings.append(gpu_telemetry())
        time.sleep(0.1)
    for gpu in readings[0]:
        i = gpu["index"]
        for key, unit, better in (("sm_clock_mhz", "MHz", "higher"), ("mem_clock_mhz", "MHz", "higher"),
                                  ("power_w", "W", "lower"), ("temperature_c", "C", "lower")):
            values = [r[i][key] for r in readings if r[i].get(key) is not None]
            if values:
                hwbench.record(f"gpu{i}_{key}", values, unit=unit, better=better)
    hwbench.extra["gpu_telemetry"] = readings[-1]
