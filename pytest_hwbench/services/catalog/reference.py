"""``reference``: the reference LLM server — a fake whose timing is known, used as ground truth.

Why a catalog kind for a fake: the LLM benchmarks must be runnable, and checkable, on any machine. Started
through the same process backend as a real engine (free port, process group, ``/health`` probe, logs), the
reference server (``hwbench reference-server``, :mod:`pytest_hwbench.reference_server`) answers the
OpenAI-compatible and Ollama APIs with a configured TTFT, inter-token latency, output length, capacity
(concurrent requests served; more queue) and error rate, so the numbers a benchmark reports can be compared
with what they must be. It is the demo service of ``recipes/local.yaml`` and ``recipes/reference.yaml``.

The "binary" is this Python interpreter (``sys.executable``) running ``-m pytest_hwbench.cli
reference-server``, so nothing beyond the package itself is needed; ``binary`` may name another interpreter
that has pytest-hwbench installed. With the docker backend, ``image`` must be an image with pytest-hwbench
installed (there is no public one); ``external`` points at a reference server somebody else runs.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.specs import Bool, Float, Int, Json, Spec, setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_str, opt_text

#: The model name the server answers to when the recipe names none (the server's own default).
DEFAULT_MODEL = "hwbench-reference"

def _num(spec: Spec) -> Spec:
    """An optional number: null or ``${VAR:-}`` already means "not given" in a service entry."""
    return spec


@dataclass(frozen=True)
class ReferenceSettings:
    """The reference server's settings; each one given becomes its ``hwbench reference-server`` flag (None: the
    server's own default)."""

    model: str | None = setting(None, opt_str(), doc=(
        f"the only model name served; others get 404 (default {DEFAULT_MODEL})"))
    # distributions as written (a number, or "uniform:LO,HI" ...): the server parses them
    ttft_ms: str | float | None = setting(None, opt_text(), doc=(
        "time to first token, ms: 50, constant:50, uniform:LO,HI, normal:MEAN,STD, lognormal:MEAN,STD"))
    itl_ms: str | float | None = setting(None, opt_text(), doc="inter-token latency, ms (same forms as ttft_ms)")
    output_tokens: str | float | None = setting(None, opt_text(), doc=(
        "output length distribution, tokens (a request's max_tokens caps it)"))
    capacity: int | None = setting(None, _num(Int(min=1)), doc=(
        "requests served at once; more wait in a FIFO queue (default unlimited)"))
    error_rate: float | None = setting(None, _num(Float(ge=0, le=1)),
                                       doc="probability of an HTTP error answer (0..1)")
    error_status: int | None = setting(None, _num(Int(min=100, max=599)),
                                       doc="HTTP status of injected errors (default 500)")
    faults: Any = setting(None, Json(), doc=(
        "other injected faults: a list of KIND:P, or a mapping KIND: P (close, malformed, inband_error, empty, hang)"))
    seed: int | None = setting(None, _num(Int()), doc="seed of every random draw (timings, faults)")
    stall_at_s: float | None = setting(None, _num(Float(ge=0)),
                                       doc="freeze output this many seconds after the first request")
    stall_s: float | None = setting(None, _num(Float(ge=0)), doc="length of that stall, seconds")
    hang_s: float | None = setting(None, _num(Float(gt=0)), doc="how long a 'hang' fault holds its request")
    cpu_ms_per_token: float | None = setting(None, _num(Float(ge=0)), doc=(
        "CPU time burnt per emitted token, ms (a CPU-bound server; default 0)"))
    leak_kb_per_request: int | None = setting(None, _num(Int(min=0)), doc=(
        "memory kept forever per request, KiB (a memory-growing server; default 0)"))
    precise_timers: bool = setting(True, Bool(), doc=(
        "false: the default event loop (millisecond timers) instead of select() + low slack"))

    def flags(self) -> list[tuple[str, Any]]:
        """(flag, value) of every setting given that maps to one ``reference-server`` flag."""
        pairs = (("--model", self.model), ("--ttft-ms", self.ttft_ms), ("--itl-ms", self.itl_ms),
                 ("--output-tokens", self.output_tokens), ("--capacity", self.capacity),
                 ("--error-rate", self.error_rate), ("--error-status", self.error_status), ("--seed", self.seed),
                 ("--stall-at-s", self.stall_at_s), ("--stall-s", self.stall_s), ("--hang-s", self.hang_s),
                 ("--cpu-ms-per-token", self.cpu_ms_per_token),
                 ("--leak-kb-per-request", self.leak_kb_per_request))
        return [(flag, value) for flag, value in pairs if value is not None]

    def given(self) -> dict[str, Any]:
        """The settings the recipe gave (the configured truth the run manifest records)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k != "precise_timers"}


@register
class Reference(ServiceKind):
    name = "reference"
    summary = ("reference LLM server: a fake whose timing is known (TTFT, ITL, output length, capacity, "
               "errors), used as ground truth")
    port = 8000
    binary = None  # this interpreter, see find_binary
    startup_timeout = 30.0  # no image: the docker backend asks for one ("needs an image", with the field)
    Settings = ReferenceSettings

    # -- process backend --------------------------------------------------------------------------------
    def find_binary(self, configured: str | None) -> str | None:
        """The interpreter that runs the server: a configured one, else the one running pytest."""
        if configured:
            return super().find_binary(configured)
        return sys.executable or None

    def server_args(self, ctx: StartContext, host: str, port: int) -> list[str]:
        """``hwbench reference-server`` arguments for the recipe settings (shared by process and docker)."""
        s = ctx.settings.own_as(ReferenceSettings)
        args = ["reference-server", "--host", host, "--port", str(port)]
        for flag, value in s.flags():
            args += [flag, str(value)]
        for fault in _faults(s.faults, field=ctx.field("faults"), source=ctx.source):
            args += ["--fault", fault]
        if not s.precise_timers:
            args.append("--no-precise-timers")
        return args

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["-m", "pytest_hwbench.cli", *self.server_args(ctx, ctx.host, ctx.port)]

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        # Its ready line and logs reach the service log at once, not when a buffer fills.
        return {"PYTHONUNBUFFERED": "1"}

    # -- docker backend (an image with pytest-hwbench installed) ----------------------------------------
    def container_command(self, ctx: StartContext) -> list[str]:
        return ["python", "-m", "pytest_hwbench.cli", *self.server_args(ctx, "0.0.0.0", self.port)]

    # -- all backends -----------------------------------------------------------------------------------
    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/health",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        model = ctx.settings.own_as(ReferenceSettings).model
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}",
                        extra={"openai_base_url": f"http://{host}:{port}/v1", "model": model or DEFAULT_MODEL},
                        name=ctx.name, kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        # The configured truth goes into run.json next to the measurements it should explain.
        truth = ctx.settings.own_as(ReferenceSettings).given()
        return {"model": endpoint.extra["model"], "reference": truth}


def _faults(value: Any, *, field: str, source: str | None) -> list[str]:
    """The ``faults`` setting as ``KIND:P`` strings (the server validates kinds and probabilities)."""
    if value is None or value == "":
        return []
    if isinstance(value, Mapping):
        return [f"{kind}:{p}" for kind, p in value.items()]
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    raise HwbenchInputError(f"expected a list of KIND:P or a mapping, got {type(value).__name__}", file=source,
                            field=field, fix="write faults: {close: 0.01} or faults: [close:0.01]")
