"""NVIDIA Triton Inference Server: HTTP on 8000 (health ``/v2/health/ready``), gRPC and metrics beside it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe

CONTAINER_REPO = "/models"


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
    settings: ClassVar[dict[str, str]] = {"model_repository": "path of the model repository (required)"}

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return [f"--model-repository={Path(str(ctx.settings['model_repository'])).expanduser()}",
                f"--http-address={ctx.host}", f"--http-port={ctx.port}", f"--grpc-address={ctx.host}",
                f"--grpc-port={ctx.ports['grpc']}", f"--metrics-port={ctx.ports['metrics']}"]

    def container_command(self, ctx: StartContext) -> list[str]:
        return ["tritonserver", f"--model-repository={CONTAINER_REPO}"]

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        repo = Path(str(ctx.settings["model_repository"])).expanduser().resolve()
        return {str(repo): {"bind": CONTAINER_REPO, "mode": "ro"}}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/v2/health/ready",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        ep = super().endpoint(ctx, host, port, ports)
        return Endpoint(host=host, port=port, url=ep.url, name=ctx.name, kind=self.name,
                        extra={**ep.extra, "metrics_url": f"http://{host}:{ports['metrics']}/metrics"
                               if "metrics" in ports else None})
