"""The host as a whole: CPU per core, memory, swap, disks, network and Linux pressure stall information.

Why these readings: they are what tells a saturated machine from a saturated service. Disk busy time and
queue depth come straight from ``/proc/diskstats`` (psutil does not expose the weighted I/O time, which is
the average queue), whole disks only (partitions would count the same I/O twice; loop and ram devices are
not storage). PSI (``/proc/pressure/*``, Linux >= 4.20) says how much of the time some task was stalled
waiting for CPU, memory or I/O — a direct measure of pressure where utilisation only hints at it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, TypedDict, cast

import psutil

from pytest_hwbench.measure.samplers.base import now_ns, rate

_NOT_STORAGE = ("loop", "ram", "zram", "fd", "sr")
_MB = 1024 * 1024


def whole_disks() -> set[str]:
    """Block devices that are disks (``/sys/block``), not partitions, loop, ram or optical devices."""
    try:
        names = set(os.listdir("/sys/block"))
    except OSError:
        return set()
    return {n for n in names if not n.startswith(_NOT_STORAGE)}


def read_diskstats(disks: set[str]) -> dict[str, tuple[float, float, float, float]]:
    """Per disk: (sectors read, sectors written, ms busy, weighted ms in flight) from ``/proc/diskstats``."""
    out: dict[str, tuple[float, float, float, float]] = {}
    with contextlib.suppress(OSError), open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if len(p) >= 14 and p[2] in disks:
                out[p[2]] = (float(p[5]), float(p[9]), float(p[12]), float(p[13]))
    return out


def read_psi(resource: str) -> float | None:
    """Cumulative microseconds during which some task stalled on ``resource`` (cpu, memory, io)."""
    try:
        with open(f"/proc/pressure/{resource}") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            for part in line.split():
                if part.startswith("total="):
                    return float(part[6:])
    return None


class _Snapshot(TypedDict):
    """One reading of the host counters; two of them make one sample."""

    t: int
    cpu: list[Any]  # psutil scputimes per core
    swap: tuple[int, int]
    swap_used: int
    disk: dict[str, tuple[float, float, float, float]]
    net: tuple[int, int]
    psi: dict[str, float | None]


class HostSource:
    """Host-wide readings (see the module doc). Series: ``host_cpu_util`` (% of all cores),
    ``host_cpu_core_max`` and ``host_cpu_core<N>`` (% of that core), ``host_iowait_pct``,
    ``host_mem_used_pct``, ``host_mem_avail_mb``, ``host_swap_used_mb``, ``host_swap_in_mb_s``,
    ``host_swap_out_mb_s``, ``disk_busy_pct`` and ``disk_queue`` (busiest disk), ``disk_read_mb_s``,
    ``disk_write_mb_s``, ``net_rx_mb_s``, ``net_tx_mb_s``, ``psi_<cpu|memory|io>_pct``."""

    name = "host"

    def __init__(self) -> None:
        self.disks = whole_disks()
        self._prev = cast("_Snapshot", {})  # filled by prime() before sample()

    def _read(self) -> _Snapshot:
        swap = psutil.swap_memory()
        net = psutil.net_io_counters()
        return {"t": now_ns(), "cpu": psutil.cpu_times(percpu=True), "swap": (swap.sin, swap.sout),
                "swap_used": swap.used,
                "disk": read_diskstats(self.disks),
                "net": (net.bytes_recv, net.bytes_sent) if net else (0, 0),
                "psi": {r: read_psi(r) for r in ("cpu", "memory", "io")}}

    def prime(self) -> None:
        self._prev = self._read()

    def sample(self) -> dict[str, float]:
        cur, prev = self._read(), self._prev
        self._prev = cur
        dt = (cur["t"] - prev["t"]) / 1e9
        out: dict[str, float] = {}
        busy_cores, iowait = [], 0.0
        for i, (a, b) in enumerate(zip(prev["cpu"], cur["cpu"], strict=False)):
            total = sum(b) - sum(a)
            idle = (b.idle - a.idle) + (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0))
            util = 100.0 * (1.0 - idle / total) if total > 0 else 0.0
            busy_cores.append(min(max(util, 0.0), 100.0))
            out[f"host_cpu_core{i}"] = busy_cores[-1]
            if total > 0:
                iowait += 100.0 * (getattr(b, "iowait", 0.0) - getattr(a, "iowait", 0.0)) / total
        if busy_cores:
            out["host_cpu_util"] = sum(busy_cores) / len(busy_cores)
            out["host_cpu_core_max"] = max(busy_cores)
            out["host_iowait_pct"] = iowait / len(busy_cores)
        mem = psutil.virtual_memory()
        out["host_mem_used_pct"] = 100.0 * (1.0 - mem.available / mem.total) if mem.total else 0.0
        out["host_mem_avail_mb"] = mem.available / _MB
        out["host_swap_used_mb"] = float(cur["swap_used"]) / _MB
        (si0, so0), (si1, so1) = prev["swap"], cur["swap"]
        out["host_swap_in_mb_s"] = rate(si1, si0, dt) / _MB
        out["host_swap_out_mb_s"] = rate(so1, so0, dt) / _MB
        pdisk, cdisk = prev["disk"], cur["disk"]
        if cdisk:
            busy, queue, rd, wr = 0.0, 0.0, 0.0, 0.0
            for name, (r1, w1, b1, q1) in cdisk.items():
                r0, w0, b0, q0 = pdisk.get(name, (r1, w1, b1, q1))
                busy = max(busy, min(100.0, rate(b1, b0, dt) / 10.0))  # ms busy per s -> %
                queue = max(queue, rate(q1, q0, dt) / 1000.0)  # weighted ms per s -> requests in flight
                rd += rate(r1, r0, dt) * 512 / _MB
                wr += rate(w1, w0, dt) * 512 / _MB
            out.update(disk_busy_pct=busy, disk_queue=queue, disk_read_mb_s=rd, disk_write_mb_s=wr)
        (rx0, tx0), (rx1, tx1) = prev["net"], cur["net"]
        out["net_rx_mb_s"] = rate(rx1, rx0, dt) / _MB
        out["net_tx_mb_s"] = rate(tx1, tx0, dt) / _MB
        for res, total1 in cur["psi"].items():
            total0 = prev["psi"].get(res)
            if total1 is not None and total0 is not None:
                out[f"psi_{res}_pct"] = min(100.0, rate(total1, total0, dt) / 1e4)  # us stalled per s -> %
        return out

    def close(self) -> None:
        pass
