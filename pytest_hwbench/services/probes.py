"""Health probes: is the service answering, and is it ready to be measured?

Why three states (``DOWN`` / ``ANSWERING`` / ``READY``) instead of a bool: an engine like llama-server or
vLLM answers HTTP long before its model is loaded (``/health`` → 503). The time between the first answer
and ready is the model load time, reported apart from process start-up (issue #4, models).

Why TCP probes send a protocol request: a port published by Docker is accepted by docker-proxy even when
nothing listens inside the container, so a bare connect proves nothing there.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.services.base import restore_default_signals


class State(Enum):
    DOWN = 0
    ANSWERING = 1
    READY = 2


class Problem(Enum):
    """What a failed probe answer means, when it means something definite (so waiting longer is futile)."""

    REFUSED = "refused"
    AUTH = "auth"
    PROTOCOL = "protocol"


#: What to tell the user for each classified answer.
PROBLEM_FIX: dict[Problem, str] = {
    Problem.REFUSED: "nothing listens there (connection refused): check the host and port in the URL and that "
                     "the service runs",
    Problem.AUTH: "the service answers but requires credentials: set the password/token in the recipe (keep "
                  "it in ${ENV}), e.g. settings.redis.password: ${REDIS_PASSWORD}",
    Problem.PROTOCOL: "something answers there, but not in this service kind's protocol: check the port and the "
                      "service kind",
}


@dataclass(frozen=True)
class ProbeResult:
    state: State
    detail: str = ""
    problem: Problem | None = None
    """Set when the answer is definite (refused, needs credentials, wrong protocol); None when unknown."""


class Probe:
    """A readiness check against ``host:port``; must return quickly (each attempt is bounded)."""

    description = "probe"

    def check(self, host: str, port: int, timeout: float = 2.0) -> ProbeResult:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class HttpProbe(Probe):
    """GET each path in turn; READY on an accepted status, ANSWERING on any other HTTP answer."""

    paths: tuple[str, ...] = ("/health",)
    ok_status: tuple[int, ...] = (200,)
    scheme: str = "http"

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"HTTP GET {' or '.join(self.paths)} → {'/'.join(map(str, self.ok_status))}"

    def check(self, host: str, port: int, timeout: float = 2.0) -> ProbeResult:
        state, detail = State.DOWN, "no answer"
        problem: Problem | None = None
        for path in self.paths:
            url = f"{self.scheme}://{_urlhost(host)}:{port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    status = resp.status
                    body = resp.read(200)
            except urllib.error.HTTPError as err:
                status, body = err.code, (err.read(200) if err.fp else b"")
            except (http.client.HTTPException, ConnectionResetError) as err:  # answered, but not HTTP
                return ProbeResult(State.DOWN, f"{path}: not an HTTP answer ({type(err).__name__})",
                                   Problem.PROTOCOL)
            except (OSError, ValueError) as err:
                detail = f"{path}: {err}"
                refused = isinstance(getattr(err, "reason", err), ConnectionRefusedError)
                problem = Problem.REFUSED if refused else None
                continue
            if status in self.ok_status:
                return ProbeResult(State.READY, f"{path} → {status}")
            problem = Problem.AUTH if status in (401, 403) else None
            state, detail = State.ANSWERING, f"{path} → {status} {body.decode('utf-8', 'replace')[:120]}"
        return ProbeResult(state, detail, problem)


@dataclass(frozen=True)
class TcpProbe(Probe):
    """Connect; with ``send``, also send it and wait for ``expect`` in the reply."""

    send: bytes | None = None
    expect: bytes | None = None
    also_ready: tuple[bytes, ...] = ()
    """Replies that prove the server is up too (Redis with a password answers PING with -NOAUTH)."""

    @property
    def description(self) -> str:  # type: ignore[override]
        return "TCP connect" + (f" + {self.send!r} → {self.expect!r}" if self.send else "")

    def check(self, host: str, port: int, timeout: float = 2.0) -> ProbeResult:
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                if self.send is None:
                    return ProbeResult(State.READY, "connected")
                sock.sendall(self.send)
                reply = b""
                while (self.expect is not None and self.expect not in reply and len(reply) < 4096
                       and not (b"\n" in reply and (reply.startswith(self.also_ready or (b"\0",))
                                                    or _AUTH_REPLY.search(reply.decode("latin-1"))))):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
        except ConnectionRefusedError as err:
            return ProbeResult(State.DOWN, str(err), Problem.REFUSED)
        except OSError as err:
            return ProbeResult(State.DOWN, str(err))
        if self.expect is None or self.expect in reply or any(reply.startswith(r) for r in self.also_ready):
            return ProbeResult(State.READY, reply[:80].decode("utf-8", "replace"))
        text = reply[:120].decode("utf-8", "replace").strip()
        if reply:
            if _AUTH_REPLY.search(text):
                return ProbeResult(State.ANSWERING, text, Problem.AUTH)
            if reply.startswith((b"HTTP/", b"<!", b"<html", b"<HTML")):  # a web server on this port
                return ProbeResult(State.ANSWERING, text, Problem.PROTOCOL)
            return ProbeResult(State.ANSWERING, text)
        return ProbeResult(State.DOWN, "connection closed without an answer")


#: Replies of servers that want credentials (Redis NOAUTH / WRONGPASS, generic "authentication required").
_AUTH_REPLY = re.compile(r"NOAUTH|WRONGPASS|authentication required|auth(entication)? failed|"
                         r"password authentication", re.IGNORECASE)


@dataclass(frozen=True)
class CommandProbe(Probe):
    """Run a command (``{host}`` and ``{port}`` are substituted); exit status 0 is READY."""

    argv: tuple[str, ...]

    @property
    def description(self) -> str:  # type: ignore[override]
        return "command " + " ".join(self.argv)

    def check(self, host: str, port: int, timeout: float = 2.0) -> ProbeResult:
        argv = [a.replace("{host}", host).replace("{port}", str(port)) for a in self.argv]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=max(timeout, 1.0), check=False,
                                  preexec_fn=restore_default_signals)
        except (OSError, subprocess.TimeoutExpired) as err:
            return ProbeResult(State.DOWN, str(err))
        out = (done.stdout + done.stderr).decode("utf-8", "replace").strip()[-200:]
        return ProbeResult(State.READY if done.returncode == 0 else State.DOWN, out)


@dataclass(frozen=True)
class CallableProbe(Probe):
    """A Python check ``fn(host, port, timeout) -> ProbeResult`` (e.g. a psycopg connect)."""

    fn: Callable[[str, int, float], ProbeResult]
    what: str = "python check"

    @property
    def description(self) -> str:  # type: ignore[override]
        return self.what

    def check(self, host: str, port: int, timeout: float = 2.0) -> ProbeResult:
        try:
            return self.fn(host, port, timeout)
        except Exception as err:
            return ProbeResult(State.DOWN, f"{type(err).__name__}: {err}")


@dataclass(frozen=True)
class NoProbe(Probe):
    """``health: none``: alive is enough (for things with no way to ask)."""

    description = "none"

    def check(self, host: str, port: int, timeout: float = 2.0) -> ProbeResult:
        return ProbeResult(State.READY, "no health check configured")


def probe_from_setting(value: Any, *, field: str, source: str | None = None) -> Probe:
    """Build a probe from a recipe ``health:`` setting.

    Accepted: ``none``; ``tcp``; ``{http: /path}`` or ``{http: [/a, /b], status: [200, 204]}``;
    ``{tcp: true, send: "PING\\r\\n", expect: "+PONG"}``; ``{command: [pg_isready, -h, "{host}", -p, "{port}"]}``.
    """
    fix = ("write health: none | tcp | {http: /health} | {tcp: true, send: ..., expect: ...} | "
           "{command: [argv...]} (with {host} and {port} placeholders)")
    if value in (None, "none", False):
        return NoProbe()
    if value == "tcp":
        return TcpProbe()
    if isinstance(value, str) and value.startswith("/"):
        return HttpProbe(paths=(value,))
    if isinstance(value, dict):
        if "http" in value:
            paths = value["http"]
            paths = (paths,) if isinstance(paths, str) else tuple(str(p) for p in paths)
            status = value.get("status", [200])
            status = (int(status),) if isinstance(status, int) else tuple(int(s) for s in status)
            return HttpProbe(paths=paths, ok_status=status)
        if "tcp" in value:
            send, expect = value.get("send"), value.get("expect")
            return TcpProbe(send=send.encode() if send else None, expect=expect.encode() if expect else None)
        if "command" in value:
            cmd = value["command"]
            if isinstance(cmd, str):
                cmd = cmd.split()
            if isinstance(cmd, Sequence) and cmd:
                return CommandProbe(argv=tuple(str(a) for a in cmd))
    raise HwbenchInputError(f"unknown health check {value!r}", file=source, field=field, fix=fix)


def _urlhost(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
