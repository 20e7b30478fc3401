"""The validated recipe as typed objects. ``recipe.loader`` builds these; nothing else parses YAML.

A recipe says which services a run uses, which values sweep parameters take, how many repetitions each
benchmark runs, which SLOs apply to which tests (by node-id pattern) and how baselines are compared.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pytest_hwbench.recipe.entries import BACKENDS, SERVICE, SETTINGS, SLO, SWEEP, CheckedService
from pytest_hwbench.recipe.specs import Bool, Declared, Enum, Float, Int, ListOf, MapOf, Nullable, Str, setting
from pytest_hwbench.recipe.workload_settings import WorkloadSettings

if TYPE_CHECKING:
    from pytest_hwbench.services.service_settings import ServiceSettings

Backend = Literal["docker", "process", "external"]
InconclusivePolicy = Literal["fail", "warn", "rerun"]

__all__ = ["BACKENDS", "Recipe", "ServiceSpec"]

INCONCLUSIVE_POLICIES: tuple[str, ...] = ("fail", "warn", "rerun")

#: Upper bounds that keep a typo (``repetitions: 1000000000``) from hanging a run for days.
MAX_REPETITIONS = 100_000
MAX_WARMUP = 10_000

_TOLERANCE = Float(gt=0, lt=1)
_INCONCLUSIVE = Enum(INCONCLUSIVE_POLICIES)
_PATHS = ListOf(Str(nonempty=True), single=True)


def _tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value)


def _expanded_paths(value: Any) -> tuple[str, ...]:
    return tuple(os.path.expanduser(v) for v in value)


def nodeid_matches(nodeid: str, pattern: str) -> bool:
    """True when ``pattern`` (fnmatch syntax) matches the node id or a tail of it that starts at a path
    (``/``) or ``::`` boundary, so ``test_matmul*`` and ``test_host.py::*`` both select
    ``benchmarks/test_host.py::test_matmul[256]``."""
    return (fnmatch.fnmatchcase(nodeid, pattern) or fnmatch.fnmatchcase(nodeid, "*/" + pattern)
            or fnmatch.fnmatchcase(nodeid, "*::" + pattern))


@dataclass(frozen=True)
class MetricPolicy:
    """Per-metric overrides of the baseline policy; None means "use the recipe-wide value"."""

    tolerance: float | None = setting(None, _TOLERANCE)
    inconclusive: InconclusivePolicy | None = setting(None, _INCONCLUSIVE)


@dataclass(frozen=True)
class BaselinePolicy:
    """How baselines are stored and compared (docs/verdicts.md)."""

    dir: str = setting("baselines", Str(nonempty=True))
    tolerance: float = setting(0.05, _TOLERANCE)
    inconclusive: InconclusivePolicy = setting("warn", _INCONCLUSIVE)
    reruns: int = setting(5, Int(min=0, max=100))
    stale_factor: float = setting(2.0, Float(ge=1, lt=1e6))
    confidence: float = setting(0.95, Float(gt=0.5, lt=1))
    require: bool = setting(False, Bool())
    metrics: dict[str, MetricPolicy] = setting(
        {}, MapOf(Declared(MetricPolicy), what="a mapping of metric name to {tolerance, inconclusive}"))
    # History and sequential trials (docs/verdicts.md says how the defaults were chosen).
    sessions: int = setting(5, Int(min=1, max=10_000))  # stored sessions kept per test
    # prior SD of a whole session's shift, until the history measures it
    session_noise: float = setting(0.03, Float(ge=0, lt=1))
    # time budget for the sequential rounds (``reruns`` is the round budget)
    max_seconds: float = setting(300.0, Float(gt=0, lt=1e7))
    # share of all CPUs other processes may use during the trials before a FAIL becomes a WARN naming the
    # contention (docs/verdicts.md); null or 1 never demotes
    contended_cpu_share: float | None = setting(0.6, Nullable(Float(gt=0, le=1), empty_is_null=True))

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
    """The entry as written (interpolated): messages, secrets and a spec built in code read this."""
    config: ServiceSettings | None = field(default=None, compare=False)
    """The typed records the recipe check built (``services.service_settings``); None for a spec built in
    code, which ``ServiceKind.validate`` checks and builds at start (``dataclasses.replace`` of ``settings``
    must pass ``config=None`` so the new mapping is checked)."""


@dataclass(frozen=True)
class MlflowSettings:
    tracking_uri: str | None = setting(None, Nullable(Str(nonempty=True), empty_is_null=True))
    experiment: str = setting("hwbench", Str(nonempty=True))
    enabled: bool = setting(True, Bool())
    #: how long the first answer of a tracking server may take, and how many more tries (with backoff)
    probe_timeout_s: float = setting(3.0, Float(gt=0, lt=3600))
    probe_retries: int = setting(0, Int(min=0, max=100))


@dataclass(frozen=True)
class ResourceSettings:
    """Resource sampling during measured trials (``measure.samplers``): on/off, tick interval, GPUs."""

    enabled: bool = setting(True, Bool())
    interval_ms: int = setting(200, Int(min=50, max=3_600_000))
    gpu: bool = setting(True, Bool())


@dataclass(frozen=True)
class ModelSettings:
    """``hardware.models``: where GGUF models are searched and which are benchmarked (workloads/hardware/models.py)."""

    dirs: tuple[str, ...] = setting((), _PATHS, convert=_expanded_paths)  # ``~`` expanded
    ollama: bool = setting(True, Bool())
    huggingface: bool = setting(True, Bool())
    # default | all | globs and re:<regex>
    select: tuple[str, ...] = setting(("default",), _PATHS, convert=_tuple)
    default_count: int = setting(3, Int(min=1, max=1000))
    max_size_gib: float | None = setting(None, Nullable(Float(gt=0), empty_is_null=True))
    memory_headroom: float = setting(0.2, Float(ge=0))


@dataclass(frozen=True)
class HardwareSettings:
    """``hardware:``: the hardware tools' options (benchmarks/test_hardware.py, test_gguf.py). Values that are
    swept (threads, n_prompt, n_gen, batch_size, n_gpu_layers, flash_attn) belong in ``sweep:`` instead."""

    models: ModelSettings = setting(ModelSettings(), Declared(ModelSettings))
    # llama-bench -r: its samples per trial
    llama_bench_repetitions: int = setting(3, Int(min=1, max=MAX_REPETITIONS))
    sevenzip_dict_log2: int = setting(16, Int(min=10, max=40))  # 7z b -md
    sevenzip_passes: int = setting(1, Int(min=1, max=MAX_REPETITIONS))
    # per array; default 4 x total last-level cache (STREAM's rule)
    stream_array_mib: float | None = setting(None, Nullable(Float(gt=0), empty_is_null=True))
    stream_ntimes: int = setting(5, Int(min=2, max=MAX_REPETITIONS))
    # likwid-bench copy/triad on the same sizes in the same test
    stream_cross_check: bool = setting(True, Bool())
    fio_size_mib: int = setting(64, Int(min=1, max=1 << 24))
    fio_runtime_s: float = setting(2.0, Float(gt=0, lt=1e6))
    fio_iodepth: int = setting(16, Int(min=1, max=65536))
    fio_ioengine: str = setting("libaio", Str(nonempty=True))
    timeout_s: float = setting(900.0, Float(gt=0, lt=1e6))  # per tool invocation


def _service_specs(entries: dict[str, CheckedService]) -> dict[str, ServiceSpec]:
    """The checked ``services`` entries as :class:`ServiceSpec` records (name from the mapping key)."""
    return {name: ServiceSpec(name=name, kind=e.kind, backend=e.backend,  # type: ignore[arg-type]
                              settings=e.settings, config=e.config) for name, e in entries.items()}


@dataclass(frozen=True)
class Recipe:
    """A loaded, interpolated and validated recipe.

    Every top-level recipe key is one ``setting(...)`` field here — default and spec on one line;
    ``schema.RECIPE`` is assembled from these declarations (and ``@pytest.mark.hwbench`` reuses them), so a
    limit or a default is never written twice. ``path``/``text``/``sha256`` describe the file, not a key.
    """

    path: str
    text: str
    sha256: str
    version: int = setting(1, Enum((1,), base=Int(), fix="this pytest-hwbench reads recipe format version 1"))
    name: str = setting("", Str(nonempty=True))  # the loader falls back to the file's stem
    description: str = setting("", Str())
    testbed: str | None = setting(None, Nullable(Str(nonempty=True), empty_is_null=True))
    repetitions: int = setting(3, Int(min=1, max=MAX_REPETITIONS))
    warmup: int = setting(0, Int(min=0, max=MAX_WARMUP))
    sweep: dict[str, list[Any]] = setting({}, SWEEP)
    slo: dict[str, list[str]] = setting({}, SLO)
    baseline: BaselinePolicy = setting(BaselinePolicy(), Declared(BaselinePolicy))
    services: dict[str, ServiceSpec] = setting(
        {}, MapOf(SERVICE, what="a mapping of service name to {kind, backend, ...}"), convert=_service_specs)
    mlflow: MlflowSettings = setting(MlflowSettings(), Declared(MlflowSettings))
    resources: ResourceSettings = setting(ResourceSettings(), Declared(ResourceSettings))
    settings: dict[str, Any] = setting({}, SETTINGS)
    """The free ``settings`` mapping as written (``hwbench.settings``); the shipped workloads' part of it is
    in ``workloads``, checked and typed (both built by the ``SETTINGS`` spec)."""
    hardware: HardwareSettings = setting(HardwareSettings(), Declared(HardwareSettings))
    workloads: WorkloadSettings = field(default_factory=WorkloadSettings)
    secret_values: frozenset[str] = frozenset()

    def slos_for(self, nodeid: str) -> list[tuple[str, str]]:
        """(pattern, expression) pairs of every SLO whose pattern matches ``nodeid``, in recipe order."""
        return [(pat, expr) for pat, exprs in self.slo.items() if nodeid_matches(nodeid, pat)
                for expr in exprs]
