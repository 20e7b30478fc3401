"""fio on the recipe's scratch directory: sequential MB/s, 4k random IOPS and completion-latency percentiles.

One fio job per run, ``--output-format=json``; the figures are fio's own (``bw_bytes``, ``iops``,
``clat_ns.percentile``), converted only in unit (MB/s = 10^6 bytes/s, latency in microseconds). Direct I/O
(``O_DIRECT``) is used where the filesystem allows it, so the device is measured rather than the page
cache; where it does not (some tmpfs, overlay or network filesystems) the run says ``direct=0`` in its
record. fio 2.x wrote latencies in microseconds under ``clat`` and had no ``bw_bytes``; both layouts parse.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field

from pytest_hwbench.workloads.hardware.runner import ToolFailed, find_tool, version_of

INSTALL = "apt-get install fio"

#: The jobs the storage benchmark runs: name -> (fio rw mode, block size).
JOBS: dict[str, tuple[str, str]] = {
    "seqread": ("read", "1M"),
    "seqwrite": ("write", "1M"),
    "randread": ("randread", "4k"),
    "randwrite": ("randwrite", "4k"),
}
#: Completion-latency percentiles reported (fio's default list contains them all).
PERCENTILES: dict[str, str] = {"p50": "50.000000", "p99": "99.000000", "p99.9": "99.900000"}


@dataclass(frozen=True)
class FioDirection:
    """One direction (read or write) of one fio job, in fio's own figures."""

    bw_bytes_s: float
    iops: float
    io_bytes: int
    clat_us: dict[str, float] = field(default_factory=dict)  # p50/p99/p99.9 and mean
    runtime_ms: float = 0.0


@dataclass(frozen=True)
class FioResult:
    version: str
    jobname: str
    read: FioDirection | None
    write: FioDirection | None


def find_fio() -> str:
    return find_tool(("fio",), install=INSTALL)


def fio_version(binary: str) -> str:
    return version_of([binary, "--version"])


def direct_io_supported(directory: str) -> bool:
    """True when ``O_DIRECT`` opens a file in ``directory`` (tmpfs and some overlays refuse it)."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    fd, path = tempfile.mkstemp(prefix=".hwbench-odirect-", dir=directory)
    os.close(fd)
    try:
        fd = os.open(path, os.O_RDWR | flag)
        os.close(fd)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def fio_argv(binary: str, *, job: str, filename: str, size_mib: int, runtime_s: float, direct: bool,
             ioengine: str, iodepth: int) -> list[str]:
    rw, bs = JOBS[job]
    return [binary, f"--name={job}", f"--filename={filename}", f"--size={size_mib}M", f"--rw={rw}", f"--bs={bs}",
            f"--ioengine={ioengine}", f"--iodepth={iodepth}", f"--direct={int(direct)}",
            f"--runtime={runtime_s:g}", "--time_based", "--ramp_time=0", "--randrepeat=1", "--end_fsync=1",
            "--output-format=json"]


def _direction(d: dict) -> FioDirection | None:
    if not d or not (d.get("io_bytes") or d.get("io_kbytes") or d.get("total_ios")):
        return None
    if "clat_ns" in d:
        clat, scale = d["clat_ns"], 1e-3
    else:  # fio 2.x: microseconds under "clat"
        clat, scale = d.get("clat", {}), 1.0
    pct = clat.get("percentile", {}) or {}
    lat = {name: float(pct[key]) * scale for name, key in PERCENTILES.items() if key in pct}
    if "mean" in clat:
        lat["mean"] = float(clat["mean"]) * scale
    bw = float(d["bw_bytes"]) if "bw_bytes" in d else float(d.get("bw", 0)) * 1024  # fio 2.x: KiB/s
    io_bytes = int(d.get("io_bytes") or int(d.get("io_kbytes", 0)) * 1024)
    return FioDirection(bw_bytes_s=bw, iops=float(d.get("iops", 0.0)), io_bytes=io_bytes, clat_us=lat,
                        runtime_ms=float(d.get("runtime", 0)))


def parse_fio(text: str) -> FioResult:
    """The first job of fio's JSON output. Warnings fio prints before the JSON are skipped; a job error or
    output without JSON raises :class:`ToolFailed` with fio's message."""
    start = text.find("{")
    if start < 0:
        raise ToolFailed(f"fio printed no JSON: {text.strip()[-500:] or '(nothing)'}")
    try:
        doc = json.loads(text[start:])
    except json.JSONDecodeError as err:
        raise ToolFailed(f"fio's JSON output does not parse ({err})") from None
    jobs = doc.get("jobs") or []
    if not jobs:
        raise ToolFailed("fio's JSON output has no jobs")
    job = jobs[0]
    if job.get("error"):
        raise ToolFailed(f"fio job {job.get('jobname')!r} failed with error {job['error']} "
                         f"({os.strerror(int(job['error']))})")
    return FioResult(version=str(doc.get("fio version", "unknown")), jobname=str(job.get("jobname", "")),
                     read=_direction(job.get("read", {})), write=_direction(job.get("write", {})))
