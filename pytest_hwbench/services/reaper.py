"""Leak cleanup: stop processes and remove containers that runs which are no longer alive left behind.

Why at start rather than only at exit: SIGKILL, an OOM kill or a lost CI runner skip every exit handler.
Each start records its owner (host, pid, process start time) in a pid record or a container label; a
leftover is anything whose owner is gone. Live owners are left alone, so parallel runs sharing a state
dir or a Docker engine do not reap each other.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_hwbench.services.base import RUN_LABEL
from pytest_hwbench.services.state import Owner, PortRegistry, read_pid_records


@dataclass
class ReapReport:
    """What :func:`reap_leftovers` removed (``processes`` / ``containers`` as short descriptions)."""

    processes: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.processes) + len(self.containers)

    def to_dict(self) -> dict[str, Any]:
        return {"processes": self.processes, "containers": self.containers, "errors": self.errors}


def reap_leftovers(state_dir: str | Path, *, docker: bool = True, run_id: str | None = None,
                   include_live_owners: bool = False) -> ReapReport:
    """Find and remove what dead runs left: processes from pid records in ``state_dir``, containers by label.

    ``run_id`` restricts it to one run; ``include_live_owners=True`` also removes what live owners hold
    (only for a run's own teardown or a manual clean-up). Docker being absent is not an error.
    """
    from pytest_hwbench.services.process import stop_process_group

    report = ReapReport()
    state = Path(state_dir)
    registry_ports: list[int] = []
    for path, rec in read_pid_records(state):
        owner = Owner.from_label(str(rec.get("owner", "")))
        if run_id is not None and rec.get("run_id") != run_id:
            continue
        if owner is not None and owner.alive() and not include_live_owners:
            continue
        try:
            pid = int(rec["pid"])
            if stop_process_group(pid, int(rec.get("stop_signal", 15)), start_time=float(rec.get("start", 0)),
                                  grace=5.0):
                report.processes.append(f"{rec.get('name')} ({rec.get('kind')}) pid {pid} of run "
                                        f"{rec.get('run_id')}")
        except Exception as err:  # keep going: one bad record must not keep the others alive
            report.errors.append(f"{path.name}: {err}")
            continue
        if rec.get("work_dir"):
            shutil.rmtree(rec["work_dir"], ignore_errors=True)
        registry_ports.extend(int(p) for p in rec.get("ports") or [])
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if registry_ports:
        with contextlib.suppress(Exception):
            PortRegistry(state).release(*registry_ports)
    if docker:
        _reap_containers(report, run_id=run_id, include_live_owners=include_live_owners)
    return report


def leftover_containers(run_id: str | None = None) -> list[Any]:
    """Containers carrying the hwbench run label (optionally of one run); [] when Docker is unavailable."""
    try:
        from pytest_hwbench.services.docker_backend import docker_client

        client = docker_client(timeout=30)
    except Exception:
        return []
    label = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
    return list(client.containers.list(all=True, filters={"label": label}))


def _reap_containers(report: ReapReport, *, run_id: str | None, include_live_owners: bool) -> None:
    from pytest_hwbench.services.docker_backend import OWNER_LABEL, stop_container

    for container in leftover_containers(run_id):
        labels = container.labels or {}
        owner = Owner.from_label(labels.get(OWNER_LABEL, ""))
        if owner is not None and owner.alive() and not include_live_owners:
            continue
        try:
            stop_container(container, grace=5)
            report.containers.append(f"{container.name} of run {labels.get(RUN_LABEL)}")
        except Exception as err:
            report.errors.append(f"{container.name}: {err}")
