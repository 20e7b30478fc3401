"""The recipe schema, assembled from the declarations: every top-level key is a ``setting(...)`` field of
``model.Recipe`` (its sections' records and ``entries.py``'s specs carry the rest), so this module writes no
limit and no default of its own. :func:`validate` is the one validation pass: the loader and ``hwbench
recipes validate`` both call it, before any test runs.
"""

from __future__ import annotations

from typing import Any, Final

from pytest_hwbench.recipe.entries import SERVICE, SLO_LIST, SWEEP
from pytest_hwbench.recipe.model import MAX_REPETITIONS, MAX_WARMUP, Recipe
from pytest_hwbench.recipe.specs import (
    INVALID,
    NAME_KEY,
    Issue,
    ListOf,
    RecipeError,
    Record,
    Str,
    declared_fields,
    join,
    show,
    spec_of,
)

__all__ = ["INVALID", "MARKER", "MAX_REPETITIONS", "MAX_WARMUP", "NAME_KEY", "RECIPE", "SERVICE", "SWEEP",
           "Issue", "RecipeError", "join", "show", "validate"]

RECIPE: Final = Record({key: spec_of(Recipe, key) for key in declared_fields(Recipe)},
                       required=("version",), what="a mapping",
                       required_fix={"version": "add 'version: 1' as the first line"})

#: ``@pytest.mark.hwbench(...)`` keywords: the recipe's own declarations where the key is the same.
MARKER: Final = Record({
    "slo": SLO_LIST,
    "repetitions": spec_of(Recipe, "repetitions"),
    "warmup": spec_of(Recipe, "warmup"),
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
