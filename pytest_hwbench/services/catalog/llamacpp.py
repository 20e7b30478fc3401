"""llama.cpp's ``llama-server``: an OpenAI-compatible server for GGUF models, on CPU or GPU.

Why it is the CPU reference engine: it builds from the sources in the llama-cpp-python sdist on PyPI
(``scripts/build_llama_cpp.sh``), so a real LLM server runs wherever pip works. It answers ``/health``
with 503 while the model loads, so first-answer → ready is reported as ``model_load_s``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable
from pytest_hwbench.recipe.specs import setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_int, opt_str

CONTAINER_MODEL_DIR = "/models"


def llama_cpp_bin_dirs() -> tuple[str, ...]:
    """Where scripts/build_llama_cpp.sh caches its binaries (searched when llama-server is not on PATH)."""
    cache = os.environ.get("HWBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwbench")
    return (os.path.join(cache, "llama.cpp", "*", "bin", "llama-server"),)


@dataclass(frozen=True)
class LlamacppSettings:
    model: str | None = setting(None, opt_str(), doc=(
        "path to a GGUF file (required; recipes/llamacpp.yaml reads $HWBENCH_GGUF; "
        "`hwbench models tiny DIR` writes tiny test models)"))
    alias: str | None = setting(None, opt_str(), doc="model name the API reports (default: the file name)")
    ctx_size: int | None = setting(None, opt_int(), doc="context size (-c)")
    threads: int | None = setting(None, opt_int(), doc="CPU threads (-t)")
    n_gpu_layers: int | None = setting(None, opt_int(0), doc="layers offloaded to the GPU (-ngl)")
    parallel: int | None = setting(None, opt_int(), doc="parallel sequences / slots (-np)")
    batch_size: int | None = setting(None, opt_int(), doc="logical batch size (-b)")


@register
class LlamaCpp(ServiceKind):
    name = "llamacpp"
    summary = "llama.cpp llama-server (OpenAI-compatible, GGUF models)"
    port = 8080
    image = "ghcr.io/ggml-org/llama.cpp:server"
    binary = "llama-server"
    startup_timeout = 300.0
    model_loads_at_start = True
    required: ClassVar[dict[str, tuple[str, ...]]] = {"process": ("model",), "docker": ("model",)}
    install_hint = ("build it with scripts/build_llama_cpp.sh (cached in ~/.cache/hwbench/llama.cpp/<version>/bin) "
                    "or put a llama.cpp build's llama-server on PATH")
    Settings = LlamacppSettings

    def check_required(self, name: str, backend: str, settings: Mapping[str, Any],
                       source: str | None = None) -> None:
        """No model given (recipes/llamacpp.yaml with $HWBENCH_GGUF unset) means "not available on this
        machine": a skip naming the fix (a failure under HWBENCH_FAIL_ON_UNAVAILABLE=1), not a broken recipe."""
        if backend != "external" and not str(settings.get("model") or "").strip():
            where = f"{source}: " if source else ""
            raise ServiceUnavailable(f"{where}services.{name}.model: no GGUF model given: set "
                                     "HWBENCH_GGUF=/path/model.gguf (`hwbench models tiny DIR` writes tiny test "
                                     "models)")
        super().check_required(name, backend, settings, source)

    def search_patterns(self) -> tuple[str, ...]:
        return llama_cpp_bin_dirs()

    def _model(self, ctx: StartContext) -> Path:
        model = Path(str(ctx.settings.own_as(LlamacppSettings).model)).expanduser()
        if not model.is_file():
            raise HwbenchInputError(f"model file {str(model)!r} does not exist", file=ctx.source,
                                    field=ctx.field("model"), fix="give the path of a .gguf file")
        return model.resolve()

    def _common(self, ctx: StartContext) -> list[str]:
        model = self._model(ctx)
        s = ctx.settings.own_as(LlamacppSettings)
        args = ["--alias", s.alias or model.name]
        flags = (("-c", s.ctx_size), ("-t", s.threads), ("-ngl", s.n_gpu_layers), ("-np", s.parallel),
                 ("-b", s.batch_size))
        return args + [a for flag, value in flags if value is not None for a in (flag, str(value))]

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["-m", str(self._model(ctx)), "--host", ctx.host, "--port", str(ctx.port), *self._common(ctx)]

    def container_command(self, ctx: StartContext) -> list[str]:
        # The official image's entrypoint is llama-server: the command is only its arguments.
        model = self._model(ctx)
        return ["-m", f"{CONTAINER_MODEL_DIR}/{model.name}", "--host", "0.0.0.0", "--port", str(self.port),
                *self._common(ctx)]

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        model = self._model(ctx)
        return {str(model.parent): {"bind": CONTAINER_MODEL_DIR, "mode": "ro"}}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/health",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        s = ctx.settings.own_as(LlamacppSettings)
        model = Path(s.model or "").name
        extra: dict[str, Any] = {"openai_base_url": f"http://{host}:{port}/v1", "model": s.alias or model}
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}", extra=extra, name=ctx.name,
                        kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        return {"model": str(ctx.settings.own_as(LlamacppSettings).model)}
