"""The bridge between the recipe's ``services:`` and the tests that use them.

One process owns each service: the plain pytest process (which starts a service lazily, on the first test
that asks for it) or, under xdist, the controller (which starts every recipe service before the workers
start, because it cannot know which ones they will need, and hands the endpoints over in ``workerinput``).
Workers never start or stop anything. The owner stops everything at session end; the services package
also reaps what dead runs left behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable

WORKERINPUT_ENDPOINTS = "hwbench_endpoints"
WORKERINPUT_ERRORS = "hwbench_service_errors"
WORKERINPUT_FACTS = "hwbench_service_facts"
WORKERINPUT_PIDS = "hwbench_service_pids"
#: What of a service belongs in a baseline's environment: what an upgrade of the service changes.
FACT_KEYS: tuple[str, ...] = ("kind", "backend", "binary_version", "image", "image_digest", "model", "server")


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

    def _service_set(self) -> Any:
        if self._set is None:
            from pytest_hwbench.services import ServiceSet

            self._set = ServiceSet(log_dir=self.log_dir, run_id=self.run_id, source=self.recipe.path)
            reaped = self._set.reaped
            if reaped is not None and (reaped.count or reaped.errors):
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
        if name in self._handed:
            return Endpoint.from_dict(self._handed[name])
        if name not in self._running and name not in self._errors and not self.is_worker:
            self._start(name)
        if name in self._errors:
            kind, text = self._errors[name]
            if kind == "unavailable":
                unavailable(f"service {name!r}: {text}")
            if kind == "died":  # said in full once, by the test that saw it die
                pytest.fail(f"service {name!r} died earlier in this run ({text}); the first test that failed "
                            "on it shows its log", pytrace=False)
            pytest.fail(f"service {name!r} did not start: {text.removeprefix(f'service {name!r}: ')}",
                        pytrace=False)
        if name not in self._running:
            pytest.fail(f"service {name!r} was not handed to this xdist worker", pytrace=False)
        svc = self._running[name]
        try:
            svc.check_alive()
        except ServiceDied as err:
            self._errors[name] = ("died", err.problem.removeprefix("died during the run: "))
            pytest.fail(str(err), pytrace=False)
        return svc.endpoint

    def death_of(self, name: str) -> str | None:
        """Why service ``name`` stopped, if it did (cheap: exit status here, a TCP connect on a worker).
        The first death is remembered, so later tests say it died once, briefly."""
        if name in self._errors:
            return None
        if name in self._running:
            reason = self._running[name]._dead_reason()
        elif name in self._handed:
            reason = _unreachable(self._handed[name])
        else:
            return None
        if reason is None:
            return None
        self._errors[name] = ("died", reason)
        return f"died ({reason})"

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
