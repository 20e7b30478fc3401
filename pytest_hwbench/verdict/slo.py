"""SLO expressions (k6-like thresholds) and their evaluation against a test's recorded metrics.

Grammar, one expression per string::

    <metric>[.<stat>] <op> <number>
    metric := [A-Za-z_][A-Za-z0-9_]*          e.g. ttft_ms, gflops
    stat   := one of STAT_NAMES                e.g. p99, p99.9, mean (bare metric means median)
    op     := <  <=  >  >=  ==  !=
    number := 500, 0.01, 1e-3, 1_000, -2.5

Metric names cannot contain a dot, so the text is split at the first dot after the name; that is what
lets ``p99.9`` be a statistic. An SLO that names a metric the test did not record is reported as a failure,
never a pass: a typo in a recipe must not turn a gate into a no-op.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult, jsonable
from pytest_hwbench.measure.stats import STAT_NAMES

#: Comparison operators, longest first so ``<=`` is not read as ``<``.
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}

#: The statistic a bare metric name stands for: the median is robust to the outliers benchmarks have.
DEFAULT_STAT = "median"

GRAMMAR = ("'<metric>[.<stat>] <op> <number>', e.g. 'ttft_ms.p99 < 500', 'error_rate <= 0.01', "
           "'gflops.mean >= 1e3'; op is one of < <= > >= == !=; stat is one of "
           + ", ".join(STAT_NAMES) + " (default median)")

_NUMBER = r"[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?"
_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\.(?P<stat>\S*?))?"
    r"\s*(?P<op><=|>=|==|!=|<|>)"
    rf"\s*(?P<number>{_NUMBER})\s*$"
)
_LHS = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<stat>\S*))?\s*$")


@dataclass(frozen=True)
class SloExpr:
    """One parsed SLO. ``text`` is what the user wrote and ``source`` where (recipe field or marker), so
    every message can point back at the line to edit."""

    metric: str
    stat: str
    op: str
    bound: float
    text: str
    source: str

    def holds(self, value: float) -> bool:
        """True when ``value`` satisfies the expression; nan never does."""
        if math.isnan(value):
            return False
        return OPERATORS[self.op](value, self.bound)

    @property
    def canonical(self) -> str:
        """Normalised form (stat always spelled out) used in verdict messages."""
        return f"{self.metric}.{self.stat} {self.op} {format_number(self.bound)}"

    def __str__(self) -> str:
        return self.text


def parse_slo(text: str, source: str) -> SloExpr:
    """Parse one expression; bad syntax raises HwbenchInputError naming ``source``, the text and the
    grammar, because the reader has to fix the recipe or marker, not debug the parser."""
    if not isinstance(text, str):
        raise HwbenchInputError(f"SLO must be a string, got {type(text).__name__} {text!r}",
                                file=source, fix=f"write it as {GRAMMAR}")
    match = _EXPR.match(text)
    if match is None:
        raise HwbenchInputError(f"cannot parse SLO {text!r}: {_diagnose(text)}", file=source,
                                fix=f"write it as {GRAMMAR}")
    stat = match["stat"]
    if stat is None:
        stat = DEFAULT_STAT
    elif stat not in STAT_NAMES:
        close = get_close_matches(stat, STAT_NAMES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise HwbenchInputError(
            f"SLO {text!r} uses unknown statistic {stat!r}", file=source,
            fix=f"{hint}use one of {', '.join(STAT_NAMES)}, or the bare metric name for the median")
    try:
        bound = float(match["number"])
    except ValueError:  # pragma: no cover - the regex only admits float() syntax
        raise HwbenchInputError(f"SLO {text!r} has a bound that is not a number", file=source,
                                fix=f"write it as {GRAMMAR}") from None
    return SloExpr(metric=match["metric"], stat=stat, op=match["op"], bound=bound, text=text.strip(),
                   source=source)


def parse_slos(texts: Iterable[str], source: str) -> list[SloExpr]:
    """Parse a list of expressions from one place (a recipe pattern or a marker)."""
    return [parse_slo(text, source) for text in texts]


def _diagnose(text: str) -> str:
    """Best guess at what is wrong, so the message says more than "does not match"."""
    stripped = text.strip()
    if not stripped:
        return "it is empty"
    op_match = re.search(r"<=|>=|==|!=|=<|=>|<|>|=", stripped)
    if op_match is None:
        return "no comparison operator (< <= > >= == !=)"
    if op_match.group() in ("=", "=<", "=>"):
        return f"operator {op_match.group()!r} is not one of < <= > >= == !="
    lhs, rhs = stripped[: op_match.start()], stripped[op_match.end():].strip()
    if not _LHS.match(lhs):
        return (f"left side {lhs.strip()!r} is not '<metric>[.<stat>]' (metric names are letters, digits "
                "and _, not starting with a digit)")
    if not rhs:
        return "no number after the operator"
    if re.fullmatch(_NUMBER, rhs) is None:
        return f"right side {rhs!r} is not a plain number (units and expressions are not allowed)"
    return "unexpected text"  # pragma: no cover - every other shape matches _EXPR


def format_number(value: float) -> str:
    """Up to 6 significant digits: enough that an observed value just past a bound does not print as the
    bound itself, short enough to read."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.6g}"


def format_with_unit(value: float, unit: str) -> str:
    return f"{format_number(value)} {unit}".rstrip()


def format_ci(ci: tuple[float, float] | None, confidence: float) -> str | None:
    """``95% CI 30.8–31.9``, or None when there is no (finite) interval to show."""
    if ci is None or any(v is None or not math.isfinite(v) for v in ci):
        return None
    return f"{confidence * 100:g}% CI {format_number(ci[0])}–{format_number(ci[1])}"


@dataclass
class SloResult:
    """Outcome of one SLO on one test. ``error`` is True when the SLO could not be evaluated at all
    (metric not recorded, statistic undefined); such a result is a failure too, but a differently worded
    one, because the fix is in the recipe or test, not in the system under test."""

    expr: SloExpr
    observed: float | None
    ci: tuple[float, float] | None
    unit: str
    passed: bool
    message: str
    error: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types for results JSON, JUnit properties and MLflow."""
        return {
            "expression": self.expr.text, "source": self.expr.source, "metric": self.expr.metric,
            "stat": self.expr.stat, "op": self.expr.op, "bound": jsonable(self.expr.bound),
            "observed": jsonable(self.observed),
            "ci": None if self.ci is None else [jsonable(self.ci[0]), jsonable(self.ci[1])],
            "unit": self.unit, "passed": self.passed, "error": self.error, "message": self.message,
        }


def evaluate_slo(expr: SloExpr, metrics: Mapping[str, MetricResult], test_id: str) -> SloResult:
    """Check ``expr`` against the metrics ``test_id`` recorded. Never raises for missing data: the result
    says what is missing, so one bad SLO does not hide the verdicts of the others."""
    result = metrics.get(expr.metric)
    if result is None:
        recorded = ", ".join(sorted(metrics)) or "none"
        message = (f"SLO '{expr.text}' on test {test_id} names metric '{expr.metric}', which this test did "
                   f"not record (recorded: {recorded}); SLO from {expr.source}")
        return SloResult(expr=expr, observed=None, ci=None, unit="", passed=False, message=message,
                         error=True)
    summary = result.summary
    observed = float(summary.stat(expr.stat))
    ci = summary.ci_of(expr.stat)
    if ci is not None:
        ci = (float(ci[0]), float(ci[1]))
    if math.isnan(observed):
        message = (f"{test_id}: SLO not evaluable: {expr.canonical}: {expr.metric}.{expr.stat} is undefined "
                   f"for this run ({summary.count} sample(s)); SLO from {expr.source}")
        return SloResult(expr=expr, observed=observed, ci=ci, unit=result.unit, passed=False,
                         message=message, error=True)
    passed = expr.holds(observed)
    detail = f"observed {format_with_unit(observed, result.unit)}"
    ci_text = format_ci(ci, summary.confidence)
    if ci_text:
        detail += f", {ci_text}"
    if result.estimated:
        detail += ", estimated"
    verb = "met" if passed else "violated"
    message = f"{test_id}: SLO {verb}: {expr.canonical} ({detail}); SLO from {expr.source}"
    return SloResult(expr=expr, observed=observed, ci=ci, unit=result.unit, passed=passed, message=message)


def evaluate_slos(exprs: Sequence[SloExpr], metrics: Mapping[str, MetricResult],
                  test_id: str) -> list[SloResult]:
    """Evaluate every SLO of a test, in the given order."""
    return [evaluate_slo(expr, metrics, test_id) for expr in exprs]
