"""Read one run directory back into typed records: the single reader behind report, compare, rerun and export.

Every consumer of a finished run (``hwbench report``, ``compare``, ``rerun``, ``export``, the report written at
session end) goes through :func:`load_run`, so that a change in how the run directory is laid out — raw
samples stored differently, a typed per-test result replacing the dicts in ``results.json`` — is adapted in
this one module and nowhere else.

A run directory (README "Reports") holds ``run.json`` (manifest), ``results.json`` (written at session end)
or only ``results.jsonl`` (a killed run), and the raw samples (``samples.bin`` + ``samples.jsonl``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.report.files import file_slug, read_samples
from pytest_hwbench.verdict.result import BaselineComparison, SloOutcome, TestResult

RUN_FIX = "pass a run directory written by pytest-hwbench (reports/<run-id>/) or a run id under --report-dir"


@dataclass
class TestRecord:
    """One test of a run: the gate's typed result (``verdict.result.TestResult``) plus what the controller
    added when it received it (pytest outcome, duration, skip reason)."""

    __test__ = False  # not a pytest test class

    result: TestResult
    outcome: str = ""
    duration_s: float | None = None
    skip_reason: str = ""

    # The result's fields, read through, so report code says ``t.metrics`` rather than ``t.result.metrics``.
    @property
    def test_id(self) -> str:
        return self.result.test_id

    @property
    def name(self) -> str:
        return self.result.name

    @property
    def params(self) -> dict[str, Any]:
        return self.result.params

    @property
    def verdict(self) -> str:
        return self.result.verdict

    @property
    def trials(self) -> int:
        return self.result.trials

    @property
    def metrics(self) -> dict[str, MetricResult]:
        return self.result.metrics

    @property
    def slo(self) -> list[SloOutcome]:
        return self.result.slo

    @property
    def failures(self) -> list[str]:
        return self.result.failures

    @property
    def warnings(self) -> list[str]:
        return self.result.warnings

    @property
    def extra(self) -> dict[str, Any]:
        return self.result.extra

    @property
    def invalid(self) -> list[str]:
        return self.result.invalid

    @property
    def baseline(self) -> BaselineComparison | None:
        """The baseline comparison; a bare status (NO_BASELINE, SAVED) when nothing was compared."""
        if self.result.baseline is None and self.result.baseline_status:
            return BaselineComparison(status=self.result.baseline_status)
        return self.result.baseline

    @property
    def measured(self) -> bool:
        return bool(self.result.metrics)

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
            result = TestResult.from_dict(d)
        except (KeyError, ValueError, TypeError, AttributeError) as err:
            raise HwbenchInputError(f"the entry of {d.get('test_id')!r} is malformed ({err})", file=source,
                                    field="tests[]", fix=RUN_FIX) from None
        return cls(result=result, outcome=str(d.get("outcome", "")), duration_s=_num(d.get("duration_s")),
                   skip_reason=str(d.get("skip_reason") or "").removeprefix("Skipped: "))


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
    _all_samples: dict[str, dict[str, np.ndarray]] | None = None

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
    def baseline_sessions(self, test_id: str) -> dict[str, list[list[float]]]:
        """Per metric, the per-trial values of each stored baseline session the run compared a test with
        (read from the baseline directory recorded in ``run.json``, so re-saved since, it shows the newer
        history); empty when the test had none or the file is gone or unreadable."""
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
        return {name: entry.trial_values(name) for name in entry.metrics}

    # -- raw samples -----------------------------------------------------------------------------------
    def samples(self, test_id: str) -> dict[str, np.ndarray]:
        """Raw samples of one test by metric name; empty when none were stored (or the files are unreadable:
        a report then falls back to the summaries, it does not fail). Read with ``files.read_samples`` (one
        ``samples.bin`` per run), or from the one-``.npz``-per-test layout of earlier runs."""
        if self._all_samples is None:
            try:
                self._all_samples = read_samples(self.dir)
            except (OSError, ValueError, KeyError):
                self._all_samples = {}
        if test_id in self._all_samples:
            return self._all_samples[test_id]
        path = self.dir / "samples" / f"{file_slug(test_id)}.npz"
        if not path.is_file():
            return {}
        import numpy as np

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
