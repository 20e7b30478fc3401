"""The specs of the recipe's own sections that are more than a scalar: SLO text, service entries (checked
against the service-kind catalog), the ``settings`` mapping, sweeps and command-line arguments.

Why a module of their own: the ``Recipe`` record (``model.py``) declares each top-level key with one of these,
so they must be importable before the record is defined; ``schema.py`` then only assembles the declarations.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Final

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.specs import (
    INVALID,
    Declared,
    Enum,
    Issue,
    Json,
    Key,
    ListOf,
    MapOf,
    Record,
    Scalar,
    Spec,
    Str,
    join,
    spec_of,
)
from pytest_hwbench.recipe.workload_settings import check_workload_settings

BACKENDS: tuple[str, ...] = ("docker", "process", "external")

# ------------------------------------------------------------------------------------- domain-specific specs


@dataclass(frozen=True)
class SloText(Spec):
    """An SLO expression, parsed when the recipe (or marker) loads, not minutes later after a measurement.

    The cleaned value stays the text (``Recipe.slo`` holds strings); parsing here only proves it parses.
    """

    fix = "write e.g. 'ttft_ms.p99 < 500'"

    def describe(self) -> str:
        return "an SLO expression"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        from pytest_hwbench.verdict.slo import parse_slo

        if not isinstance(value, str) or not value.strip():
            return self._bad(value, path, issues)
        try:
            expr = parse_slo(value, path)
        except HwbenchInputError as err:
            issues.append(Issue(path or None, err.problem, err.fix))
            return INVALID
        if not math.isfinite(expr.bound) or abs(expr.bound) > 1e300:
            issues.append(Issue(path or None, f"SLO {value!r} has a bound that is not a finite number",
                                "write a finite bound, e.g. 'ttft_ms.p99 < 500'"))
            return INVALID
        return value


@dataclass(frozen=True)
class CheckedService:
    """A checked ``services.<name>`` entry: the mapping as written (interpolated) and its typed records."""

    kind: str
    backend: str
    settings: dict[str, Any]
    config: Any  # services.service_settings.ServiceSettings (imported lazily: services import the recipe)


@dataclass(frozen=True)
class ServiceEntry(Spec):
    """One ``services.<name>`` entry: ``kind`` from the catalog, ``backend``, then the settings declared for
    them: the backend's record (``services.service_settings``) and the kind's own (``ServiceKind.Settings``),
    a kind's key winning over a backend's of the same name. The cleaned value is a :class:`CheckedService`
    whose ``config`` holds both records, built here once."""

    def describe(self) -> str:
        return "a mapping"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        from pytest_hwbench.services.catalog import kinds
        from pytest_hwbench.services.service_settings import BACKEND_SETTINGS, ServiceSettings

        head = Record({"kind": Str(nonempty=True), "backend": Enum(BACKENDS)}, required=("kind",), extra=Json(),
                      required_fix={"kind": "add kind: <service kind>, e.g. kind: vllm"})
        cleaned = head.check(value, path, issues)
        if cleaned is INVALID:
            return INVALID
        catalog = kinds()
        kind = catalog.get(cleaned["kind"])
        if kind is None:
            match = difflib.get_close_matches(cleaned["kind"], list(catalog), n=1, cutoff=0.6)
            hint = f"did you mean '{match[0]}'? " if match else ""
            issues.append(Issue(join(path, "kind"), f"unknown service kind {cleaned['kind']!r}",
                                f"{hint}use one of {', '.join(catalog)}"))
            return INVALID
        backend = cleaned.get("backend", "process")
        backend_cls, own_cls = BACKEND_SETTINGS[backend], kind.Settings
        own = Declared(own_cls, blank_is_default=True)
        common = Declared(backend_cls, blank_is_default=True)
        own_keys = set(own.recipe_keys())
        specs = {k: spec_of(backend_cls, k) for k in common.recipe_keys() if k not in own_keys}
        specs.update({k: spec_of(own_cls, k) for k in own_keys})
        required = tuple(kind.required.get(backend, ()))
        known = kind.known_settings(backend)
        body = Record({"kind": Str(), "backend": Str(), **specs}, required=required, blank_is_default=True,
                      required_fix={k: f"add {k}: <{known.get(k, 'value')}>" for k in required})
        checked = body.check(value, path, issues)
        if checked is INVALID:
            return INVALID
        # A required key given as ``${VAR:-}`` (empty) is left to start-up, which skips naming the variable:
        # the recipe is valid, this machine lacks the piece.
        rest = {k: v for k, v in checked.items() if k not in ("kind", "backend")}
        config = ServiceSettings(backend=common.build({k: v for k, v in rest.items() if k not in own_keys}),
                                 own=own.build({k: v for k, v in rest.items() if k in own_keys}))
        written = {k: v for k, v in value.items() if k not in ("kind", "backend")}
        return CheckedService(kind=kind.name, backend=backend, settings=written, config=config)


@dataclass(frozen=True)
class Settings(Spec):
    """``settings``: free plain data for the user's own benchmarks (``hwbench.settings``), in which the
    shipped workloads' settings are declared (``workload_settings.py``) and checked at load.

    The cleaned value is ``(free mapping, WorkloadSettings)``: the mapping as written (interpolated), and
    every workload's typed record, built here once.
    """

    def describe(self) -> str:
        return "a mapping of setting name to value"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        cleaned = MapOf(Json(), what=self.describe()).check(value, path, issues)
        if cleaned is INVALID:
            return INVALID
        workloads = check_workload_settings(cleaned, path, issues)
        return INVALID if workloads is INVALID else (cleaned, workloads)


SWEEP: Final = MapOf(ListOf(Scalar(), nonempty=True),
                     key=Key("a Python identifier", identifier=True,
                             fix="sweep keys are the benchmark's argument names"),
                     what="a mapping of argument name to a list of values")
SLO_LIST: Final = ListOf(SloText(), single=True)  # one pattern's SLOs (a marker's ``slo=`` too)
SLO: Final = MapOf(SLO_LIST, what="a mapping of node-id pattern to SLO expressions")
SERVICE: Final = ServiceEntry()
SETTINGS: Final = Settings()
