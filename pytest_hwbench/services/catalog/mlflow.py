"""MLflow tracking server: where runs publish trends; a SQLite store in the scratch dir by default."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_hwbench.recipe.specs import Int, setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_str


@dataclass(frozen=True)
class MlflowServerSettings:
    backend_store_uri: str | None = setting(None, opt_str(),
                                            doc="where runs are stored (default sqlite in the scratch dir)")
    artifacts_dir: str | None = setting(None, opt_str(), doc=(
        "artifact root clients write to directly (default: the scratch dir)"))
    artifacts_destination: str | None = setting(None, opt_str(), doc=(
        "artifact store the server proxies (e.g. s3://bucket/path; clients then need no store credentials); "
        "replaces artifacts_dir"))
    workers: int = setting(1, Int(min=1, max=1024), doc="server workers (default 1)")


@register
class Mlflow(ServiceKind):
    name = "mlflow"
    summary = "MLflow tracking server"
    port = 5000
    image = "ghcr.io/mlflow/mlflow:latest"
    binary = "mlflow"
    startup_timeout = 120.0
    Settings = MlflowServerSettings

    def _args(self, ctx: StartContext, host: str, port: int, base: str) -> list[str]:
        s = ctx.settings.own_as(MlflowServerSettings)
        store = s.backend_store_uri or f"sqlite:///{base}/mlflow.db"
        artifacts = ["--artifacts-destination", s.artifacts_destination] if s.artifacts_destination else \
            ["--default-artifact-root", s.artifacts_dir or f"{base}/artifacts"]
        return ["server", "--host", host, "--port", str(port), "--backend-store-uri", store, *artifacts,
                "--workers", str(s.workers)]

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return self._args(ctx, ctx.host, ctx.port, str(ctx.work_dir))

    def container_command(self, ctx: StartContext) -> list[str]:
        return ["mlflow", *self._args(ctx, "0.0.0.0", self.port, "/tmp")]

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/health",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}", extra={"tracking_uri":
                        f"http://{host}:{port}"}, name=ctx.name, kind=self.name)
