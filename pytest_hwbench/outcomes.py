"""Every outcome is reported: tests that error outside their measurement, and services that die.

Why: a test whose service failed to start errors in set-up, before the trial loop produced a result, and so
used to be missing from ``results.json``, the verdict table and MLflow (``hwbench: 1 SKIP`` while pytest said
``4 errors``). Here such a test gets an ERROR result with the reason, built where the test ran and carried
to the controller like any other result. A service that dies *during* a test is named (with its exit signal
where this process owns it) in that test's verdict, instead of surfacing as ``ops_s 0`` and an SLO miss.
A fixture whose clean-up fails at teardown (often because its service died) gets one paragraph naming the
test, the fixture, the cause and the fix, not a Python traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
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
    return str(text).strip().removeprefix("Failed: ")  # pytest.fail's own prefix says nothing


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
        text = hub.death_of(name)
        if text:
            return str(text)
    return None


# ------------------------------------------------------------------------------------------ service deaths
#: User property of a report on which an xdist worker noticed a service death. The controller, which owns
#: the service's process, replaces the worker's wording (it saw only a closed port) with the exit status.
DEATH_KEY = "_hwbench_service_death"
#: Fixtures through which a test reaches the recipe's services.
SERVICE_FIXTURES = frozenset({FIXTURE, "hwbench_endpoint", "hwbench_services"})


def death_text(name: str, reason: str, when: str, details: str = "") -> str:
    """The one wording of a service death, serial or under xdist.

    ``when`` is ``"during"`` (noticed right after this test's measurement: its numbers are void),
    ``"before"`` (noticed at set-up: it died between tests) or ``"earlier"`` (another test already said it
    in full, with the log: said once, briefly). ``details`` are the hint and log lines of a full report.
    """
    if when == "earlier":
        return (f"service {name!r} died earlier in this run ({reason}); the first test that failed on it "
                "shows its log")
    if when == "during":
        return f"service {name!r} died during the test ({reason}): its measurements are not valid{details}"
    return f"service {name!r} died before the test ({reason}){details}"


def take_death_notes(report: pytest.TestReport) -> list[dict[str, Any]]:
    """Remove and return the death notes a worker attached to ``report`` (controller side)."""
    notes = [json.loads(str(v)) for k, v in report.user_properties if k == DEATH_KEY]
    if notes:
        report.user_properties = [(k, v) for k, v in report.user_properties if k != DEATH_KEY]
    return notes


def reword(report: pytest.TestReport, payload: dict[str, Any] | None, old: str, new: str) -> None:
    """Replace a worker's wording of a death with the controller's, in the failure text and the payload."""
    if old == new:
        return
    if report.longrepr is not None:
        text = str(report.longrepr)
        if old in text:
            report.longrepr = text.replace(old, new)
    if payload is not None:
        payload["failures"] = [f.replace(old, new) for f in payload.get("failures", [])]


def mark_error_verdict(item: pytest.Item, report: pytest.TestReport) -> None:
    """A measured test whose service died is an ERROR in JUnit too (JUnit reads the teardown report's copy
    of the item's properties, so both lists change)."""
    for props in (item.user_properties, report.user_properties):
        props[:] = [(k, "ERROR" if k == "hwbench.verdict" else v) for k, v in props]


# ------------------------------------------------------------------------------------------------ teardown
def touches_services(item: pytest.Item) -> bool:
    return bool(SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())))


def _fixture_frame(excinfo: pytest.ExceptionInfo[BaseException]) -> tuple[str, str] | None:
    """(function name, 'file:line') of the outermost frame outside pytest and pluggy: the fixture whose
    teardown raised."""
    for entry in excinfo.traceback:
        path = str(entry.path)
        if "/_pytest/" in path or "/pluggy/" in path:
            continue
        try:
            where = Path(path).relative_to(Path.cwd())
        except ValueError:
            where = Path(path)
        return entry.name, f"{where}:{entry.lineno + 1}"
    return None


def teardown_text(item: pytest.Item, excinfo: pytest.ExceptionInfo[BaseException],
                  deaths: dict[str, str]) -> str | None:
    """One paragraph for a fixture teardown that raised, or None when the error is already a clean message
    (``pytest.fail(..., pytrace=False)``). ``deaths`` maps this test's dead services to why they died."""
    err = excinfo.value
    if isinstance(err, pytest.fail.Exception) and not err.pytrace:
        return None
    frame = _fixture_frame(excinfo)
    where = f"fixture {frame[0]!r} ({frame[1]})" if frame else "a fixture"
    from pytest_hwbench.errors import HwbenchError

    cause = str(err).strip() if isinstance(err, HwbenchError) else excinfo.exconly().strip()
    cause = " ".join(cause.split())
    if len(cause) > 400:
        cause = cause[:400] + " ..."
    text = f"{item.nodeid}: teardown failed in {where}: {cause.rstrip('.')}."
    if deaths:
        name, reason = next(iter(deaths.items()))
        return (f"{text} Cause: service {name!r} died during the run ({reason}), so the clean-up could not "
                "reach it. Fix: find why it died (the first test that failed on it shows its log); a stopped "
                "service keeps nothing that needs cleaning unless its data lives outside the run.")
    if isinstance(err, HwbenchError):  # its message already says what to do
        return text
    return (f"{text} Fix: the clean-up did not finish, so data may be left on the service: run the "
            "clean-up by hand, check that the service accepts the commands it sends (permissions, ACLs, "
            "renamed or disabled commands), then fix the fixture.")


__all__ = ["DEATH_KEY", "death_text", "error_payload", "mark_error_verdict", "reason_of", "reword",
           "service_death", "take_death_notes", "teardown_text", "touches_services", "uses_hwbench"]
