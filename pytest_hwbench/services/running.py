"""The handle of a started service, common to all backends, and the bounded readiness wait.

Why one handle type: the plugin (and the leak cleanup) treat a container, a local process and a remote
URL alike — ``endpoint``, ``info``, ``check_alive()``, ``stats()``, ``log_tail()``, ``stop()``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from pytest_hwbench.services.base import Endpoint, ServiceDied, ServiceStartError, hint_for, now_s, tail_file
from pytest_hwbench.services.probes import PROBLEM_FIX, Probe, ProbeResult, Problem, State


class RunningService:
    """A started service. Subclasses implement ``_dead_reason``, ``_stop`` and ``stats``.

    ``info`` is JSON-serialisable and goes into the run manifest: kind, backend, image and digest or
    binary, pid or container id, ``startup_s`` (launch → healthy), ``model_load_s`` / ``model_pull_s``
    when a model is involved (measured apart from start-up, issue #4).
    """

    backend = "?"

    def __init__(self, name: str, kind: str, endpoint: Endpoint, info: dict[str, Any], probe: Probe,
                 log_path: Path | None) -> None:
        self.name = name
        self.kind = kind
        self.endpoint = endpoint
        self.info = info
        self.probe = probe
        self.log_path = log_path
        self._stopped = False

    # -- state --------------------------------------------------------------------------------------------
    def _dead_reason(self) -> str | None:
        """None while the service runs; otherwise why it does not (exit status, container state)."""
        return None

    def log_tail(self, lines: int = 30) -> str:
        return tail_file(self.log_path, lines)

    def check_alive(self, *, probe: bool = True) -> None:
        """Raise :class:`ServiceDied` (with the log tail) when the service has stopped or stopped answering.

        Call it between measurements: a result measured against a dead service must not pass as a number.
        """
        if self._stopped:
            raise ServiceDied(self.name, "was stopped")
        reason = self._dead_reason()
        if reason is None and probe:
            result = self.probe.check(self.endpoint.host, self.endpoint.port, timeout=5.0)
            if result.state is not State.READY:
                reason = f"no longer passes its health check ({self.probe.description}: {result.detail})"
        if reason is not None:
            tail = self.log_tail()
            raise ServiceDied(self.name, f"died during the run: {reason}", log_tail=tail,
                              hint=hint_for(tail + "\n" + reason), log_path=_str(self.log_path))

    def stats(self) -> dict[str, Any]:
        """One resource sample: ``cpu_percent`` (100 = one core), ``mem_bytes``, plus backend details."""
        return {}

    # -- stop ---------------------------------------------------------------------------------------------
    def _stop(self) -> None:
        """Backend-specific stop; must be idempotent and must not raise for an already dead service."""

    def stop(self) -> None:
        """Stop the service and remove what it left (container, process group, work dir, pid file)."""
        if self._stopped:
            return
        self._stopped = True
        self._stop()

    def __enter__(self) -> RunningService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.kind}) {self.endpoint.url}>"


def wait_ready(name: str, probe: Probe, host: str, port: int, *, timeout: float,
               dead_reason: Callable[[], str | None], log_path: Path | None,
               log_text: Callable[[], str] | None = None, poll: float = 0.25,
               fail_fast: Collection[Problem] = (Problem.AUTH, Problem.PROTOCOL)) -> tuple[float, float | None]:
    """Poll until ``probe`` passes; raise :class:`ServiceStartError` when the service dies or time runs out.

    Returns (seconds to ready, seconds to the first not-yet-ready answer or None) measured from the call;
    None means the first answer was already "ready" (nothing to tell apart, e.g. a model that loads before
    the server listens). Both errors
    carry the log tail and a hint, because the log nearly always says why.
    """
    t0 = now_s()
    first_answer: float | None = None
    last = ProbeResult(State.DOWN, "not probed yet")
    deadline = t0 + timeout

    def tail() -> str:
        return log_text() if log_text else tail_file(log_path)

    while True:
        reason = dead_reason()
        if reason is not None:
            text = tail()
            raise ServiceStartError(name, f"exited during start-up ({reason})", log_tail=text,
                                    hint=hint_for(text + "\n" + reason) or "see the log lines below",
                                    log_path=_str(log_path))
        last = probe.check(host, port, timeout=min(2.0, max(0.2, deadline - now_s())))
        if last.state is State.ANSWERING and first_answer is None:
            first_answer = now_s() - t0
        if last.state is State.READY:
            return now_s() - t0, first_answer
        problem = last.problem
        if problem is not None and problem in fail_fast:  # definite: waiting for the timeout changes nothing
            text = tail()
            raise ServiceStartError(name, f"health check failed: {problem.value}: {last.detail} "
                                          f"({probe.description})", log_tail=text,
                                    hint=PROBLEM_FIX[problem], log_path=_str(log_path))
        if now_s() >= deadline:
            text = tail()
            raise ServiceStartError(
                name, f"health check did not pass within {timeout:g}s ({probe.description}; last result: "
                      f"{last.state.name.lower()}: {last.detail})",
                log_tail=text,
                hint=hint_for(text) or "the service may need longer (raise startup_timeout) or listen elsewhere",
                log_path=_str(log_path))
        time.sleep(poll)


def _str(path: Path | None) -> str | None:
    return str(path) if path else None
