"""Combine SLO results and the baseline verdict into one per-test verdict.

Kept apart from the plugin so the rule ("which outcomes fail a test") reads in one place (DESIGN.md):
- any SLO violated (or naming a metric the test did not record)      -> FAIL
- baseline FAIL, or INCONCLUSIVE under policy ``fail``                -> FAIL
- no baseline while ``--hwbench-require-baseline``                    -> FAIL
- INCONCLUSIVE under ``warn`` (or ``rerun`` with reruns used up)       -> WARN (test passes, status visible)
- otherwise PASS; the baseline status (NO_BASELINE, STALE, SAVED) stays visible beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TestVerdict:
    """Outcome of one test's measurement: verdict string plus the lines that explain it."""

    verdict: str = "PASS"  # PASS | WARN | FAIL
    baseline_status: str = "NO_BASELINE"
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def fail(self, text: str) -> None:
        self.verdict = "FAIL"
        self.failures.append(text)

    def warn(self, text: str) -> None:
        if self.verdict == "PASS":
            self.verdict = "WARN"
        self.warnings.append(text)

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "baseline_status": self.baseline_status,
                "failures": list(self.failures), "warnings": list(self.warnings)}
