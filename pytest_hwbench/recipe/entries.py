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
    Enum,
    Float,
    Int,
    Issue,
    Json,
    Key,
    ListOf,
    MapOf,
    Nullable,
    Record,
    Scalar,
    Spec,
    Str,
    join,
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
class Args(Spec):
    """Command-line arguments: one string split on whitespace, or a list of scalars."""

    def describe(self) -> str:
        return "a list of arguments (or one string)"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                           for v in value):
            return value
        return self._bad(value, path, issues, fix='write args: ["--flag", "value"]')


def _service_setting_specs() -> dict[str, dict[str, Spec]]:
    """Typed specs of the settings every service kind accepts, per backend ("*" = every backend)."""
    port = Int(min=1, max=65535)
    return {
        "*": {"args": Args(), "env": MapOf(Nullable(Scalar()), what="a mapping of variable name to value"),
              "health": Json(), "startup_timeout": Float(gt=0, lt=86401)},
        "process": {"binary": Str(nonempty=True), "port": port, "run_as": Str(nonempty=True)},
        "docker": {"image": Str(nonempty=True), "command": Args(), "container_port": port, "port": port,
                   "volumes": Json(), "gpus": Json(), "pull": Enum(("missing", "never", "always")),
                   "shm_size": Scalar()},
        "external": {"url": Str(nonempty=True),
                     "extra": MapOf(Json(), what="a mapping of endpoint field to value")},
    }


@dataclass(frozen=True)
class ServiceEntry(Spec):
    """One ``services.<name>`` entry: ``kind`` from the catalog, ``backend``, then the settings that kind
    declares for that backend (typed where the catalog types them, free plain data otherwise)."""

    def describe(self) -> str:
        return "a mapping"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        from pytest_hwbench.services.catalog import kinds

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
        typed = _service_setting_specs()
        specs: dict[str, Spec] = {name: Json() for name in kind.known_settings(backend)}
        specs.update(typed["*"])
        specs.update(typed.get(backend, {}))
        specs.update(getattr(kind, "setting_specs", {}))
        specs = {k: v for k, v in specs.items() if k in kind.known_settings(backend)}
        required = tuple(kind.required.get(backend, ()))
        known = kind.known_settings(backend)
        body = Record({"kind": Str(), "backend": Str(), **specs}, required=required,
                      required_fix={k: f"add {k}: <{known.get(k, 'value')}>" for k in required})
        checked = body.check(value, path, issues)
        if checked is INVALID:
            return INVALID
        # A required key given as ``${VAR:-}`` (empty) is left to start-up, which skips naming the variable:
        # the recipe is valid, this machine lacks the piece.
        return checked


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
