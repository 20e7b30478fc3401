"""NVIDIA GPUs through NVML: utilisation, memory, SM clock, power, temperature and throttle reasons.

Why NVML and not ``nvidia-smi``: one library call per value (microseconds) instead of a process per sample.
``pynvml`` (package ``nvidia-ml-py``) is optional and imported lazily; :func:`nvml_source` returns None with
the reason when there is no usable GPU, so the sampler simply has no GPU series. Calls go through the lock of
:mod:`pytest_hwbench.measure.gpu`, because pynvml's Python-side bookkeeping is not thread safe.

Throttle reasons are NVML's bit mask (``nvmlClocksThrottleReason*``); the idle and application-clock bits are
dropped, since neither means the GPU was held back while working. ``gpu_throttle`` keeps the rest, and
:data:`THROTTLE_REASONS` names the bits for the evidence line.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pytest_hwbench.measure.gpu import _NVML_LOCK, no_driver_reason

_MB = 1024 * 1024

#: NVML throttle-reason bits that mean "held back while busy", with their names.
THROTTLE_REASONS: dict[int, str] = {
    0x4: "software power cap", 0x8: "hardware slowdown", 0x10: "sync boost",
    0x20: "software thermal slowdown", 0x40: "hardware thermal slowdown", 0x80: "power brake",
}


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


class NvmlSource:
    """Series: ``gpu_util`` (% busy, busiest GPU), ``gpu_mem_util`` (% of time memory was read or written),
    ``gpu_mem_mb`` (memory used, all GPUs), ``gpu_sm_clock_mhz`` (lowest SM clock), ``gpu_power_w`` (all
    GPUs), ``gpu_temp_c`` (hottest), ``gpu_throttle`` (OR of the throttle-reason bits that matter), and
    ``gpu<N>_util`` per GPU."""

    name = "nvml"

    def __init__(self, pynvml: Any, handles: list[Any]) -> None:
        self.nvml = pynvml
        self.handles = handles

    def prime(self) -> None:
        pass

    def _one(self, h: Any) -> dict[str, float]:
        n, out = self.nvml, {}
        readers = {
            "util": lambda: n.nvmlDeviceGetUtilizationRates(h),
            "mem": lambda: n.nvmlDeviceGetMemoryInfo(h).used / _MB,
            "clock": lambda: float(n.nvmlDeviceGetClockInfo(h, getattr(n, "NVML_CLOCK_SM", 1))),
            "power": lambda: n.nvmlDeviceGetPowerUsage(h) / 1000.0,
            "temp": lambda: float(n.nvmlDeviceGetTemperature(h, getattr(n, "NVML_TEMPERATURE_GPU", 0))),
            "throttle": lambda: float(int(n.nvmlDeviceGetCurrentClocksThrottleReasons(h))
                                      & sum(THROTTLE_REASONS)),
        }
        for key, read in readers.items():
            try:
                value = read()
            except Exception:  # NVMLError_NotSupported on some boards: leave the value out
                continue
            if key == "util":
                out["util"], out["mem_util"] = float(value.gpu), float(value.memory)
            else:
                out[key] = float(value)
        return out

    def sample(self) -> dict[str, float]:
        with _NVML_LOCK:
            per_gpu = [self._one(h) for h in self.handles]
        out: dict[str, float] = {}
        for i, g in enumerate(per_gpu):
            if "util" in g:
                out[f"gpu{i}_util"] = g["util"]

        def agg(key: str, fn: Any) -> float | None:
            values = [g[key] for g in per_gpu if key in g]
            return fn(values) if values else None

        for series, key, fn in (("gpu_util", "util", max), ("gpu_mem_util", "mem_util", max),
                                ("gpu_mem_mb", "mem", sum), ("gpu_sm_clock_mhz", "clock", min),
                                ("gpu_power_w", "power", sum), ("gpu_temp_c", "temp", max)):
            value = agg(key, fn)
            if value is not None:
                out[series] = value
        mask = 0
        for g in per_gpu:
            mask |= int(g.get("throttle", 0))
        out["gpu_throttle"] = float(mask)
        return out

    def close(self) -> None:
        with _NVML_LOCK, contextlib.suppress(Exception):
            self.nvml.nvmlShutdown()


_UNAVAILABLE: list[str] = []  # why NVML is not usable in this process, once found (no retry per test)


def nvml_source() -> tuple[NvmlSource | None, str]:
    """An initialised NVML source over every GPU, or (None, why not). Never raises. A missing module or
    driver is remembered for the process, so tests do not pay a failing ``nvmlInit`` each."""
    if _UNAVAILABLE:
        return None, _UNAVAILABLE[0]
    source, why = _open()
    if source is None and ("not installed" in why or "initialisation failed" in why or "no NVIDIA driver" in why):
        _UNAVAILABLE.append(why)
    return source, why


def _open() -> tuple[NvmlSource | None, str]:
    absent = no_driver_reason()
    if absent:
        return None, absent
    try:
        import pynvml  # type: ignore[import-not-found]  # optional extra: pytest-hwbench[gpu]
    except ImportError:
        return None, "pynvml not installed (pip install nvidia-ml-py)"
    except Exception as err:
        return None, f"pynvml failed to import: {err}"
    with _NVML_LOCK:
        try:
            pynvml.nvmlInit()
        except Exception as err:
            return None, f"NVML initialisation failed: {err}"
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(int(pynvml.nvmlDeviceGetCount()))]
        except Exception as err:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
            return None, f"NVML could not list GPUs: {err}"
        if not handles:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
            return None, "no NVIDIA GPU (NVML reports 0 devices)"
    return NvmlSource(pynvml, handles), ""
