"""Redis: ``redis-server`` locally or the ``redis`` image; persistence off by default.

Why ``--save '' --appendonly no``: snapshots and AOF fsyncs land in the middle of a latency measurement
and measure the disk, not Redis; a recipe that wants them passes ``args``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_hwbench.recipe.specs import setting
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import Probe, TcpProbe
from pytest_hwbench.services.service_settings import opt_int, opt_text, text

NO_PERSISTENCE = ["--save", "", "--appendonly", "no"]


@dataclass(frozen=True)
class RedisSettings:
    maxmemory: str | None = setting(None, opt_text(), convert=text, doc="memory limit, e.g. 1gb (default: none)")
    io_threads: int | None = setting(None, opt_int(1, 128), doc="io-threads (default 1)")


@register
class Redis(ServiceKind):
    name = "redis"
    summary = "Redis key-value store"
    port = 6379
    image = "redis:7"
    binary = "redis-server"
    scheme = "redis"
    startup_timeout = 30.0
    Settings = RedisSettings

    def _tuning(self, ctx: StartContext) -> list[str]:
        args: list[str] = []
        s = ctx.settings.own_as(RedisSettings)
        if s.maxmemory:
            args += ["--maxmemory", s.maxmemory]
        if s.io_threads:
            args += ["--io-threads", str(s.io_threads)]
        return args

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["--port", str(ctx.port), "--bind", ctx.host, "--dir", str(ctx.work_dir), *NO_PERSISTENCE,
                *self._tuning(ctx)]

    def container_command(self, ctx: StartContext) -> list[str]:
        # Works with the official image (its entrypoint execs a leading "redis-server") and with a
        # locally built FROM-scratch image that only holds the binary.
        return ["redis-server", "--port", str(self.port), "--bind", "0.0.0.0", "--protected-mode", "no",
                *NO_PERSISTENCE, *self._tuning(ctx)]

    def probe(self, ctx: StartContext) -> Probe:
        # A server started with --requirepass answers -NOAUTH: it is up; the client authenticates.
        return TcpProbe(send=b"PING\r\n", expect=b"+PONG", also_ready=(b"-NOAUTH",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        ep = super().endpoint(ctx, host, port, ports)
        extra: dict[str, Any] = {**ep.extra, "db": 0}
        return Endpoint(host=host, port=port, url=f"redis://{host}:{port}/0", extra=extra, name=ctx.name,
                        kind=self.name)
