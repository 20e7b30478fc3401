"""Which processes are a service's: the root pid of a process service, a container's init pid, or the
local process listening on an external service's port.

Why pids and not handles: under xdist the controller owns the services and a worker only gets plain JSON;
a pid is what both a process tree and a container's cgroup can be sampled from, on this host.
"""

from __future__ import annotations

import contextlib
from typing import Any

import psutil

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` on this host, if it can be seen."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


def service_pid(svc: Any) -> dict[str, Any] | None:
    """``{"pid": ..., "container": bool}`` for a running service handle, or None when not on this host."""
    info = getattr(svc, "info", {}) or {}
    backend = getattr(svc, "backend", "")
    pid: int | None
    if backend == "docker":
        container = getattr(svc, "container", None)
        with contextlib.suppress(Exception):
            pid = int((container.attrs.get("State") or {}).get("Pid") or 0)  # type: ignore[union-attr]
            if pid > 0:
                return {"pid": pid, "container": True}
        return None
    if isinstance(info.get("pid"), int):
        return {"pid": info["pid"], "container": False}
    endpoint = getattr(svc, "endpoint", None)
    if endpoint is not None and getattr(endpoint, "host", "") in _LOCAL_HOSTS:
        pid = listener_pid(int(endpoint.port))
        if pid is not None:
            return {"pid": pid, "container": False}
    return None
