"""The catalog of service kinds: one module per kind in this package, each calling :func:`register`.

Why discovery by module scan: "a new service kind is one new file" (docs/architecture.md) — no list to keep in sync.
Third-party packages can add kinds through the ``pytest_hwbench.services`` entry-point group (the entry
point's object is a ServiceKind subclass or instance; loading it is enough when it calls ``register``).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.services.catalog.kind import ServiceKind

_KINDS: dict[str, ServiceKind] = {}
_loaded = False


def register(kind: ServiceKind | type[ServiceKind]) -> ServiceKind:
    """Add a kind to the catalog (a class is instantiated); usable as a class decorator."""
    inst = kind() if isinstance(kind, type) else kind
    if not inst.name:
        raise ValueError(f"{type(inst).__name__} has no name")
    _KINDS[inst.name] = inst
    return kind  # type: ignore[return-value]


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.name != "kind" and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    for ep in entry_points(group="pytest_hwbench.services"):
        obj = ep.load()
        if isinstance(obj, ServiceKind) or (isinstance(obj, type) and issubclass(obj, ServiceKind)):
            register(obj)


def kinds() -> dict[str, ServiceKind]:
    """Every registered kind by name."""
    _load()
    return dict(sorted(_KINDS.items()))


def get_kind(name: str, *, source: str | None = None, field: str | None = None) -> ServiceKind:
    """The kind called ``name``; an unknown name is bad input whose message lists the catalog."""
    _load()
    try:
        return _KINDS[name]
    except KeyError:
        raise HwbenchInputError(f"unknown service kind {name!r}", file=source, field=field,
                                fix="use one of " + ", ".join(sorted(_KINDS))) from None


__all__ = ["ServiceKind", "get_kind", "kinds", "register"]
