"""The ``docker`` backend: a container from an image, published on 127.0.0.1 on a port Docker picks.

Why ports Docker picks: two runs (or xdist workers) on one box never collide, and nothing is exposed
beyond loopback. Why labels: every container carries the run id and its owner (host, pid, start time), so
the reaper can find and remove containers left by dead runs without a local record. Why create + start
rather than ``run``: when start fails (GPU request, port) the created container must still be removed.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import HwbenchInputError, ServiceUnavailable
from pytest_hwbench.report.redact import mask_argv
from pytest_hwbench.services.base import RUN_LABEL, ServiceStartError, StartContext, hint_for, now_s
from pytest_hwbench.services.catalog.kind import ServiceKind, expand
from pytest_hwbench.services.local_images import build_fix
from pytest_hwbench.services.probes import Probe, probe_from_setting
from pytest_hwbench.services.running import RunningService, wait_ready
from pytest_hwbench.services.service_settings import DockerSettings, ServiceSettings
from pytest_hwbench.services.state import Owner

OWNER_LABEL = "hwbench.owner"
SERVICE_LABEL = "hwbench.service"
KIND_LABEL = "hwbench.kind"
STOP_GRACE_S = 10


def docker_client(timeout: int = 120) -> Any:
    """A connected docker SDK client, or :class:`ServiceUnavailable` saying what is missing."""
    try:
        import docker
    except ImportError as err:
        raise ServiceUnavailable("the docker SDK is not installed (pip install 'pytest-hwbench[services]')") \
            from err
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as err:
        raise ServiceUnavailable(f"no Docker engine answers ({err}); start dockerd or set DOCKER_HOST") from err
    return client


class DockerService(RunningService):
    backend = "docker"

    def __init__(self, *, client: Any, container: Any, follower: threading.Thread | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.client = client
        self.container = container
        self._follower = follower

    def _dead_reason(self) -> str | None:
        return _container_dead_reason(self.container)

    def log_tail(self, lines: int = 30) -> str:
        return _container_logs(self.container, lines)

    def stats(self) -> dict[str, Any]:
        """One ``docker stats`` sample (the engine compares with its previous sample, ~1 s apart)."""
        try:
            s = self.container.stats(stream=False)
        except Exception as err:
            return {"alive": False, "error": str(err)}
        return parse_docker_stats(s)

    def _stop(self) -> None:
        stop_container(self.container)
        if self._follower is not None:
            self._follower.join(timeout=5)


def start_docker(kind: ServiceKind, *, name: str, settings: ServiceSettings, run_id: str, log_dir: Path,
                 state_dir: Path, source: str | None, host: str = "127.0.0.1") -> DockerService:
    """Start ``kind`` in a container and wait until it is healthy (see :func:`services.start_service`)."""
    own = settings.backend_as(DockerSettings)
    image = own.image or kind.image
    if not image:
        raise HwbenchInputError(f"a {kind.name} service on the docker backend needs an image", file=source,
                                field=f"services.{name}.image", fix="add image: <name:tag>")
    client = docker_client()
    from docker.errors import APIError, NotFound
    from docker.types import DeviceRequest

    image_obj = ensure_image(client, image, own.pull, name=name, source=source)

    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    cport = own.container_port or kind.port
    ctx = StartContext(name=name, kind=kind, backend="docker", settings=settings, host=host, port=cport,
                       ports=dict(kind.extra_ports), work_dir=log_dir, log_dir=log_dir, run_id=run_id,
                       source=source)
    command = list(own.command) if own.command is not None else kind.container_command(ctx)
    extra_args = expand(own.args, ctx)
    if extra_args:
        command = [*(command or []), *extra_args]
    env = {**kind.container_env(ctx), **own.env}
    volumes = {**kind.container_volumes(ctx), **_volumes(own.volumes, ctx.field("volumes"), source)}
    fixed = own.port
    ports: dict[str, Any] = {f"{cport}/tcp": (host, fixed) if fixed else (host, None)}
    for extra_cport in kind.extra_ports.values():
        ports[f"{extra_cport}/tcp"] = (host, None)
    gpus = own.gpus if own.gpus is not None else kind.default_gpus
    device_requests = _device_requests(gpus, DeviceRequest, ctx.field("gpus"), source)
    owner = Owner.current()
    labels = {RUN_LABEL: run_id, OWNER_LABEL: owner.label(), SERVICE_LABEL: name, KIND_LABEL: kind.name}
    cname = "hwbench-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", f"{run_id}-{name}")[:80] + "-" + uuid.uuid4().hex[:6]
    probe: Probe = (probe_from_setting(own.health, field=ctx.field("health"), source=source)
                    if own.health is not None else kind.probe(ctx))
    timeout = own.startup_timeout or kind.startup_timeout

    container = None
    follower = None
    t_launch = now_s()
    try:
        create_kw: dict[str, Any] = dict(command=command, detach=True, ports=ports, environment=env,
                                         volumes=volumes or None, labels=labels, name=cname,
                                         device_requests=device_requests or None)
        if own.shm_size:
            create_kw["shm_size"] = own.shm_size
        try:
            container = client.containers.create(image, **create_kw)
            container.start()
        except (APIError, NotFound) as err:
            msg = getattr(err, "explanation", None) or str(err)
            raise ServiceStartError(name, f"the container did not start: {msg}", hint=hint_for(msg),
                                    log_path=str(log_path)) from err
        follower = _follow_logs(container, log_path)
        reason = _container_dead_reason(container)  # also reloads attrs (published ports)
        if reason is not None:  # exited at once: ports were never published
            text = _container_logs(container)
            raise ServiceStartError(name, f"exited during start-up ({reason})", log_tail=text,
                                    hint=hint_for(text + "\n" + reason) or "see the log lines below",
                                    log_path=str(log_path))
        host_port = _host_port(container, cport)
        extra = {pname: _host_port(container, cport) for pname, cport in kind.extra_ports.items()}
        if host_port is None:
            raise ServiceStartError(name, f"container port {cport} was not published",
                                    log_tail=_container_logs(container), log_path=str(log_path))
        ready_s, first_answer_s = wait_ready(
            name, probe, host, host_port, timeout=timeout, dead_reason=lambda: _container_dead_reason(container),
            log_path=log_path, log_text=lambda: _container_logs(container))
        endpoint = kind.endpoint(ctx, host, host_port, {k: v for k, v in extra.items() if v is not None})
        repo_digests = image_obj.attrs.get("RepoDigests") or []
        info: dict[str, Any] = {
            "name": name, "kind": kind.name, "backend": "docker", "run_id": run_id, "image": image,
            "image_id": image_obj.id, "image_digest": repo_digests[0] if repo_digests else image_obj.id,
            "container_id": container.id, "container_name": cname,
            "command": mask_argv([str(c) for c in command]) if command else command,
            "gpus": gpus, "log": str(log_path), "started_at_ns": time.time_ns(),
            "startup_s": round(now_s() - t_launch, 4), **ctx.info,
        }
        if kind.model_loads_at_start:
            # None: the server first answered when the model was already loaded (it is inside startup_s).
            info["model_load_s"] = None if first_answer_s is None else round(ready_s - first_answer_s, 4)
        svc = DockerService(client=client, container=container, follower=follower, name=name, kind=kind.name,
                            endpoint=endpoint, info=info, probe=probe, log_path=log_path)
        info.update(kind.after_ready(ctx, endpoint))
        return svc
    except BaseException:
        # Removed even when setup fails (including Ctrl-C during the health wait).
        if container is not None:
            stop_container(container)
        raise


def ensure_image(client: Any, image: str, pull: str, *, name: str, source: str | None) -> Any:
    """The image object, pulling according to ``pull`` (missing | never | always).

    A missing image is :class:`ServiceUnavailable` (the machine lacks it), with the exact fix.
    """
    from docker.errors import APIError, ImageNotFound

    if pull not in ("missing", "never", "always"):
        raise HwbenchInputError(f"pull must be missing, never or always, not {pull!r}", file=source,
                                field=f"services.{name}.pull", fix="write pull: missing")
    if pull != "always":
        try:
            return client.images.get(image)
        except ImageNotFound:
            local = build_fix(image)
            if pull == "never" or local:
                raise ServiceUnavailable(
                    f"service {name!r}: image {image!r} is not present locally"
                    + (f" (fix: {local})" if local else
                       f" and pull is 'never' (fix: docker pull/load {image}, or build it locally)")) from None
    try:
        if "@" in image:  # pinned by digest: pull exactly that
            return client.images.pull(image)
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
        return client.images.pull(repo, tag=tag or "latest")
    except (APIError, ImageNotFound) as err:
        msg = getattr(err, "explanation", None) or str(err)
        raise ServiceUnavailable(
            f"service {name!r}: image {image!r} is not present locally and could not be pulled: {msg} "
            f"(fix: docker pull/load {image} on this machine, build it locally, or set services.{name}.image)"
        ) from err


def stop_container(container: Any, grace: int = STOP_GRACE_S) -> None:
    """Stop (SIGTERM, then SIGKILL after ``grace`` s) and remove a container; quiet when it is gone."""
    with contextlib.suppress(Exception):
        container.stop(timeout=grace)
    with contextlib.suppress(Exception):
        container.remove(force=True, v=True)


def parse_docker_stats(s: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one ``docker stats`` answer that matter for a benchmark, computed as the CLI does."""
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage", {}).get("total_usage", 0) - pre.get("cpu_usage", {}).get("total_usage", 0))
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    ncpu = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or []) or 1
    cpu_pct = 100.0 * cpu_delta / sys_delta * ncpu if sys_delta > 0 and cpu_delta >= 0 else 0.0
    mem = s.get("memory_stats") or {}
    mstats = mem.get("stats") or {}
    cache = mstats.get("inactive_file", mstats.get("total_inactive_file", mstats.get("cache", 0)))
    nets = (s.get("networks") or {}).values()
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    return {
        "alive": bool(s.get("pids_stats")) or cpu_delta > 0 or bool(mem.get("usage")),
        "cpu_percent": round(cpu_pct, 3),
        "mem_bytes": max(0, int(mem.get("usage", 0)) - int(cache or 0)),
        "mem_limit_bytes": int(mem.get("limit", 0)),
        "net_rx_bytes": sum(int(n.get("rx_bytes", 0)) for n in nets),
        "net_tx_bytes": sum(int(n.get("tx_bytes", 0)) for n in (s.get("networks") or {}).values()),
        "blk_read_bytes": sum(int(b.get("value", 0)) for b in blk if str(b.get("op", "")).lower() == "read"),
        "blk_write_bytes": sum(int(b.get("value", 0)) for b in blk if str(b.get("op", "")).lower() == "write"),
        "pids": int((s.get("pids_stats") or {}).get("current", 0)),
    }


def _container_dead_reason(container: Any) -> str | None:
    try:
        container.reload()
    except Exception as err:
        return f"container is gone ({err})"
    state = container.attrs.get("State") or {}
    if state.get("Running"):
        return None
    status = state.get("Status", container.status)
    text = f"container {status}, exit code {state.get('ExitCode')}"
    if state.get("OOMKilled"):
        text += ", OOMKilled"
    if state.get("Error"):
        text += f", {state['Error']}"
    return text


def _container_logs(container: Any, lines: int = 30) -> str:
    try:
        return container.logs(tail=lines).decode("utf-8", "replace")
    except Exception:
        return ""


def _follow_logs(container: Any, log_path: Path) -> threading.Thread:
    """Copy the container's output into ``log_path`` as it comes (daemon thread; ends with the container)."""

    def run() -> None:
        with contextlib.suppress(Exception), open(log_path, "ab") as fh:
            for chunk in container.logs(stream=True, follow=True):
                fh.write(chunk)
                fh.flush()

    thread = threading.Thread(target=run, name=f"hwbench-logs-{container.name}", daemon=True)
    thread.start()
    return thread


def _host_port(container: Any, cport: int) -> int | None:
    bindings = ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{cport}/tcp") or []
    for b in bindings:
        if b.get("HostPort"):
            return int(b["HostPort"])
    return None


def _volumes(value: Any, field: str, source: str | None) -> dict[str, dict[str, str]]:
    fix = "write volumes: {/host/path: /container/path} or ['/host:/container:ro']"
    if value is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    items: list[tuple[str, str]]
    if isinstance(value, dict):
        items = [(str(k), str(v)) for k, v in value.items()]
    elif isinstance(value, list):
        items = []
        for entry in value:
            parts = str(entry).split(":", 1)
            if len(parts) != 2:
                raise HwbenchInputError(f"volume {entry!r} is not host:container[:mode]", file=source,
                                        field=field, fix=fix)
            items.append((parts[0], parts[1]))
    else:
        raise HwbenchInputError(f"expected a mapping or list, got {type(value).__name__}", file=source,
                                field=field, fix=fix)
    for hostp, target in items:
        bind, _, mode = target.partition(":")
        out[str(Path(hostp).expanduser().resolve())] = {"bind": bind, "mode": mode or "rw"}
    return out


def _device_requests(gpus: Any, device_request: Any, field: str, source: str | None) -> list[Any]:
    if gpus in (None, False, 0, "none"):
        return []
    if gpus == "all" or gpus is True:
        return [device_request(driver="nvidia", count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int) and gpus > 0:
        return [device_request(driver="nvidia", count=gpus, capabilities=[["gpu"]])]
    if isinstance(gpus, list | tuple) and gpus:
        return [device_request(driver="nvidia", device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]
    raise HwbenchInputError(f"gpus {gpus!r} is not understood", file=source, field=field,
                            fix="write gpus: all, a count (gpus: 1), or device ids (gpus: [0, 1])")
