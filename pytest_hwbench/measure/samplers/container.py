"""A container's cgroup: CPU used and throttled, memory against its limit, OOM kills.

Why cgroup files and not ``docker stats``: the Docker API answers one stats request in tens of milliseconds
of daemon work and, in streaming mode, once a second — too coarse and too costly at a 200 ms tick. The
kernel's cgroup files hold the same counters (Docker computes its figures from them) and cost one small
read each. The cgroup is found from the container's init pid (``/proc/<pid>/cgroup``), for cgroup v2 and v1.
"""

from __future__ import annotations

import math
from pathlib import Path

from pytest_hwbench.measure.samplers.base import now_ns, rate

_MB = 1024 * 1024
_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


def _read_keyed(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                out[key] = int(value)
    except OSError:
        pass
    return out


def cgroup_dirs(pid: int, root: Path = _ROOT) -> dict[str, Path]:
    """Controller -> cgroup directory of ``pid``: ``{"unified": dir}`` on v2, ``{"cpuacct": ..., "memory":
    ..., "cpu": ...}`` on v1. Empty when the process or the cgroup file system is not readable."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return {}
    out: dict[str, Path] = {}
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "" and (root / "cgroup.controllers").exists():
            out["unified"] = root / rel
        for ctl in controllers.split(","):
            if ctl in ("cpu", "cpuacct", "memory") and (root / ctl / rel).is_dir():
                out[ctl] = root / ctl / rel
    return out


class CgroupSource:
    """Series: ``container_cpu_util`` (% of one core), ``container_cpu_throttled_pct`` (% of wall time the
    cgroup was throttled by its CPU quota), ``container_cpu_limit`` (cores, when a quota is set),
    ``container_mem_mb`` (usage less inactive page cache, as ``docker stats`` shows it),
    ``container_mem_limit_mb`` (when limited), ``container_oom_kills`` (since the container started)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.name = pid, f"cgroup:{pid}"
        self.dirs = cgroup_dirs(pid)
        self._prev: tuple[int, float | None, float | None] | None = None

    @property
    def available(self) -> bool:
        return bool(self.dirs)

    def _cpu(self) -> tuple[float | None, float | None]:
        """(CPU seconds used, seconds throttled), cumulative."""
        if "unified" in self.dirs:
            stat = _read_keyed(self.dirs["unified"] / "cpu.stat")
            used = stat.get("usage_usec")
            thr = stat.get("throttled_usec")
            return (None if used is None else used / 1e6, None if thr is None else thr / 1e6)
        used_ns = _read_int(self.dirs["cpuacct"] / "cpuacct.usage") if "cpuacct" in self.dirs else None
        thr_ns = _read_keyed(self.dirs["cpu"] / "cpu.stat").get("throttled_time") if "cpu" in self.dirs else None
        return (None if used_ns is None else used_ns / 1e9, None if thr_ns is None else thr_ns / 1e9)

    def _limits(self) -> tuple[float | None, int | None]:
        """(CPU limit in cores, memory limit in bytes); None when unlimited."""
        quota: str | int | None  # text of cpu.max (v2), or microseconds (v1)
        period: str | int | None
        if "unified" in self.dirs:
            cores: float | None = None
            try:
                quota, period = (self.dirs["unified"] / "cpu.max").read_text().split()
                cores = None if quota == "max" else int(quota) / int(period)
            except (OSError, ValueError):
                pass
            return cores, _read_int(self.dirs["unified"] / "memory.max")
        cores = None
        if "cpu" in self.dirs:
            quota, period = _read_int(self.dirs["cpu"] / "cpu.cfs_quota_us"), _read_int(
                self.dirs["cpu"] / "cpu.cfs_period_us")
            if quota and period and quota > 0:
                cores = quota / period
        mem = _read_int(self.dirs["memory"] / "memory.limit_in_bytes") if "memory" in self.dirs else None
        return cores, (mem if mem is not None and mem < 1 << 60 else None)

    def _memory(self) -> tuple[float | None, float | None]:
        """(bytes in use less inactive file cache, OOM kills)."""
        if "unified" in self.dirs:
            d = self.dirs["unified"]
            usage = _read_int(d / "memory.current")
            stat = _read_keyed(d / "memory.stat")
            events = _read_keyed(d / "memory.events")
            inactive = stat.get("inactive_file", 0)
            return (None if usage is None else float(max(usage - inactive, 0)),
                    float(events["oom_kill"]) if "oom_kill" in events else None)
        if "memory" not in self.dirs:
            return None, None
        d = self.dirs["memory"]
        usage = _read_int(d / "memory.usage_in_bytes")
        inactive = _read_keyed(d / "memory.stat").get("total_inactive_file", 0)
        oom = _read_keyed(d / "memory.oom_control").get("oom_kill")
        return (None if usage is None else float(max(usage - inactive, 0)), None if oom is None else float(oom))

    def prime(self) -> None:
        used, thr = self._cpu()
        self._prev = (now_ns(), used, thr)

    def sample(self) -> dict[str, float]:
        t = now_ns()
        used, thr = self._cpu()
        assert self._prev is not None, "prime() first"
        t0, used0, thr0 = self._prev
        self._prev = (t, used, thr)
        dt = (t - t0) / 1e9
        out: dict[str, float] = {}
        if used is not None and used0 is not None:
            out["container_cpu_util"] = 100.0 * rate(used, used0, dt)
        if thr is not None and thr0 is not None:
            out["container_cpu_throttled_pct"] = min(100.0, 100.0 * rate(thr, thr0, dt))
        cores, mem_limit = self._limits()
        if cores is not None:
            out["container_cpu_limit"] = cores
        mem, oom = self._memory()
        if mem is not None:
            out["container_mem_mb"] = mem / _MB
        if mem_limit is not None:
            out["container_mem_limit_mb"] = mem_limit / _MB
        if oom is not None and math.isfinite(oom):
            out["container_oom_kills"] = oom
        return out

    def close(self) -> None:
        pass
