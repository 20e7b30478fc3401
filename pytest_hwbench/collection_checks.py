"""Checks that need the collected tests: marker keywords, SLO patterns and sweep keys that select nothing.

Why at collection: a recipe's ``slo`` pattern with a typo, or a sweep key ``sizee``, silently does nothing —
the gate passes because nothing was checked. The recipe alone cannot tell; the list of collected tests can.
They are errors before the first test runs (``--hwbench-lenient`` makes them warnings), with the field, the
problem and the closest test or argument name.

Subset runs are not punished: a pattern scoped to a file (``test_redis.py::...``) is only checked when that
file was collected, and when the command line names files or node ids (not directories) an unused sweep key
is a warning, since the test that uses it may simply not be part of this run.
"""

from __future__ import annotations

import argparse
import difflib
import os

import pytest

from pytest_hwbench.recipe.model import Recipe, nodeid_matches
from pytest_hwbench.recipe.schema import MARKER, MAX_REPETITIONS, Issue, show

FIXTURE = "hwbench"


def positive_repetitions(text: str) -> int:
    """``--hwbench-repetitions`` value: 1 to MAX_REPETITIONS (0 and -1 were once ignored or crashed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (fix: give a count such as 5)") from None
    if not 1 <= value <= MAX_REPETITIONS:
        raise argparse.ArgumentTypeError(
            f"{value} is not between 1 and {MAX_REPETITIONS} (fix: give the number of measured trials, e.g. 5)")
    return value


def marker_issues(item: pytest.Item) -> list[str]:
    """Problems of the item's ``@pytest.mark.hwbench(...)``: unknown keywords, bad values, positional args."""
    out: list[str] = []
    for marker in item.iter_markers(FIXTURE):
        where = f"{item.nodeid}: @pytest.mark.hwbench"
        if marker.args:
            out.append(f"{where}: positional arguments {show(list(marker.args))} are not accepted "
                       "(fix: use keywords: slo=, repetitions=, warmup=, service=, services=, sweep=)")
        issues: list[Issue] = []
        MARKER.check(dict(marker.kwargs), "", issues)
        out += [f"{where}: {i.field or 'keywords'}: {i.problem}" + (f" (fix: {i.fix})" if i.fix else "")
                for i in issues]
    return out


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _whole_run(config: pytest.Config) -> bool:
    """True when the command line names only directories (or nothing): the run is a whole suite."""
    for arg in config.args:
        path = arg.split("::", 1)[0]
        if "::" in arg or not os.path.isdir(os.path.join(str(config.invocation_params.dir), path)):
            return False
    return True


def _other_files(recipe: Recipe, items: list[pytest.Item]) -> bool:
    """True when the recipe's SLO patterns name files that were not collected: it covers more benchmarks than
    this run has, so an unused sweep key may well be theirs."""
    files = {_file_of(item.nodeid) for item in items}
    for pattern in recipe.slo:
        scope = pattern.split("::", 1)[0] if "::" in pattern else None
        if scope and ".py" in scope and not any(nodeid_matches(f, scope) for f in files):
            return True
    return False


def slo_pattern_issues(recipe: Recipe, items: list[pytest.Item]) -> list[str]:
    out = []
    files = {_file_of(item.nodeid) for item in items}
    for pattern in recipe.slo:
        if any(nodeid_matches(item.nodeid, pattern) for item in items):
            continue
        scope = pattern.split("::", 1)[0] if "::" in pattern else None
        if scope is not None and ".py" in scope and not any(nodeid_matches(f, scope) for f in files):
            continue  # that file is not part of this run
        names = sorted({item.nodeid.split("::")[-1].split("[")[0] for item in items
                        if scope is None or nodeid_matches(_file_of(item.nodeid), scope or "")})
        close = difflib.get_close_matches(pattern.split("::")[-1].rstrip("*"), names, n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        out.append(f"{recipe.path}: slo.'{pattern}': matches no collected test (fix: {hint}patterns are "
                   "fnmatch patterns on node ids, e.g. 'test_file.py::test_name*')")
    return out


def sweep_key_issues(recipe: Recipe, items: list[pytest.Item]) -> tuple[list[str], list[str]]:
    """(likely typos, other unused keys): a key close to a collected test's argument is a typo; one that is
    close to nothing may belong to a benchmark that is not part of this run."""
    typos: list[str] = []
    unused: list[str] = []
    args = {name for item in items for name in getattr(item, "fixturenames", ())}
    for key in recipe.sweep:
        if key in args:
            continue
        close = difflib.get_close_matches(key, sorted(a for a in args if not a.startswith(("request", "_"))),
                                          n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        (typos if close else unused).append(
            f"{recipe.path}: sweep.{key}: no collected test has an argument {key!r}, so these values would be "
            f"dropped (fix: {hint}sweep keys are benchmark argument names)")
    return typos, unused


def check_collection(config: pytest.Config, recipe: Recipe, items: list[pytest.Item]) -> list[str]:
    """Raise ``pytest.UsageError`` listing every error; return the warnings (lenient or subset runs)."""
    errors: list[str] = []
    for item in items:
        errors += marker_issues(item)
    users = [item for item in items if FIXTURE in getattr(item, "fixturenames", ())]
    warnings: list[str] = []
    if users:
        lenient = bool(config.getoption("hwbench_lenient", False))
        slo = slo_pattern_issues(recipe, users)
        typos, unused = sweep_key_issues(recipe, users)
        if lenient:
            warnings += slo + typos + unused
        else:
            errors += slo + typos
            (errors if _whole_run(config) and not _other_files(recipe, users) else warnings).extend(unused)
    if errors:
        raise pytest.UsageError("pytest-hwbench: " + "\n".join(errors)
                                + ("\n(--hwbench-lenient turns unmatched SLO patterns and sweep keys into "
                                   "warnings)" if any("slo.'" in e or ": sweep." in e for e in errors) else ""))
    return warnings


__all__ = ["check_collection", "marker_issues", "positive_repetitions"]
