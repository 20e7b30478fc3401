"""Baselines: the committed per-testbed record of earlier results, and the statistical comparison to it.

Layout: ``<root>/<testbed>/<module-slug>.json``, one file per test module, so that re-saving one module's
baselines after an upgrade is a small, reviewable git diff. A file::

    {"schema": 1, "testbed": "<name>",
     "tests": {"<node id>": {"saved_at": "<iso8601>", "environment": {...fingerprint...},
                             "metrics": {"<name>": {"unit": ..., "better": "lower"|"higher",
                                                    "trial_values": [...], "summary": {...}}}}}}

Comparison (DESIGN.md, Verdicts): per metric, the ratio median(current trials) / median(baseline trials)
with a bootstrap CI, against a tolerance in the metric's bad direction. The trial values (one median per
repetition) are the evidence, not the pooled samples: samples within one trial are correlated, so only
repetitions say how much a result moves between runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import filelock
import numpy as np

from pytest_hwbench.atomic import write_json_atomic
from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult, jsonable
from pytest_hwbench.measure.stats import Summary, bootstrap_ratio_of_medians
from pytest_hwbench.recipe.model import BaselinePolicy
from pytest_hwbench.verdict.envdiff import EnvChange, environment_diff, format_env_diff

SCHEMA_VERSION = 1

#: Metric verdict statuses. STALE is a pass that says "re-save"; NEW and MISSING_METRIC only occur in
#: ``compare_test`` (metric not in the baseline / in the baseline but not recorded now).
PASS, FAIL, INCONCLUSIVE, STALE = "PASS", "FAIL", "INCONCLUSIVE", "STALE"
NEW, MISSING_METRIC = "NEW", "MISSING_METRIC"

#: How a metric status counts towards its test's status.
_COUNTS_AS = {PASS: PASS, STALE: PASS, NEW: NEW, FAIL: FAIL, MISSING_METRIC: FAIL,
              INCONCLUSIVE: INCONCLUSIVE}
_SEVERITY = {NEW: 0, PASS: 1, INCONCLUSIVE: 2, FAIL: 3}
_POLICY_SEVERITY = {"warn": 0, "rerun": 1, "fail": 2}

RESAVE_FIX = "delete it and re-save with --hwbench-save-baseline, or restore it from git"
LOCK_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------------- layout

def module_slug(test_id: str) -> str:
    """File stem for a node id's module: ``benchmarks/test_host.py::test_x[1]`` -> ``benchmarks__test_host``.

    Path separators become ``__`` so every module of a suite gets its own flat file in the testbed
    directory; characters that are awkward in file names become ``_``.
    """
    path = test_id.split("::", 1)[0].replace("\\", "/")
    if path.endswith(".py"):
        path = path[:-3]
    parts = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        parts.append("up" if part == ".." else re.sub(r"[^A-Za-z0-9_.-]", "_", part))
    slug = "__".join(parts).lstrip(".")
    return slug or "_"


def _check_testbed(testbed: str) -> str:
    if (not isinstance(testbed, str) or not testbed.strip() or testbed in (".", "..")
            or "/" in testbed or "\\" in testbed or testbed.startswith(".")):
        raise HwbenchInputError(
            f"testbed name {testbed!r} cannot be used as a directory name", field="testbed",
            fix="use --hwbench-testbed with letters, digits, '.', '-' and '_' only")
    return testbed


def list_testbeds(root: str | Path) -> list[str]:
    """Testbeds that have at least one baseline file under ``root``, sorted (for "no baseline for this
    testbed; these exist: ..." messages)."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.json")))


# ---------------------------------------------------------------------------------------------- store

@dataclass
class BaselineEntry:
    """The stored baseline of one test: its metrics (as MetricResult) and the fingerprint it ran on."""

    test_id: str
    testbed: str
    saved_at: str
    environment: dict[str, Any]
    metrics: dict[str, MetricResult]
    file: Path

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored in its file (without the test id key)."""
        return {"saved_at": self.saved_at, "environment": self.environment,
                "metrics": {name: _metric_to_dict(m) for name, m in sorted(self.metrics.items())}}


def _metric_to_dict(result: MetricResult) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": result.unit, "better": result.better,
                           "trial_values": [jsonable(v) for v in result.trial_values],
                           "summary": result.summary.to_dict()}
    if result.estimated:  # only when true, so files of exact metrics carry no noise key
        out["estimated"] = True
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class BaselineStore:
    """Baselines of one testbed under ``root``; reads each module file once per session.

    Under pytest-xdist only the controller saves (DESIGN.md, Conventions); the file lock additionally
    keeps two separate pytest processes (two CI jobs on one checkout) from losing each other's updates.
    """

    def __init__(self, root: str | Path, testbed: str) -> None:
        self.root = Path(root)
        self.testbed = _check_testbed(testbed)
        self._cache: dict[Path, dict[str, BaselineEntry] | HwbenchInputError] = {}

    @property
    def directory(self) -> Path:
        return self.root / self.testbed

    def path_for(self, test_id: str) -> Path:
        """The file that holds (or would hold) ``test_id``'s baseline."""
        return self.directory / f"{module_slug(test_id)}.json"

    def load(self, test_id: str) -> BaselineEntry | None:
        """The stored baseline of ``test_id``, or None when there is none.

        A broken file raises HwbenchInputError, every time it is asked for (the error is cached with the
        file), so each affected test reports it instead of silently running without a baseline.
        """
        path = self.path_for(test_id)
        cached = self._cache.get(path)
        if cached is None:
            try:
                cached = self._read(path)
            except HwbenchInputError as err:
                cached = err
            self._cache[path] = cached
        if isinstance(cached, HwbenchInputError):
            raise HwbenchInputError(cached.problem, file=cached.file, field=cached.field, fix=cached.fix)
        return cached.get(test_id)

    def save(self, results: Mapping[str, tuple[Mapping[str, MetricResult], Mapping[str, Any]]], *,
             saved_at: str | None = None) -> list[Path]:
        """Store ``{test_id: (metrics, environment)}``, merged into the module files; returns the files
        written.

        Each file is re-read from disk under its lock (not from the session cache), so tests another
        process saved in the meantime are kept; a test's previous entry is replaced whole, so metrics it
        no longer records disappear with the re-save.
        """
        stamp = saved_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        by_file: dict[Path, dict[str, dict[str, Any]]] = {}
        for test_id, (metrics, environment) in results.items():
            entry = {"saved_at": stamp, "environment": dict(environment),
                     "metrics": {name: _metric_to_dict(m) for name, m in sorted(metrics.items())}}
            by_file.setdefault(self.path_for(test_id), {})[test_id] = entry
        written = []
        for path, entries in sorted(by_file.items()):
            lock = filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with lock:
                    raw = self._read_raw(path) if path.exists() else None
                    tests = dict(raw["tests"]) if raw else {}
                    tests.update(entries)
                    doc = {"schema": SCHEMA_VERSION, "testbed": self.testbed, "tests": tests}
                    write_json_atomic(path, doc)
                    self._cache[path] = self._parse(path, json.loads(json.dumps(doc)))
            except filelock.Timeout:
                raise HwbenchError(
                    f"{path}: could not lock {lock.lock_file} within {LOCK_TIMEOUT_S:g} s; another process "
                    "is saving baselines to this file (wait for it, or stop the stuck process)") from None
            written.append(path)
        return written

    # ------------------------------------------------------------------------------ reading/validation

    def _read(self, path: Path) -> dict[str, BaselineEntry]:
        if not path.exists():
            return {}
        return self._parse(path, self._read_raw(path))

    def _read_raw(self, path: Path) -> dict[str, Any]:
        """Load and validate one file; every problem names the file, the field and the fix."""
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as err:
            raise HwbenchInputError(f"cannot read baseline file: {err.strerror}", file=str(path),
                                    fix="check the file's permissions, or restore it from git") from None
        except UnicodeDecodeError as err:
            raise HwbenchInputError(f"baseline file is not UTF-8 text ({err.reason} at byte {err.start})",
                                    file=str(path), fix=RESAVE_FIX) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if not text.strip():
                what = "empty"
            elif err.pos >= len(text.rstrip()):
                what = "truncated (it ends in the middle of the JSON document)"
            else:
                what = "not valid JSON"
            raise HwbenchInputError(f"baseline file is {what}: {err}", file=str(path),
                                    fix=RESAVE_FIX) from None
        self._validate(path, data)
        return data

    def _validate(self, path: Path, data: Any) -> None:
        def bad(problem: str, fld: str | None, fix: str = RESAVE_FIX) -> HwbenchInputError:
            return HwbenchInputError(problem, file=str(path), field=fld, fix=fix)

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, got {type(data).__name__}", None)
        schema = data.get("schema")
        if schema != SCHEMA_VERSION or isinstance(schema, bool):
            raise bad(f"schema version {schema!r} is not supported (this pytest-hwbench reads "
                      f"{SCHEMA_VERSION})", "schema")
        testbed = data.get("testbed")
        if not isinstance(testbed, str):
            raise bad(f"expected the testbed name as a string, got {testbed!r}", "testbed")
        if testbed != self.testbed:
            raise bad(f"this file was written by testbed {testbed!r}, but it sits in the baselines of "
                      f"testbed {self.testbed!r} (copied from another machine class?)", "testbed",
                      fix=f"run with --hwbench-testbed {testbed} to compare against it, or move the file "
                          f"to {self.root / testbed}/")
        tests = data.get("tests")
        if not isinstance(tests, dict):
            raise bad(f"expected an object of tests, got {type(tests).__name__}", "tests")
        for test_id, entry in tests.items():
            where = f"tests.'{test_id}'"
            if not isinstance(entry, dict):
                raise bad(f"expected an object, got {type(entry).__name__}", where)
            if not isinstance(entry.get("saved_at"), str):
                raise bad("expected an ISO 8601 time string", f"{where}.saved_at")
            if not isinstance(entry.get("environment", {}), dict):
                raise bad("expected an object (the machine fingerprint)", f"{where}.environment")
            metrics = entry.get("metrics")
            if not isinstance(metrics, dict):
                raise bad(f"expected an object of metrics, got {type(metrics).__name__}", f"{where}.metrics")
            for name, metric in metrics.items():
                mwhere = f"{where}.metrics.{name}"
                if not isinstance(metric, dict):
                    raise bad(f"expected an object, got {type(metric).__name__}", mwhere)
                if not isinstance(metric.get("unit", ""), str):
                    raise bad("expected a string", f"{mwhere}.unit")
                if metric.get("better") not in ("lower", "higher"):
                    raise bad(f"expected 'lower' or 'higher', got {metric.get('better')!r}", f"{mwhere}.better")
                values = metric.get("trial_values")
                if not isinstance(values, list) or not all(v is None or _is_number(v) for v in values):
                    raise bad("expected a list of numbers (one per trial)", f"{mwhere}.trial_values")
                if not isinstance(metric.get("summary"), dict):
                    raise bad("expected an object", f"{mwhere}.summary")

    def _parse(self, path: Path, data: dict[str, Any]) -> dict[str, BaselineEntry]:
        out = {}
        for test_id, entry in data["tests"].items():
            metrics = {}
            for name, metric in entry["metrics"].items():
                try:
                    summary = Summary.from_dict(metric["summary"])
                except (KeyError, TypeError, ValueError) as err:
                    raise HwbenchInputError(f"summary is incomplete or has wrong types ({err!r})",
                                            file=str(path), field=f"tests.'{test_id}'.metrics.{name}.summary",
                                            fix=RESAVE_FIX) from None
                metrics[name] = MetricResult(
                    name=name, unit=metric.get("unit", ""), better=metric["better"], summary=summary,
                    trial_values=[math.nan if v is None else float(v) for v in metric["trial_values"]],
                    estimated=bool(metric.get("estimated", False)))
            out[test_id] = BaselineEntry(test_id=test_id, testbed=data["testbed"], saved_at=entry["saved_at"],
                                         environment=entry.get("environment", {}), metrics=metrics, file=path)
        return out


# ----------------------------------------------------------------------------------------- comparison

@dataclass
class MetricVerdict:
    """Outcome of comparing one metric with its baseline; ``inconclusive`` is the recipe's policy for this
    metric (fail | warn | rerun), carried along so the caller decides without looking the policy up."""

    metric: str
    status: str
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    tolerance: float
    n_current: int
    n_baseline: int
    message: str
    better: str = "lower"
    unit: str = ""
    confidence: float = 0.95
    stale_factor: float = 2.0
    inconclusive: str = "warn"
    current_median: float | None = None
    baseline_median: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (nan/inf as None) for results JSON, JUnit properties and MLflow."""
        return {"metric": self.metric, "status": self.status, "ratio": jsonable(self.ratio),
                "ci_low": jsonable(self.ci_low), "ci_high": jsonable(self.ci_high),
                "tolerance": self.tolerance, "n_current": self.n_current, "n_baseline": self.n_baseline,
                "better": self.better, "unit": self.unit, "confidence": self.confidence,
                "stale_factor": self.stale_factor, "inconclusive_policy": self.inconclusive,
                "current_median": jsonable(self.current_median),
                "baseline_median": jsonable(self.baseline_median), "message": self.message}


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def compare_metric(current: MetricResult, baseline_values: Sequence[float], better: str | None = None,
                   tolerance: float = 0.05, confidence: float = 0.95, stale_factor: float = 2.0, *,
                   inconclusive: str = "warn", baseline_unit: str | None = None) -> MetricVerdict:
    """Compare one metric's trial values with the baseline's (DESIGN.md, Verdicts).

    With r = median(current)/median(baseline) and its bootstrap CI [lo, hi], and "bad" meaning r > 1+tol
    for lower-is-better (r < 1-tol for higher-is-better):

    * FAIL when the whole CI lies beyond the bad-direction bound;
    * PASS when the whole CI lies on the good side of it (improvements are not failures);
    * INCONCLUSIVE when the CI straddles it;
    * STALE (a pass) when the whole CI lies beyond ``stale_factor * tol`` in the good direction (never
      with a zero tolerance: there every clear improvement would be "stale").

    With one trial on each side there is nothing to resample; the CI collapses to the point ratio and the
    message says "1 trial, no CI".

    ``better`` defaults to the current metric's direction; ``baseline_unit`` (when given and different
    from the current unit) makes the comparison fail, since a ratio across units is meaningless.
    """
    direction = better or current.better
    lower = direction == "lower"
    cur, base = _finite(current.trial_values), _finite(baseline_values)
    common = {"metric": current.name, "tolerance": tolerance, "n_current": len(cur), "n_baseline": len(base),
              "better": direction, "unit": current.unit, "confidence": confidence,
              "stale_factor": stale_factor, "inconclusive": inconclusive,
              "current_median": float(np.median(cur)) if cur else None,
              "baseline_median": float(np.median(base)) if base else None}
    tol_text = f"tolerance {tolerance * 100:g}%"

    def verdict(status: str, message: str, ratio: float | None = None, lo: float | None = None,
                hi: float | None = None) -> MetricVerdict:
        return MetricVerdict(status=status, ratio=ratio, ci_low=lo, ci_high=hi, message=message, **common)

    name = current.name
    if baseline_unit is not None and baseline_unit != current.unit:
        return verdict(FAIL, f"{name}: unit changed from {baseline_unit!r} (baseline) to {current.unit!r}; "
                             "a ratio across units is meaningless (re-save the baseline with "
                             "--hwbench-save-baseline)")
    if not cur or not base:
        side = "this run" if not cur else "the baseline"
        return verdict(INCONCLUSIVE, f"{name}: no finite trial values in {side}, nothing to compare "
                                     f"({tol_text}; policy: {inconclusive})")
    med_cur, med_base = common["current_median"], common["baseline_median"]
    if med_base <= 0 or med_cur < 0:
        return _compare_without_ratio(name, cur, med_cur, med_base, lower, tol_text, inconclusive, verdict)

    single = len(cur) == 1 and len(base) == 1
    if single:
        ratio = lo = hi = med_cur / med_base
    else:
        ratio, lo, hi = bootstrap_ratio_of_medians(cur, base, confidence=confidence)
        ratio, lo, hi = float(ratio), float(lo), float(hi)
    if math.isnan(lo) or math.isnan(hi):
        return verdict(INCONCLUSIVE, f"{name}: ratio CI undefined (baseline trials include 0); "
                                     f"{tol_text}; policy: {inconclusive}", ratio, lo, hi)

    # Express everything as "worse-ness" so one set of rules serves both directions.
    worse = (ratio - 1.0) if lower else (1.0 - ratio)
    worse_lo, worse_hi = ((lo - 1.0, hi - 1.0) if lower else (1.0 - hi, 1.0 - lo))
    ci_text = ("1 trial, no CI" if single
               else f"{confidence * 100:g}% CI {lo:.3f}–{hi:.3f}, {len(cur)} vs {len(base)} trials")
    detail = f"(ratio {ratio:.3f}, {ci_text}, {tol_text})"
    how = f"{_pct(abs(worse))} {'worse' if worse > 0 else 'better'} than baseline"
    if worse == 0:
        how = "same as baseline"

    if worse_lo > tolerance:
        return verdict(FAIL, f"{name}: {how} {detail}", ratio, lo, hi)
    if worse_hi <= tolerance:
        stale_bound = stale_factor * tolerance
        if stale_bound > 0 and -worse_hi > stale_bound:
            return verdict(STALE, f"{name}: {how}, beyond {stale_factor:g}x the tolerance: baseline stale, "
                                  f"re-save with --hwbench-save-baseline {detail}", ratio, lo, hi)
        return verdict(PASS, f"{name}: {how}, within tolerance {detail}", ratio, lo, hi)
    return verdict(INCONCLUSIVE, f"{name}: inconclusive, {how} but the CI straddles the "
                                 f"{_pct(tolerance)} bound {detail}; policy: {inconclusive}", ratio, lo, hi)


def _compare_without_ratio(name: str, cur: list[float], med_cur: float, med_base: float, lower: bool,
                           tol_text: str, inconclusive: str, verdict: Any) -> MetricVerdict:
    """Baseline median 0 (typical for ``error_rate``) or negative values: a ratio is undefined, so judge by
    sign. Every current trial on the bad side of the baseline median is a FAIL (0 errors before, errors in
    every trial now is a regression however small), all equal a PASS, a mix INCONCLUSIVE."""
    why = f"baseline median {med_base:g}, ratio undefined"
    if all(v == med_base for v in cur):
        return verdict(PASS, f"{name}: same as baseline ({why}, {tol_text})")
    bad = [v > med_base if lower else v < med_base for v in cur]
    if all(bad):
        return verdict(FAIL, f"{name}: worse than baseline in every trial (median {med_cur:g} vs "
                             f"{med_base:g}; {why})")
    if not any(bad):
        return verdict(PASS, f"{name}: better than baseline (median {med_cur:g} vs {med_base:g}; {why})")
    return verdict(INCONCLUSIVE, f"{name}: inconclusive, trials on both sides of the baseline (median "
                                 f"{med_cur:g} vs {med_base:g}; {why}); policy: {inconclusive}")


@dataclass
class TestBaselineVerdict:
    """Outcome of comparing all of one test's metrics with its baseline entry.

    ``status`` is FAIL > INCONCLUSIVE > PASS over the metrics (STALE counts as PASS, MISSING_METRIC as
    FAIL), or NEW when no recorded metric had a baseline to compare with, because "nothing compared" must
    not read as a pass.
    """

    __test__ = False  # not a pytest test class, despite the name

    test_id: str
    status: str
    metrics: list[MetricVerdict]
    env_diff: list[EnvChange]
    testbed: str = ""
    baseline_saved_at: str = ""
    baseline_file: str = ""

    def by_status(self, *statuses: str) -> list[MetricVerdict]:
        return [m for m in self.metrics if m.status in statuses]

    @property
    def stale(self) -> list[MetricVerdict]:
        """Metrics so much better that the baseline should be re-saved (reported, not failing)."""
        return self.by_status(STALE)

    @property
    def inconclusive_policy(self) -> str | None:
        """Strictest policy (fail > rerun > warn) among inconclusive metrics, None when there are none:
        the caller's single decision for an INCONCLUSIVE test."""
        policies = [m.inconclusive for m in self.by_status(INCONCLUSIVE)]
        return max(policies, key=lambda p: _POLICY_SEVERITY.get(p, 2)) if policies else None

    @property
    def env_diff_text(self) -> str:
        """The environment diff as printable lines ("environment unchanged" when empty)."""
        return format_env_diff(self.env_diff)

    def failure_text(self, env_limit: int = 20) -> str:
        """What a failing (or inconclusive) test prints: each offending metric with its bound, then the
        environment diff, which is usually the explanation."""
        head = {FAIL: "regressed against baseline", INCONCLUSIVE: "inconclusive against baseline"}.get(
            self.status, f"baseline {self.status}")
        lines = [f"{self.test_id}: {head} (testbed {self.testbed}, saved {self.baseline_saved_at}, "
                 f"{self.baseline_file})"]
        for m in self.metrics:
            if m.status in (FAIL, MISSING_METRIC, INCONCLUSIVE, STALE):
                lines.append(f"  {m.status} {m.message}")
        lines.append(format_env_diff(self.env_diff, limit=env_limit))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"test_id": self.test_id, "status": self.status, "testbed": self.testbed,
                "baseline_saved_at": self.baseline_saved_at, "baseline_file": self.baseline_file,
                "inconclusive_policy": self.inconclusive_policy,
                "metrics": [m.to_dict() for m in self.metrics],
                "env_diff": [c.to_dict() for c in self.env_diff], "env_diff_text": self.env_diff_text}


def compare_test(current: Mapping[str, MetricResult], entry: BaselineEntry, policy: BaselinePolicy,
                 current_env: Mapping[str, Any]) -> TestBaselineVerdict:
    """Compare every metric of one test with its baseline entry, with per-metric tolerance and
    inconclusive policy from ``policy``; metrics are listed in name order (recorded, then missing)."""
    from pytest_hwbench.measure.samplers.metrics import is_resource_metric

    def gated(name: str) -> bool:  # resource metrics are evidence; compared only when the recipe lists them
        return not is_resource_metric(name) or name in policy.metrics

    current = {name: result for name, result in current.items() if gated(name)}
    verdicts: list[MetricVerdict] = []
    for name in sorted(current):
        result = current[name]
        tol, incon = policy.tolerance_for(name), policy.inconclusive_for(name)
        stored = entry.metrics.get(name)
        if stored is None:
            verdicts.append(MetricVerdict(
                metric=name, status=NEW, ratio=None, ci_low=None, ci_high=None, tolerance=tol,
                n_current=len(_finite(result.trial_values)), n_baseline=0, better=result.better,
                unit=result.unit, confidence=policy.confidence, stale_factor=policy.stale_factor,
                inconclusive=incon, message=f"{name}: new metric, not in the baseline (re-save with "
                                            "--hwbench-save-baseline to start comparing it)"))
            continue
        verdicts.append(compare_metric(result, stored.trial_values, result.better, tol, policy.confidence,
                                       policy.stale_factor, inconclusive=incon, baseline_unit=stored.unit))
    for name in sorted(n for n in set(entry.metrics) - set(current) if gated(n)):
        stored = entry.metrics[name]
        verdicts.append(MetricVerdict(
            metric=name, status=MISSING_METRIC, ratio=None, ci_low=None, ci_high=None,
            tolerance=policy.tolerance_for(name), n_current=0, n_baseline=len(_finite(stored.trial_values)),
            better=stored.better, unit=stored.unit, confidence=policy.confidence,
            stale_factor=policy.stale_factor, inconclusive=policy.inconclusive_for(name),
            message=f"{name}: in the baseline but not recorded by this run (if the metric was dropped on "
                    "purpose, re-save with --hwbench-save-baseline)"))
    counted = [_COUNTS_AS[v.status] for v in verdicts]
    status = max(counted, key=_SEVERITY.__getitem__) if counted else NEW
    return TestBaselineVerdict(test_id=entry.test_id, status=status, metrics=verdicts,
                               env_diff=environment_diff(entry.environment, dict(current_env)),
                               testbed=entry.testbed, baseline_saved_at=entry.saved_at,
                               baseline_file=str(entry.file))


__all__ = [
    "FAIL", "INCONCLUSIVE", "MISSING_METRIC", "NEW", "PASS", "STALE",
    "BaselineEntry", "BaselineStore", "MetricVerdict", "TestBaselineVerdict",
    "compare_metric", "compare_test", "list_testbeds", "module_slug",
]
