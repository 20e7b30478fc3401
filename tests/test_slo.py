"""SLO expressions: the grammar, its error messages, and evaluation against recorded metrics."""

from __future__ import annotations

import json
import math
import operator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.measure.stats import PERCENTILES, STAT_NAMES, Summary, summarize
from pytest_hwbench.verdict.slo import (
    GRAMMAR,
    OPERATORS,
    evaluate_slo,
    evaluate_slos,
    parse_slo,
    parse_slos,
)

SRC = "recipes/x.yaml: slo.'test_matmul*'"


def fixed_summary(median: float, ci: tuple[float, float], *, count: int = 100) -> Summary:
    """A Summary with exact, known numbers, so message tests do not depend on the CI method."""
    pct = {name: median for name, _ in PERCENTILES}
    return Summary(count=count, mean=median, stdev=1.0, cv=1.0 / median, min=median - 5, max=median + 5,
                   percentiles=pct, ci={"mean": ci, **{name: ci for name in pct}}, confidence=0.95)


def metric(name: str, unit: str, summary: Summary, better: str = "lower") -> MetricResult:
    return MetricResult(name=name, unit=unit, better=better, summary=summary, trial_values=[summary.mean])


# ------------------------------------------------------------------------------------------------ parse

@pytest.mark.parametrize(("text", "metric_name", "stat", "op", "bound"), [
    ("ttft_ms.p99 < 500", "ttft_ms", "p99", "<", 500.0),
    ("error_rate <= 0.01", "error_rate", "median", "<=", 0.01),
    ("output_tok_s.mean >= 900", "output_tok_s", "mean", ">=", 900.0),
    ("latency.p99.9 > 1e-3", "latency", "p99.9", ">", 1e-3),
    ("x.count == 1_000", "x", "count", "==", 1000.0),
    ("_x9.cv != -2.5", "_x9", "cv", "!=", -2.5),
    ("gflops.median>=50", "gflops", "median", ">=", 50.0),
    ("  gflops.p50\t<=\t.5  ", "gflops", "p50", "<=", 0.5),
    ("a.p90<1E3", "a", "p90", "<", 1000.0),
    ("a.p95 < 5.", "a", "p95", "<", 5.0),
    ("a.stdev < +3", "a", "stdev", "<", 3.0),
])
def test_parse_grammar(text: str, metric_name: str, stat: str, op: str, bound: float) -> None:
    expr = parse_slo(text, SRC)
    assert (expr.metric, expr.stat, expr.op, expr.bound) == (metric_name, stat, op, bound)
    assert expr.text == text.strip()
    assert expr.source == SRC


def test_p99_9_splits_at_first_dot_and_bare_metric_is_median() -> None:
    assert parse_slo("ttft_ms.p99.9 < 800", SRC).stat == "p99.9"
    assert parse_slo("ttft_ms < 800", SRC).stat == "median"
    assert parse_slo("ttft_ms < 800", SRC).canonical == "ttft_ms.median < 800"


def test_expr_is_frozen_and_prints_as_written() -> None:
    expr = parse_slo("  gflops >= 50 ", SRC)
    with pytest.raises(AttributeError):
        expr.bound = 1.0  # type: ignore[misc]
    assert str(expr) == "gflops >= 50"


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_each_operator(op: str) -> None:
    expr = parse_slo(f"m.mean {op} 10", SRC)
    assert expr.op == op
    for value in (9.0, 10.0, 11.0):
        assert expr.holds(value) == OPERATORS[op](value, 10.0)
    assert not expr.holds(math.nan)


@pytest.mark.parametrize(("text", "says"), [
    ("", "empty"),
    ("gflops", "no comparison operator"),
    ("gflops = 5", "'='"),
    ("gflops => 5", "'=>'"),
    ("1gflops < 5", "left side '1gflops'"),
    ("gfl-ops < 5", "left side"),
    ("gflops <", "no number after the operator"),
    ("gflops < 5ms", "not a plain number"),
    ("gflops < 5 + 1", "not a plain number"),
    ("gflops < inf", "not a plain number"),
    ("gflops < 1__000", "not a plain number"),
])
def test_bad_syntax_names_source_text_and_grammar(text: str, says: str) -> None:
    with pytest.raises(HwbenchInputError) as info:
        parse_slo(text, SRC)
    msg = str(info.value)
    assert msg.startswith(SRC)
    assert repr(text) in msg
    assert says in msg
    assert GRAMMAR in msg
    assert "<metric>[.<stat>] <op> <number>" in msg


def test_unknown_stat_suggests_close_name() -> None:
    with pytest.raises(HwbenchInputError) as info:
        parse_slo("ttft_ms.p999 < 5", "marker on benchmarks/test_llm.py::test_chat")
    msg = str(info.value)
    assert "marker on benchmarks/test_llm.py::test_chat" in msg
    assert "unknown statistic 'p999'" in msg and "did you mean 'p99.9'" in msg
    for name in STAT_NAMES:
        assert name in msg


def test_non_string_slo_is_input_error() -> None:
    with pytest.raises(HwbenchInputError, match="must be a string"):
        parse_slo(5, SRC)  # type: ignore[arg-type]


def test_parse_slos_keeps_order() -> None:
    exprs = parse_slos(["a < 1", "b.p99 > 2"], SRC)
    assert [e.metric for e in exprs] == ["a", "b"]


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
numbers = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)


@settings(max_examples=150, deadline=None)
@given(name=names, stat=st.sampled_from([None, *STAT_NAMES]), op=st.sampled_from(sorted(OPERATORS)),
       bound=numbers, pad=st.sampled_from(["", " ", "  ", "\t"]))
def test_parse_round_trip(name: str, stat: str | None, op: str, bound: float, pad: str) -> None:
    lhs = name if stat is None else f"{name}.{stat}"
    expr = parse_slo(f"{pad}{lhs}{pad}{op}{pad}{bound!r}{pad}", SRC)
    assert (expr.metric, expr.stat, expr.op, expr.bound) == (name, stat or "median", op, bound)
    again = parse_slo(expr.canonical, SRC)
    assert (again.metric, again.stat, again.op) == (name, stat or "median", op)


# --------------------------------------------------------------------------------------------- evaluate

def test_violation_message_names_test_metric_stat_bound_observed_unit_and_ci() -> None:
    metrics = {"gflops": metric("gflops", "GFLOP/s", fixed_summary(31.2, (30.8, 31.9)), better="higher")}
    res = evaluate_slo(parse_slo("gflops >= 50", SRC), metrics, "test_matmul[256]")
    assert not res.passed and not res.error
    assert res.message.startswith(
        "test_matmul[256]: SLO violated: gflops.median >= 50 (observed 31.2 GFLOP/s, 95% CI 30.8–31.9)")
    assert SRC in res.message
    assert res.observed == 31.2 and res.ci == (30.8, 31.9) and res.unit == "GFLOP/s"


def test_met_slo_passes_and_says_so() -> None:
    metrics = {"ttft_ms": metric("ttft_ms", "ms", fixed_summary(120.0, (110.0, 130.0)))}
    res = evaluate_slo(parse_slo("ttft_ms.p99 < 500", SRC), metrics, "t")
    assert res.passed
    assert "SLO met: ttft_ms.p99 < 500 (observed 120 ms, 95% CI 110–130)" in res.message


def test_unknown_metric_is_a_failure_never_a_pass() -> None:
    metrics = {"b": metric("b", "ms", fixed_summary(1, (1, 1))),
               "a": metric("a", "ms", fixed_summary(1, (1, 1)))}
    res = evaluate_slo(parse_slo("x.p99 < 5", SRC), metrics, "T")
    assert res.passed is False and res.error is True and res.observed is None
    assert res.message.startswith(
        "SLO 'x.p99 < 5' on test T names metric 'x', which this test did not record (recorded: a, b)")
    assert "recorded: none" in evaluate_slo(parse_slo("x < 5", SRC), {}, "T").message


def test_stat_without_ci_omits_it() -> None:
    metrics = {"lat": metric("lat", "ms", fixed_summary(10.0, (9.0, 11.0)))}
    res = evaluate_slo(parse_slo("lat.max < 12", SRC), metrics, "t")
    assert not res.passed  # max is 15
    assert res.ci is None
    assert "(observed 15 ms)" in res.message


def test_undefined_stat_is_a_failure() -> None:
    one = summarize([3.0])  # stdev of one sample is nan
    res = evaluate_slo(parse_slo("x.stdev < 1", SRC), {"x": metric("x", "ms", one)}, "t")
    assert not res.passed and res.error
    assert "undefined" in res.message


def test_real_summary_ci_and_unitless_metric() -> None:
    summ = summarize([0.0, 0.0, 0.01, 0.02, 0.0] * 20)
    res = evaluate_slo(parse_slo("error_rate.mean <= 0.01", SRC), {"error_rate": metric("error_rate", "", summ)},
                       "t")
    assert res.passed
    lo, hi = res.ci
    assert lo <= res.observed <= hi
    assert "95% CI" in res.message and "observed 0.006," in res.message


@pytest.mark.parametrize(("op", "passed"), [("==", True), ("!=", False)])
def test_equality_ops(op: str, passed: bool) -> None:
    metrics = {"n": metric("n", "", fixed_summary(5.0, (5.0, 5.0), count=7))}
    assert evaluate_slo(parse_slo(f"n.count {op} 7", SRC), metrics, "t").passed is passed


def test_evaluate_slos_in_order_and_to_dict_is_json() -> None:
    metrics = {"lat": metric("lat", "ms", fixed_summary(10.0, (9.0, 11.0)))}
    exprs = parse_slos(["lat < 20", "lat.p99 < 5", "nope > 1"], SRC)
    results = evaluate_slos(exprs, metrics, "t")
    assert [r.passed for r in results] == [True, False, False]
    dumped = json.loads(json.dumps([r.to_dict() for r in results], allow_nan=False))
    assert dumped[0]["stat"] == "median" and dumped[0]["ci"] == [9.0, 11.0]
    assert dumped[2]["observed"] is None and dumped[2]["error"] is True
    assert dumped[1]["source"] == SRC and dumped[1]["expression"] == "lat.p99 < 5"


@settings(max_examples=100, deadline=None)
@given(value=numbers, bound=numbers, op=st.sampled_from(sorted(OPERATORS)))
def test_evaluation_agrees_with_python_operator(value: float, bound: float, op: str) -> None:
    summ = Summary(count=1, mean=value, stdev=math.nan, cv=math.nan, min=value, max=value,
                   percentiles={n: value for n, _ in PERCENTILES})
    res = evaluate_slo(parse_slo(f"m.mean {op} {bound!r}", SRC), {"m": metric("m", "s", summ)}, "t")
    assert res.passed == {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
                          "==": operator.eq, "!=": operator.ne}[op](value, bound)
