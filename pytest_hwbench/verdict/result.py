"""The typed per-test result: built once where the test ran, read by every report writer.

``TestResult.to_dict()`` is the entry of one test in ``results.json`` and the payload that travels from an
xdist worker to the controller in ``report.user_properties`` (plain JSON types); ``from_dict`` reads it
back, so writers (terminal, JUnit, MLflow, ``hwbench compare``) work on dataclasses, not on string keys.
The key names are stable: other tools read ``results.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.verdict.bottleneck import Attribution
from pytest_hwbench.verdict.compare import Comparison
from pytest_hwbench.verdict.envdiff import ABSENT, EnvChange, format_env_diff

#: Test verdicts, worst last. WARN passes the test but stays visible; ERROR is a crash in the test body.
VERDICTS = ("PASS", "WARN", "FAIL", "ERROR")


@dataclass
class SloOutcome:
    """One SLO checked on one test (mirror of ``verdict.slo.SloResult`` in plain data)."""

    expression: str
    metric: str
    stat: str
    passed: bool
    message: str
    observed: float | None = None
    ci: tuple[float, float] | None = None
    unit: str = ""
    op: str = ""
    bound: float | None = None
    source: str = ""
    error: bool = False

    @classmethod
    def from_slo(cls, res: Any) -> SloOutcome:
        return cls.from_dict(res.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SloOutcome:
        ci = d.get("ci")
        return cls(expression=d.get("expression", ""), metric=d.get("metric", ""), stat=d.get("stat", ""),
                   passed=bool(d.get("passed")), message=d.get("message", ""), observed=d.get("observed"),
                   ci=(ci[0], ci[1]) if ci else None, unit=d.get("unit", ""), op=d.get("op", ""),
                   bound=d.get("bound"), source=d.get("source", ""), error=bool(d.get("error", False)))

    def to_dict(self) -> dict[str, Any]:
        return {"expression": self.expression, "source": self.source, "metric": self.metric,
                "stat": self.stat, "op": self.op, "bound": _num(self.bound), "observed": _num(self.observed),
                "ci": None if self.ci is None else [_num(self.ci[0]), _num(self.ci[1])], "unit": self.unit,
                "passed": self.passed, "error": self.error, "message": self.message}


@dataclass
class StoredSession:
    """One stored baseline session, as the failure text names it."""

    saved_at: str
    commit: str | None = None
    run_id: str | None = None
    trials: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"saved_at": self.saved_at, "commit": self.commit, "run_id": self.run_id, "trials": self.trials}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StoredSession:
        return cls(saved_at=d.get("saved_at", ""), commit=d.get("commit"), run_id=d.get("run_id"),
                   trials=int(d.get("trials") or 0))


@dataclass
class BaselineComparison:
    """The baseline side of a test's verdict.

    ``status``: PASS | FAIL | INCONCLUSIVE | NEW (nothing compared) | SAVED | NO_BASELINE | ERROR.
    ``conditions`` lists run conditions that differ from the stored sessions' (worker count, BLAS threads,
    CPU governor, load at start): a slowdown measured under other conditions is not a regression verdict.
    """

    status: str
    metrics: list[Comparison] = field(default_factory=list)
    testbed: str = ""
    file: str = ""
    sessions: list[StoredSession] = field(default_factory=list)
    env_diff: list[EnvChange] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    message: str = ""

    def by_status(self, *statuses: str) -> list[Comparison]:
        return [m for m in self.metrics if m.status in statuses]

    @property
    def inconclusive_policy(self) -> str | None:
        order = {"warn": 0, "rerun": 1, "fail": 2}
        policies = [m.inconclusive_policy for m in self.by_status("INCONCLUSIVE")]
        return max(policies, key=lambda p: order.get(p, 2)) if policies else None

    @property
    def env_diff_text(self) -> str:
        return format_env_diff(self.env_diff)

    def describe_sessions(self) -> str:
        """``3 sessions saved 2026-01-02..2026-01-05 at commits ab12cd3, ef45ab6``."""
        if not self.sessions:
            return "no stored sessions"
        dates = sorted(s.saved_at for s in self.sessions)
        span = dates[0] if len(dates) == 1 else f"{dates[0]} .. {dates[-1]}"
        commits = []
        for s in self.sessions:
            c = (s.commit or "?")[:12]
            if c not in commits:
                commits.append(c)
        noun = "session" if len(self.sessions) == 1 else "sessions"
        return f"{len(self.sessions)} {noun} saved {span} at commit(s) {', '.join(commits)}"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "testbed": self.testbed, "baseline_file": self.file,
                "baseline_saved_at": max((s.saved_at for s in self.sessions), default=""),
                "sessions": [s.to_dict() for s in self.sessions],
                "inconclusive_policy": self.inconclusive_policy,
                "metrics": [m.to_dict() for m in self.metrics],
                "env_diff": [c.to_dict() for c in self.env_diff], "env_diff_text": self.env_diff_text,
                "conditions_differ": list(self.conditions), "message": self.message}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineComparison:
        return cls(status=d.get("status", ""), metrics=[Comparison.from_dict(m) for m in d.get("metrics", [])],
                   testbed=d.get("testbed", ""), file=d.get("baseline_file", ""),
                   sessions=[StoredSession.from_dict(s) for s in d.get("sessions", [])],
                   env_diff=[_change_from_dict(c) for c in d.get("env_diff", [])],
                   conditions=list(d.get("conditions_differ", [])), message=d.get("message", ""))


def _change_from_dict(d: dict[str, Any]) -> EnvChange:
    kind = d.get("kind", "changed")
    return EnvChange(d["key"], ABSENT if kind == "added" else d.get("baseline"),
                     ABSENT if kind == "removed" else d.get("current"))


@dataclass
class TestResult:
    """Everything decided about one test. ``trials`` is the number of measured trials the verdict used
    (sequential rounds included); ``invalid`` lists why the measurement is not valid (client-bound load
    generator, ...): such a result is never a PASS and is not saved as a baseline unless forced."""

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    name: str
    verdict: str = "PASS"
    baseline_status: str = "NO_BASELINE"
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, MetricResult] = field(default_factory=dict)
    slo: list[SloOutcome] = field(default_factory=list)
    baseline: BaselineComparison | None = None
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    trials: int = 0
    invalid: list[str] = field(default_factory=list)
    conditions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    service_facts: dict[str, Any] | None = None
    worker: str = "main"
    #: Resource sampling summary (``measure.samplers.metrics.resources_payload``) and the bottleneck
    #: attribution it supports (``verdict.bottleneck``); None when sampling is off.
    resources: dict[str, Any] | None = None
    bottleneck: Attribution | None = None

    def fail(self, text: str) -> None:
        self.verdict = "FAIL"
        self.failures.append(text)

    def warn(self, text: str) -> None:
        if self.verdict == "PASS":
            self.verdict = "WARN"
        self.warnings.append(text)

    @property
    def failure_text(self) -> str:
        return "\n".join(self.failures)

    def to_dict(self) -> dict[str, Any]:
        return {"test_id": self.test_id, "name": self.name, "params": self.params, "trials": self.trials,
                "metrics": {n: m.to_dict() for n, m in self.metrics.items()},
                "slo": [s.to_dict() for s in self.slo],
                "baseline": None if self.baseline is None else self.baseline.to_dict(),
                "verdict": self.verdict, "baseline_status": self.baseline_status,
                "failures": list(self.failures), "warnings": list(self.warnings),
                "invalid": bool(self.invalid), "invalid_reasons": list(self.invalid),
                "conditions": self.conditions, "extra": self.extra, "service_facts": self.service_facts,
                "worker": self.worker, "resources": self.resources,
                "bottleneck": None if self.bottleneck is None else self.bottleneck.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TestResult:
        base = d.get("baseline")
        return cls(test_id=d["test_id"], name=d.get("name", d["test_id"]), verdict=d.get("verdict", ""),
                   baseline_status=d.get("baseline_status") or "", params=d.get("params") or {},
                   metrics={n: MetricResult.from_dict(m) for n, m in (d.get("metrics") or {}).items()},
                   slo=[SloOutcome.from_dict(s) for s in d.get("slo") or []],
                   baseline=BaselineComparison.from_dict(base) if isinstance(base, dict) and "status" in base
                   else None,
                   failures=list(d.get("failures") or []), warnings=list(d.get("warnings") or []),
                   trials=int(d.get("trials") or 0), invalid=list(d.get("invalid_reasons") or []),
                   conditions=d.get("conditions") or {}, extra=d.get("extra") or {},
                   service_facts=d.get("service_facts"), worker=d.get("worker", "main"),
                   resources=d.get("resources"),
                   bottleneck=Attribution.from_dict(d["bottleneck"]) if d.get("bottleneck") else None)


def _num(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


__all__ = ["VERDICTS", "BaselineComparison", "SloOutcome", "StoredSession", "TestResult"]
