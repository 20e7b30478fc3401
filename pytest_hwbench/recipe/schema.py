"""A small declarative validator for recipes, and the recipe schema written with it.

Why not jsonschema or pydantic: the people reading these errors are on a box under test and need
``recipes/x.yaml: services.llm.backend: 'dokcer' is not one of docker, process, external`` — the file, the
dotted field, the value and what is allowed — for *every* mistake in one go, not a stack of generic
validator output. A hundred lines of specs give exactly that without another dependency.

Each spec's ``check`` returns the cleaned value (numeric strings coerced for numeric fields, so that
``repetitions: ${REPS:-3}`` works) or :data:`INVALID` after appending an :class:`Issue`. Validation never stops
at the first problem; the loader raises one :class:`RecipeError` listing them all.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.model import BACKENDS, INCONCLUSIVE_POLICIES


class _Invalid:
    """Marker for a value that already produced an issue, so parents do not report it a second time."""

    _instance: _Invalid | None = None

    def __new__(cls) -> _Invalid:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()


@dataclass(frozen=True)
class Issue:
    """One problem at one field; ``field`` is a dotted path (``slo.<pattern>[0]``) or None for the file."""

    field: str | None
    problem: str
    fix: str | None = None

    def render(self, file: str | None) -> str:
        """Render like a single :class:`HwbenchInputError`, so one-issue and many-issue output agree."""
        return HwbenchInputError(self.problem, file=file, field=self.field, fix=self.fix).render()


class RecipeError(HwbenchInputError):
    """Every problem found in one recipe, one per line, each line ``<file>: <field>: <problem> (fix: ...)``.

    It is an :class:`HwbenchInputError` whose ``file``/``field``/``problem``/``fix`` are those of the first
    issue, so code that handles a single input error keeps working; ``issues`` holds them all.
    """

    def __init__(self, issues: Sequence[Issue], *, file: str | None) -> None:
        if not issues:
            raise ValueError("RecipeError needs at least one issue")
        self.issues: tuple[Issue, ...] = tuple(issues)
        first = self.issues[0]
        super().__init__(first.problem, file=file, field=first.field, fix=first.fix)

    def render(self) -> str:
        return "\n".join(issue.render(self.file) for issue in self.issues)


def join(path: str, key: object) -> str:
    """Dotted path of ``key`` under ``path``; the top level has the empty path."""
    return f"{path}.{key}" if path else str(key)


def show(value: object, limit: int = 60) -> str:
    """A value as the user wrote it in YAML (``null``/``true``), quoted strings, long values shortened."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------- coercion

_INT_RE = re.compile(r"[+-]?\d+")
_TRUE = frozenset({"true", "yes", "on"})
_FALSE = frozenset({"false", "no", "off"})


def _as_int(value: object) -> int | None:
    # bool is an int subclass; ``repetitions: true`` is a mistake, not 1.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and len(value) < 40 and _INT_RE.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _as_float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    # nan/inf satisfy no meaningful bound (inf would pass ``>= 1``); treat them as not-a-number.
    return result if math.isfinite(result) else None


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    return None


# ------------------------------------------------------------------------------------------------- specs


class Spec:
    """Base of all specs: ``check`` skips values that already failed upstream (e.g. a missing ``${VAR}``)."""

    fix: str | None = None

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if value is INVALID:
            return INVALID
        return self._check(value, path, issues)

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        raise NotImplementedError

    def _bad(self, value: Any, path: str, issues: list[Issue], fix: str | None = None) -> _Invalid:
        issues.append(Issue(path or None, f"{show(value)} is not {self.describe()}", fix or self.fix))
        return INVALID


@dataclass(frozen=True)
class Int(Spec):
    """An integer; ``max`` bounds what a hang would otherwise wait out (``repetitions: 10**30``)."""

    min: int | None = None
    max: int | None = None

    def describe(self) -> str:
        return "an integer" + (f" >= {self.min}" if self.min is not None else "")

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        number = _as_int(value)
        if number is None or (self.min is not None and number < self.min):
            return self._bad(value, path, issues)
        if self.max is not None and number > self.max:
            issues.append(Issue(path or None, f"{show(value)} is more than the maximum {self.max}",
                                f"use at most {self.max}"))
            return INVALID
        return number


@dataclass(frozen=True)
class Float(Spec):
    """A finite number with optional bounds; ints are accepted (``stale_factor: 2``)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        bounds = [f"{op} {b:g}" for op, b in ((">", self.gt), (">=", self.ge), ("<", self.lt)) if b is not None]
        return "a number" + (" " + " and ".join(bounds) if bounds else "")

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        number = _as_float(value)
        if (number is None or (self.gt is not None and number <= self.gt)
                or (self.ge is not None and number < self.ge) or (self.lt is not None and number >= self.lt)):
            return self._bad(value, path, issues)
        return number


@dataclass(frozen=True)
class Str(Spec):
    """A string. Numbers are *not* turned into strings: ``1.10`` would silently become ``'1.1'``."""

    nonempty: bool = False

    def describe(self) -> str:
        return "a non-empty string" if self.nonempty else "a string"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if not isinstance(value, str) or (self.nonempty and not value.strip()):
            fix = (f"quote it: '{value}'" if isinstance(value, (int, float)) and not isinstance(value, bool)
                   else None)
            return self._bad(value, path, issues, fix)
        return value


@dataclass(frozen=True)
class Bool(Spec):
    def describe(self) -> str:
        return "true or false"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        flag = _as_bool(value)
        return self._bad(value, path, issues) if flag is None else flag


@dataclass(frozen=True)
class Enum(Spec):
    """One of fixed choices; ``base`` coerces first (``version: "1"`` from ``${VERSION}`` is 1)."""

    choices: tuple[Any, ...]
    base: Spec | None = None
    fix: str | None = None

    def describe(self) -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        candidate = value
        if self.base is not None:
            candidate = self.base.check(value, path, [])
        if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and candidate in self.choices:
            return candidate
        return self._bad(value, path, issues)


@dataclass(frozen=True)
class Nullable(Spec):
    """``inner`` or null; with ``empty_is_null`` an empty string is null too, so ``${VAR:-}`` means "unset"."""

    inner: Spec
    empty_is_null: bool = False

    def describe(self) -> str:
        return f"{self.inner.describe()} or null"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if value is None or (self.empty_is_null and isinstance(value, str) and not value.strip()):
            return None
        scratch: list[Issue] = []  # re-word the inner scalar's complaint to mention null
        result = self.inner.check(value, path, scratch)
        if result is INVALID:
            return self._bad(value, path, issues, fix=scratch[0].fix if scratch else None)
        return result


@dataclass(frozen=True)
class Scalar(Spec):
    """A plain YAML scalar usable as a pytest parameter value."""

    def describe(self) -> str:
        return "a scalar (string, number or true/false)"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if isinstance(value, (str, int, float, bool)):
            return value
        return self._bad(value, path, issues)


def _has_invalid(value: Any) -> bool:
    if value is INVALID:
        return True
    if isinstance(value, list):
        return any(_has_invalid(v) for v in value)
    if isinstance(value, dict):
        return any(_has_invalid(v) for v in value.values())
    return False


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


@dataclass(frozen=True)
class Json(Spec):
    """Free-form data that must survive a trip through JSON, because settings end up in run manifests."""

    def describe(self) -> str:
        return "plain data (strings, numbers, true/false, null, lists, mappings with string keys)"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if _has_invalid(value):  # a nested ``${VAR}`` already failed and was reported
            return INVALID
        return value if _is_json(value) else self._bad(value, path, issues)


@dataclass(frozen=True)
class ListOf(Spec):
    """A list of ``item``; with ``single`` a lone item is accepted and wrapped (``slo: {t: "x < 1"}``)."""

    item: Spec
    nonempty: bool = False
    single: bool = False

    def describe(self) -> str:
        text = f"{'a non-empty' if self.nonempty else 'a'} list of {_plural(self.item.describe())}"
        return f"{self.item.describe()} or {text}" if self.single else text

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if not isinstance(value, list):
            if self.single:
                scratch: list[Issue] = []
                result = self.item.check(value, path, scratch)
                if result is INVALID and isinstance(value, str) and value.strip():
                    issues.extend(scratch)  # a string that is the right type but wrong content: say why
                    return INVALID
                return self._bad(value, path, issues) if result is INVALID else [result]
            return self._bad(value, path, issues)
        if self.nonempty and not value:
            return self._bad(value, path, issues)
        cleaned = [self.item.check(v, f"{path}[{i}]", issues) for i, v in enumerate(value)]
        return INVALID if INVALID in cleaned else cleaned


def _plural(description: str) -> str:
    """'a non-empty string' -> 'non-empty strings', for list descriptions."""
    words = description.split(" ", 1)
    rest = words[1] if words[0] in ("a", "an") and len(words) > 1 else description
    head, _, tail = rest.partition(" (")
    return head + "s" + (f" ({tail}" if tail else "")


@dataclass(frozen=True)
class Key:
    """What mapping keys must look like; ``identifier`` for sweep keys, which are test argument names."""

    what: str = "a non-empty string"
    identifier: bool = False
    fix: str | None = None

    def ok(self, key: object) -> bool:
        if not isinstance(key, str) or not key.strip():
            return False
        return key.isidentifier() if self.identifier else True


NAME_KEY: Final = Key()


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping of keys (checked by ``key``) to ``value`` specs. Null means empty (a commented-out body)."""

    value: Spec
    key: Key = NAME_KEY
    what: str = "a mapping"

    def describe(self) -> str:
        return self.what

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            return self._bad(value, path, issues)
        cleaned: dict[str, Any] = {}
        ok = True
        for k, v in value.items():
            if not self.key.ok(k):
                issues.append(Issue(join(path, k), f"key {show(k)} is not {self.key.what}", self.key.fix))
                ok = False
                continue
            cleaned[k] = self.value.check(v, join(path, k), issues)
            ok = ok and cleaned[k] is not INVALID
        return cleaned if ok else INVALID


@dataclass(frozen=True)
class Record(Spec):
    """A mapping with known keys. Unknown keys are errors with a "did you mean" — unless ``extra`` is given,
    in which case they are checked by ``extra`` and kept (service backends read them later).

    Returns only the keys present; defaults live in ``model.py`` so they are written down once.
    """

    fields: dict[str, Spec]
    required: tuple[str, ...] = ()
    extra: Spec | None = None
    what: str = "a mapping"
    required_fix: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return self.what

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return self._bad(value, path, issues, fix=f"write a mapping with keys such as {self._known()}")
        cleaned: dict[str, Any] = {}
        ok = True
        for k, v in value.items():
            spec = self.fields.get(k) if isinstance(k, str) else None
            if spec is None and self.extra is not None and NAME_KEY.ok(k):
                spec = self.extra
            if spec is None:
                issues.append(self._unknown(path, k))
                ok = False
                continue
            cleaned[k] = spec.check(v, join(path, k), issues)
            ok = ok and cleaned[k] is not INVALID
        for name in self.required:
            if name not in value:
                issues.append(Issue(join(path, name), "required key is missing",
                                    self.required_fix.get(name, f"add {name}:")))
                ok = False
        return cleaned if ok else INVALID

    def _known(self) -> str:
        return ", ".join(sorted(self.fields))

    def _unknown(self, path: str, key: object) -> Issue:
        match = difflib.get_close_matches(str(key), list(self.fields), n=1, cutoff=0.6)
        if match:
            return Issue(join(path, key), f"unknown key, did you mean '{match[0]}'?")
        return Issue(join(path, key), "unknown key", f"remove it; keys allowed here: {self._known()}")


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


#: Keys of ``settings.redis`` / ``settings.postgres``: what the client reads plus what the shipped
#: benchmarks read (sizes of the measured window, worker processes).
_KV_BENCH_KEYS = ("duration_s", "requests", "warmup_requests", "workers")


def _section_keys(section: str) -> tuple[str, ...]:
    if section == "redis":
        from pytest_hwbench.workloads.redis_client import SETTINGS as REDIS

        return (*REDIS, *_KV_BENCH_KEYS)
    from pytest_hwbench.workloads.postgres_client import SETTINGS as POSTGRES

    return (*POSTGRES, *_KV_BENCH_KEYS)


@dataclass(frozen=True)
class Settings(Spec):
    """``settings``: free plain data at the top level, and declared sections whose keys and values are
    checked at load: ``llm`` (the LLM benchmark), ``redis`` and ``postgres`` (the data-service clients)."""

    def describe(self) -> str:
        return "a mapping of setting name to value"

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        cleaned = MapOf(Json(), what=self.describe()).check(value, path, issues)
        if cleaned is INVALID:
            return INVALID
        ok = True
        if isinstance(cleaned.get("llm"), dict):
            from pytest_hwbench.workloads.llm_bench import parse_llm_settings

            try:
                parse_llm_settings(cleaned["llm"])
            except HwbenchInputError as err:
                issues.append(Issue(err.field or join(path, "llm"), err.problem, err.fix))
                ok = False
        for section in ("redis", "postgres"):
            if isinstance(cleaned.get(section), dict):
                known = _section_keys(section)
                record = Record(dict.fromkeys(known, Json()))
                ok = record.check(cleaned[section], join(path, section), issues) is not INVALID and ok
        return cleaned if ok else INVALID


# ------------------------------------------------------------------------------------------ recipe schema

#: Upper bounds that keep a typo (``repetitions: 1000000000``) from hanging a run for days.
MAX_REPETITIONS = 100_000
MAX_WARMUP = 10_000

_TOLERANCE = Float(gt=0, lt=1)
_INCONCLUSIVE = Enum(INCONCLUSIVE_POLICIES)

METRIC_POLICY: Final = Record({"tolerance": _TOLERANCE, "inconclusive": _INCONCLUSIVE})

BASELINE: Final = Record({
    "dir": Str(nonempty=True),
    "tolerance": _TOLERANCE,
    "inconclusive": _INCONCLUSIVE,
    "reruns": Int(min=0, max=100),
    "stale_factor": Float(ge=1, lt=1e6),
    "confidence": Float(gt=0.5, lt=1),
    "require": Bool(),
    "metrics": MapOf(METRIC_POLICY, what="a mapping of metric name to {tolerance, inconclusive}"),
    "sessions": Int(min=1, max=10_000),
    "session_noise": Float(ge=0, lt=1),
    "max_seconds": Float(gt=0, lt=1e7),
})

SERVICE: Final = ServiceEntry()

MLFLOW: Final = Record({
    "tracking_uri": Nullable(Str(nonempty=True), empty_is_null=True),
    "experiment": Str(nonempty=True),
    "enabled": Bool(),
    "probe_timeout_s": Float(gt=0, lt=3600),
    "probe_retries": Int(min=0, max=100),
})

RESOURCES: Final = Record({"enabled": Bool(), "interval_ms": Int(min=50, max=3_600_000), "gpu": Bool()})

_PATHS = ListOf(Str(nonempty=True), single=True)
HARDWARE: Final = Record({
    "models": Record({"dirs": _PATHS, "ollama": Bool(), "huggingface": Bool(), "select": _PATHS,
                      "default_count": Int(min=1, max=1000),
                      "max_size_gib": Nullable(Float(gt=0), empty_is_null=True),
                      "memory_headroom": Float(ge=0)}),
    "llama_bench_repetitions": Int(min=1, max=MAX_REPETITIONS), "sevenzip_dict_log2": Int(min=10, max=40),
    "sevenzip_passes": Int(min=1, max=MAX_REPETITIONS),
    "stream_array_mib": Nullable(Float(gt=0), empty_is_null=True),
    "stream_ntimes": Int(min=2, max=MAX_REPETITIONS),
    "stream_cross_check": Bool(), "fio_size_mib": Int(min=1, max=1 << 24), "fio_runtime_s": Float(gt=0, lt=1e6),
    "fio_iodepth": Int(min=1, max=65536), "fio_ioengine": Str(nonempty=True), "timeout_s": Float(gt=0, lt=1e6),
})

SWEEP: Final = MapOf(ListOf(Scalar(), nonempty=True),
                     key=Key("a Python identifier", identifier=True,
                             fix="sweep keys are the benchmark's argument names"),
                     what="a mapping of argument name to a list of values")

RECIPE: Final = Record({
    "version": Enum((1,), base=Int(), fix="this pytest-hwbench reads recipe format version 1"),
    "name": Str(nonempty=True),
    "description": Str(),
    "testbed": Nullable(Str(nonempty=True), empty_is_null=True),
    "repetitions": Int(min=1, max=MAX_REPETITIONS),
    "warmup": Int(min=0, max=MAX_WARMUP),
    "sweep": SWEEP,
    "slo": MapOf(ListOf(SloText(), single=True),
                 what="a mapping of node-id pattern to SLO expressions"),
    "baseline": BASELINE,
    "services": MapOf(SERVICE, what="a mapping of service name to {kind, backend, ...}"),
    "mlflow": MLFLOW,
    "resources": RESOURCES,
    "settings": Settings(),
    "hardware": HARDWARE,
}, required=("version",), what="a mapping", required_fix={"version": "add 'version: 1' as the first line"})

#: ``@pytest.mark.hwbench(...)`` keywords, declared once like the recipe's (checked at collection).
MARKER: Final = Record({
    "slo": ListOf(SloText(), single=True),
    "repetitions": Int(min=1, max=MAX_REPETITIONS),
    "warmup": Int(min=0, max=MAX_WARMUP),
    "service": Str(nonempty=True),
    "services": ListOf(Str(nonempty=True), single=True),
    "sweep": SWEEP,
}, what="keyword arguments")


def validate(data: Any) -> tuple[dict[str, Any] | None, list[Issue]]:
    """Check a parsed (and interpolated) recipe. Returns (cleaned data or None, every issue found)."""
    issues: list[Issue] = []
    if data is None:
        return None, [Issue(None, "the recipe is empty", "write at least 'version: 1' and 'name: <name>'")]
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        return None, [Issue(None, f"the top level is {kind}, not a mapping",
                            f"write top-level keys such as {RECIPE._known()}")]
    cleaned = RECIPE.check(data, "", issues)
    return (None if cleaned is INVALID else cleaned), issues
