"""7-Zip's built-in benchmark (``7zz b`` / ``7z b``): LZMA compress and decompress ratings in MIPS.

The rating is 7-Zip's own CPU-speed figure (instructions per second of a reference CPU that would give the
same speed), which is why people compare it across machines. We take the ``Avr:`` row (the average over
passes and dictionary sizes the run used) and the ``Tot:`` row as printed, so the figures equal 7-Zip's
output. ``-md`` (dictionary size, log2 bytes) keeps the run short; ``-mmt`` sets the thread count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pytest_hwbench.workloads.hardware.runner import ToolFailed, find_tool, version_of

INSTALL = "apt-get install 7zip (or p7zip-full for 7z)"

_VERSION = re.compile(r"^\s*(p?7-Zip[^:]*?)\s+(\d+\.\d+\S*)", re.M)
_THREADS = re.compile(r"#\s*Benchmark threads:\s*(\d+)|^\s*\S*\s*mt(\d+)\s*$", re.M)
# 7-Zip 16.02 printed the Avr: row without the Speed columns; 7-Zip 2x prints them.
_ROW = r"\s+(?:(\d+)\s+)?(\d+)\s+(\d+)\s+(\d+)\s+\|\s+(?:(\d+)\s+)?(\d+)\s+(\d+)\s+(\d+)"
_AVR = re.compile(r"^Avr:" + _ROW, re.M)
_TOT = re.compile(r"^Tot:\s+(\d+)\s+(\d+)\s+(\d+)", re.M)
_ERROR = re.compile(r"^(?:System ERROR:|ERROR:|Error:)\s*\n?(.*)$", re.M)


@dataclass(frozen=True)
class SevenZipResult:
    """The ``Avr:`` and ``Tot:`` rows of one ``7z b`` run (speeds in KiB/s, NaN where the version does not
    print them; ratings in MIPS)."""

    version: str
    threads: int | None
    compress_kib_s: float
    compress_usage_pct: float
    compress_mips: float
    decompress_kib_s: float
    decompress_usage_pct: float
    decompress_mips: float
    total_usage_pct: float
    total_mips: float


def find_7zip() -> str:
    return find_tool(("7zz", "7z", "7za"), install=INSTALL)


def sevenzip_version(binary: str) -> str:
    # Running with no arguments prints the banner and the usage, exit 0.
    line = version_of([binary], pick="7-Zip")
    return line.split(":")[0].strip() if ":" in line else line


def sevenzip_argv(binary: str, *, threads: int, dict_log2: int, passes: int) -> list[str]:
    return [binary, "b", str(passes), f"-md{dict_log2}", f"-mmt{threads}"]


def parse_sevenzip(text: str) -> SevenZipResult:
    """Parse ``7z b`` output (7-Zip 2x and p7zip 16.02 layouts). Raises :class:`ToolFailed` on an error
    report or when the rating rows are missing."""
    err = _ERROR.search(text)
    avr, tot = _AVR.search(text), _TOT.search(text)
    if err or not avr or not tot:
        detail = (err.group(1).strip() or err.group(0).strip()) if err else "no 'Avr:'/'Tot:' rating rows"
        raise ToolFailed(f"7-Zip benchmark failed: {detail}")
    ver = _VERSION.search(text)
    thr = _THREADS.search(text)
    threads = int(thr.group(1) or thr.group(2)) if thr else None
    a = [float("nan") if x is None else float(x) for x in avr.groups()]
    t = [float(x) for x in tot.groups()]
    return SevenZipResult(
        version=f"{ver.group(1)} {ver.group(2)}" if ver else "unknown", threads=threads,
        compress_kib_s=a[0], compress_usage_pct=a[1], compress_mips=a[3],
        decompress_kib_s=a[4], decompress_usage_pct=a[5], decompress_mips=a[7],
        total_usage_pct=t[0], total_mips=t[2])
