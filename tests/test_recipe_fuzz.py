"""Fuzzing every shipped recipe (issue #9): a mutation corpus — structural mutations of the parsed tree and
textual ones of the file — must give a loaded recipe or a clear ``HwbenchInputError``, never a traceback or a
hang; and ``hwbench recipes validate`` rejects each bad-recipe class of the issue with a field path."""

from __future__ import annotations

import copy
import io
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe import validate_cmd
from pytest_hwbench.recipe.loader import load_recipe_text

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
#: Replacement values that have broken validators before: wrong types, huge and non-finite numbers,
#: negative and zero counts, deep and empty containers, alias-like and interpolation-like strings.
HOSTILE_VALUES: list[Any] = [
    None, "", " ", 0, -1, 10**30, -(10**30), 1e308, float("inf"), float("nan"), True, "yes", [], {}, [[[]]],
    {"a": {"b": {"c": None}}}, "${UNSET_HWBENCH_FUZZ}", "${", "$${x}", "1e999", "x" * 5000, [1, "a", None],
    "ttft_ms.p99 <<< 5", "*", "::", "\x00", 3.5, "99999", "-5",
]
CASES_PER_RECIPE = 80
TIME_LIMIT_S = 5.0  # per load; every load is milliseconds on a quiet machine


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*path, i))
    return out


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return tree


def _delete(tree: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return None
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return tree


def _rename(tree: Any, path: tuple[Any, ...], rng: random.Random) -> Any:
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and isinstance(path[-1], str):
        key = path[-1]
        pos = rng.randrange(len(key) + 1)
        typo = key[:pos] + rng.choice("aexz_") + key[pos + 1:]
        parent[typo] = parent.pop(key)
    return tree


def mutations(text: str, seed: int) -> list[str]:
    """Mutated variants of a recipe text: tree edits (replace, delete, rename a key) and text edits."""
    rng = random.Random(seed)
    base = yaml.safe_load(text)
    paths = [p for p in _paths(base) if p]
    out = []
    for i in range(CASES_PER_RECIPE):
        kind = i % 5
        if kind == 3:  # textual: cut, drop a character, duplicate a line
            pos = rng.randrange(len(text))
            choice = rng.randrange(3)
            if choice == 0:
                out.append(text[:pos])
            elif choice == 1:
                out.append(text[:pos] + text[pos + 1:])
            else:
                lines = text.splitlines(keepends=True)
                j = rng.randrange(len(lines))
                out.append("".join(lines[:j + 1] + lines[j:]))
            continue
        tree = copy.deepcopy(base)
        path = rng.choice(paths)
        if kind in (0, 4):
            tree = _set(tree, path, copy.deepcopy(rng.choice(HOSTILE_VALUES)))
        elif kind == 1:
            tree = _delete(tree, path)
        else:
            tree = _rename(tree, path, rng)
        try:
            out.append(yaml.safe_dump(tree, allow_unicode=True, sort_keys=False))
        except (yaml.YAMLError, ValueError):
            continue
    out.append(text + "\nextra_anchor: &a [*a]\n")  # a recursive alias appended to a real recipe
    return out


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_mutated_recipes_load_or_fail_clearly(recipe: Path) -> None:
    text = recipe.read_text()
    crashes = []
    for n, variant in enumerate(mutations(text, seed=hash(recipe.name) & 0xFFFF)):
        t0 = time.perf_counter()
        try:
            load_recipe_text(variant, f"recipes/{recipe.name}", env={})
        except HwbenchInputError as err:
            message = str(err)
            if not message.startswith(f"recipes/{recipe.name}") or "Traceback" in message:
                crashes.append(f"#{n}: unclear message: {message[:300]}")
        except Exception as err:  # the point of the test: nothing else may escape
            crashes.append(f"#{n}: {type(err).__name__}: {err}\n--- variant ---\n{variant[:500]}")
        elapsed = time.perf_counter() - t0
        if elapsed > TIME_LIMIT_S:
            crashes.append(f"#{n}: took {elapsed:.1f}s")
    assert not crashes, "\n\n".join(crashes[:5])


#: The bad-recipe classes the issue lists, each with the field path the error must name.
BAD_CLASSES = {
    "malformed SLO": ("slo: {'t.py::*': 'ttft_ms.p99 <'}", "slo.t.py::*: cannot parse SLO"),
    "unknown kind": ("services: {db: {kind: mongodb}}", "services.db.kind: unknown service kind 'mongodb'"),
    "misspelt backend": ("services: {db: {kind: redis, backnd: docker}}", "services.db.backnd: unknown key"),
    "misspelt timeout": ("services: {db: {kind: redis, startup_timout: 5}}",
                         "services.db.startup_timout: unknown key, did you mean 'startup_timeout'?"),
    "port out of range": ("services: {db: {kind: redis, port: 99999}}", "services.db.port: 99999"),
    "misspelt llm key": ("settings: {llm: {prompt_token: 8}}", "settings.llm.prompt_token: unknown"),
    "infinite bound": ("slo: {'t.py::*': 'x < 1.0e999'}", "slo.t.py::*: SLO 'x < 1.0e999' has a bound"),
    "huge repetitions": ("repetitions: 1000000000000000000000000000000", "repetitions: "),
    "zero repetitions": ("repetitions: 0", "repetitions: 0 is not an integer >= 1"),
    "negative warmup": ("warmup: -1", "warmup: -1 is not an integer >= 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLASSES))
def test_validate_rejects_each_bad_class_with_a_field_path(case: str, tmp_path: Path) -> None:
    body, expected = BAD_CLASSES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(f"version: 1\n{body}\n")
    out = io.StringIO()
    assert validate_cmd.run([str(path)], out=out) == 1
    assert f"{path}: {expected}" in out.getvalue(), out.getvalue()


def test_version_is_required_by_validate(tmp_path: Path) -> None:
    path = tmp_path / "nover.yaml"
    path.write_text("name: x\n")
    out = io.StringIO()
    assert validate_cmd.run([str(path)], out=out) == 1
    assert f"{path}: version: required key is missing" in out.getvalue()
