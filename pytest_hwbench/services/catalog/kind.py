"""``ServiceKind``: what the catalog knows about one kind of service (redis, vllm, ...).

A kind supplies defaults that work out of the box — image, binary, port, health probe, the command line
built from recipe settings — and optional hooks (prepare a data dir, pull/load a model). Backends own
*how* it runs (container, local process, remote URL); a kind only says *what* runs. Adding a kind is one
module in this package that calls :func:`pytest_hwbench.services.catalog.register`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.specs import docs_of
from pytest_hwbench.services.base import Endpoint, StartContext
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import BACKEND_SETTINGS, NoSettings, ServiceSettings


class ServiceKind:
    """Base class of a catalog entry; subclasses override attributes and hooks."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    port: ClassVar[int] = 0
    """The port the service listens on inside a container (and its conventional port)."""
    extra_ports: ClassVar[dict[str, int]] = {}
    """Named additional container ports (e.g. triton's grpc/metrics); process backend reserves free ones."""
    image: ClassVar[str | None] = None
    binary: ClassVar[str | None] = None
    binary_search: ClassVar[tuple[str, ...]] = ()
    """Glob patterns searched (newest first) when ``binary`` is not on PATH, e.g. Debian's postgres dir."""
    scheme: ClassVar[str] = "http"
    install_hint: ClassVar[str] = ""
    """How to get the binary, named in the skip when it is missing (e.g. the project's build script)."""
    Settings: ClassVar[type] = NoSettings
    """The kind's own settings: a frozen dataclass of ``setting(...)`` fields (``services.service_settings``)."""
    required: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Settings that must be given, per backend ('docker', 'process', 'external')."""
    startup_timeout: ClassVar[float] = 60.0
    stop_signal: ClassVar[int] = signal.SIGTERM
    default_gpus: ClassVar[Any] = None
    non_root: ClassVar[bool] = False
    """The server refuses to run as root: the process backend drops to ``run_as`` (default ``postgres``/nobody)."""
    model_loads_at_start: ClassVar[bool] = False
    """The server answers before its model is loaded: first-answer → ready is reported as model load time."""

    # -- settings ---------------------------------------------------------------------------------------
    def known_settings(self, backend: str) -> dict[str, str]:
        """Setting -> help line, for listings and messages: the backend's declarations, then the kind's."""
        return {**docs_of(BACKEND_SETTINGS[backend]), **docs_of(self.Settings)}

    def validate(self, name: str, backend: str, settings: Mapping[str, Any],
                 source: str | None = None) -> ServiceSettings:
        """Check a service's settings with the recipe's own declaration of a service entry
        (``recipe.entries.SERVICE``: unknown keys with "did you mean", types, ports) and return the typed
        records, so a ``ServiceSpec`` built in code meets the same rules as a loaded recipe; plus, at start, a
        required setting left empty (``${VAR:-}`` passes the load: the recipe is fine, this machine lacks the
        value)."""
        from pytest_hwbench.recipe.entries import SERVICE, CheckedService
        from pytest_hwbench.recipe.specs import Issue, RecipeError

        self.check_required(name, backend, settings, source)
        issues: list[Issue] = []
        checked = SERVICE.check({**settings, "kind": self.name, "backend": backend}, f"services.{name}", issues)
        if issues or not isinstance(checked, CheckedService):
            raise RecipeError(issues or [Issue(f"services.{name}", "invalid settings")], file=source)
        config: ServiceSettings = checked.config
        return config

    def check_required(self, name: str, backend: str, settings: Mapping[str, Any],
                       source: str | None = None) -> None:
        """At start: a required setting given empty (``${VAR:-}``) is bad input naming the field."""
        known = self.known_settings(backend)
        for key in self.required.get(backend, ()):
            if settings.get(key) in (None, ""):
                raise HwbenchInputError(
                    f"a {self.name} service on the {backend} backend needs {key!r}", file=source,
                    field=f"services.{name}.{key}", fix=f"add {key}: <{known.get(key, 'value')}>")

    # -- process backend --------------------------------------------------------------------------------
    def find_binary(self, configured: str | None) -> str | None:
        """Absolute path of the executable, or None. A configured path wins; then PATH; then search globs."""
        name = configured or self.binary
        if not name:
            return None
        if os.sep in name:
            return name if os.path.isfile(name) and os.access(name, os.X_OK) else None
        found = shutil.which(name)
        if found:
            return found
        for pattern in self.search_patterns():
            for cand in sorted(glob.glob(os.path.expanduser(pattern)), reverse=True):
                if os.path.isfile(cand) and os.access(cand, os.X_OK):
                    return cand
        return None

    def search_patterns(self) -> tuple[str, ...]:
        """Glob patterns for the binary when it is not on PATH (evaluated at each start, so env changes count)."""
        return self.binary_search

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        """argv after the binary, for the process backend (listen on ``ctx.host:ctx.port``)."""
        return []

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        return {}

    def prepare_process(self, ctx: StartContext, binary: str) -> None:
        """Create data directories etc. in ``ctx.work_dir`` before the process starts."""

    # -- docker backend ---------------------------------------------------------------------------------
    def container_command(self, ctx: StartContext) -> list[str] | None:
        """Container command (None: the image's default)."""
        return None

    def container_env(self, ctx: StartContext) -> dict[str, str]:
        return {}

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        """Extra volumes the kind needs (e.g. a model file), docker SDK form {host: {bind, mode}}."""
        return {}

    # -- all backends -----------------------------------------------------------------------------------
    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe()

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        """The endpoint tests get; kinds add connection details (DSN, model name, keys) to ``extra``."""
        url = f"{self.scheme}://{host}:{port}"
        extra: dict[str, Any] = {f"{k}_port": v for k, v in ports.items()}
        return Endpoint(host=host, port=port, url=url, extra=extra, name=ctx.name, kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        """Work after the health check passes (pull/load a model); returns info fields, e.g. model_load_s."""
        return {}

    def describe(self) -> str:
        """One catalog line: name, summary, defaults."""
        bits = [f"port {self.port}"]
        if self.image:
            bits.append(f"image {self.image}")
        if self.binary:
            bits.append(f"binary {self.binary}")
        return f"{self.name}: {self.summary} ({', '.join(bits)})"


def expand(args: Iterable[str], ctx: StartContext) -> list[str]:
    """Fill ``{host}``, ``{port}``, ``{work_dir}`` and ``{<name>_port}`` (extra ports) into recipe arguments."""
    values = {"host": ctx.host, "port": str(ctx.port), "work_dir": str(ctx.work_dir),
              **{f"{k}_port": str(v) for k, v in ctx.ports.items()}}
    out = []
    for arg in args:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        out.append(arg)
    return out
