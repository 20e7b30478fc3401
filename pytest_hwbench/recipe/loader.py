"""Load a recipe file into a typed :class:`~pytest_hwbench.recipe.model.Recipe`.

Stages, in order: read the text -> parse YAML (strict: duplicate keys are errors, dates stay strings) ->
interpolate ``${ENV}`` in string scalars -> validate against ``schema.RECIPE`` -> build the dataclasses.
Interpolation and schema problems are collected together and raised as one :class:`RecipeError`, so a
user fixes every mistake in one edit instead of one per run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.interpolate import interpolate_tree
from pytest_hwbench.recipe.model import MlflowSettings, Recipe
from pytest_hwbench.recipe.schema import Issue, RecipeError, join, validate
from pytest_hwbench.recipe.specs import converted
from pytest_hwbench.report.redact import Redactor, secrets_in_tree
from pytest_hwbench.safe_load import MAX_YAML_BYTES, compose_bounded, read_bounded

DEFAULT_SOURCE = "<embedded default>"
MISSING_FILE_FIX = "pass an existing file to --recipe or fix the hwbench_recipe ini value"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (same safety) that rejects duplicate keys and keeps dates as strings.

    Duplicate keys are silently "last one wins" in PyYAML, which hides a second ``slo:`` block; and
    ``2024-01-01`` becoming a ``datetime.date`` would not survive the JSON reports.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[type, Any]] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # ``<<: *anchor`` keys may legitimately be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                marker = (type(key), key)
                duplicate = marker in seen
            except TypeError:
                continue  # unhashable key: the base constructor reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(marker)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _parse(text: str, source: str) -> Any:
    try:
        return compose_bounded(text, _StrictLoader, source)  # a SafeLoader subclass, bounded
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = err.problem or err.context or "invalid YAML"
        if err.problem and err.context:
            ctx_mark = err.context_mark
            at = f" started at line {ctx_mark.line + 1}" if ctx_mark and ctx_mark is not mark else ""
            problem = f"{err.problem} ({err.context}{at})"
        fix = ("keep only one of them; merge the two blocks" if "duplicate key" in problem else
               "check indentation and quoting there; quote values containing ': ', '#' or starting with "
               "'{', '[', '*', '&', '!', '%', '@'")
        raise HwbenchInputError(f"invalid YAML: {problem}", file=source, field=where, fix=fix) from None
    except yaml.YAMLError as err:
        raise HwbenchInputError(f"invalid YAML: {' '.join(str(err).split())}", file=source,
                                fix="save the recipe as plain UTF-8 text without control characters") from None
    except (ValueError, OverflowError) as err:  # e.g. an integer literal of 5000 digits
        raise HwbenchInputError(f"invalid value: {str(err)[:200]}", file=source,
                                fix="write numbers of reasonable size") from None


def _redact(issues: list[Issue], secrets: set[str]) -> list[Issue]:
    """Mask secret values an error message might quote (``'hunter2' is not an integer``): errors reach
    terminals and CI logs just like reports do."""
    redactor = Redactor(secrets)
    return [Issue(issue.field, redactor.text(issue.problem), issue.fix) for issue in issues]


def _document_order(data: Any) -> dict[str, int]:
    """Field path -> position in the file (pre-order walk; dicts keep YAML order)."""
    order: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        order.setdefault(path, len(order))
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, join(path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(data, "")
    return order


def _in_document_order(issues: list[Issue], data: Any) -> list[Issue]:
    """Interpolation and schema problems interleaved as they appear in the file, so the list reads top
    to bottom; a missing key sorts at its parent. The sort is stable, so ties keep discovery order."""
    order = _document_order(data)

    def position(issue: Issue) -> int:
        path = issue.field or ""
        while path not in order:
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return order[path]

    return sorted(issues, key=position)


def _build(clean: dict[str, Any], source: str, text: str, secrets: set[str]) -> Recipe:
    """Turn validated data into the model: each key's declared ``convert`` (``services`` entries become
    ``ServiceSpec``s); the sections are typed records already. Absent keys take the declared defaults."""
    clean = dict(clean)
    settings: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if "settings" in clean:  # one key, two fields: the free mapping and the workloads' typed records
        settings, extra["workloads"] = clean.pop("settings")
    kwargs = converted(Recipe, clean)
    kwargs["name"] = kwargs.get("name") or Path(source).stem
    services = {name: {"kind": spec.kind, **spec.settings} for name, spec in kwargs.get("services", {}).items()}
    return Recipe(
        path=source,
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        secret_values=frozenset(secrets | secrets_in_tree(services) | secrets_in_tree(
            settings) | secrets_in_tree(_mlflow_tree(clean.get("mlflow")))),
        settings=settings,
        **extra,
        **kwargs,
    )


def _mlflow_tree(mlflow: MlflowSettings | None) -> dict[str, Any] | None:
    return None if mlflow is None else dataclasses.asdict(mlflow)


def load_recipe_text(text: str, source: str, *, env: Mapping[str, str] | None = None) -> Recipe:
    """Parse, interpolate and validate recipe ``text``; ``source`` names it in every message.

    ``env`` defaults to ``os.environ``; tests pass a dict. Raises :class:`HwbenchInputError` (a
    :class:`RecipeError` listing every problem when the YAML parsed but the content is wrong).
    """
    data = _parse(text, source)
    if not isinstance(data, dict):
        _, issues = validate(data)  # the "empty"/"not a mapping" message, before interpolating anything
        raise RecipeError(issues, file=source)
    interpolated = interpolate_tree(data, os.environ if env is None else env)
    clean, schema_issues = validate(interpolated.data)
    issues = _redact(_in_document_order(interpolated.issues + schema_issues, data), interpolated.secrets)
    if issues or clean is None:
        raise RecipeError(issues or [Issue(None, "invalid recipe")], file=source)
    return _build(clean, source, text, interpolated.secrets)


def load_recipe(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Recipe:
    """Load the recipe file at ``path`` (messages name it as given, e.g. ``recipes/vllm.yaml``)."""
    source = os.fspath(path)
    try:
        text = read_bounded(source, MAX_YAML_BYTES, what="the recipe",
                            fix="pass a recipe file (a few KiB of YAML)").decode("utf-8")
    except FileNotFoundError:
        raise HwbenchInputError("recipe file not found", file=source, fix=MISSING_FILE_FIX) from None
    except IsADirectoryError:
        raise HwbenchInputError("is a directory, not a recipe file", file=source,
                                fix=MISSING_FILE_FIX) from None
    except UnicodeDecodeError as err:
        raise HwbenchInputError(f"not UTF-8 text (byte {err.start})", file=source,
                                fix="save the recipe as UTF-8") from None
    except OSError as err:
        raise HwbenchInputError(f"cannot read the recipe: {err.strerror or err}", file=source,
                                fix=MISSING_FILE_FIX) from None
    return load_recipe_text(text, source, env=env)


def default_recipe() -> Recipe:
    """The embedded default (3 repetitions, no services, no SLOs), used when no recipe is named."""
    text = resources.files("pytest_hwbench.recipe").joinpath("default.yaml").read_text(encoding="utf-8")
    return load_recipe_text(text, DEFAULT_SOURCE)
