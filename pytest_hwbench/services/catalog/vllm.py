"""vLLM's OpenAI-compatible server (``vllm serve``), normally in the ``vllm/vllm-openai`` image on GPUs.

``model`` is the Hugging Face id or a local path; with the docker backend a local path is mounted at
``/models``. The server binds its port before the engine is up and answers ``/health`` only when the model
is loaded, so first-answer → ready is reported as ``model_load_s`` (when the port opens early enough).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pytest_hwbench.recipe.specs import Float, setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_int, opt_str


@dataclass(frozen=True)
class VllmSettings:
    model: str | None = setting(None, opt_str(), doc="Hugging Face model id or local path (required)")
    served_model_name: str | None = setting(None, opt_str(), doc="name the API reports (default: model)")
    max_model_len: int | None = setting(None, opt_int(), doc="--max-model-len")
    tensor_parallel_size: int | None = setting(None, opt_int(), doc="--tensor-parallel-size")
    gpu_memory_utilization: float | None = setting(
        None, Float(gt=0, le=1), doc="--gpu-memory-utilization")
    dtype: str | None = setting(None, opt_str(), doc="--dtype")
    hf_token: str | None = setting(None, opt_str(), secret=True,
                                   doc="Hugging Face token (passed as HF_TOKEN; keep it in ${ENV})")


@register
class Vllm(ServiceKind):
    name = "vllm"
    summary = "vLLM OpenAI-compatible server"
    port = 8000
    image = "vllm/vllm-openai:latest"
    binary = "vllm"
    startup_timeout = 1800.0  # model download + weight load + CUDA graph capture
    model_loads_at_start = True
    default_gpus = "all"
    required: ClassVar[dict[str, tuple[str, ...]]] = {"process": ("model",), "docker": ("model",)}
    Settings = VllmSettings

    def _flags(self, ctx: StartContext) -> list[str]:
        s = ctx.settings.own_as(VllmSettings)
        flags = (("--served-model-name", s.served_model_name), ("--max-model-len", s.max_model_len),
                 ("--tensor-parallel-size", s.tensor_parallel_size),
                 ("--gpu-memory-utilization", s.gpu_memory_utilization), ("--dtype", s.dtype))
        return [a for flag, value in flags if value is not None for a in (flag, str(value))]

    def _model_arg(self, ctx: StartContext, in_container: bool) -> str:
        model = str(ctx.settings.own_as(VllmSettings).model)
        if in_container and Path(model).expanduser().exists():
            return f"/models/{Path(model).name}"
        return model

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["serve", self._model_arg(ctx, False), "--host", ctx.host, "--port", str(ctx.port),
                *self._flags(ctx)]

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        token = ctx.settings.own_as(VllmSettings).hf_token
        return {"HF_TOKEN": token} if token else {}

    def container_command(self, ctx: StartContext) -> list[str]:
        # The image's entrypoint is the API server: the command is its arguments.
        return ["--model", self._model_arg(ctx, True), "--host", "0.0.0.0", "--port", str(self.port),
                *self._flags(ctx)]

    container_env = process_env

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        model = Path(str(ctx.settings.own_as(VllmSettings).model)).expanduser()
        if model.exists():
            return {str(model.resolve()): {"bind": f"/models/{model.name}", "mode": "ro"}}
        return {}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/health",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        s = ctx.settings.own_as(VllmSettings)
        served = s.served_model_name or s.model
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}",
                        extra={"openai_base_url": f"http://{host}:{port}/v1", "model": served,
                               "metrics_url": f"http://{host}:{port}/metrics"},
                        name=ctx.name, kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        return {"model": ctx.settings.own_as(VllmSettings).model}
