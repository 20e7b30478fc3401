"""Memory bandwidth the STREAM way: Copy, Scale, Add and Triad in GB/s, cross-checked with likwid-bench.

Why a kernel of our own: STREAM is a C source, not a Debian package, and its array size is a compile-time
constant. ``stream_kernel.c`` (next to this file) is a STREAM-method variant — same kernels, byte counting
and best-of-N rule (first iteration excluded), same table — that takes the size and N on the command line.
It is compiled with ``gcc -O3 -fopenmp`` on first use and cached under ``$HWBENCH_CACHE/stream/<hash>/``
(the hash covers the source and the compiler flags, so an edit rebuilds). STREAM's rule that each array be
well beyond the last-level cache is applied by :func:`array_elements` (4x the total LLC by default).

The cross-check runs Debian's ``likwid-bench`` (package ``likwid``) ``copy`` and ``stream`` (triad) kernels
on the same working-set size and thread count in the same test: two independent implementations agreeing
is what makes a bandwidth figure believable.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_hwbench.errors import ServiceUnavailable
from pytest_hwbench.workloads.hardware.runner import ToolFailed, cache_dir, find_tool, version_of

SOURCE = Path(__file__).with_name("stream_kernel.c")
CFLAGS: tuple[str, ...] = ("-O3", "-fopenmp")
INSTALL_GCC = "apt-get install gcc (the STREAM kernel is compiled on first use)"
INSTALL_LIKWID = "apt-get install likwid (likwid-bench cross-checks the STREAM kernel)"
KERNELS: tuple[str, ...] = ("copy", "scale", "add", "triad")

_ROW = re.compile(r"^(Copy|Scale|Add|Triad):\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", re.M)
_THREADS = re.compile(r"Number of Threads counted = (\d+)")
_ELEMENTS = re.compile(r"Array size = (\d+)")
_NTIMES = re.compile(r"executed (\d+) times")


@dataclass(frozen=True)
class StreamResult:
    """STREAM's table: best rate per kernel in MB/s (10^6 bytes/s) and min/avg/max times in seconds."""

    best_mb_s: dict[str, float]
    avg_s: dict[str, float]
    min_s: dict[str, float]
    max_s: dict[str, float]
    threads: int | None
    elements: int | None
    ntimes: int | None
    validated: bool


def llc_bytes() -> int | None:
    """Total last-level cache of the machine: the LLC size times the number of distinct LLC instances."""
    best_level, size, instances = -1, 0, set()
    for index in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cache/index[0-9]*"):
        try:
            level = int(Path(index, "level").read_text())
            kind = Path(index, "type").read_text().strip()
            text = Path(index, "size").read_text().strip()
            shared = Path(index, "shared_cpu_list").read_text().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        num = int(re.sub(r"\D", "", text) or 0) * {"K": 1024, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        if level > best_level:
            best_level, size, instances = level, num, {shared}
        elif level == best_level:
            instances.add(shared)
    return size * len(instances) if size else None


def array_elements(array_mib: float | None, *, llc_factor: float = 4.0, floor_mib: float = 64.0) -> int:
    """Elements per array: ``array_mib`` when given, else ``llc_factor`` x total LLC (STREAM's rule), at
    least ``floor_mib``."""
    if array_mib:
        return int(array_mib * 2**20 // 8)
    llc = llc_bytes() or 0
    return int(max(llc * llc_factor, floor_mib * 2**20) // 8)


def _compiler() -> str:
    return find_tool((os.environ.get("CC", "gcc"), "gcc", "cc"), install=INSTALL_GCC)


def build_kernel() -> tuple[str, str]:
    """Path of the compiled kernel (built once, cached) and its version line (source hash + compiler)."""
    cc = _compiler()
    cc_version = version_of([cc, "--version"])
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join((cc_version, *CFLAGS)).encode()).hexdigest()[:12]
    target = Path(cache_dir(), "stream", digest, "hwbench-stream")
    version = f"hwbench-stream {digest} ({cc_version}; {' '.join(CFLAGS)})"
    if target.is_file():
        return str(target), version
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".hwbench-stream.", dir=target.parent)
    os.close(fd)
    try:
        res = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE), "-lm"], capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            raise ServiceUnavailable(f"compiling the STREAM kernel with {cc} failed: {res.stderr.strip()[-400:]} "
                                     f"({INSTALL_GCC}; OpenMP needs libgomp)")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)  # atomic: a concurrent worker sees no half-written binary
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return str(target), version


def stream_argv(binary: str, *, elements: int, ntimes: int) -> list[str]:
    return [binary, str(elements), str(ntimes)]


def parse_stream(text: str) -> StreamResult:
    """Parse STREAM's table (stream.c 5.x and the hwbench kernel print the same one)."""
    rows = {m.group(1).lower(): [float(x) for x in m.groups()[1:]] for m in _ROW.finditer(text)}
    if set(rows) != set(KERNELS):
        raise ToolFailed("STREAM output lacks the Copy/Scale/Add/Triad table: "
                         + (text.strip().splitlines() or ["(nothing)"])[-1])
    if "Failed Validation" in text:
        raise ToolFailed("STREAM results failed validation: " + next(
            line for line in text.splitlines() if "Failed Validation" in line))
    threads, elements, ntimes = (_THREADS.search(text), _ELEMENTS.search(text), _NTIMES.search(text))
    return StreamResult(best_mb_s={k: v[0] for k, v in rows.items()}, avg_s={k: v[1] for k, v in rows.items()},
                        min_s={k: v[2] for k, v in rows.items()}, max_s={k: v[3] for k, v in rows.items()},
                        threads=int(threads.group(1)) if threads else None,
                        elements=int(elements.group(1)) if elements else None,
                        ntimes=int(ntimes.group(1)) if ntimes else None,
                        validated="Solution Validates" in text)


# ------------------------------------------------------------------------------------- likwid-bench

_LIKWID_MBS = re.compile(r"^MByte/s:\s+([\d.]+)", re.M)
_LIKWID_THREADS = re.compile(r"^Using (\d+) threads", re.M)
_LIKWID_SIZE = re.compile(r"^Size \(Byte\):\s+(\d+)", re.M)
_LIKWID_ERROR = re.compile(r"^(?:Error|ERROR)[: ].*$", re.M)
#: likwid-bench test names for the STREAM kernels it has (its ``stream`` test is STREAM's triad).
LIKWID_TESTS: dict[str, str] = {"copy": "copy", "triad": "stream"}
#: Arrays each likwid test streams: its -w size is the total of all of them.
LIKWID_ARRAYS: dict[str, int] = {"copy": 2, "triad": 3}


@dataclass(frozen=True)
class LikwidResult:
    mb_s: float
    threads: int | None
    size_bytes: int | None


def find_likwid() -> str:
    return find_tool(("likwid-bench",), install=INSTALL_LIKWID)


def likwid_version(binary: str) -> str:
    return version_of([binary, "-v"], pick="Version")


def likwid_argv(binary: str, *, kernel: str, elements: int, threads: int, iterations: int) -> list[str]:
    size_kb = elements * 8 * LIKWID_ARRAYS[kernel] // 1000
    return [binary, "-t", LIKWID_TESTS[kernel], "-w", f"N:{size_kb}kB:{threads}", "-i", str(iterations)]


def parse_likwid(text: str) -> LikwidResult:
    """``MByte/s:`` of a likwid-bench run (10^6 bytes/s)."""
    mbs = _LIKWID_MBS.search(text)
    if not mbs:
        err = _LIKWID_ERROR.search(text)
        raise ToolFailed("likwid-bench failed: " + (err.group(0) if err else "no 'MByte/s:' line in its output"))
    thr, size = _LIKWID_THREADS.search(text), _LIKWID_SIZE.search(text)
    return LikwidResult(mb_s=float(mbs.group(1)), threads=int(thr.group(1)) if thr else None,
                        size_bytes=int(size.group(1)) if size else None)


def have(binary: str) -> bool:
    return shutil.which(binary) is not None
