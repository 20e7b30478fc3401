"""Read one run directory back into typed records: the single reader behind report, compare, rerun and export.

Every consumer of a finished run (``hwbench report``, ``compare``, ``rerun``, ``export``, the report written at
session end) goes through :func:`load_run`, so that a change in how the run directory is laid out — raw
samples stored differently, a typed per-test result replacing the dicts in ``results.json`` — is adapted in
this one module and nowhere else.

A run directory (README "Reports") holds ``run.json`` (manifest), ``results.json`` (written at session end)
or only ``results.jsonl`` (a killed run), and ``samples/`` with the raw samples.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.report.files import file_slug

RUN_FIX = "pass a run directory written by pytest-hwbench (reports/<run-id>/) or a run id under --report-dir"


@dataclass(frozen=True)
class SloRecord:
    """One SLO expression evaluated on one test."""

    expression: str
    metric: str
    stat: str
    op: str
    bound: float | None
    observed: float | None
    ci: tuple[float, float] | None
    passed: bool
    unit: str = ""
    message: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SloRecord:
        ci = d.get("ci")
        return cls(expression=str(d.get("expression", "")), metric=str(d.get("metric", "")),
                   stat=str(d.get("stat", "")), op=str(d.get("op", "")), bound=_num(d.get("bound")),
                   observed=_num(d.get("observed")),
                   ci=(_num(ci[0]), _num(ci[1])) if isinstance(ci, list) and len(ci) == 2 else None,  # type: ignore[arg-type]
                   passed=bool(d.get("passed")), unit=str(d.get("unit") or ""), message=str(d.get("message", "")))


@dataclass(frozen=True)
class BaselineMetricRecord:
    """One metric's comparison with the baseline, as the gate judged it during the run."""

    metric: str
    status: str
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    tolerance: float | None
    better: str
    unit: str
    current_median: float | None
    baseline_median: float | None
    message: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineMetricRecord:
        return cls(metric=str(d.get("metric", "")), status=str(d.get("status", "")), ratio=_num(d.get("ratio")),
                   ci_low=_num(d.get("ci_low")), ci_high=_num(d.get("ci_high")), tolerance=_num(d.get("tolerance")),
                   better=str(d.get("better", "lower")), unit=str(d.get("unit") or ""),
                   current_median=_num(d.get("current_median")), baseline_median=_num(d.get("baseline_median")),
                   message=str(d.get("message", "")))


@dataclass(frozen=True)
class BaselineRecord:
    """A test's baseline outcome: status, per-metric comparisons and the environment diff."""

    status: str
    metrics: tuple[BaselineMetricRecord, ...] = ()
    env_diff_text: str = ""
    baseline_file: str = ""
    saved_at: str = ""
    message: str = ""

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, fallback_status: str = "") -> BaselineRecord | None:
        if not d:
            return BaselineRecord(status=fallback_status) if fallback_status else None
        return cls(status=str(d.get("status", fallback_status)),
                   metrics=tuple(BaselineMetricRecord.from_dict(m) for m in d.get("metrics", [])),
                   env_diff_text=str(d.get("env_diff_text", "")), baseline_file=str(d.get("baseline_file", "")),
                   saved_at=str(d.get("baseline_saved_at", "")), message=str(d.get("message", "")))


@dataclass
class TestRecord:
    """One test of a run: identity, verdict, metrics (as the gate's ``MetricResult``), SLOs, baseline."""

    __test__ = False  # not a pytest test class

    test_id: str
    name: str
    params: dict[str, Any]
    verdict: str
    outcome: str
    trials: int
    duration_s: float | None
    metrics: dict[str, MetricResult]
    slo: list[SloRecord]
    baseline: BaselineRecord | None
    failures: list[str]
    warnings: list[str]
    extra: dict[str, Any]
    skip_reason: str = ""
    service_facts: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return bool(self.metrics)

    @property
    def module(self) -> str:
        return self.test_id.split("::", 1)[0]

    @property
    def function(self) -> str:
        """The test function's id without parameters: ``path::test_x``."""
        return self.test_id.split("[", 1)[0]

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> TestRecord:
        try:
            metrics = {name: MetricResult.from_dict(m) for name, m in (d.get("metrics") or {}).items()}
        except (KeyError, ValueError, TypeError) as err:
            raise HwbenchInputError(f"metrics of {d.get('test_id')!r} are malformed ({err})", file=source,
                                    field="tests[].metrics", fix=RUN_FIX) from None
        return cls(test_id=str(d["test_id"]), name=str(d.get("name") or d["test_id"].split("::")[-1]),
                   params=dict(d.get("params") or {}), verdict=str(d.get("verdict", "?")),
                   outcome=str(d.get("outcome", "")), trials=int(d.get("trials") or 0),
                   duration_s=_num(d.get("duration_s")), metrics=metrics,
                   slo=[SloRecord.from_dict(s) for s in d.get("slo") or []],
                   baseline=BaselineRecord.from_dict(d.get("baseline"), str(d.get("baseline_status") or "")),
                   failures=[str(x) for x in d.get("failures") or []],
                   warnings=[str(x) for x in d.get("warnings") or []], extra=dict(d.get("extra") or {}),
                   skip_reason=str(d.get("skip_reason") or "").removeprefix("Skipped: "),
                   service_facts=dict(d.get("service_facts") or {}))


@dataclass(frozen=True)
class SweepRecord:
    """A sweep's analysis as ``report.sweeps.analyze_sweeps`` wrote it, with its member tests."""

    test: str
    load_param: str
    loads: tuple[float, ...]
    throughput_metric: str
    latency_metric: str | None
    knee_load: float | None
    latency_knee_load: float | None
    max_sustainable: float | None
    has_slo: bool
    first_failing_load: float | None
    members: tuple[str, ...]  # test ids, in load order

    @classmethod
    def from_dict(cls, d: dict[str, Any], tests: list[TestRecord]) -> SweepRecord:
        from pytest_hwbench.report.sweeps import _base_id

        lp = str(d["load_param"])
        loads = tuple(float(x) for x in d.get("loads", []))
        members: dict[float, str] = {}
        for t in tests:
            if (t.measured and isinstance(t.params.get(lp), (int, float))
                    and _base_id(t.test_id, t.params, lp) == d["test"]):
                members[float(t.params[lp])] = t.test_id
        sus = d.get("max_sustainable")
        return cls(test=str(d["test"]), load_param=lp, loads=loads, throughput_metric=str(d["throughput_metric"]),
                   latency_metric=d.get("latency_metric"),
                   knee_load=_num((d.get("throughput_knee") or {}).get("load")),
                   latency_knee_load=_num((d.get("latency_knee") or {}).get("load")),
                   max_sustainable=_num(sus.get("load")) if sus else None, has_slo=sus is not None,
                   first_failing_load=_num(sus.get("first_failing_load")) if sus else None,
                   members=tuple(members[x] for x in sorted(members)))


@dataclass
class RunData:
    """A run directory, read: the manifest, the tests in run order, the sweeps, and lazy raw samples."""

    dir: Path
    run_id: str
    manifest: dict[str, Any]
    tests: list[TestRecord]
    sweeps: list[SweepRecord]
    complete: bool
    testbed: str

    # -- manifest views --------------------------------------------------------------------------------
    @property
    def recipe(self) -> dict[str, Any]:
        return dict(self.manifest.get("recipe") or {})

    @property
    def fingerprint(self) -> dict[str, Any]:
        return dict(self.manifest.get("fingerprint") or {})

    @property
    def git(self) -> dict[str, Any]:
        return dict(self.manifest.get("git") or {})

    @property
    def rerun(self) -> dict[str, Any]:
        """The rerun bundle (``report.rerun``), empty for runs recorded before it existed."""
        return dict(self.manifest.get("rerun") or {})

    def test(self, test_id: str) -> TestRecord | None:
        return self._by_id.get(test_id)

    @cached_property
    def _by_id(self) -> dict[str, TestRecord]:
        return {t.test_id: t for t in self.tests}

    def measured(self) -> Iterator[TestRecord]:
        return (t for t in self.tests if t.measured)

    # -- baseline evidence -----------------------------------------------------------------------------
    def baseline_values(self, test_id: str) -> dict[str, list[float]]:
        """Per-trial values of the baseline the run compared a test with (read from the baseline directory
        recorded in ``run.json``); empty when the test had none or the file is gone or unreadable."""
        t = self.test(test_id)
        if t is None or t.baseline is None or t.baseline.status in ("", "NO_BASELINE", "SAVED", "ERROR"):
            return {}
        base_dir = (self.manifest.get("options") or {}).get("baseline_dir")
        if not base_dir or not self.testbed:
            return {}
        from pytest_hwbench.errors import HwbenchError
        from pytest_hwbench.verdict.baseline import BaselineStore

        try:
            entry = BaselineStore(base_dir, self.testbed).load(test_id)
        except (HwbenchError, OSError, ValueError):
            return {}
        if entry is None:
            return {}
        return {name: list(m.trial_values) for name, m in entry.metrics.items()}

    # -- raw samples -----------------------------------------------------------------------------------
    def samples(self, test_id: str) -> dict[str, np.ndarray]:
        """Raw samples of one test by metric name; empty when none were stored (or the file is unreadable:
        a report then falls back to the summaries, it does not fail)."""
        path = self.dir / "samples" / f"{file_slug(test_id)}.npz"
        if not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: np.asarray(npz[name], dtype=np.float64) for name in npz.files}
        except (OSError, ValueError):
            return {}


def resolve_run_dir(ref: str | Path, report_dir: str | Path = "reports") -> Path:
    """A run directory from a path or a run id (under ``report_dir``); ``latest`` is the newest run there and
    ``latest~N`` the N-th before it (run ids sort by start time)."""
    path = Path(ref)
    if (path / "run.json").is_file():
        return path
    root = Path(report_dir)
    m = re.fullmatch(r"latest(?:~(\d+))?", str(ref))
    if m:
        runs = sorted(p.parent for p in root.glob("*/run.json")) if root.is_dir() else []
        back = int(m.group(1) or 0)
        if back < len(runs):
            return runs[-1 - back]
    elif (root / str(ref) / "run.json").is_file():
        return root / str(ref)
    raise HwbenchInputError(f"no run directory at {str(ref)!r} (no run.json there or under {str(root)!r})",
                            file=str(ref), fix=RUN_FIX)


def load_run(ref: str | Path, report_dir: str | Path = "reports") -> RunData:
    """Read a run directory (path or run id). Bad or missing files raise ``HwbenchInputError`` naming them."""
    run_dir = resolve_run_dir(ref, report_dir)
    manifest = _read_json(run_dir / "run.json")
    if not isinstance(manifest, dict):
        raise HwbenchInputError("not a JSON object", file=str(run_dir / "run.json"), fix=RUN_FIX)
    results_path = run_dir / "results.json"
    sweeps_raw: list[dict[str, Any]] = []
    if results_path.is_file():
        doc = _read_json(results_path)
        if not isinstance(doc, dict) or not isinstance(doc.get("tests"), list):
            raise HwbenchInputError("no 'tests' list", file=str(results_path), field="tests", fix=RUN_FIX)
        raw_tests, complete = doc["tests"], bool(doc.get("complete", False))
        sweeps_raw = list(doc.get("sweeps") or [])
        source = str(results_path)
    else:  # a killed run: only the line-per-test file exists
        raw_tests, complete, source = _read_jsonl(run_dir / "results.jsonl"), False, str(run_dir / "results.jsonl")
    by_id: dict[str, dict[str, Any]] = {}
    for t in raw_tests:
        if not isinstance(t, dict) or "test_id" not in t:
            raise HwbenchInputError("a test entry without 'test_id'", file=source, field="tests[]", fix=RUN_FIX)
        by_id[t["test_id"]] = t  # a later line (rerun of an inconclusive test) replaces the earlier one
    tests = [TestRecord.from_dict(t, source) for t in by_id.values()]
    if not sweeps_raw and tests:
        from pytest_hwbench.report.sweeps import analyze_sweeps

        sweeps_raw = analyze_sweeps(list(by_id.values()))
    sweeps = [SweepRecord.from_dict(s, tests) for s in sweeps_raw]
    return RunData(dir=run_dir, run_id=str(manifest.get("run_id") or run_dir.name), manifest=manifest, tests=tests,
                   sweeps=sweeps, complete=complete and bool(manifest.get("complete", True)),
                   testbed=str(manifest.get("testbed") or ""))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HwbenchInputError("file missing", file=str(path), fix=RUN_FIX) from None
    except (OSError, ValueError) as err:
        raise HwbenchInputError(f"unreadable ({err})", file=str(path),
                                fix="the run was probably killed while writing; use another run") from None


def _read_jsonl(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                break  # the last line of a killed run may be torn: keep what came before it
    return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
