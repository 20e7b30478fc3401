"""Entry points the plugin calls: start one service from a recipe ``ServiceSpec``, or a set of them.

Why a ``ServiceSet`` besides ``start_service``: a session starts several services and must stop all of
them on every way out — normal teardown, a failed start half-way, Ctrl-C, SIGTERM from CI — so it owns
the started handles, stops them in reverse order, and hooks ``atexit`` and SIGTERM/SIGHUP as a backstop.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.model import BACKENDS, ServiceSpec
from pytest_hwbench.services.catalog import get_kind
from pytest_hwbench.services.reaper import ReapReport, reap_leftovers
from pytest_hwbench.services.running import RunningService
from pytest_hwbench.services.service_settings import BACKEND_SETTINGS
from pytest_hwbench.services.state import default_state_dir


def new_run_id() -> str:
    """A sortable, unique run id (``20250101-120000-ab12cd``) used in labels, pid records and names."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def start_service(spec: ServiceSpec, *, run_id: str, log_dir: str | Path, state_dir: str | Path | None = None,
                  source: str | None = None, host: str = "127.0.0.1") -> RunningService:
    """Start (or, for ``external``, check) one service and return it once healthy.

    Raises :class:`HwbenchInputError` for bad recipe input (unknown kind, unknown setting),
    :class:`ServiceUnavailable` when this machine lacks a piece (binary, image, Docker engine), and
    :class:`ServiceStartError` (log tail + hint) when the service starts but does not become healthy.
    Whatever was started is stopped again before an error propagates.
    """
    kind = get_kind(spec.kind, source=source, field=f"services.{spec.name}.kind")
    if spec.backend not in BACKENDS:
        raise HwbenchInputError(f"{spec.backend!r} is not one of {', '.join(BACKENDS)}", file=source,
                                field=f"services.{spec.name}.backend", fix="write backend: docker")
    # The records the recipe check built at load; a spec built in code is checked (same declaration) now.
    config = spec.config
    if config is not None and isinstance(config.backend, BACKEND_SETTINGS[spec.backend]) \
            and isinstance(config.own, kind.Settings):
        kind.check_required(spec.name, spec.backend, spec.settings, source)
        settings = config
    else:
        settings = kind.validate(spec.name, spec.backend, spec.settings, source)
    kw: dict[str, Any] = dict(name=spec.name, settings=settings, run_id=run_id, log_dir=Path(log_dir),
                              state_dir=Path(state_dir) if state_dir else default_state_dir(), source=source,
                              host=host)
    if spec.backend == "process":
        from pytest_hwbench.services.process import start_process

        return start_process(kind, **kw)
    if spec.backend == "docker":
        from pytest_hwbench.services.docker_backend import start_docker

        return start_docker(kind, **kw)
    from pytest_hwbench.services.external import start_external

    return start_external(kind, **kw)


class ServiceSet:
    """The services of one run: start them, hand out endpoints, stop them all exactly once.

    ``reap=True`` first removes leftovers of dead runs from ``state_dir`` (issue #4, leak cleanup).
    ``handle_signals=True`` (main thread only) turns SIGTERM/SIGHUP into ``SystemExit`` where no handler is
    set, so teardown runs when CI cancels a job; Ctrl-C already raises ``KeyboardInterrupt``.
    """

    def __init__(self, *, log_dir: str | Path, run_id: str | None = None, state_dir: str | Path | None = None,
                 source: str | None = None, reap: bool = True, handle_signals: bool = True) -> None:
        self.run_id = run_id or new_run_id()
        self.log_dir = Path(log_dir)
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.source = source
        self.services: dict[str, RunningService] = {}
        self.reaped: ReapReport | None = None
        self._lock = threading.Lock()
        self._atexit = False
        if reap:
            self.reaped = reap_leftovers(self.state_dir)
        if handle_signals:
            install_exit_on_signals()

    def start(self, spec: ServiceSpec) -> RunningService:
        with self._lock:
            if spec.name in self.services:
                return self.services[spec.name]
            if not self._atexit:
                atexit.register(self.stop_all)
                self._atexit = True
            svc = start_service(spec, run_id=self.run_id, log_dir=self.log_dir, state_dir=self.state_dir,
                                source=self.source)
            self.services[spec.name] = svc
            return svc

    def start_all(self, specs: Iterable[ServiceSpec]) -> dict[str, RunningService]:
        """Start each spec in order; if one fails, the ones already started are stopped, then it raises."""
        try:
            for spec in specs:
                self.start(spec)
        except BaseException:
            self.stop_all()
            raise
        return dict(self.services)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Every endpoint as plain JSON (for xdist workers)."""
        return {name: svc.endpoint.to_dict() for name, svc in self.services.items()}

    def manifest(self) -> dict[str, dict[str, Any]]:
        """Every service's ``info`` (image digest, binary version, start-up and model load times)."""
        return {name: dict(svc.info) for name, svc in self.services.items()}

    def stop_all(self) -> list[BaseException]:
        """Stop in reverse start order; returns (does not raise) the errors, so one failure stops no other."""
        errors: list[BaseException] = []
        with self._lock:
            for name in reversed(list(self.services)):
                svc = self.services.pop(name)
                try:
                    svc.stop()
                except BaseException as err:
                    errors.append(err)
            if self._atexit:
                with contextlib.suppress(Exception):
                    atexit.unregister(self.stop_all)
                self._atexit = False
        return errors

    def __enter__(self) -> ServiceSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def install_exit_on_signals(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> list[int]:
    """Where a signal has the default (die silently) disposition, make it raise ``SystemExit(128 + n)``
    instead, so ``finally`` blocks and ``atexit`` stop services. Only from the main thread; returns the
    signals changed. A handler somebody else installed is left alone."""
    if threading.current_thread() is not threading.main_thread():
        return []
    changed = []
    for sig in signals:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _raise_exit)
                changed.append(sig)
    return changed


def _raise_exit(signum: int, frame: object) -> None:
    # Restore the default first: a second signal then ends the process even if teardown hangs.
    signal.signal(signum, signal.SIG_DFL)
    raise SystemExit(128 + signum)


__all__ = ["ServiceSet", "install_exit_on_signals", "new_run_id", "start_service"]
