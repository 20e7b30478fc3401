"""A service's settings as typed records: the backend's (and the settings every backend shares) and the kind's
own, each declared once — name, default, spec and help on one ``setting(...)`` line.

Why records: a kind or a backend reading ``ctx.settings.get("pull_timeout", 3600)`` keeps its own default
and its own coercion next to the one the recipe check used, and a misspelt key falls back silently. The
recipe's service entry (``recipe.entries.ServiceEntry``) checks a ``services.<name>`` mapping against these
declarations (unknown keys with "did you mean", types, ports, ``${ENV}`` text coerced) and builds a
:class:`ServiceSettings` once, at load; a ``ServiceSpec`` built in code gets the same check at start
(``ServiceKind.validate``). Backends and kinds then read attributes.

A key a kind declares wins over a backend key of the same name (ollama's ``pull`` is "pull the model",
not the docker backend's image pull policy, which then keeps its default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from pytest_hwbench.recipe.specs import (
    Enum,
    Float,
    Int,
    Json,
    MapOf,
    Nullable,
    Scalar,
    Spec,
    Str,
    setting,
)

T = TypeVar("T")

PORT = Int(min=1, max=65535)


class Args(Spec):
    """Command-line arguments: one string split on whitespace, or a list of scalars."""

    def describe(self) -> str:
        return "a list of arguments (or one string)"

    def _check(self, value: Any, path: str, issues: list[Any]) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                           for v in value):
            return value
        return self._bad(value, path, issues, fix='write args: ["--flag", "value"]')


def argv(value: Any) -> tuple[str, ...]:
    """A checked ``Args`` value as argv strings."""
    return tuple(value.split()) if isinstance(value, str) else tuple(str(v) for v in value)


def _env(value: dict[str, Any]) -> dict[str, str]:
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def text(value: Any) -> str:
    """A scalar setting passed on as text (``maxmemory: 1gb`` and ``maxmemory: 1073741824`` alike)."""
    return str(value)


# Specs of optional settings (default None). No ``Nullable`` needed: in a service entry null or an empty
# ``${VAR:-}`` already means "not given" (the record's default), for every key.
def opt_int(minimum: int | None = 1, maximum: int | None = None) -> Spec:
    return Int(min=minimum, max=maximum)


def opt_str() -> Spec:
    return Str(nonempty=True)


def opt_text() -> Spec:
    """A scalar passed on as text (``maxmemory: 1gb`` or ``1073741824``)."""
    return Scalar()


# ------------------------------------------------------------------------------------------- the backends


@dataclass(frozen=True)
class CommonSettings:
    """Settings every kind accepts on every backend."""

    args: tuple[str, ...] = setting((), Args(), convert=argv, doc=(
        "extra command-line arguments appended to the kind's defaults ({host}, {port}, {work_dir} are filled in)"))
    env: dict[str, str] = setting({}, MapOf(Nullable(Scalar()), what="a mapping of variable name to value"),
                                  convert=_env, doc="extra environment variables (mapping)")
    health: Any = setting(None, Json(), doc=(
        "override the health check: none | tcp | {http: /path} | {tcp: true, send, expect} | {command: [...]}"))
    # None: the kind's own ``startup_timeout`` (a model server needs longer than redis)
    startup_timeout: float | None = setting(None, Float(gt=0, lt=86401),
                                            doc="seconds to wait for the health check to pass")


@dataclass(frozen=True)
class ProcessSettings(CommonSettings):
    binary: str | None = setting(None, opt_str(), doc="executable name on PATH or an absolute path")
    port: int | None = setting(None, PORT,
                               doc="fixed port to listen on (default: a free port is reserved)")
    run_as: str | None = setting(None, opt_str(),
                                 doc="OS user to run as (root only; some servers refuse to run as root)")


@dataclass(frozen=True)
class DockerSettings(CommonSettings):
    image: str | None = setting(None, opt_str(), doc="container image (must exist locally or be pullable)")
    command: tuple[str, ...] | None = setting(None, Args(), convert=argv,
                                              doc="full container command, replacing the kind's default")
    container_port: int | None = setting(None, PORT, doc=(
        "port the server listens on inside the container (default: the kind's port)"))
    port: int | None = setting(None, PORT,
                               doc="fixed host port to publish on 127.0.0.1 (default: Docker picks one)")
    volumes: Any = setting(None, Json(), doc=(
        "host_path: container_path[:ro] mapping, or a list of 'host:container[:mode]'"))
    # None: the kind's ``default_gpus``
    gpus: Any = setting(None, Json(), doc="'all', a count, or a list of device ids (NVIDIA device requests)")
    pull: str = setting("missing", Enum(("missing", "never", "always")), doc="missing (default) | never | always")
    shm_size: str | None = setting(None, opt_text(), convert=text, doc="shared memory size, e.g. 8g")


@dataclass(frozen=True)
class ExternalSettings(CommonSettings):
    url: str = setting("", Str(), doc="the running service's URL (required)")
    extra: dict[str, Any] = setting({}, MapOf(Json(), what="a mapping of endpoint field to value"),
                                    doc="extra endpoint fields handed to tests (mapping)")
    startup_timeout: float | None = setting(30.0, Float(gt=0, lt=86401),
                                            doc="seconds to wait for the health check to pass (default 30)")


BACKEND_SETTINGS: dict[str, type[CommonSettings]] = {
    "process": ProcessSettings, "docker": DockerSettings, "external": ExternalSettings}


@dataclass(frozen=True)
class NoSettings:
    """The record of a kind that declares no settings of its own."""


# ------------------------------------------------------------------------------------------------ the pair


@dataclass(frozen=True)
class ServiceSettings:
    """One service's checked settings: ``backend`` (the backend's and the common ones) and ``own`` (the
    kind's record, ``ServiceKind.Settings``)."""

    backend: CommonSettings
    own: Any

    def backend_as(self, cls: type[T]) -> T:
        """The backend record as ``cls`` (the backend that reads it knows which one it is)."""
        if not isinstance(self.backend, cls):
            raise TypeError(f"{type(self.backend).__name__} is not {cls.__name__}")
        return self.backend

    def own_as(self, cls: type[T]) -> T:
        """The kind's own record as ``cls``."""
        if not isinstance(self.own, cls):
            raise TypeError(f"{type(self.own).__name__} is not {cls.__name__}")
        return self.own


__all__ = ["BACKEND_SETTINGS", "Args", "CommonSettings", "DockerSettings", "ExternalSettings", "NoSettings",
           "ProcessSettings", "ServiceSettings", "argv", "opt_int", "opt_str", "opt_text", "text"]
