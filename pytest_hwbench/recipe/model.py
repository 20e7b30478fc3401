"""The validated recipe as typed objects. ``recipe.loader`` builds these; nothing else parses YAML.

A recipe says which services a run uses, which values sweep parameters take, how many repetitions each
benchmark runs, which SLOs apply to which tests (by node-id pattern) and how baselines are compared.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Literal

Backend = Literal["docker", "process", "external"]
InconclusivePolicy = Literal["fail", "warn", "rerun"]

BACKENDS: tuple[str, ...] = ("docker", "process", "external")
INCONCLUSIVE_POLICIES: tuple[str, ...] = ("fail", "warn", "rerun")


def nodeid_matches(nodeid: str, pattern: str) -> bool:
    """True when ``pattern`` (fnmatch syntax) matches the node id or a tail of it that starts at a path
    (``/``) or ``::`` boundary, so ``test_matmul*`` and ``test_host.py::*`` both select
    ``benchmarks/test_host.py::test_matmul[256]``."""
    return (fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(nodeid, "*/" + pattern)
            or fnmatch.fnmatchcase(nodeid, "*::" + pattern))


@dataclass(frozen=True)
class MetricPolicy:
    """Per-metric overrides of the baseline policy; None means "use the recipe-wide value"."""

    tolerance: float | None = None
    inconclusive: InconclusivePolicy | None = None


@dataclass(frozen=True)
class BaselinePolicy:
    """How baselines are stored and compared (docs/verdicts.md)."""

    dir: str = "baselines"
    tolerance: float = 0.05
    inconclusive: InconclusivePolicy = "warn"
    reruns: int = 5
    stale_factor: float = 2.0
    confidence: float = 0.95
    require: bool = False
    metrics: dict[str, MetricPolicy] = field(default_factory=dict)
    # History and sequential trials (docs/verdicts.md says how the defaults were chosen).
    sessions: int = 5                 # stored sessions kept per test
    session_noise: float = 0.03       # prior SD of a whole session's shift, until the history measures it
    max_seconds: float = 300.0        # time budget for the sequential rounds (``reruns`` is the round budget)

    def tolerance_for(self, metric: str) -> float:
        mp = self.metrics.get(metric)
        return mp.tolerance if mp and mp.tolerance is not None else self.tolerance

    def inconclusive_for(self, metric: str) -> InconclusivePolicy:
        mp = self.metrics.get(metric)
        return mp.inconclusive if mp and mp.inconclusive is not None else self.inconclusive


@dataclass(frozen=True)
class ServiceSpec:
    """A service the recipe provides, by the name tests ask for (e.g. ``llm``, ``redis``)."""

    name: str
    kind: str
    backend: Backend
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str | None = None
    experiment: str = "hwbench"
    enabled: bool = True
    #: how long the first answer of a tracking server may take, and how many more tries (with backoff)
    probe_timeout_s: float = 3.0
    probe_retries: int = 0


@dataclass(frozen=True)
class ResourceSettings:
    """Resource sampling during measured trials (``measure.samplers``): on/off, tick interval, GPUs."""

    enabled: bool = True
    interval_ms: int = 200
    gpu: bool = True


@dataclass(frozen=True)
class ModelSettings:
    """``hardware.models``: where GGUF models are searched and which are benchmarked (workloads/hardware/models.py)."""

    dirs: tuple[str, ...] = ()
    ollama: bool = True
    huggingface: bool = True
    select: tuple[str, ...] = ("default",)  # default | all | globs and re:<regex>
    default_count: int = 3
    max_size_gib: float | None = None
    memory_headroom: float = 0.2


@dataclass(frozen=True)
class HardwareSettings:
    """``hardware:``: the hardware tools' options (benchmarks/test_hardware.py, test_gguf.py). Values that are
    swept (threads, n_prompt, n_gen, batch_size, n_gpu_layers, flash_attn) belong in ``sweep:`` instead."""

    models: ModelSettings = field(default_factory=ModelSettings)
    llama_bench_repetitions: int = 3  # llama-bench -r: its samples per trial
    sevenzip_dict_log2: int = 16  # 7z b -md
    sevenzip_passes: int = 1
    stream_array_mib: float | None = None  # per array; default 4 x total last-level cache (STREAM's rule)
    stream_ntimes: int = 5
    stream_cross_check: bool = True  # likwid-bench copy/triad on the same sizes in the same test
    fio_size_mib: int = 64
    fio_runtime_s: float = 2.0
    fio_iodepth: int = 16
    fio_ioengine: str = "libaio"
    timeout_s: float = 900.0  # per tool invocation


@dataclass(frozen=True)
class Recipe:
    """A loaded, interpolated and validated recipe."""

    path: str
    name: str
    text: str
    sha256: str
    description: str = ""
    testbed: str | None = None
    repetitions: int = 3
    warmup: int = 0
    sweep: dict[str, list[Any]] = field(default_factory=dict)
    slo: dict[str, list[str]] = field(default_factory=dict)
    baseline: BaselinePolicy = field(default_factory=BaselinePolicy)
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    mlflow: MlflowSettings = field(default_factory=MlflowSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    settings: dict[str, Any] = field(default_factory=dict)
    hardware: HardwareSettings = field(default_factory=HardwareSettings)
    secret_values: frozenset[str] = frozenset()

    def slos_for(self, nodeid: str) -> list[tuple[str, str]]:
        """(pattern, expression) pairs of every SLO whose pattern matches ``nodeid``, in recipe order."""
        return [(pat, expr) for pat, exprs in self.slo.items() if nodeid_matches(nodeid, pat)
                for expr in exprs]
