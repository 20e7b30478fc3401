"""Qdrant vector database: REST on 6333 (health ``/readyz``), gRPC on 6334; configured by env variables.

Backends: ``process`` (the ``qdrant`` binary, configured through ``QDRANT__*`` variables with storage in
the service's scratch dir), ``docker`` (``qdrant/qdrant``), or ``external`` — ``recipes/qdrant.yaml`` uses
``url: ${HWBENCH_QDRANT_URL}`` because no Qdrant binary or image exists on this project's CI machines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pytest_hwbench.recipe.specs import setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_str


@dataclass(frozen=True)
class QdrantSettings:
    api_key: str | None = setting(None, opt_str(), secret=True, doc="API key (keep it in ${ENV})")


@register
class Qdrant(ServiceKind):
    name = "qdrant"
    summary = "Qdrant vector database"
    port = 6333
    extra_ports: ClassVar[dict[str, int]] = {"grpc": 6334}
    image = "qdrant/qdrant:latest"
    binary = "qdrant"
    startup_timeout = 60.0
    Settings = QdrantSettings

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        env = {"QDRANT__SERVICE__HOST": ctx.host, "QDRANT__SERVICE__HTTP_PORT": str(ctx.port),
               "QDRANT__SERVICE__GRPC_PORT": str(ctx.ports["grpc"]),
               "QDRANT__STORAGE__STORAGE_PATH": str(ctx.work_dir / "storage"),
               "QDRANT__STORAGE__SNAPSHOTS_PATH": str(ctx.work_dir / "snapshots"),
               "QDRANT__TELEMETRY_DISABLED": "true"}
        return {**env, **self.container_env(ctx)}

    def container_env(self, ctx: StartContext) -> dict[str, str]:
        env = {"QDRANT__TELEMETRY_DISABLED": "true"}
        api_key = ctx.settings.own_as(QdrantSettings).api_key
        if api_key:
            env["QDRANT__SERVICE__API_KEY"] = api_key
        return env

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/readyz", "/healthz"))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        ep = super().endpoint(ctx, host, port, ports)
        extra = dict(ep.extra)
        api_key = ctx.settings.own_as(QdrantSettings).api_key
        if api_key:
            extra["api_key"] = api_key
        return Endpoint(host=host, port=port, url=ep.url, extra=extra, name=ctx.name, kind=self.name)
