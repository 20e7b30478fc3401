"""The pass/fail rule of one test, in one function (``decide``).

- no metric recorded, any SLO violated (or naming a metric the test did not record)  -> FAIL
- the baseline file is broken                                                       -> FAIL
- no baseline while ``--hwbench-require-baseline``                                  -> FAIL
- a metric regressed (or disappeared) against the baseline                          -> FAIL, except that a
  regression measured under other run conditions than the baseline's (worker count, BLAS threads, CPU
  governor, machine load at start) is a WARN that names the differing conditions: it is not evidence
  about the system under test
- a metric INCONCLUSIVE after the sequential rounds: FAIL under policy ``fail``, else WARN
- a stale baseline (much better now), or an invalid measurement (client-bound load generator) -> WARN;
  an invalid measurement is never a PASS
- otherwise PASS; the baseline status (NO_BASELINE, NEW, SAVED, ...) stays visible beside it.

A failing verdict's text is what a person acts on: per metric both medians with units, the change and its
CI, the tolerance; then the baseline file, testbed, how many sessions it holds and when / at which commit
they were saved; then the run-condition differences and the environment diff.
"""

from __future__ import annotations

from pytest_hwbench.measure.samplers.metrics import is_resource_metric
from pytest_hwbench.verdict.compare import FAIL, INCONCLUSIVE, STALE
from pytest_hwbench.verdict.envdiff import format_env_diff
from pytest_hwbench.verdict.result import BaselineComparison, TestResult

MISSING_METRIC = "MISSING_METRIC"


def decide(result: TestResult, *, require_baseline: bool = False, baseline_dir: str = "") -> TestResult:
    """Fill ``result.verdict``, ``failures`` and ``warnings`` from its SLOs, baseline comparison and
    validity. Pure: reads only ``result``; returns it for chaining."""
    result.verdict, result.failures, result.warnings = "PASS", [], []
    name = result.name
    if not any(not is_resource_metric(n) for n in result.metrics):  # resource figures alone are not a result
        result.fail(f"{name}: the test requested the hwbench fixture but recorded no metric "
                    "(call hwbench.record(...) or use hwbench.timer(...))")
    for slo in result.slo:
        if not slo.passed:
            result.fail(slo.message)
    base = result.baseline
    if base is not None:
        result.baseline_status = base.status
        if base.status == "ERROR":
            result.fail(base.message)
        elif base.status == "NO_BASELINE":
            if require_baseline:
                result.fail(f"{base.message} and --hwbench-require-baseline is set")
        elif base.status not in ("SAVED",):
            _judge_baseline(result, base)
    for reason in result.invalid:
        result.warn(f"{name}: invalid measurement, not a PASS and not saved as a baseline unless forced "
                    f"(--hwbench-force-baseline): {reason}")
    return result


def _judge_baseline(result: TestResult, base: BaselineComparison) -> None:
    name = result.name
    regressed = base.by_status(FAIL, MISSING_METRIC)
    inconclusive = base.by_status(INCONCLUSIVE)
    hard_incon = [m for m in inconclusive if m.inconclusive_policy == "fail"]
    if regressed and base.conditions:
        conds = "; ".join(base.conditions)
        for m in regressed:
            result.warn(f"{name}: slower than baseline, but run conditions differ ({conds}), so this is "
                        f"not a regression verdict; rerun under the baseline's conditions or re-save: "
                        f"{m.message}")
    elif regressed:
        for m in regressed:
            result.fail(f"{name}: baseline regression: {m.message}")
    for m in hard_incon:
        result.fail(f"{name}: baseline inconclusive (policy fail) after {result.trials} trials: {m.message}")
    for m in inconclusive:
        if m not in hard_incon:
            result.warn(f"{name}: baseline inconclusive after {result.trials} trials: {m.message}")
    for m in base.by_status(STALE):
        result.warn(f"{name}: baseline stale (big improvement, re-save it): {m.message}")
    if result.verdict == "FAIL" and (regressed or hard_incon):
        result.failures.append(baseline_context(base))
    elif base.conditions and regressed:
        result.warnings.append(baseline_context(base))


def baseline_context(base: BaselineComparison, env_limit: int = 20) -> str:
    """The lines after a baseline verdict: which baseline, its history, run conditions, environment."""
    lines = [f"baseline: {base.file} (testbed {base.testbed}; {base.describe_sessions()})"]
    if base.conditions:
        lines.append("run conditions differ from the baseline's: " + "; ".join(base.conditions))
    if base.env_diff:
        lines.append(format_env_diff(base.env_diff, limit=env_limit))
    else:
        lines.append("environment diff vs baseline: none (same kernel, drivers, packages, services, run "
                     "conditions)")
    return "\n".join(lines)


__all__ = ["baseline_context", "decide"]
