"""One trial of each hardware benchmark: find the tool, run it, parse its output, record the figures.

The shipped benchmarks (``benchmarks/test_hardware.py``, ``benchmarks/test_gguf.py``) are one call each, so a
user's own benchmark can reuse them. Figures are recorded exactly as the tool printed them, converted only
in unit; the run's argv, version and wall time land in ``hwbench.extra["tools"]``, the version also in the
environment of the baseline.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.workloads.hardware import fio, llama_bench, sevenzip, stream
from pytest_hwbench.workloads.hardware.gpu import gpu_telemetry
from pytest_hwbench.workloads.hardware.runner import ToolFailed, note_run, require, run_tool

#: Likwid and the STREAM kernel disagreeing by more than this factor means one of them is not measuring
#: memory (arrays in cache, wrong thread count); a busy machine stays well inside it.
CROSS_CHECK_FACTOR = 3.0


def resolve_threads(value: Any) -> int:
    """A sweep value for a thread count: an int, or ``max`` (every logical CPU this process may use)."""
    if isinstance(value, str) and value.strip().lower() in ("max", "all"):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return int(value)


_VERSIONS: dict[tuple[str, str], str] = {}


def _cached_version(hwbench: Any, key: str, fn: Any, binary: str) -> str:
    """A tool's version, asked once per process (every trial of every test would otherwise re-ask)."""
    if (key, binary) not in _VERSIONS:
        _VERSIONS[key, binary] = fn(binary)
    return _VERSIONS[key, binary]


def sevenzip_trial(hwbench: Any, threads: Any) -> sevenzip.SevenZipResult:
    hw = hwbench.recipe.hardware
    binary = require(sevenzip.find_7zip)
    version = _cached_version(hwbench, "7zip", sevenzip.sevenzip_version, binary)
    n = resolve_threads(threads)
    run = run_tool("7zip", sevenzip.sevenzip_argv(binary, threads=n, dict_log2=hw.sevenzip_dict_log2,
                                                    passes=hw.sevenzip_passes), timeout=hw.timeout_s, version=version)
    res = sevenzip.parse_sevenzip(run.stdout + run.stderr)
    hwbench.record("compress_mips", res.compress_mips, unit="MIPS", better="higher")
    hwbench.record("decompress_mips", res.decompress_mips, unit="MIPS", better="higher")
    hwbench.record("total_mips", res.total_mips, unit="MIPS", better="higher")
    note_run(hwbench, run, threads=res.threads, parsed=vars(res))
    return res


def stream_trial(hwbench: Any, threads: Any) -> stream.StreamResult:
    hw = hwbench.recipe.hardware
    binary, version = require(stream.build_kernel)
    n = resolve_threads(threads)
    elements = stream.array_elements(hw.stream_array_mib)
    likwid = require(stream.find_likwid) if hw.stream_cross_check else None
    env = {"OMP_NUM_THREADS": str(n), "OMP_PROC_BIND": "spread"}

    def run_stream() -> tuple[Any, stream.StreamResult]:
        run = run_tool("stream", stream.stream_argv(binary, elements=elements, ntimes=hw.stream_ntimes),
                       timeout=hw.timeout_s, version=version, env=env)
        return run, stream.parse_stream(run.stdout)

    run, res = run_stream()
    for kernel in stream.KERNELS:
        hwbench.record(f"{kernel}_gb_s", res.best_mb_s[kernel] / 1000.0, unit="GB/s")
    note_run(hwbench, run, threads=res.threads, array_mib=elements * 8 / 2**20, parsed=vars(res))
    if likwid is None:
        return res
    lversion = _cached_version(hwbench, "likwid", stream.likwid_version, likwid)

    def likwid_mb_s(kernel: str) -> float:
        lrun = run_tool("likwid-bench", stream.likwid_argv(likwid, kernel=kernel, elements=elements, threads=n,
                                                           iterations=hw.stream_ntimes),
                        timeout=hw.timeout_s, version=lversion)
        lres = stream.parse_likwid(lrun.stdout + lrun.stderr)
        note_run(hwbench, lrun, threads=lres.threads)
        return lres.mb_s

    again: stream.StreamResult | None = None  # STREAM's second reading: taken once, for every kernel
    checks: dict[str, dict[str, Any]] = {}
    for kernel in stream.LIKWID_TESTS:
        ours, theirs = res.best_mb_s[kernel], likwid_mb_s(kernel)
        hwbench.record(f"likwid_{kernel}_gb_s", theirs / 1000.0, unit="GB/s")
        check: dict[str, Any] = {"stream_mb_s": ours, "likwid_mb_s": theirs, "ratio": ours / theirs}
        if not _agree(ours, theirs):
            # One more reading of each, best kept (STREAM's own rule): with threads=max on a shared machine
            # one descheduled OpenMP thread can hold a whole iteration of either tool back.
            again = again or run_stream()[1]
            ours, theirs = max(ours, again.best_mb_s[kernel]), max(theirs, likwid_mb_s(kernel))
            check.update(stream_mb_s=ours, likwid_mb_s=theirs, ratio=ours / theirs, reread=True)
        checks[kernel] = check
        if not _agree(ours, theirs):
            text = (f"STREAM {kernel} {ours:.0f} MB/s and likwid-bench {theirs:.0f} MB/s differ by more than "
                    f"{CROSS_CHECK_FACTOR:g}x on the same {elements * 8 / 2**20:.0f} MiB arrays and {n} threads")
            busy = _busy_machine()
            if busy:  # not evidence either way: said, not failed
                check["not_judged"] = f"{text}, on a busy machine ({busy})"
                warnings.warn(f"{check['not_judged']}: the cross-check is not judged", stacklevel=2)
                continue
            pytest.fail(f"{text}: one is not measuring memory (set hardware.stream_array_mib larger, or "
                        "hardware.stream_cross_check: false)", pytrace=False)
    hwbench.extra["stream_cross_check"] = checks
    return res


def _agree(a: float, b: float) -> bool:
    return b > 0 and 1 / CROSS_CHECK_FACTOR <= a / b <= CROSS_CHECK_FACTOR


def _busy_machine() -> str | None:
    """The 1-minute load average when it exceeds the CPUs this process may use (else None)."""
    cpus = resolve_threads("max")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return f"load average {load:.1f} on {cpus} CPUs" if load > cpus else None


def fio_trial(hwbench: Any, job: str, scratch_dir: Path) -> fio.FioResult:
    hw = hwbench.recipe.hardware
    binary = require(fio.find_fio)
    version = _cached_version(hwbench, "fio", fio.fio_version, binary)
    work = tempfile.mkdtemp(prefix="hwbench-fio-", dir=scratch_dir)
    try:
        direct = fio.direct_io_supported(work)
        argv = fio.fio_argv(binary, job=job, filename=os.path.join(work, f"{job}.bin"), size_mib=hw.fio_size_mib,
                            runtime_s=hw.fio_runtime_s, direct=direct, ioengine=hw.fio_ioengine,
                            iodepth=hw.fio_iodepth if job.startswith("rand") else 1)
        run = run_tool("fio", argv, timeout=hw.timeout_s + hw.fio_runtime_s, version=version, check=False)
        res = fio.parse_fio(run.stdout)  # a job error is in the JSON; parse first for fio's own message
        if run.returncode != 0:
            raise ToolFailed(f"fio exited with status {run.returncode}: {run.command}\n{run.tail()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    side = res.read if fio.JOBS[job][0] in ("read", "randread") else res.write
    if side is None:
        raise ToolFailed(f"fio job {job} moved no data: {run.command}")
    direction = "read" if side is res.read else "write"
    if job.startswith("seq"):
        hwbench.record(f"{direction}_mb_s", side.bw_bytes_s / 1e6, unit="MB/s")
    else:
        hwbench.record(f"{direction}_iops", side.iops, unit="IO/s")
        for name, value in side.clat_us.items():
            if name != "mean":
                hwbench.record(f"clat_{name.replace('.', '')}_us", value, unit="us")
    note_run(hwbench, run, direct=direct, scratch_dir=str(scratch_dir), parsed={
        "bw_bytes_s": side.bw_bytes_s, "iops": side.iops, "clat_us": side.clat_us})
    return res


def llama_bench_trial(hwbench: Any, model_path: str, *, n_prompt: int, n_gen: int, threads: Any = None,
                      batch_size: Any = None, n_gpu_layers: Any = None, flash_attn: Any = None
                      ) -> list[llama_bench.LlamaBenchRecord]:
    hw = hwbench.recipe.hardware
    binary = require(llama_bench.find_llama_bench)
    version = _cached_version(hwbench, "llama-bench", llama_bench.llama_bench_version, binary)
    argv = llama_bench.llama_bench_argv(
        binary, model=model_path, n_prompt=n_prompt, n_gen=n_gen, repetitions=hw.llama_bench_repetitions,
        threads=None if threads is None else resolve_threads(threads), batch_size=batch_size,
        n_gpu_layers=n_gpu_layers, flash_attn=flash_attn)
    gpu_before = gpu_telemetry() if n_gpu_layers else []
    run = run_tool("llama-bench", argv, timeout=hw.timeout_s, version=version)
    records = llama_bench.parse_llama_bench(run.stdout)
    if n_gpu_layers and not llama_bench.has_gpu_backend(records):
        pytest.skip(f"this llama-bench build has no GPU backend (backends: {records[0].backends or 'CPU'}); "
                    "n_gpu_layers > 0 needs a CUDA/ROCm/Vulkan/Metal build of llama.cpp")
    for rec in records:
        if rec.kind in ("pp", "tg"):
            hwbench.record(f"{rec.kind}_tok_s", rec.samples_ts, unit="tok/s")
    raw = hwbench.extra.setdefault("llama_bench_json", [])
    raw.append([r.raw for r in records])  # llama-bench's own JSON, per trial, for checking the figures
    note_run(hwbench, run, build=records[0].build, backends=records[0].backends,
             model=Path(model_path).name)
    if n_gpu_layers:
        hwbench.extra.setdefault("gpu_telemetry", []).append({"before": gpu_before, "after": gpu_telemetry()})
    return records
