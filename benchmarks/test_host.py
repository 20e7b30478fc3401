"""Host benchmarks that need nothing beyond pip: the embedded demo of the whole flow.

These are numpy/Python approximations that run anywhere; the figures hardware engineers compare across
machines come from the standard tools in ``benchmarks/test_hardware.py`` (7-Zip MIPS, STREAM GB/s cross-checked
with likwid-bench, fio) and ``benchmarks/test_gguf.py`` (llama-bench), which skip naming the package to
install when a tool is missing.

Each test body is one trial; the plugin runs it ``warmup`` + ``repetitions`` times (recipe), computes the
summaries, checks the recipe's SLOs and compares with ``baselines/<testbed>/``. Inside a trial we take a few
samples so percentiles and CIs have something to work with.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

SAMPLES_PER_TRIAL = 5


@pytest.mark.hwbench(sweep={"size": [256]})
def test_matmul(hwbench, size: int) -> None:
    """Dense float64 matrix multiply through numpy's BLAS: 2·n³ floating-point operations per product."""
    rng = np.random.default_rng(0)
    a, b = rng.random((size, size)), rng.random((size, size))
    a @ b  # touch the code path and caches before timing
    for _ in range(SAMPLES_PER_TRIAL):
        t0 = time.perf_counter_ns()
        a @ b
        dt = (time.perf_counter_ns() - t0) * 1e-9
        hwbench.record("gflops", 2 * size**3 / dt / 1e9, unit="GFLOP/s")


@pytest.mark.hwbench(sweep={"buffer_mib": [64]})
def test_memory_bandwidth(hwbench, buffer_mib: int) -> None:
    """STREAM-style copy and triad on numpy arrays far larger than the caches.

    Bytes are counted the STREAM way (copy: 2 arrays, triad: 3 arrays per element); numpy's two-pass triad
    moves more than that, so triad figures are conservative next to STREAM's C kernel.
    """
    n = buffer_mib * 2**20 // 8
    src, dst, c = np.ones(n), np.empty(n), np.full(n, 2.0)
    np.copyto(dst, src)
    for _ in range(SAMPLES_PER_TRIAL):
        t0 = time.perf_counter_ns()
        np.copyto(dst, src)
        copy_s = (time.perf_counter_ns() - t0) * 1e-9
        t0 = time.perf_counter_ns()
        np.multiply(c, 3.0, out=dst)
        np.add(dst, src, out=dst)
        triad_s = (time.perf_counter_ns() - t0) * 1e-9
        hwbench.record("copy_gb_s", 2 * 8 * n / copy_s / 1e9, unit="GB/s")
        hwbench.record("triad_gb_s", 3 * 8 * n / triad_s / 1e9, unit="GB/s")


@pytest.mark.hwbench(sweep={"file_mib": [32]})
def test_file_io(hwbench, scratch_dir: Path, file_mib: int) -> None:
    """Sequential write (with fsync, so it reaches the device) and read-back of one file in 1 MiB blocks.

    The read usually comes from the page cache: it measures the kernel's copy path, not the disk.
    """
    block = os.urandom(2**20)
    path = scratch_dir / "hwbench-io.bin"
    try:
        t0 = time.perf_counter_ns()
        with open(path, "wb") as fh:
            for _ in range(file_mib):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        write_s = (time.perf_counter_ns() - t0) * 1e-9
        t0 = time.perf_counter_ns()
        with open(path, "rb", buffering=0) as fh:
            while fh.read(2**20):
                pass
        read_s = (time.perf_counter_ns() - t0) * 1e-9
    finally:
        path.unlink(missing_ok=True)
    hwbench.record("write_mb_s", file_mib * 1.048576 / write_s, unit="MB/s")
    hwbench.record("read_mb_s", file_mib * 1.048576 / read_s, unit="MB/s")
