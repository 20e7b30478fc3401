"""The ``external`` backend: an endpoint somebody else runs (a shared vLLM, a managed S3, a DB server).

Nothing is started or stopped: the recipe gives ``url``, and the kind's health probe must pass before the
first measurement, so a wrong URL fails in set-up with a clear message instead of as 100 % errors.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable
from pytest_hwbench.services.base import Endpoint, ServiceStartError, StartContext, now_s
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import PROBLEM_FIX, Problem, State, probe_from_setting
from pytest_hwbench.services.running import RunningService
from pytest_hwbench.services.service_settings import ExternalSettings, ServiceSettings

DEFAULT_PORTS = {"http": 80, "https": 443, "redis": 6379, "rediss": 6379, "postgresql": 5432, "postgres": 5432}


class ExternalService(RunningService):
    backend = "external"

    def log_tail(self, lines: int = 30) -> str:
        return ""  # not ours: its logs live wherever it runs


def start_external(kind: ServiceKind, *, name: str, settings: ServiceSettings, run_id: str, log_dir: Path,
                   state_dir: Path, source: str | None, host: str = "127.0.0.1") -> ExternalService:
    """Check that the recipe's ``url`` answers the kind's health probe; return a handle that stops nothing."""
    own = settings.backend_as(ExternalSettings)
    url = own.url
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise HwbenchInputError(f"url {url!r} is not an absolute URL", file=source, field=f"services.{name}.url",
                                fix="write url: http://host:port (or redis://…, postgresql://…)")
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError as err:
        raise HwbenchInputError(f"url {url!r}: {err}", file=source, field=f"services.{name}.url",
                                fix="write url: http://host:port") from None
    extra = own.extra
    ctx = StartContext(name=name, kind=kind, backend="external", settings=settings, host=parts.hostname,
                       port=port, ports={}, work_dir=log_dir, log_dir=log_dir, run_id=run_id, source=source)
    probe = (probe_from_setting(own.health, field=ctx.field("health"), source=source)
             if own.health is not None else kind.probe(ctx))
    timeout = own.startup_timeout or kind.startup_timeout
    t0 = now_s()
    while True:
        result = probe.check(parts.hostname, port, timeout=min(5.0, timeout))
        if result.state is State.READY:
            break
        if result.problem is Problem.REFUSED:
            # Nothing listens at the URL: the server a user provides is not available on this machine; a skip
            # naming the fix (a failure under HWBENCH_FAIL_ON_UNAVAILABLE=1), like a missing binary.
            where = f"{source}: {ctx.field('url')}: " if source else ""
            raise ServiceUnavailable(f"{where}nothing listens at {_redact(url)} (connection "
                                     "refused): start the server, or set the recipe's url (its ${ENV} variable) "
                                     "to a running one")
        if result.problem is not None:  # needs credentials, wrong protocol: say so now
            raise ServiceStartError(name, f"external endpoint {_redact(url)} failed its health check: "
                                          f"{result.problem.value}: {result.detail} ({probe.description})",
                                    hint=PROBLEM_FIX[result.problem])
        if now_s() - t0 >= timeout:
            raise ServiceStartError(name, f"external endpoint {_redact(url)} did not pass its health check within "
                                          f"{timeout:g}s ({probe.description}; last: {result.detail})",
                                    hint="check the URL, that the service runs, and that this machine reaches it")
        time.sleep(0.5)
    base = kind.endpoint(ctx, parts.hostname, port, {})
    endpoint = Endpoint(host=parts.hostname, port=port, url=url.rstrip("/"), extra={**base.extra, **extra},
                        name=name, kind=kind.name)
    info: dict[str, Any] = {"name": name, "kind": kind.name, "backend": "external", "run_id": run_id,
                            "url": _redact(url), "started_at_ns": time.time_ns(),
                            "startup_s": round(now_s() - t0, 4), **ctx.info}
    svc = ExternalService(name=name, kind=kind.name, endpoint=endpoint, info=info, probe=probe, log_path=None)
    info.update(kind.after_ready(ctx, endpoint))
    from pytest_hwbench.services.self_description import describe_server

    server = describe_server(kind.name, url)  # an upgrade behind the same URL shows in the env diff
    if server:
        info["server"] = server
    return svc


def _redact(url: str) -> str:
    """The URL without a password: the info goes into reports, and credentials must not (docs/architecture.md)."""
    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url
