"""The types every backend and catalog entry share: the endpoint handed to tests, the running-service
handle, the start-up errors, and the per-start context a catalog entry builds its command from.

Why a separate module: backends (docker, process, external) and kinds (redis, vllm, ...) vary
independently; both depend on these types and on nothing of each other.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_hwbench.errors import HwbenchError

if TYPE_CHECKING:
    from pytest_hwbench.services.catalog.kind import ServiceKind
    from pytest_hwbench.services.service_settings import ServiceSettings

RUN_LABEL = "hwbench.run"
"""Docker label (and pid-file field) naming the run that started a service; the reaper keys on it."""


@dataclass(frozen=True)
class Endpoint:
    """Where a started service answers, as plain JSON types.

    Why plain data: under pytest-xdist the controller starts services and workers only get this object
    (``to_dict`` → execnet → ``from_dict``); a worker never needs the backend handle.
    """

    host: str
    port: int
    url: str
    extra: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    kind: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(host=str(data["host"]), port=int(data["port"]), url=str(data["url"]),
                   extra=dict(data.get("extra") or {}), name=str(data.get("name", "")),
                   kind=str(data.get("kind", "")))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        return cls.from_dict(json.loads(text))


class ServiceStartError(HwbenchError):
    """A service did not become healthy: it exited, or its health check never passed in time.

    The message carries the last lines of the service log and a hint, because "health check timed out"
    alone sends people hunting; "Address already in use" in the tail tells them what to fix.
    """

    def __init__(self, name: str, problem: str, *, log_tail: str = "", hint: str | None = None,
                 log_path: str | None = None) -> None:
        self.name = name
        self.problem = problem
        self.log_tail = log_tail
        self.hint = hint
        self.log_path = log_path
        super().__init__(self.render())

    def render(self) -> str:
        from pytest_hwbench.report.redact import redact_text

        return redact_text(self._render())

    def _render(self) -> str:
        return f"service {self.name!r}: {self.problem}" + log_details(self.hint, self.log_path, self.log_tail)


def log_details(hint: str | None, log_path: str | None, log_tail: str) -> str:
    """The indented lines under a service error: hint, log file and its last lines ('' when none is known)."""
    text = ""
    if hint:
        text += f"\n  hint: {hint}"
    if log_path:
        text += f"\n  log: {log_path}"
    if log_tail.strip():
        body = "\n".join("    | " + line for line in log_tail.rstrip().splitlines())
        text += f"\n  last log lines:\n{body}"
    return text


class ServiceDied(ServiceStartError):
    """A service that was healthy stopped during the run (``check_alive``): results after it are void."""


_HINTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"address already in use|eaddrinuse|port is already allocated|bind\(\).*failed|"
                r"could not bind|couldn't bind|could not create any tcp/ip sockets", re.I),
     "the port is already in use: stop whatever holds it, or drop the fixed 'port' setting so a free port "
     "is chosen"),
    (re.compile(r"could not select device driver|nvidia-container-cli|no cuda-capable device|"
                r"cuda driver version is insufficient|failed to initialize nvml|no gpus? (found|available)", re.I),
     "GPU unavailable: check nvidia-smi, the NVIDIA container toolkit (for docker), or drop the 'gpus' "
     "setting"),
    (re.compile(r"no such image|pull access denied|manifest unknown|image not found|repository does not exist",
                re.I),
     "the image is not available: docker pull/load it, or build it locally"),
    (re.compile(r"permission denied|operation not permitted", re.I),
     "a permission problem: check the owner of the data/model paths and the user the service runs as"),
    (re.compile(r"out of memory|oomkilled|cannot allocate memory|std::bad_alloc", re.I),
     "the service ran out of memory: use a smaller model/context, or give it more memory"),
    (re.compile(r"no such file or directory|failed to load model|unable to load model|error loading model", re.I),
     "a path (model, data directory, config) does not exist or cannot be read"),
)


def hint_for(text: str) -> str | None:
    """The first hint whose pattern appears in ``text`` (a log tail or an engine error message)."""
    for pattern, hint in _HINTS:
        if pattern.search(text):
            return hint
    return None


def tail_file(path: str | os.PathLike[str] | None, lines: int = 30, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file ('' when there is none); reads only the file's end."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


@dataclass
class StartContext:
    """Everything a catalog entry needs to build a command for one start.

    ``port`` is the port the service listens on *where it runs*: a free host port for the process backend,
    the kind's fixed container port for docker. ``ports`` holds named extra ports (e.g. triton's grpc).
    ``work_dir`` is a private scratch directory (data dirs, sockets) removed at stop and by the reaper.
    """

    name: str
    kind: ServiceKind
    backend: str
    settings: ServiceSettings
    """The typed records (``ServiceKind.validate``): ``settings.own`` the kind's, ``settings.backend`` the
    backend's; read attributes, never keys."""
    host: str
    port: int
    ports: dict[str, int]
    work_dir: Path
    log_dir: Path
    run_id: str
    source: str | None = None
    run_as: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def field(self, key: str) -> str:
        """The dotted recipe field of a setting, for error messages."""
        return f"services.{self.name}.{key}"


def now_s() -> float:
    """Monotonic seconds; every duration reported here comes from ``perf_counter`` (docs/architecture.md, Clocks)."""
    return time.perf_counter()


#: Signals a child must not inherit as ignored: a test process started in the background (``cmd &`` in a
#: non-interactive shell) ignores SIGINT, and its children would then survive Ctrl-C and CI cancellation.
RESTORED_SIGNALS = ("SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP", "SIGPIPE")


def restore_default_signals(*, python: bool = False) -> None:
    """``preexec_fn`` for every child process: default disposition for the signals that stop it.

    ``python=True`` is for a Python child's own entry point (a multiprocessing worker): there the default
    is Python's, SIGINT raises KeyboardInterrupt and SIGPIPE stays ignored (so that a peer closing a socket
    is an error the client counts, not a silent death of the load generator).
    """
    import signal

    for name in RESTORED_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is None or (python and name == "SIGPIPE"):
            continue
        signal.signal(sig, signal.default_int_handler if python and name == "SIGINT" else signal.SIG_DFL)
