"""``hwbench recipes validate FILE...``: check recipes without running anything.

Meant for a pre-commit hook or a CI step: a recipe typo should fail in seconds on any machine, not after a
service has been started on the box under test. Uses the same loader as the plugin, so "OK" here means
the plugin will accept the file (given the same environment variables).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.loader import load_recipe
from pytest_hwbench.recipe.model import Recipe


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(recipe: Recipe, file: str) -> str:
    """``OK <file> (<n> services, <m> SLO rules, sweep: a, b)``; an SLO rule is one expression."""
    rules = sum(len(exprs) for exprs in recipe.slo.values())
    sweep = ", ".join(recipe.sweep) or "none"
    return (f"OK {file} ({_count(len(recipe.services), 'service')}, {_count(rules, 'SLO rule')}, "
            f"sweep: {sweep})")


def run(files: Sequence[str], out: TextIO | None = None) -> int:
    """Validate each file, print one OK line or the error text per file; 0 when all are valid, else 1.

    ``out`` defaults to ``sys.stdout`` looked up at call time (so capture fixtures see the output).
    """
    stream = sys.stdout if out is None else out
    if not files:
        print("no recipe files given (usage: hwbench recipes validate FILE...)", file=stream)
        return 1
    status = 0
    for file in files:
        try:
            recipe = load_recipe(file)
        except HwbenchInputError as err:
            print(str(err), file=stream)
            status = 1
        else:
            print(summary(recipe, file), file=stream)
    return status


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
