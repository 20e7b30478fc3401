"""GPU telemetry through NVML, recorded with each GPU test: clocks, power, temperature, throttle reasons.

Why next to the tools: a GPU figure without the clocks and throttle state it ran at cannot be compared
across machines or before/after a driver upgrade (a card at its power cap is a different measurement).
Inventory and the "no GPU" reason come from :mod:`pytest_hwbench.measure.gpu`, so the fingerprint, the skip
message and this telemetry agree. Each reading is best effort: an unsupported query is ``None``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pytest_hwbench.measure.gpu import _NVML_LOCK, _text, gpu_inventory, gpu_skip_reason, no_driver_reason

__all__ = ["THROTTLE_REASONS", "gpu_inventory", "gpu_skip_reason", "gpu_telemetry", "throttle_names"]

#: NVML clocks-event ("throttle") reason bits and the names we report them by.
THROTTLE_REASONS: dict[int, str] = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}


def throttle_names(mask: int) -> list[str]:
    """The names of the reason bits set in an NVML throttle mask (unknown bits as hex)."""
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    rest = mask & ~sum(THROTTLE_REASONS)
    return names + ([hex(rest)] if rest else [])


def _device(pynvml: Any, index: int) -> dict[str, Any]:
    h = pynvml.nvmlDeviceGetHandleByIndex(index)
    out: dict[str, Any] = {"index": index}
    readers = {
        "name": lambda: _text(pynvml.nvmlDeviceGetName(h)),
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0,
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "utilization_pct": lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
        "memory_used_mib": lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used // 2**20,
        "memory_free_mib": lambda: pynvml.nvmlDeviceGetMemoryInfo(h).free // 2**20,
        "pstate": lambda: int(pynvml.nvmlDeviceGetPerformanceState(h)),
        "throttle_reasons": lambda: throttle_names(int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h))),
    }
    for key, read in readers.items():
        try:
            out[key] = read()
        except Exception:  # NotSupported on this GPU/driver: keep the key, say None
            out[key] = None
    return out


def gpu_telemetry() -> list[dict[str, Any]]:
    """One reading per NVIDIA GPU (empty without NVML or GPUs). Never raises."""
    if no_driver_reason():
        return []
    try:
        import pynvml  # type: ignore[import-not-found]
    except Exception:
        return []
    with _NVML_LOCK:
        try:
            pynvml.nvmlInit()
        except Exception:
            return []
        try:
            return [_device(pynvml, i) for i in range(int(pynvml.nvmlDeviceGetCount()))]
        except Exception:
            return []
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()


def free_vram_bytes() -> int | None:
    """Free memory summed over the GPUs, or None without NVML."""
    readings = gpu_telemetry()
    if not readings or any(r.get("memory_free_mib") is None for r in readings):
        return None
    return sum(int(r["memory_free_mib"]) for r in readings) * 2**20
