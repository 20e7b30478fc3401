"""The ``process`` backend: a local binary, on a reserved free port, in its own process group.

Why a process group: servers fork (postgres backends, ollama runners). Signalling the group stops them
all, and a child's own group keeps a Ctrl-C aimed at pytest from killing the service before teardown has
measured or logged anything. Why a pid record before the health wait: a run killed during start-up must
still leave enough behind for the next run's reaper.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable
from pytest_hwbench.report.redact import mask_argv
from pytest_hwbench.services.base import (
    ServiceStartError,
    StartContext,
    hint_for,
    now_s,
    restore_default_signals,
)
from pytest_hwbench.services.catalog.kind import ServiceKind, expand
from pytest_hwbench.services.probes import Probe
from pytest_hwbench.services.running import RunningService, wait_ready
from pytest_hwbench.services.service_settings import ProcessSettings, ServiceSettings
from pytest_hwbench.services.state import (
    Owner,
    PortRegistry,
    port_is_free,
    process_start_time,
    write_pid_record,
)

PORT_RETRIES = 3
ENV_RUN_ID = "HWBENCH_SERVICE_RUN_ID"
ENV_SERVICE = "HWBENCH_SERVICE_NAME"
STOP_GRACE_S = 10.0


class ProcessService(RunningService):
    backend = "process"

    def __init__(self, *, proc: subprocess.Popen[bytes], pid_file: Path, registry: PortRegistry,
                 ports: list[int], work_dir: Path, stop_signal: int, **kw: Any) -> None:
        super().__init__(**kw)
        self.proc = proc
        self.pid_file = pid_file
        self._registry = registry
        self._ports = ports
        self._work_dir = work_dir
        self._stop_signal = stop_signal
        self._cpu_prev: tuple[float, float] | None = None

    def _dead_reason(self) -> str | None:
        return _exit_reason(self.proc)

    def stats(self) -> dict[str, Any]:
        """CPU (percent of one core, since the previous call; the first call samples 0.2 s) and RSS summed
        over the process and its children."""
        procs = _tree(self.proc.pid)
        if not procs:
            return {"alive": False, "cpu_percent": 0.0, "mem_bytes": 0, "processes": 0}

        def cpu_total() -> float:
            total = 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            return total

        if self._cpu_prev is None:
            self._cpu_prev = (now_s(), cpu_total())
            time.sleep(0.2)
        t1, c1 = now_s(), cpu_total()
        t0, c0 = self._cpu_prev
        self._cpu_prev = (t1, c1)
        rss = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss += p.memory_info().rss
        return {"alive": self.proc.poll() is None, "cpu_percent": 100.0 * (c1 - c0) / max(t1 - t0, 1e-6),
                "mem_bytes": rss, "processes": len(procs)}

    def _stop(self) -> None:
        stop_process_group(self.proc.pid, self._stop_signal, popen=self.proc)
        _cleanup(self._registry, self._ports, self._work_dir, self.pid_file)


def start_process(kind: ServiceKind, *, name: str, settings: ServiceSettings, run_id: str, log_dir: Path,
                  state_dir: Path, source: str | None, host: str = "127.0.0.1") -> ProcessService:
    """Start ``kind`` as a local process and wait until it is healthy (see :func:`services.start_service`)."""
    own = settings.backend_as(ProcessSettings)
    binary = kind.find_binary(own.binary)
    if binary is None:
        wanted = own.binary or kind.binary
        raise ServiceUnavailable(
            f"service {name!r}: the {kind.name} binary {wanted!r} was not found "
            f"({'not an executable file' if wanted and os.sep in str(wanted) else 'not on PATH'}); "
            f"{kind.install_hint or 'install it'}, or set services.{name}.binary to its path")
    fixed_port = own.port
    if fixed_port is not None and not port_is_free(fixed_port, host):
        raise ServiceStartError(name, f"port {fixed_port} on {host} is already in use",
                                hint="the port is already in use: stop whatever holds it, or drop the fixed "
                                     "'port' setting so a free port is chosen")
    run_as = _run_as(kind, own.run_as, source, name)
    registry = PortRegistry(state_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"

    attempts = 1 if fixed_port is not None else PORT_RETRIES
    for attempt in range(1, attempts + 1):
        try:
            return _start_once(kind, name=name, settings=settings, run_id=run_id, log_dir=log_dir,
                               log_path=log_path, state_dir=state_dir, source=source, host=host, binary=binary,
                               fixed_port=fixed_port, run_as=run_as, registry=registry)
        except ServiceStartError as err:
            in_use = err.hint is not None and "port is already in use" in err.hint
            if not in_use or attempt == attempts:
                raise
            with open(log_path, "ab") as fh:
                fh.write(f"\n[hwbench] port taken meanwhile; retrying on a new port (attempt {attempt + 1})\n"
                         .encode())
    raise AssertionError("unreachable")  # pragma: no cover


def _start_once(kind: ServiceKind, *, name: str, settings: ServiceSettings, run_id: str, log_dir: Path,
                log_path: Path, state_dir: Path, source: str | None, host: str, binary: str,
                fixed_port: int | None, run_as: pwd.struct_passwd | None,
                registry: PortRegistry) -> ProcessService:
    reserved: list[int] = []
    work_dir = Path(tempfile.mkdtemp(prefix=f"hwbench-{run_id}-{name}-"))
    proc: subprocess.Popen[bytes] | None = None
    pid_file: Path | None = None
    try:
        port = fixed_port if fixed_port is not None else registry.reserve(f"{run_id}/{name}", host)
        if fixed_port is None:
            reserved.append(port)
        extra_ports = {}
        for pname in kind.extra_ports:
            extra_ports[pname] = registry.reserve(f"{run_id}/{name}/{pname}", host)
            reserved.append(extra_ports[pname])
        if run_as is not None:
            os.chown(work_dir, run_as.pw_uid, run_as.pw_gid)
        ctx = StartContext(name=name, kind=kind, backend="process", settings=settings, host=host, port=port,
                           ports=extra_ports, work_dir=work_dir, log_dir=log_dir, run_id=run_id, source=source,
                           run_as=run_as.pw_name if run_as else None)
        common = settings.backend
        argv = [binary, *kind.process_args(ctx, binary), *expand(common.args, ctx)]
        # The run id in the environment survives a server rewriting its process title (redis does), so a
        # process can be traced to its run even without its pid record (``ps e``, tests).
        env = {**os.environ, **kind.process_env(ctx),
               **common.env,
               ENV_RUN_ID: run_id, ENV_SERVICE: name}
        if run_as is not None:
            env.update(HOME=run_as.pw_dir, USER=run_as.pw_name, LOGNAME=run_as.pw_name)
        shown_argv = mask_argv(argv)  # what logs, pid records and reports get
        probe = _probe(kind, ctx, source)
        timeout = common.startup_timeout or kind.startup_timeout

        # `binary --version` for the manifest runs beside the health wait: some (mlflow, vllm) take seconds
        # to import, which must not count as start-up time.
        version: dict[str, str | None] = {}
        version_thread = threading.Thread(target=lambda: version.update(v=_version(binary)), daemon=True)
        version_thread.start()
        t_launch = now_s()
        with open(log_path, "ab") as log:
            log.write(f"[hwbench] starting {name} ({kind.name}): {' '.join(shown_argv)}\n".encode())
            log.flush()
            kind.prepare_process(ctx, binary)
            user_kw: dict[str, Any] = {}
            if run_as is not None:
                user_kw = {"user": run_as.pw_uid, "group": run_as.pw_gid, "extra_groups": []}
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, cwd=work_dir, start_new_session=True,
                                        preexec_fn=restore_default_signals, **user_kw)
            except OSError as err:
                raise ServiceStartError(name, f"could not execute {binary}: {err}", hint=hint_for(str(err)),
                                        log_path=str(log_path)) from err
        owner = Owner.current()
        pid_file = write_pid_record(state_dir, {
            "run_id": run_id, "name": name, "kind": kind.name, "pid": proc.pid,
            "start": process_start_time(proc.pid) or 0.0, "owner": owner.label(), "argv": shown_argv,
            "stop_signal": int(kind.stop_signal), "work_dir": str(work_dir), "ports": reserved,
            "log": str(log_path)})

        ready_s, first_answer_s = wait_ready(name, probe, host, port, timeout=timeout,
                                             dead_reason=lambda: _exit_reason(proc), log_path=log_path)
        startup_s = round(now_s() - t_launch, 4)
        endpoint = kind.endpoint(ctx, host, port, extra_ports)
        version_thread.join(timeout=30)
        info: dict[str, Any] = {
            "name": name, "kind": kind.name, "backend": "process", "run_id": run_id, "binary": binary,
            "argv": shown_argv, "pid": proc.pid, "run_as": ctx.run_as, "log": str(log_path),
            "started_at_ns": time.time_ns(), "startup_s": startup_s, "binary_version": version.get("v"),
            **ctx.info,
        }
        if kind.model_loads_at_start:
            # None: the server first answered when the model was already loaded (it is inside startup_s).
            info["model_load_s"] = None if first_answer_s is None else round(ready_s - first_answer_s, 4)
        svc = ProcessService(proc=proc, pid_file=pid_file, registry=registry, ports=reserved, work_dir=work_dir,
                             stop_signal=kind.stop_signal, name=name, kind=kind.name, endpoint=endpoint,
                             info=info, probe=probe, log_path=log_path)
        try:
            info.update(kind.after_ready(ctx, endpoint))
        except BaseException:
            svc.stop()
            raise
        return svc
    except BaseException:
        # Stopped even when setup fails (including Ctrl-C during the health wait).
        if proc is not None:
            stop_process_group(proc.pid, kind.stop_signal, popen=proc)
        _cleanup(registry, reserved, work_dir, pid_file)
        raise


def _probe(kind: ServiceKind, ctx: StartContext, source: str | None) -> Probe:
    from pytest_hwbench.services.probes import probe_from_setting

    health = ctx.settings.backend.health
    if health is not None:
        return probe_from_setting(health, field=ctx.field("health"), source=source)
    return kind.probe(ctx)


def _run_as(kind: ServiceKind, wanted: str | None, source: str | None,
            name: str) -> pwd.struct_passwd | None:
    """The user to drop to: only when we are root and the kind refuses root or ``run_as`` is set."""
    if os.geteuid() != 0 or (not wanted and not kind.non_root):
        return None
    for cand in ([wanted] if wanted else ["postgres", "nobody"]):
        try:
            return pwd.getpwnam(cand)
        except KeyError:
            continue
    raise HwbenchInputError(f"user {wanted!r} does not exist", file=source, field=f"services.{name}.run_as",
                            fix="name an existing OS user (useradd it first)")


def _exit_reason(proc: subprocess.Popen[bytes]) -> str | None:
    code = proc.poll()
    if code is None:
        return None
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def stop_process_group(pid: int, sig: int = signal.SIGTERM, *, popen: subprocess.Popen[bytes] | None = None,
                       grace: float = STOP_GRACE_S, start_time: float | None = None) -> bool:
    """Signal the process group led by ``pid`` with ``sig``, escalate to SIGKILL after ``grace`` seconds.

    ``start_time`` (from a pid record) guards against signalling a stranger who got a reused pid.
    Returns True when something was running.
    """
    if start_time is not None:
        now = process_start_time(pid)
        if now is None or abs(now - start_time) > 1.0:
            return False
    members = _tree(pid)
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = None
    if pgid is None and not members:
        if popen is not None:
            with contextlib.suppress(Exception):
                popen.wait(timeout=0)
        return False
    own_group = pgid is not None and pgid == pid and pgid != os.getpgrp()
    _signal(pid, pgid if own_group else None, members, sig)
    deadline = now_s() + grace
    while now_s() < deadline:
        if popen is not None:
            popen.poll()
        if not [m for m in members if _running(m)] and (not own_group or not _group_alive(pgid)):
            break
        time.sleep(0.05)
    else:
        _signal(pid, pgid if own_group else None, members, signal.SIGKILL)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
    return True


def _signal(pid: int, pgid: int | None, members: list[psutil.Process], sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for m in members:  # children that left the group (setsid) still get it
        with contextlib.suppress(psutil.Error):
            m.send_signal(sig)


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_alive(pgid: int | None) -> bool:
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(…, 0) also succeeds for zombies: check that some member is really running.
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and _running(p):
                return True
    return False


def _cleanup(registry: PortRegistry, ports: list[int], work_dir: Path | None, pid_file: Path | None) -> None:
    with contextlib.suppress(Exception):
        registry.release(*ports)
    if work_dir is not None:
        shutil.rmtree(work_dir, ignore_errors=True)
    if pid_file is not None:
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()


_VERSIONS: dict[str, str | None] = {}


def _version(binary: str) -> str | None:
    """``binary --version``'s first line, for the run manifest (cached; bounded; None when it has none)."""
    if binary in _VERSIONS:
        return _VERSIONS[binary]
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=30, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None  # not cached: a busy machine may answer next time
    lines = (done.stdout + done.stderr).decode("utf-8", "replace").strip().splitlines()
    out = next((ln for ln in lines if "version" in ln.lower()), lines[0])[:200] \
        if done.returncode == 0 and lines else None
    _VERSIONS[binary] = out
    return out
