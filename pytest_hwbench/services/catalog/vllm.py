"""vLLM's OpenAI-compatible server (``vllm serve``), normally in the ``vllm/vllm-openai`` image on GPUs.

``model`` is the Hugging Face id or a local path; with the docker backend a local path is mounted at
``/models``. The server binds its port before the engine is up and answers ``/health`` only when the model
is loaded, so first-answer → ready is reported as ``model_load_s`` (when the port opens early enough).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe


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
    settings: ClassVar[dict[str, str]] = {
        "model": "Hugging Face model id or local path (required)",
        "served_model_name": "name the API reports (default: model)",
        "max_model_len": "--max-model-len",
        "tensor_parallel_size": "--tensor-parallel-size",
        "gpu_memory_utilization": "--gpu-memory-utilization",
        "dtype": "--dtype",
        "hf_token": "Hugging Face token (passed as HF_TOKEN; keep it in ${ENV})",
    }
    _FLAGS: ClassVar[dict[str, str]] = {"served_model_name": "--served-model-name",
                                        "max_model_len": "--max-model-len",
                                        "tensor_parallel_size": "--tensor-parallel-size",
                                        "gpu_memory_utilization": "--gpu-memory-utilization", "dtype": "--dtype"}

    def _flags(self, ctx: StartContext) -> list[str]:
        return [a for k, f in self._FLAGS.items() if ctx.settings.get(k) is not None
                for a in (f, str(ctx.settings[k]))]

    def _model_arg(self, ctx: StartContext, in_container: bool) -> str:
        model = str(ctx.settings["model"])
        if in_container and Path(model).expanduser().exists():
            return f"/models/{Path(model).name}"
        return model

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["serve", self._model_arg(ctx, False), "--host", ctx.host, "--port", str(ctx.port),
                *self._flags(ctx)]

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        return {"HF_TOKEN": str(ctx.settings["hf_token"])} if ctx.settings.get("hf_token") else {}

    def container_command(self, ctx: StartContext) -> list[str]:
        # The image's entrypoint is the API server: the command is its arguments.
        return ["--model", self._model_arg(ctx, True), "--host", "0.0.0.0", "--port", str(self.port),
                *self._flags(ctx)]

    container_env = process_env

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        model = Path(str(ctx.settings["model"])).expanduser()
        if model.exists():
            return {str(model.resolve()): {"bind": f"/models/{model.name}", "mode": "ro"}}
        return {}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/health",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        served = ctx.settings.get("served_model_name") or ctx.settings.get("model")
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}",
                        extra={"openai_base_url": f"http://{host}:{port}/v1", "model": served,
                               "metrics_url": f"http://{host}:{port}/metrics"},
                        name=ctx.name, kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        return {"model": ctx.settings.get("model")}
