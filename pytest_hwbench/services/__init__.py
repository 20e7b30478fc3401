"""Services stage: start, health-check, observe and stop the servers a benchmark measures.

One interface, three backends — ``docker`` (a container on a Docker-chosen 127.0.0.1 port), ``process``
(a local binary on a reserved free port, in its own process group) and ``external`` (a URL somebody else
runs; health probe only) — and a catalog with one module per service kind (``services/catalog/*.py``).

What the plugin calls::

    from pytest_hwbench.services import ServiceSet, Endpoint

    services = ServiceSet(log_dir=run_dir / "services", run_id=run_id, source=recipe.path)  # reaps leftovers
    svc = services.start(recipe.services["llm"])      # healthy or HwbenchInputError / ServiceUnavailable /
    endpoint = svc.endpoint.to_dict()                 #   ServiceStartError (with log tail + hint)
    manifest = services.manifest()                    # image digest, binary version, startup_s, model_load_s
    svc.check_alive(); svc.stats()                    # between measurements
    services.stop_all()                               # reverse order; also on atexit / SIGTERM

Workers under xdist only need ``Endpoint.from_dict(...)``.
"""

from __future__ import annotations

from pytest_hwbench.services.base import Endpoint, ServiceDied, ServiceStartError
from pytest_hwbench.services.catalog import ServiceKind, get_kind, kinds, register
from pytest_hwbench.services.manager import ServiceSet, install_exit_on_signals, new_run_id, start_service
from pytest_hwbench.services.reaper import ReapReport, leftover_containers, reap_leftovers
from pytest_hwbench.services.running import RunningService
from pytest_hwbench.services.state import default_state_dir

__all__ = [
    "Endpoint",
    "ReapReport",
    "RunningService",
    "ServiceDied",
    "ServiceKind",
    "ServiceSet",
    "ServiceStartError",
    "default_state_dir",
    "get_kind",
    "install_exit_on_signals",
    "kinds",
    "leftover_containers",
    "new_run_id",
    "reap_leftovers",
    "register",
    "start_service",
]
