"""Chroma vector database (``chroma run``); health via the heartbeat endpoint (v2 API, v1 for old servers).

The process backend runs ``chroma run --host <host> --port <free port> --path <work_dir>/data`` — the
``chroma`` command of the ``chromadb`` pip package — so the database lives in the service's scratch
directory and is removed with it; nothing persists between runs. Telemetry is switched off.
"""

from __future__ import annotations

from pytest_hwbench.services.base import StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe


@register
class Chroma(ServiceKind):
    name = "chroma"
    summary = "Chroma vector database"
    port = 8000
    image = "chromadb/chroma:latest"
    binary = "chroma"
    startup_timeout = 60.0

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["run", "--host", ctx.host, "--port", str(ctx.port), "--path", str(ctx.work_dir / "data")]

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        return {"ANONYMIZED_TELEMETRY": "False"}

    container_env = process_env

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/api/v2/heartbeat", "/api/v1/heartbeat"))
