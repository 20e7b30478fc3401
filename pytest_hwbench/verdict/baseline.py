"""Baselines: the committed per-testbed history of earlier sessions, and the comparison with it.

Layout: ``<root>/<testbed>/<module-slug>.json``, one file per test module, so that re-saving one module's
baselines after an upgrade is a small, reviewable git diff. A file (schema 2)::

    {"schema": 2, "testbed": "<name>",
     "tests": {"<node id>": {"sessions": [   # oldest first, the last ``baseline.sessions`` kept
         {"saved_at": "<iso8601>", "commit": "<git sha>", "run_id": "<run id>",
          "environment": {...fingerprint, services, run conditions...},
          "metrics": {"<name>": {"unit": ..., "better": "lower"|"higher",
                                 "trial_values": [...], "summary": {...}}}}]}}}

Schema 1 files (one session per test: the session's keys directly under the node id) still load.

The comparison itself (``verdict.compare``) weighs this session's trials against every stored session,
with the spread between sessions pooled over the whole testbed's history (``BaselineStore.session_noise``).
The trial values (one median per repetition) are the evidence, not the pooled samples: samples within one
trial are correlated, so only repetitions and sessions say how much a result moves between runs.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_hwbench.atomic import write_json_atomic
from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult, jsonable
from pytest_hwbench.measure.stats import Summary
from pytest_hwbench.recipe.model import BaselinePolicy
from pytest_hwbench.safe_load import loads_json_bounded
from pytest_hwbench.verdict.compare import (
    CompareSettings,
    Comparison,
    SessionNoise,
    compare_metric,
    pool_noise,
    series_noise,
)
from pytest_hwbench.verdict.envdiff import IGNORED, environment_diff
from pytest_hwbench.verdict.result import BaselineComparison, StoredSession

SCHEMA_VERSION = 2
#: Schema 1 files (one session per test) still load; the next save rewrites them as schema 2.
READABLE_SCHEMAS = (1, 2)

#: Metric verdict statuses. STALE is a pass that says "re-save"; NEW and MISSING_METRIC only occur in
#: ``compare_test`` (metric not in the baseline / in the baseline but not recorded now).
PASS, FAIL, INCONCLUSIVE, STALE = "PASS", "FAIL", "INCONCLUSIVE", "STALE"
NEW, MISSING_METRIC = "NEW", "MISSING_METRIC"

#: How a metric status counts towards its test's status.
_COUNTS_AS = {PASS: PASS, STALE: PASS, NEW: NEW, FAIL: FAIL, MISSING_METRIC: FAIL,
              INCONCLUSIVE: INCONCLUSIVE}
_SEVERITY = {NEW: 0, PASS: 1, INCONCLUSIVE: 2, FAIL: 3}

#: The machine's load differs on every run; ``conditions_differ`` judges it with a margin instead.
ENV_IGNORED = IGNORED | {"load_at_start", "load_other"}

RESAVE_FIX = "delete it and re-save with --hwbench-save-baseline, or restore it from git"
LOCK_TIMEOUT_S = 120.0


# --------------------------------------------------------------------------------------------- layout

def module_slug(test_id: str) -> str:
    """File stem for a node id's module: ``benchmarks/test_host.py::test_x[1]`` -> ``benchmarks__test_host``.

    Path separators become ``__`` so every module of a suite gets its own flat file in the testbed
    directory; characters that are awkward in file names become ``_``.
    """
    return _module_slug(test_id.split("::", 1)[0])


@functools.lru_cache(maxsize=1024)
def _module_slug(module_path: str) -> str:
    """``module_slug`` of a module path, remembered: every test of a module asks for the same one."""
    path = module_path.replace("\\", "/")
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
class BaselineSession:
    """One saved session of one test: its metrics (trial values), environment, time, commit and run id."""

    saved_at: str
    environment: dict[str, Any]
    metrics: dict[str, MetricResult]
    commit: str | None = None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"saved_at": self.saved_at, "commit": self.commit, "run_id": self.run_id,
                               "environment": self.environment,
                               "metrics": {n: _metric_to_dict(m) for n, m in sorted(self.metrics.items())}}
        return out

    @property
    def trials(self) -> int:
        return max((len(m.trial_values) for m in self.metrics.values()), default=0)


@dataclass
class BaselineEntry:
    """The stored history of one test: its last sessions, oldest first (the newest is ``latest``)."""

    test_id: str
    testbed: str
    sessions: list[BaselineSession]
    file: Path

    @property
    def latest(self) -> BaselineSession:
        return self.sessions[-1]

    @property
    def saved_at(self) -> str:
        return self.latest.saved_at

    @property
    def environment(self) -> dict[str, Any]:
        return self.latest.environment

    @property
    def metrics(self) -> dict[str, MetricResult]:
        """The newest session's metrics (name, unit, direction of every stored metric)."""
        return self.latest.metrics

    def trial_values(self, metric: str) -> list[list[float]]:
        """One list of trial values per stored session that recorded ``metric``."""
        return [list(s.metrics[metric].trial_values) for s in self.sessions if metric in s.metrics]

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored in its file (without the test id key)."""
        return {"sessions": [s.to_dict() for s in self.sessions]}


def _metric_to_dict(result: MetricResult) -> dict[str, Any]:
    out: dict[str, Any] = {"unit": result.unit, "better": result.better,
                           "trial_values": [jsonable(v) for v in result.trial_values],
                           "summary": result.summary.to_dict()}
    if result.estimated:  # only when true, so files of exact metrics carry no noise key
        out["estimated"] = True
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SaveRecord:
    """What ``--hwbench-save-baseline`` adds for one test."""

    metrics: Mapping[str, MetricResult]
    environment: Mapping[str, Any]
    commit: str | None = None
    run_id: str | None = None


class BaselineStore:
    """Baselines of one testbed under ``root``; reads each module file once per session.

    Under pytest-xdist only the controller saves (docs/architecture.md, Conventions); the file lock additionally
    keeps two separate pytest processes (two CI jobs on one checkout) from losing each other's updates.
    """

    def __init__(self, root: str | Path, testbed: str) -> None:
        self.root = Path(root)
        self.testbed = _check_testbed(testbed)
        self._cache: dict[Path, dict[str, BaselineEntry] | HwbenchInputError] = {}
        self._by_slug: dict[str, dict[str, BaselineEntry] | HwbenchInputError] = {}
        self._noise: SessionNoise | None = None

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
        slug = module_slug(test_id)
        cached = self._by_slug.get(slug)
        if cached is None:  # one Path and one dict look-up per module, not per test
            cached = self._by_slug[slug] = self._load_file(self.directory / f"{slug}.json")
        if isinstance(cached, HwbenchInputError):
            raise HwbenchInputError(cached.problem, file=cached.file, field=cached.field, fix=cached.fix)
        return cached.get(test_id)

    def _load_file(self, path: Path) -> dict[str, BaselineEntry] | HwbenchInputError:
        cached = self._cache.get(path)
        if cached is None:
            try:
                cached = self._read(path)
            except HwbenchInputError as err:
                cached = err
            self._cache[path] = cached
        return cached

    def session_noise(self) -> SessionNoise:
        """Between-session noise pooled over every test and metric of this testbed's stored history
        (broken files are skipped here; the tests they hold report them)."""
        if self._noise is None:
            parts = []
            if self.directory.is_dir():
                for path in sorted(self.directory.glob("*.json")):
                    entries = self._load_file(path)
                    if isinstance(entries, HwbenchInputError):
                        continue
                    for entry in entries.values():
                        parts.append(test_noise(entry))
            self._noise = pool_noise(parts)
        return self._noise

    def save(self, results: Mapping[str, SaveRecord | tuple[Mapping[str, MetricResult], Mapping[str, Any]]],
             *, saved_at: str | None = None, keep: int = 5) -> list[Path]:
        """Append one session per test to its history (keeping the last ``keep``), merged into the module
        files; returns the files written.

        Each file is re-read from disk under its lock (not from the session cache), so tests another
        process saved in the meantime are kept. Metrics the new session no longer records stay only in the
        older sessions, so they drop out as the history rolls over.
        """
        stamp = saved_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
        by_file: dict[Path, dict[str, dict[str, Any]]] = {}
        for test_id, rec in results.items():
            if not isinstance(rec, SaveRecord):
                rec = SaveRecord(metrics=rec[0], environment=rec[1])
            session = BaselineSession(saved_at=stamp, environment=dict(rec.environment),
                                      metrics=dict(rec.metrics), commit=rec.commit, run_id=rec.run_id)
            by_file.setdefault(self.path_for(test_id), {})[test_id] = session.to_dict()
        import filelock  # only a saving run needs it (its import is ~25 ms and 4,000 objects, issue #14)

        written = []
        for path, entries in sorted(by_file.items()):
            lock = filelock.FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with lock:
                    raw = self._read_raw(path) if path.exists() else None
                    tests = {tid: _as_history(e) for tid, e in (raw["tests"] if raw else {}).items()}
                    for test_id, entry in entries.items():
                        history = tests.get(test_id, {"sessions": []})["sessions"] + [entry]
                        tests[test_id] = {"sessions": history[-max(keep, 1):]}
                    doc = {"schema": SCHEMA_VERSION, "testbed": self.testbed, "tests": tests}
                    write_json_atomic(path, doc)
                    self._cache[path] = self._parse(path, json.loads(json.dumps(doc)))
                    self._by_slug.pop(path.stem, None)  # its next load reads the cache entry just set
                    self._noise = None
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
            data = loads_json_bounded(text, file=str(path), fix=RESAVE_FIX)  # NaN, depth, size: clear errors
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
        if schema not in READABLE_SCHEMAS or isinstance(schema, bool):
            raise bad(f"schema version {schema!r} is not supported (this pytest-hwbench reads "
                      f"{', '.join(map(str, READABLE_SCHEMAS))})", "schema")
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
            if "sessions" in entry:
                sessions = entry["sessions"]
                if not isinstance(sessions, list) or not sessions:
                    raise bad("expected a non-empty list of saved sessions", f"{where}.sessions")
                for i, session in enumerate(sessions):
                    if not isinstance(session, dict):
                        raise bad(f"expected an object, got {type(session).__name__}", f"{where}.sessions[{i}]")
                    self._validate_session(session, f"{where}.sessions[{i}]", bad)
            else:  # schema 1: the entry is one session
                self._validate_session(entry, where, bad)

    @staticmethod
    def _validate_session(entry: dict[str, Any], where: str, bad: Any) -> None:
        if not isinstance(entry.get("saved_at"), str):
            raise bad("expected an ISO 8601 time string", f"{where}.saved_at")
        if not isinstance(entry.get("environment", {}), dict):
            raise bad("expected an object (the machine fingerprint)", f"{where}.environment")
        for key in ("commit", "run_id"):
            if not isinstance(entry.get(key), (str, type(None))):
                raise bad("expected a string or null", f"{where}.{key}")
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
            # A null marks a trial in which the metric recorded nothing (the writer stores NaN as null);
            # a list with no number at all is no evidence, and judging against it would be a silent pass.
            if not any(_is_number(v) and math.isfinite(v) for v in values):
                raise bad(f"no trial value (got {json.dumps(values)[:40]}): this session holds no measurement",
                          f"{mwhere}.trial_values")
            if not isinstance(metric.get("summary"), dict):
                raise bad("expected an object", f"{mwhere}.summary")

    def _parse(self, path: Path, data: dict[str, Any]) -> dict[str, BaselineEntry]:
        out = {}
        for test_id, entry in data["tests"].items():
            history = _as_history(entry)["sessions"]
            sessions = [self._parse_session(path, test_id, i, s) for i, s in enumerate(history)]
            out[test_id] = BaselineEntry(test_id=test_id, testbed=data["testbed"], sessions=sessions, file=path)
        return out

    @staticmethod
    def _parse_session(path: Path, test_id: str, index: int, entry: dict[str, Any]) -> BaselineSession:
        metrics = {}
        for name, metric in entry["metrics"].items():
            try:
                summary = Summary.from_dict(metric["summary"])
            except (KeyError, TypeError, ValueError) as err:
                raise HwbenchInputError(f"summary is incomplete or has wrong types ({err!r})", file=str(path),
                                        field=f"tests.'{test_id}'.sessions[{index}].metrics.{name}.summary",
                                        fix=RESAVE_FIX) from None
            metrics[name] = MetricResult(
                name=name, unit=metric.get("unit", ""), better=metric["better"], summary=summary,
                trial_values=[math.nan if v is None else float(v) for v in metric["trial_values"]],
                estimated=bool(metric.get("estimated", False)))
        return BaselineSession(saved_at=entry["saved_at"], environment=entry.get("environment", {}),
                               metrics=metrics, commit=entry.get("commit"), run_id=entry.get("run_id"))


def test_noise(entry: BaselineEntry) -> SessionNoise:
    """The session noise one test's history shows: the median over its metrics of their between-session
    variance, with the degrees of freedom of ONE series (K - 1). A test's metrics shift together (a busy
    session slows TTFT, latency and throughput alike), so counting each metric as independent evidence
    would make a 3-session history look calibrated when it is not."""
    parts = [series_noise(entry.trial_values(name)) for name in entry.metrics]
    parts = [p for p in parts if p.df]
    if not parts:
        return SessionNoise()
    middle = sorted(p.between_var for p in parts)[len(parts) // 2]  # median: one erratic metric cannot rule
    return SessionNoise(between_var=middle, df=max(p.df for p in parts), series=1)


def _as_history(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored test entry as ``{"sessions": [...]}``: schema-1 entries are one session."""
    return entry if "sessions" in entry else {"sessions": [entry]}


# ----------------------------------------------------------------------------------------- comparison

def compare_settings(policy: BaselinePolicy, metric: str, look: int = 0) -> CompareSettings:
    """The comparison settings of one metric under the recipe's baseline policy, at sequential look
    ``look`` of the planned ``1 + reruns`` (the FAIL boundary depends on both)."""
    return CompareSettings(tolerance=policy.tolerance_for(metric), confidence=policy.confidence,
                           looks_planned=1 + policy.reruns, look=look, session_noise=policy.session_noise,
                           stale_factor=policy.stale_factor)


def judged(name: str, policy: BaselinePolicy) -> bool:
    """Whether the gate compares a metric with its baseline. Evidence is not gated unless the recipe's
    ``baseline.metrics`` lists it: resource figures sampled during the run, and what the server reports about
    its own timing (``server_*``, ``ttft_outside_server_ms``: often tiny, so their relative noise is large).
    ``hwbench compare`` uses this same rule."""
    from pytest_hwbench.measure.samplers.metrics import is_resource_metric
    from pytest_hwbench.workloads.server_timing import is_server_timing_metric

    return not (is_resource_metric(name) or is_server_timing_metric(name)) or name in policy.metrics


def compare_test(current: Mapping[str, MetricResult], entry: BaselineEntry, policy: BaselinePolicy,
                 current_env: Mapping[str, Any], *, noise: SessionNoise | None = None,
                 conditions: Sequence[str] = (), look: int = 0) -> BaselineComparison:
    """Compare every metric of one test with its stored sessions (per-metric tolerance and inconclusive
    policy from ``policy``; ``noise`` is the testbed's pooled session history). Metrics are listed in name
    order (recorded, then missing). Status: FAIL > INCONCLUSIVE > PASS over the metrics (STALE counts as
    PASS, MISSING_METRIC as FAIL), or NEW when nothing could be compared: "nothing compared" must not read
    as a pass."""
    def gated(name: str) -> bool:
        return judged(name, policy)

    current = {name: result for name, result in current.items() if gated(name)}
    comparisons: list[Comparison] = []
    for name in sorted(current):
        result = current[name]
        settings = compare_settings(policy, name, look)
        incon = policy.inconclusive_for(name)
        stored = entry.metrics.get(name)
        sessions = entry.trial_values(name)
        if stored is None or not sessions:
            comparisons.append(Comparison(
                metric=name, status=NEW, unit=result.unit, better=result.better, tolerance=settings.tolerance,
                n_current=len(result.trial_values), inconclusive_policy=incon,
                message=f"{name}: new metric, not in the baseline (re-save with --hwbench-save-baseline to "
                        "start comparing it)"))
            continue
        if stored.unit != result.unit:
            comparisons.append(Comparison(
                metric=name, status=FAIL, unit=result.unit, better=result.better, tolerance=settings.tolerance,
                inconclusive_policy=incon,
                message=f"{name}: unit changed from {stored.unit!r} (baseline) to {result.unit!r}; a ratio "
                        "across units is meaningless (re-save the baseline with --hwbench-save-baseline)"))
            continue
        comparisons.append(compare_metric(name, sessions, result.trial_values, settings, better=result.better,
                                          unit=result.unit, noise=noise, inconclusive_policy=incon))
    for name in sorted(n for n in set(entry.metrics) - set(current) if gated(n)):
        stored = entry.metrics[name]
        comparisons.append(Comparison(
            metric=name, status=MISSING_METRIC, unit=stored.unit, better=stored.better,
            tolerance=policy.tolerance_for(name), n_baseline=len(stored.trial_values),
            inconclusive_policy=policy.inconclusive_for(name),
            message=f"{name}: in the baseline but not recorded by this run (if the metric was dropped on "
                    "purpose, re-save with --hwbench-save-baseline)"))
    counted = [_COUNTS_AS[c.status] for c in comparisons]
    status = max(counted, key=_SEVERITY.__getitem__) if counted else NEW
    sessions_info = [StoredSession(saved_at=s.saved_at, commit=s.commit, run_id=s.run_id, trials=s.trials)
                     for s in entry.sessions]
    return BaselineComparison(status=status, metrics=comparisons, testbed=entry.testbed, file=str(entry.file),
                              sessions=sessions_info,
                              env_diff=environment_diff(entry.environment, dict(current_env), ignore=ENV_IGNORED),
                              conditions=list(conditions))


__all__ = [
    "FAIL", "INCONCLUSIVE", "MISSING_METRIC", "NEW", "PASS", "STALE",
    "BaselineEntry", "BaselineSession", "BaselineStore", "SaveRecord",
    "compare_settings", "compare_test", "list_testbeds", "module_slug",
]
