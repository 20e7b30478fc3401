"""S3-compatible object storage: MinIO locally or in its image; any S3 endpoint via the external backend.

The endpoint's ``extra`` carries what an S3 client needs (``endpoint_url``, keys, region, bucket), so the
S3 workload runs unchanged against MinIO, Ceph RGW or AWS.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe

DEFAULT_KEY, DEFAULT_SECRET = "hwbench", "hwbench-secret"


@register
class S3(ServiceKind):
    name = "s3"
    summary = "S3-compatible object store (MinIO, or any S3 endpoint via external)"
    port = 9000
    extra_ports: ClassVar[dict[str, int]] = {"console": 9001}
    image = "minio/minio:latest"
    binary = "minio"
    startup_timeout = 60.0
    settings: ClassVar[dict[str, str]] = {
        "access_key": f"access key (default {DEFAULT_KEY})",
        "secret_key": "secret key (keep it in ${ENV})",
        "region": "region (default us-east-1)",
        "bucket": "bucket the workload uses (default hwbench)",
        "data_dir": "host directory for the data (default: the service's scratch dir)",
    }

    def _keys(self, ctx: StartContext) -> tuple[str, str]:
        return (str(ctx.settings.get("access_key") or DEFAULT_KEY),
                str(ctx.settings.get("secret_key") or DEFAULT_SECRET))

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        data = str(ctx.settings.get("data_dir") or ctx.work_dir / "data")
        return ["server", data, "--address", f"{ctx.host}:{ctx.port}",
                "--console-address", f"{ctx.host}:{ctx.ports['console']}"]

    def _env(self, ctx: StartContext) -> dict[str, str]:
        key, secret = self._keys(ctx)
        return {"MINIO_ROOT_USER": key, "MINIO_ROOT_PASSWORD": secret}

    process_env = _env
    container_env = _env

    def container_command(self, ctx: StartContext) -> list[str]:
        return ["server", "/data", "--address", f":{self.port}", "--console-address", ":9001"]

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        if ctx.settings.get("data_dir"):
            return {str(ctx.settings["data_dir"]): {"bind": "/data", "mode": "rw"}}
        return {}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/minio/health/live",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        key, secret = self._keys(ctx)
        extra: dict[str, Any] = {"endpoint_url": f"http://{host}:{port}", "access_key": key, "secret_key": secret,
                                 "region": str(ctx.settings.get("region") or "us-east-1"),
                                 "bucket": str(ctx.settings.get("bucket") or "hwbench")}
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}", extra=extra, name=ctx.name,
                        kind=self.name)
