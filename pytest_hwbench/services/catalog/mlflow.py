"""MLflow tracking server: where runs publish trends; a SQLite store in the scratch dir by default."""

from __future__ import annotations

from typing import ClassVar

from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe


@register
class Mlflow(ServiceKind):
    name = "mlflow"
    summary = "MLflow tracking server"
    port = 5000
    image = "ghcr.io/mlflow/mlflow:latest"
    binary = "mlflow"
    startup_timeout = 120.0
    settings: ClassVar[dict[str, str]] = {
        "backend_store_uri": "where runs are stored (default sqlite in the scratch dir)",
        "artifacts_dir": "artifact root clients write to directly (default: the scratch dir)",
        "artifacts_destination": "artifact store the server proxies (e.g. s3://bucket/path; clients then need "
                                 "no store credentials); replaces artifacts_dir",
        "workers": "server workers (default 1)",
    }

    def _args(self, ctx: StartContext, host: str, port: int, base: str) -> list[str]:
        store = ctx.settings.get("backend_store_uri") or f"sqlite:///{base}/mlflow.db"
        proxied = ctx.settings.get("artifacts_destination")
        artifacts = ["--artifacts-destination", str(proxied)] if proxied else \
            ["--default-artifact-root", str(ctx.settings.get("artifacts_dir") or f"{base}/artifacts")]
        return ["server", "--host", host, "--port", str(port), "--backend-store-uri", str(store), *artifacts,
                "--workers", str(ctx.settings.get("workers") or 1)]

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return self._args(ctx, ctx.host, ctx.port, str(ctx.work_dir))

    def container_command(self, ctx: StartContext) -> list[str]:
        return ["mlflow", *self._args(ctx, "0.0.0.0", self.port, "/tmp")]

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/health",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}", extra={"tracking_uri":
                        f"http://{host}:{port}"}, name=ctx.name, kind=self.name)
