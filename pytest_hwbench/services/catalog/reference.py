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

import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe

#: The model name the server answers to when the recipe names none (the server's own default).
DEFAULT_MODEL = "hwbench-reference"

#: Recipe setting -> command-line flag of ``hwbench reference-server`` (values passed as text).
_FLAGS: dict[str, str] = {
    "model": "--model", "ttft_ms": "--ttft-ms", "itl_ms": "--itl-ms", "output_tokens": "--output-tokens",
    "capacity": "--capacity", "error_rate": "--error-rate", "error_status": "--error-status", "seed": "--seed",
    "stall_at_s": "--stall-at-s", "stall_s": "--stall-s", "hang_s": "--hang-s",
    "cpu_ms_per_token": "--cpu-ms-per-token", "leak_kb_per_request": "--leak-kb-per-request",
}


def _given(value: Any) -> bool:
    """A setting counts as given unless it is null or empty (``${VAR:-}`` interpolates to ``""``)."""
    return value is not None and value != ""


@register
class Reference(ServiceKind):
    name = "reference"
    summary = ("reference LLM server: a fake whose timing is known (TTFT, ITL, output length, capacity, "
               "errors), used as ground truth")
    port = 8000
    binary = None  # this interpreter, see find_binary
    startup_timeout = 30.0  # no image: the docker backend asks for one ("needs an image", with the field)
    settings: ClassVar[dict[str, str]] = {
        "model": f"the only model name served; others get 404 (default {DEFAULT_MODEL})",
        "ttft_ms": "time to first token, ms: 50, constant:50, uniform:LO,HI, normal:MEAN,STD, lognormal:MEAN,STD",
        "itl_ms": "inter-token latency, ms (same forms as ttft_ms)",
        "output_tokens": "output length distribution, tokens (a request's max_tokens caps it)",
        "capacity": "requests served at once; more wait in a FIFO queue (default unlimited)",
        "error_rate": "probability of an HTTP error answer (0..1)",
        "error_status": "HTTP status of injected errors (default 500)",
        "faults": "other injected faults: a list of KIND:P, or a mapping KIND: P "
                  "(close, malformed, inband_error, empty, hang)",
        "seed": "seed of every random draw (timings, faults)",
        "stall_at_s": "freeze output this many seconds after the first request",
        "stall_s": "length of that stall, seconds",
        "hang_s": "how long a 'hang' fault holds its request",
        "cpu_ms_per_token": "CPU time burnt per emitted token, ms (a CPU-bound server; default 0)",
        "leak_kb_per_request": "memory kept forever per request, KiB (a memory-growing server; default 0)",
        "precise_timers": "false: the default event loop (millisecond timers) instead of select() + low slack",
    }

    # -- process backend --------------------------------------------------------------------------------
    def find_binary(self, configured: str | None) -> str | None:
        """The interpreter that runs the server: a configured one, else the one running pytest."""
        if configured:
            return super().find_binary(configured)
        return sys.executable or None

    def server_args(self, ctx: StartContext, host: str, port: int) -> list[str]:
        """``hwbench reference-server`` arguments for the recipe settings (shared by process and docker)."""
        settings = ctx.settings
        args = ["reference-server", "--host", host, "--port", str(port)]
        for key, flag in _FLAGS.items():
            if _given(settings.get(key)):
                args += [flag, str(settings[key])]
        for fault in _faults(settings.get("faults"), field=ctx.field("faults"), source=ctx.source):
            args += ["--fault", fault]
        precise = settings.get("precise_timers")
        if precise is False or str(precise).lower() in ("false", "no", "off", "0"):
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
        model = ctx.settings.get("model")
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}",
                        extra={"openai_base_url": f"http://{host}:{port}/v1",
                               "model": str(model) if _given(model) else DEFAULT_MODEL},
                        name=ctx.name, kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        # The configured truth goes into run.json next to the measurements it should explain.
        truth = {key: ctx.settings[key] for key in (*_FLAGS, "faults") if _given(ctx.settings.get(key))}
        return {"model": endpoint.extra["model"], "reference": truth}


def _faults(value: Any, *, field: str, source: str | None) -> list[str]:
    """The ``faults`` setting as ``KIND:P`` strings (the server validates kinds and probabilities)."""
    if not _given(value):
        return []
    if isinstance(value, Mapping):
        return [f"{kind}:{p}" for kind, p in value.items()]
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    raise HwbenchInputError(f"expected a list of KIND:P or a mapping, got {type(value).__name__}", file=source,
                            field=field, fix="write faults: {close: 0.01} or faults: [close:0.01]")
