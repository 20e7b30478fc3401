"""S3-compatible object storage: MinIO (process or image), moto's server mode as a stand-in, or any S3
endpoint through the external backend.

The endpoint's ``extra`` carries what an S3 client needs (``endpoint_url``, keys, region, and ``bucket``
when the recipe names one), so the S3 workload runs unchanged against MinIO, Ceph RGW, moto or AWS.

Why moto as a stand-in: where no MinIO binary or image can be had (CI without a registry), ``moto_server``
(pip ``moto[server]``) speaks the same S3 REST protocol on a local port. It keeps objects in Python memory,
so it exercises the *client path* — signing, HTTP, (de)serialisation, the network stack — and says nothing
about storage. Select it with ``binary: moto_server`` on the process backend; the run manifest then records
``server: moto`` and moto's version so a figure is never mistaken for a MinIO one. moto accepts any
credentials unless its IAM enforcement is switched on (``env: {INITIAL_NO_AUTH_ACTION_COUNT: "0"}``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

from pytest_hwbench.recipe.specs import Str, setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import ExternalSettings, ProcessSettings, opt_str

DEFAULT_KEY, DEFAULT_SECRET = "hwbench", "hwbench-secret"
MOTO_NOTE = "moto server mode: a stand-in for MinIO that measures the S3 client path, not storage"


def is_moto(binary: str | None) -> bool:
    """Whether the configured/found binary is moto's server (``moto_server``), not MinIO."""
    return bool(binary) and os.path.basename(str(binary)).startswith("moto")


@dataclass(frozen=True)
class S3ServerSettings:
    access_key: str = setting(DEFAULT_KEY, Str(nonempty=True), secret=True,
                              doc=f"access key (default {DEFAULT_KEY}; keep it in ${{ENV}})")
    secret_key: str = setting(DEFAULT_SECRET, Str(nonempty=True), secret=True,
                              doc="secret key (keep it in ${ENV})")
    region: str = setting("us-east-1", Str(nonempty=True), doc="region (default us-east-1)")
    bucket: str | None = setting(None, opt_str(), doc=(
        "bucket the workload uses (default: its own hwbench-<run>, created and deleted by it)"))
    data_dir: str | None = setting(None, opt_str(),
                                   doc="host directory for MinIO's data (default: the service's scratch dir)")


@register
class S3(ServiceKind):
    name = "s3"
    summary = "S3-compatible object store (MinIO; moto_server as a stand-in; any S3 endpoint via external)"
    port = 9000
    extra_ports: ClassVar[dict[str, int]] = {"console": 9001}
    image = "minio/minio:latest"
    binary = "minio"
    startup_timeout = 60.0
    Settings = S3ServerSettings

    def _keys(self, ctx: StartContext) -> tuple[str, str]:
        s = ctx.settings.own_as(S3ServerSettings)
        return s.access_key, s.secret_key

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        if is_moto(binary):
            ctx.info["server"] = "moto"
            ctx.info["server_note"] = MOTO_NOTE
            try:
                ctx.info["server_version"] = version("moto")
            except PackageNotFoundError:
                ctx.info["server_version"] = None
            return ["-H", ctx.host, "-p", str(ctx.port)]
        ctx.info["server"] = "minio"
        data = ctx.settings.own_as(S3ServerSettings).data_dir or str(ctx.work_dir / "data")
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
        data_dir = ctx.settings.own_as(S3ServerSettings).data_dir
        if data_dir:
            return {data_dir: {"bind": "/data", "mode": "rw"}}
        return {}

    def probe(self, ctx: StartContext) -> Probe:
        if ctx.backend == "external":
            # Any S3 endpoint (AWS, RGW) answers an anonymous ListBuckets with 403 AccessDenied (or 200):
            # that proves an S3 server is there; MinIO's health path does not exist elsewhere.
            return HttpProbe(paths=("/",), ok_status=(200, 403))
        backend = ctx.settings.backend
        if isinstance(backend, ProcessSettings) and is_moto(self.find_binary(backend.binary)):
            # moto's own API: answers once the Flask app serves S3, and does not count as an S3 action
            # (so it does not use up INITIAL_NO_AUTH_ACTION_COUNT when IAM enforcement is on).
            return HttpProbe(paths=("/moto-api/",))
        return HttpProbe(paths=("/minio/health/live",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        key, secret = self._keys(ctx)
        s = ctx.settings.own_as(S3ServerSettings)
        extra: dict[str, Any] = {"endpoint_url": f"http://{host}:{port}", "access_key": key, "secret_key": secret,
                                 "region": s.region,
                                 "server": ctx.info.get("server", "external" if ctx.backend == "external"
                                                        else "minio")}
        if s.bucket:
            extra["bucket"] = s.bucket
        url = f"http://{host}:{port}"
        backend = ctx.settings.backend
        if isinstance(backend, ExternalSettings) and backend.url:
            url = backend.url.rstrip("/")
            extra["endpoint_url"] = url
        return Endpoint(host=host, port=port, url=url, extra=extra, name=ctx.name, kind=self.name)
