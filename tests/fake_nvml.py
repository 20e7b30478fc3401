"""A FAKE ``pynvml`` module (NVML), for exercising GPU sampling on machines without an NVIDIA GPU.

It is a fake on purpose and named as one: CI has no GPU, and the point of the tests that use it is the
sampler's handling of NVML's answers (units, aggregation over GPUs, throttle-reason bits, unsupported
queries), which a real GPU cannot be told to produce. The real-GPU path is tested separately and skips with
the exact reason when there is no GPU.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field


@dataclass
class FakeGpu:
    util: float = 97.0
    mem_util: float = 40.0
    mem_used_mib: float = 30_000.0
    sm_clock_mhz: float = 1_755.0
    power_mw: float = 650_000.0
    temp_c: float = 71.0
    throttle: int = 0x4  # software power cap
    unsupported: set[str] = field(default_factory=set)  # query names that raise NotSupported


class FakeNVMLError(Exception):
    pass


def fake_pynvml(gpus: list[FakeGpu]) -> types.ModuleType:
    """A module with the pynvml calls the sampler makes, answering from ``gpus`` (mutable while in use)."""
    mod = types.ModuleType("pynvml")
    mod.NVML_CLOCK_SM = 1  # type: ignore[attr-defined]
    mod.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    mod.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    mod.calls = {"init": 0, "shutdown": 0}  # type: ignore[attr-defined]

    def check(h: FakeGpu, name: str) -> FakeGpu:
        if name in h.unsupported:
            raise FakeNVMLError(f"{name}: Not Supported")
        return h

    def init() -> None:
        mod.calls["init"] += 1  # type: ignore[attr-defined]

    def shutdown() -> None:
        mod.calls["shutdown"] += 1  # type: ignore[attr-defined]

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(gpus)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: gpus[i]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        gpu=check(h, "util").util, memory=h.mem_util)
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(  # type: ignore[attr-defined]
        used=int(check(h, "mem").mem_used_mib * 1024 * 1024), total=80 * 1024**3)
    mod.nvmlDeviceGetClockInfo = lambda h, kind: check(h, "clock").sm_clock_mhz  # type: ignore[attr-defined]
    mod.nvmlDeviceGetPowerUsage = lambda h: int(check(h, "power").power_mw)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetTemperature = lambda h, kind: check(h, "temp").temp_c  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCurrentClocksThrottleReasons = (  # type: ignore[attr-defined]
        lambda h: check(h, "throttle").throttle)
    return mod
