"""NVIDIA Triton Inference Server: HTTP on 8000 (health ``/v2/health/ready``), gRPC and metrics beside it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from pytest_hwbench.recipe.specs import setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_str

CONTAINER_REPO = "/models"


@dataclass(frozen=True)
class TritonSettings:
    model_repository: str | None = setting(None, opt_str(), doc="path of the model repository (required)")


@register
class Triton(ServiceKind):
    name = "triton"
    summary = "NVIDIA Triton Inference Server"
    port = 8000
    extra_ports: ClassVar[dict[str, int]] = {"grpc": 8001, "metrics": 8002}
    image = "nvcr.io/nvidia/tritonserver:24.08-py3"
    binary = "tritonserver"
    startup_timeout = 600.0
    model_loads_at_start = True
    default_gpus = "all"
    required: ClassVar[dict[str, tuple[str, ...]]] = {"process": ("model_repository",),
                                                      "docker": ("model_repository",)}
    Settings = TritonSettings

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return [f"--model-repository={self._repo(ctx)}",
                f"--http-address={ctx.host}", f"--http-port={ctx.port}", f"--grpc-address={ctx.host}",
                f"--grpc-port={ctx.ports['grpc']}", f"--metrics-port={ctx.ports['metrics']}"]

    @staticmethod
    def _repo(ctx: StartContext) -> Path:
        return Path(str(ctx.settings.own_as(TritonSettings).model_repository)).expanduser()

    def container_command(self, ctx: StartContext) -> list[str]:
        return ["tritonserver", f"--model-repository={CONTAINER_REPO}"]

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        repo = self._repo(ctx).resolve()
        return {str(repo): {"bind": CONTAINER_REPO, "mode": "ro"}}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/v2/health/ready",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        ep = super().endpoint(ctx, host, port, ports)
        return Endpoint(host=host, port=port, url=ep.url, name=ctx.name, kind=self.name,
                        extra={**ep.extra, "metrics_url": f"http://{host}:{ports['metrics']}/metrics"
                               if "metrics" in ports else None})
