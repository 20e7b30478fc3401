"""The bridge between the recipe's ``services:`` and the tests that use them.

One process owns each service: the plain pytest process (which starts a service lazily, on the first test
that asks for it) or, under xdist, the controller (which starts every recipe service before the workers
start, because it cannot know which ones they will need, and hands the endpoints over in ``workerinput``).
Workers never start or stop anything. The owner stops everything at session end; the services package
also reaps what dead runs left behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable
from pytest_hwbench.outcomes import death_text

WORKERINPUT_ENDPOINTS = "hwbench_endpoints"
WORKERINPUT_ERRORS = "hwbench_service_errors"
WORKERINPUT_FACTS = "hwbench_service_facts"
WORKERINPUT_PIDS = "hwbench_service_pids"
#: What of a service belongs in a baseline's environment: what an upgrade of the service changes.
FACT_KEYS: tuple[str, ...] = ("kind", "backend", "binary_version", "image", "image_digest", "model", "server")
#: How long the controller waits for the exit status of a service a worker saw stop accepting connections
#: (the port closes a moment before the process is reaped; a hung service keeps the worker's wording).
EXIT_STATUS_WAIT_S = 5.0
#: Log lines shown with the first report of a death (the crash message is at the end of the log).
DEATH_LOG_LINES = 15


def unavailable(reason: str) -> None:
    """Skip for a missing piece, or fail when ``HWBENCH_FAIL_ON_UNAVAILABLE=1`` (CI)."""
    if os.environ.get("HWBENCH_FAIL_ON_UNAVAILABLE") == "1":
        pytest.fail(f"not available (HWBENCH_FAIL_ON_UNAVAILABLE=1): {reason}", pytrace=False)
    pytest.skip(reason)


class ServiceHub:
    """Endpoints of the recipe's services for this process: started here, or handed over by the controller."""

    def __init__(self, recipe: Any, log_dir: Path, run_id: str,
                 workerinput: dict[str, Any] | None = None) -> None:
        self.recipe = recipe
        self.log_dir = log_dir
        self.run_id = run_id
        self.is_worker = workerinput is not None
        self._handed: dict[str, dict[str, Any]] = dict((workerinput or {}).get(WORKERINPUT_ENDPOINTS, {}))
        self._errors: dict[str, tuple[str, str]] = dict((workerinput or {}).get(WORKERINPUT_ERRORS, {}))
        self._facts: dict[str, dict[str, Any]] = dict((workerinput or {}).get(WORKERINPUT_FACTS, {}))
        self._pids: dict[str, dict[str, Any]] = dict((workerinput or {}).get(WORKERINPUT_PIDS, {}))
        self._set: Any = None
        self._running: dict[str, Any] = {}
        self.reaped_text: str | None = None
        """What the reaper removed when this process first started a service (shown in the summary)."""
        self.reaped: dict[str, list[str]] | None = None
        """The same, for run.json: leftovers of dead runs removed (processes, containers) and errors."""
        self.pending_deaths: list[dict[str, str]] = []
        """Worker: deaths noticed since the last report, sent to the controller to be worded (``settle``)."""
        self._settled: dict[str, str] = {}

    def _service_set(self) -> Any:
        if self._set is None:
            from pytest_hwbench.services import ServiceSet

            self._set = ServiceSet(log_dir=self.log_dir, run_id=self.run_id, source=self.recipe.path)
            reaped = self._set.reaped
            if reaped is not None and (reaped.count or reaped.errors):
                self.reaped = reaped.to_dict()
                parts = [*reaped.processes, *reaped.containers]
                self.reaped_text = (f"pytest-hwbench: removed {reaped.count} leftover(s) of earlier runs that "
                                    f"died: {', '.join(parts) or 'none'}"
                                    + (f"; could not remove: {'; '.join(reaped.errors)}" if reaped.errors else ""))
        return self._set

    def _start(self, name: str) -> None:
        """Start one service here, remembering a failure so later tests fail fast with the same reason."""
        from pytest_hwbench.services import ServiceStartError

        try:
            self._running[name] = self._service_set().start(self.recipe.services[name])
        except ServiceUnavailable as err:
            self._errors[name] = ("unavailable", str(err))
        except (ServiceStartError, HwbenchInputError) as err:
            self._errors[name] = ("error", str(err))
        except OSError as err:  # its log or work directory cannot be written (full disk, bad report dir)
            self._errors[name] = ("error", f"cannot start: {err}")

    def start_all(self) -> None:
        """Controller under xdist: start every recipe service now (failures are handed to the workers)."""
        for name in self.recipe.services:
            if name not in self._running and name not in self._errors:
                self._start(name)

    def workerinput(self) -> dict[str, Any]:
        """What a worker needs: endpoints (plain JSON, may hold credentials: in memory only) and errors."""
        return {WORKERINPUT_ENDPOINTS: {n: s.endpoint.to_dict() for n, s in self._running.items()},
                WORKERINPUT_ERRORS: dict(self._errors), WORKERINPUT_FACTS: self.facts(self._running),
                WORKERINPUT_PIDS: self.sampling_pids(self._running)}

    def sampling_pids(self, names: Any) -> dict[str, dict[str, Any]]:
        """Root pid of each named running service's processes, for resource sampling (see
        ``measure.samplers.targets``); services whose processes are not visible here are left out."""
        from pytest_hwbench.measure.samplers.targets import service_pid

        out = {n: dict(self._pids[n]) for n in names if n in self._pids}
        for name in names:
            if name in self._running:
                found = service_pid(self._running[name])
                if found is not None:
                    out[name] = found
        return out

    def facts(self, names: Any) -> dict[str, dict[str, Any]]:
        """Version facts of the named services that run (image digest, binary version, model), for the
        environment a baseline is compared in: a service upgrade then shows in the environment diff."""
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            if name in self._running:
                info = self._running[name].info
                out[name] = {k: info[k] for k in FACT_KEYS if info.get(k) is not None}
            elif name in self._facts:
                out[name] = dict(self._facts[name])
        return out

    def check_provided(self, name: str) -> None:
        """Skip the test when the recipe has no service ``name``: the recipe chose not to run it."""
        if name not in self.recipe.services:
            provided = ", ".join(self.recipe.services) or "none"
            pytest.skip(f"recipe {self.recipe.path} provides no service {name!r} "
                        f"(provided: {provided}; add services.{name} to the recipe)")

    def endpoint(self, name: str) -> Any:
        """The endpoint of service ``name``; skips (unavailable) or fails (start error, died) the test."""
        from pytest_hwbench.services import Endpoint, ServiceDied

        self.check_provided(name)
        if name not in self._handed and name not in self._running and name not in self._errors \
                and not self.is_worker:
            self._start(name)
        if name in self._errors:
            kind, text = self._errors[name]
            if kind == "unavailable":
                unavailable(f"service {name!r}: {text}")
            if kind == "died":  # said in full once, by the test that saw it die
                pytest.fail(self._death(name, text, "earlier"), pytrace=False)
            pytest.fail(f"service {name!r} did not start: {text.removeprefix(f'service {name!r}: ')}",
                        pytrace=False)
        if name in self._handed:  # a worker: the controller owns the process; a closed port is a death
            reason = _unreachable(self._handed[name])
            if reason is not None:
                pytest.fail(self._death(name, reason, "before"), pytrace=False)
            return Endpoint.from_dict(self._handed[name])
        if name not in self._running:
            pytest.fail(f"service {name!r} was not handed to this xdist worker", pytrace=False)
        svc = self._running[name]
        try:
            svc.check_alive()
        except ServiceDied as err:
            pytest.fail(self._death(name, err.problem.removeprefix("died during the run: "), "before"),
                        pytrace=False)
        return svc.endpoint

    def death_of(self, name: str) -> str | None:
        """The failure text when service ``name`` is dead (None while it runs): cheap, the exit status here,
        a TCP connect on a worker. The first death is told in full, later tests say it died, once, briefly."""
        if name in self._errors:
            kind, reason = self._errors[name]
            return self._death(name, reason, "earlier") if kind == "died" else None
        if name in self._running:
            found = self._running[name]._dead_reason()
        elif name in self._handed:
            found = _unreachable(self._handed[name])
        else:
            return None
        return None if found is None else self._death(name, found, "during")

    def dead(self, names: Any) -> dict[str, str]:
        """Why each of the named services that is known to have died did (for teardown messages)."""
        return {n: self._errors[n][1] for n in names if self._errors.get(n, ("", ""))[0] == "died"}

    def _death(self, name: str, reason: str, when: str) -> str:
        """Remember that ``name`` died; the text the current test fails with. A worker notes the death for
        the controller, which owns the process and words it with the exit status (``settle``)."""
        from pytest_hwbench.report.redact import redact_text

        known = self._errors.get(name)
        if known is not None and known[0] == "died":
            when, reason = "earlier", known[1]
        self._errors[name] = ("died", reason)
        text = redact_text(death_text(name, reason, when, self._details(name, reason, when)))
        if self.is_worker:
            self.pending_deaths.append({"service": name, "reason": reason, "when": when, "text": text})
        return text

    def _details(self, name: str, reason: str, when: str) -> str:
        """Hint, log path and last log lines of a death told in full, where this process owns the service."""
        from pytest_hwbench.services.base import hint_for, log_details

        svc = self._running.get(name)
        if when == "earlier" or svc is None:
            return ""
        tail = svc.log_tail(DEATH_LOG_LINES)
        return log_details(hint_for(tail + "\n" + reason), str(svc.log_path) if svc.log_path else None, tail)

    def settle(self, note: dict[str, str]) -> str:
        """Controller under xdist: the final text of a death a worker noticed. This process owns the
        service, so it names the exit status (the worker saw only the port close); the first death to arrive
        is told in full, with the log, and every later one briefly."""
        from pytest_hwbench.report.redact import redact_text

        name, when = note["service"], note["when"]
        if name in self._settled:
            when = "earlier"
        else:
            self._settled[name] = self._exit_status(name) or note["reason"]
            when = "before" if when == "earlier" else when
        reason = self._settled[name]
        self._errors[name] = ("died", reason)
        return redact_text(death_text(name, reason, when, self._details(name, reason, when)))

    def _exit_status(self, name: str) -> str | None:
        svc = self._running.get(name)
        if svc is None:  # external: nothing here knows more than the worker
            return None
        deadline = time.monotonic() + EXIT_STATUS_WAIT_S
        while True:
            reason = svc._dead_reason()
            if reason is not None or time.monotonic() >= deadline:
                return reason
            time.sleep(0.1)

    def manifest(self) -> dict[str, Any]:
        """Per-service facts for run.json (image digest, binary version, startup and model load time)."""
        out: dict[str, Any] = {name: svc.info for name, svc in self._running.items()}
        for name, (kind, text) in self._errors.items():
            out.setdefault(name, {})["error"] = f"{kind}: {text}"
        return out

    def stop_all(self) -> list[str]:
        """Stop what this process owns; returns error texts instead of raising (session end must go on)."""
        if self._set is None:
            return []
        errors = self._set.stop_all()
        self._running.clear()
        return [str(e) for e in errors or []]


def _unreachable(endpoint: dict[str, Any]) -> str | None:
    """On an xdist worker (which has no process handle): does the service still accept connections?"""
    import socket

    try:
        with socket.create_connection((str(endpoint["host"]), int(endpoint["port"])), timeout=2.0):
            return None
    except ConnectionRefusedError:
        return f"stopped accepting connections on {endpoint['host']}:{endpoint['port']}"
    except OSError:
        return None  # a timeout on a loaded machine is not a death
