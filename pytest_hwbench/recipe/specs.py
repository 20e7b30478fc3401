"""A small declarative validator: the specs every recipe setting is declared with.

Why not jsonschema or pydantic: the people reading these errors are on a box under test and need
``recipes/x.yaml: services.llm.backend: 'dokcer' is not one of docker, process, external`` — the file, the
dotted field, the value and what is allowed — for *every* mistake in one go, not a stack of generic
validator output. A few hundred lines of specs give exactly that without another dependency.

Each spec's ``check`` returns the cleaned value (numeric strings coerced for numeric fields, so that
``repetitions: ${REPS:-3}`` works) or :data:`INVALID` after appending an :class:`Issue`. Validation never stops
at the first problem; the loader raises one :class:`RecipeError` listing them all.

A setting is declared once, as a field of a frozen dataclass: ``prompt_tokens: int = setting(128, Int(min=1))``
holds its name, default and spec on one line; :class:`Declared` turns the dataclass into the spec of its
mapping and returns the typed record. The recipe schema (``schema.py``) and the workloads' settings
(``workload_settings.py``) are written this way, so validating a recipe *is* building its typed records.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pytest_hwbench.errors import HwbenchInputError


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
    le: float | None = None

    def describe(self) -> str:
        bounds = [f"{op} {b:g}" for op, b in ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
                  if b is not None]
        return "a number" + (" " + " and ".join(bounds) if bounds else "")

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        number = _as_float(value)
        if (number is None or (self.gt is not None and number <= self.gt)
                or (self.ge is not None and number < self.ge) or (self.lt is not None and number >= self.lt)
                or (self.le is not None and number > self.le)):
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

    Returns only the keys present (use :class:`Declared` to get a typed record with the defaults filled in).
    ``blank_is_default``: null or an empty string (what ``${VAR:-}`` gives) means "not given".
    ``unknown_what`` names what an unknown key is in the message (``unknown LLM benchmark setting``).
    """

    fields: dict[str, Spec]
    required: tuple[str, ...] = ()
    extra: Spec | None = None
    what: str = "a mapping"
    required_fix: dict[str, str] = field(default_factory=dict)
    blank_is_default: bool = False
    unknown_what: str = "key"

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
            if self.blank_is_default and (v is None or (isinstance(v, str) and not v.strip())):
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
        return unknown_key(path, key, self.fields, self.unknown_what)


def unknown_key(path: str, key: object, known: Iterable[str], what: str = "key") -> Issue:
    """The issue for a key nobody declared: "did you mean" the closest declared one, else the list."""
    names = sorted(known)
    match = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    if match:
        return Issue(join(path, key), f"unknown {what}, did you mean '{match[0]}'?")
    return Issue(join(path, key), f"unknown {what}", f"remove it; keys allowed here: {', '.join(names)}")


# ------------------------------------------------------------------------------------ declared settings

_SPEC = "hwbench_spec"
_KEY = "hwbench_key"
_CONVERT = "hwbench_convert"
_DOC = "hwbench_doc"


def setting(default: Any, spec: Spec, *, key: str | None = None,
            convert: Callable[[Any], Any] | None = None, secret: bool = False, doc: str = "") -> Any:
    """Declare one recipe setting as a dataclass field: its default and its spec, written once.

    ``key`` is the recipe key when it is not the field name (``s3_requests`` for ``S3Settings.requests``);
    ``convert`` turns the checked value into the field's type (a list into a tuple, ``~`` expanded). Mutable
    defaults (dicts, lists) are copied per instance. A ``secret`` stays out of the record's ``repr``. ``doc``
    is the one-line help listings print (``hwbench services``).
    """
    metadata: dict[str, Any] = {_SPEC: spec, _KEY: key, _CONVERT: convert, _DOC: doc}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata, repr=not secret)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        return field(default_factory=lambda: default, metadata=metadata, repr=not secret)
    return field(default=default, metadata=metadata, repr=not secret)


def declared_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """Recipe key -> dataclass field, for the fields of ``cls`` declared with :func:`setting`."""
    out: dict[str, dataclasses.Field[Any]] = {}
    for f in dataclasses.fields(cls):
        if _SPEC in f.metadata:
            out[f.metadata[_KEY] or f.name] = f
    return out


def docs_of(cls: type) -> dict[str, str]:
    """Recipe key -> the ``doc`` line of each declared setting of ``cls``."""
    return {key: f.metadata.get(_DOC, "") for key, f in declared_fields(cls).items()}


def spec_of(cls: type, key: str) -> Spec:
    """The spec declared for recipe key ``key`` of ``cls`` (to reuse a declaration, e.g. marker keywords)."""
    spec: Spec = declared_fields(cls)[key].metadata[_SPEC]
    return spec


def converted(cls: type, cleaned: dict[str, Any]) -> dict[str, Any]:
    """Checked values by recipe key -> keyword arguments of ``cls`` (field names, each field's ``convert``)."""
    fields = declared_fields(cls)
    kwargs: dict[str, Any] = {}
    for key, value in cleaned.items():
        f = fields[key]
        convert = f.metadata[_CONVERT]
        kwargs[f.name] = convert(value) if convert is not None and value is not None else value
    return kwargs


def default_of(cls: type, name: str) -> Any:
    """The declared default of field ``name`` of ``cls`` (for messages and docs; never re-declare it)."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


@dataclass(frozen=True)
class Declared(Spec):
    """The spec of a mapping whose keys, specs and defaults are the :func:`setting` fields of the frozen
    dataclass ``cls``; ``check`` returns an instance (absent keys take the declared defaults).

    ``known_only`` (for a mapping that is shared with other readers, like top-level ``settings``) checks only
    the keys ``cls`` declares and leaves the rest alone.
    """

    cls: type
    what: str = "a mapping"
    blank_is_default: bool = False
    unknown_what: str = "key"

    def describe(self) -> str:
        return self.what

    def record(self) -> Record:
        return Record({k: f.metadata[_SPEC] for k, f in declared_fields(self.cls).items()}, what=self.what,
                      blank_is_default=self.blank_is_default, unknown_what=self.unknown_what)

    def _check(self, value: Any, path: str, issues: list[Issue]) -> Any:
        cleaned = self.record().check(value, path, issues)
        return INVALID if cleaned is INVALID else self.build(cleaned)

    def recipe_keys(self) -> tuple[str, ...]:
        """The recipe keys ``cls`` declares."""
        return tuple(declared_fields(self.cls))

    def known(self, value: dict[str, Any]) -> dict[str, Any]:
        """The part of a shared mapping that ``cls`` declares (the other keys belong to someone else)."""
        keys = self.recipe_keys()
        return {k: v for k, v in value.items() if k in keys}

    def check_known(self, value: dict[str, Any], path: str, issues: list[Issue]) -> Any:
        """Check only the keys ``cls`` declares; the cleaned subset (not yet a record: it may be merged)."""
        return self.record().check(self.known(value), path, issues)

    def build(self, cleaned: dict[str, Any]) -> Any:
        """The typed record of checked values (recipe keys), converted to the fields' types."""
        return self.cls(**self._converted(cleaned))

    def _converted(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        return converted(self.cls, cleaned)

    def coerce(self, values: dict[str, Any], path: str) -> dict[str, Any]:
        """Check some of the declared settings given as keyword values (field name -> value) outside a
        recipe, e.g. a workload object built in code: field name -> checked value, or a
        :class:`RecipeError` naming ``<path>.<key>`` of every problem. The recipe's own specs and coercion."""
        by_name = {f.name: key for key, f in declared_fields(self.cls).items()}
        issues: list[Issue] = []
        cleaned = self.record().check({by_name[k]: v for k, v in values.items()}, path, issues)
        if issues or cleaned is INVALID:
            raise RecipeError(issues or [Issue(path or None, "invalid settings")], file=None)
        return self._converted(cleaned)
