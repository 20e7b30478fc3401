"""Every outcome is reported: tests that error outside their measurement, and services that die.

Why: a test whose service failed to start errors in set-up, before the trial loop produced a result, and so
used to be missing from ``results.json``, the verdict table and MLflow (``hwbench: 1 SKIP`` while pytest said
``4 errors``). Here such a test gets an ERROR result with the reason, built where the test ran and carried
to the controller like any other result. A service that dies *during* a test is named (with its exit signal
where this process owns it) in that test's verdict, instead of surfacing as ``ops_s 0`` and an SLO miss.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_hwbench.verdict.result import TestResult

FIXTURE = "hwbench"


def uses_hwbench(item: pytest.Item) -> bool:
    return FIXTURE in getattr(item, "fixturenames", ())


def reason_of(report: pytest.TestReport) -> str:
    """The one-line-or-few reason of a failed report: the ``pytest.fail`` text or the exception line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = getattr(crash, "message", None)
    if not text:
        lines = [ln for ln in str(report.longrepr or "").splitlines() if ln.strip()]
        errors = [ln[1:].strip() for ln in lines if ln.startswith("E ")]
        text = "\n".join(errors) if errors else (lines[-1] if lines else "unknown error")
    return str(text).strip()


def error_payload(item: pytest.Item, report: pytest.TestReport, params: dict[str, Any]) -> dict[str, Any]:
    """An ERROR result for a test that failed outside the measurement (set-up, teardown, or before its first
    recorded value), as the plain-JSON payload the controller takes from the report."""
    phase = {"setup": "set-up", "teardown": "teardown"}.get(report.when, "the test body")
    result = TestResult(test_id=item.nodeid, name=item.name, verdict="ERROR", baseline_status="",
                        params=params, failures=[f"error in {phase}: {reason_of(report)}"])
    payload = result.to_dict()
    payload["error_phase"] = report.when
    return payload


def service_death(hub: Any, names: list[str]) -> str | None:
    """Why one of the named services is no longer usable (None while all are): checked right after a
    test's measurement, so a death is charged to the test it happened in."""
    for name in names:
        reason = hub.death_of(name)
        if reason:
            return f"service {name!r} {reason} during this test: its measurements are not valid"
    return None


__all__ = ["error_payload", "reason_of", "service_death", "uses_hwbench"]
