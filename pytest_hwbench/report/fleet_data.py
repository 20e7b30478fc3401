"""Read finished sessions back, from run directories or from an MLflow tracking server, as typed records.

Why one loader: ``hwbench fleet``, ``hwbench mlflow upload`` and the dashboard all read the same thing — what
each session on each host measured — and must agree on it. The unit is the session (one ``pytest`` run on one
host): its identity (run id, testbed, host, recipe, time, git commit), its machine fingerprint (for the
environment diff), and per test the per-trial values of each metric (the evidence the statistics resample).

Where the data comes from:

* **Run directories** (``reports/<run-id>/``): ``run.json`` and ``results.json`` (``results.jsonl`` when the run
  was killed before ``results.json`` was written).
* **MLflow**: the parent run of each session carries ``run.json`` and ``results.json`` as artifacts, so one
  search for parent runs plus two small downloads per session give exactly what a run directory gives; the
  child runs (one per test) are for people browsing MLflow. A finished run never changes, so downloads are
  cached under ``~/.cache/hwbench/mlflow`` (``$HWBENCH_CACHE``) and a dashboard refresh costs one search.

Files written by older or newer versions may lack fields: a missing field becomes ``None``/empty, never a
crash; a file that is not JSON is reported with its path.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pytest_hwbench.errors import HwbenchInputError

__all__ = [
    "MetricSeries", "SessionRecord", "TestRecord", "find_run_dirs", "load_mlflow", "load_run_dir",
    "load_run_dirs", "parse_time",
]


@dataclass(frozen=True)
class MetricSeries:
    """One metric of one test in one session: the per-trial values and the pooled summary's median."""

    name: str
    unit: str
    better: str  # "higher" | "lower"
    trial_values: tuple[float, ...]
    median: float | None
    ci: tuple[float, float] | None  # CI of the median (pooled samples), when the summary has one

    @property
    def values(self) -> tuple[float, ...]:
        """The per-trial values, or the median alone when the trials were not kept."""
        if self.trial_values:
            return self.trial_values
        return (self.median,) if self.median is not None else ()


@dataclass(frozen=True)
class SessionRecord:
    """One pytest session on one host. ``fingerprint`` is the full machine fingerprint from ``run.json``."""

    run_id: str
    testbed: str
    host: str
    recipe: str
    started_at: float | None  # epoch seconds
    git_commit: str | None
    verdict: str | None
    complete: bool
    source: str  # the run directory or "mlflow:<parent run id>"
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    tests: tuple[TestRecord, ...] = ()

    @property
    def when(self) -> str:
        if self.started_at is None:
            return "?"
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.started_at))


@dataclass(frozen=True)
class TestRecord:
    """One test of a session: its verdict, parameters, extra facts and metrics."""

    test_id: str
    name: str
    verdict: str
    params: Mapping[str, Any]
    extra: Mapping[str, Any]
    metrics: Mapping[str, MetricSeries]
    baseline_status: str | None = None
    failures: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ parsing

def parse_time(value: Any) -> float | None:
    """ISO 8601 (``...Z`` included) or epoch seconds to epoch seconds; None when absent or unreadable."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    try:
        text = str(value).strip().replace("Z", "+00:00")
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _metric(name: str, data: Mapping[str, Any]) -> MetricSeries | None:
    if not isinstance(data, Mapping):
        return None
    summary = cast("Mapping[str, Any]", data.get("summary") if isinstance(data.get("summary"), Mapping) else {})
    trials = tuple(v for v in (_finite(x) for x in data.get("trial_values") or ()) if v is not None)
    median = _finite(summary.get("p50", summary.get("median")))
    ci_raw = (summary.get("ci") or {}).get("p50") if isinstance(summary.get("ci"), Mapping) else None
    ci = None
    if isinstance(ci_raw, (list, tuple)) and len(ci_raw) == 2:
        lo, hi = _finite(ci_raw[0]), _finite(ci_raw[1])
        if lo is not None and hi is not None:
            ci = (lo, hi)
    if not trials and median is None:
        return None
    unit = str(data.get("unit") or "")
    better = str(data.get("better") or ("higher" if "/" in unit else "lower"))
    return MetricSeries(name=name, unit=unit, better=better, trial_values=trials, median=median, ci=ci)


def _test(data: Mapping[str, Any]) -> TestRecord | None:
    test_id = data.get("test_id")
    if not isinstance(test_id, str):
        return None
    metrics = {}
    for name, raw in (data.get("metrics") or {}).items():
        m = _metric(str(name), raw)
        if m is not None:
            metrics[str(name)] = m
    baseline = data.get("baseline")
    baseline_status = data.get("baseline_status") or (baseline.get("status") if isinstance(baseline, Mapping)
                                                       else None)
    return TestRecord(
        test_id=test_id, name=str(data.get("name") or test_id.split("::")[-1]),
        verdict=str(data.get("verdict") or "NONE").upper(),
        params=dict(data.get("params") or {}), extra=dict(data.get("extra") or {}), metrics=metrics,
        baseline_status=str(baseline_status) if baseline_status else None,
        failures=tuple(str(f) for f in data.get("failures") or ()))


def _worst(verdicts: Iterable[str]) -> str | None:
    order = ("ERROR", "FAIL", "INCONCLUSIVE", "WARN", "NO_BASELINE", "STALE", "SKIP", "PASS")
    seen = [v for v in verdicts if v in order]
    return min(seen, key=order.index) if seen else None


def session_from_docs(manifest: Mapping[str, Any], results: Mapping[str, Any] | Sequence[Mapping[str, Any]],
                      source: str) -> SessionRecord:
    """A SessionRecord from the two documents of a run directory (``run.json``, ``results.json``)."""
    tests_raw = results.get("tests", []) if isinstance(results, Mapping) else list(results)
    tests = tuple(t for t in (_test(r) for r in tests_raw if isinstance(r, Mapping)) if t is not None)
    fp = cast("Mapping[str, Any]",
              manifest.get("fingerprint") if isinstance(manifest.get("fingerprint"), Mapping) else {})
    recipe = cast("Mapping[str, Any]", manifest.get("recipe") if isinstance(manifest.get("recipe"), Mapping) else {})
    git = cast("Mapping[str, Any]", manifest.get("git") if isinstance(manifest.get("git"), Mapping) else {})
    testbed = manifest.get("testbed") or (results.get("testbed") if isinstance(results, Mapping) else None)
    return SessionRecord(
        run_id=str(manifest.get("run_id") or (results.get("run_id") if isinstance(results, Mapping) else "")
                   or Path(source).name),
        testbed=str(testbed or "unknown"), host=str(fp.get("hostname") or "unknown"),
        recipe=str(recipe.get("name") or "?"), started_at=parse_time(manifest.get("started_at")),
        git_commit=git.get("commit"), verdict=_worst(t.verdict for t in tests),
        complete=bool(manifest.get("complete", isinstance(results, Mapping) and results.get("complete"))),
        source=source, fingerprint=dict(fp), tests=tests)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise HwbenchInputError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the run directory "
                                "is damaged — remove it or pass the others") from None
    except OSError as err:
        raise HwbenchInputError(f"{path}: cannot be read ({err.strerror})") from None


# ------------------------------------------------------------------------------------ run directories

def load_run_dir(path: str | Path) -> SessionRecord:
    """One ``reports/<run-id>/`` directory. A killed run (no ``results.json``) is read from ``results.jsonl``."""
    run_dir = Path(path)
    manifest_path = run_dir / "run.json"
    if not manifest_path.is_file():
        raise HwbenchInputError(f"{run_dir}: no run.json here; pass a run directory (reports/<run-id>/) "
                                "or the reports folder that holds them")
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, Mapping):
        raise HwbenchInputError(f"{manifest_path}: expected a JSON object")
    results: Any
    if (run_dir / "results.json").is_file():
        results = _read_json(run_dir / "results.json")
    elif (run_dir / "results.jsonl").is_file():
        results = []
        for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # the last line of a killed run may be cut off
    else:
        results = []
    if not isinstance(results, (Mapping, list)):
        raise HwbenchInputError(f"{run_dir / 'results.json'}: expected a JSON object")
    return session_from_docs(manifest, results, str(run_dir))


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories among ``paths``: each path is a run directory or a folder of them (one level)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "run.json").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(d for d in p.iterdir() if (d / "run.json").is_file())
        else:
            raise HwbenchInputError(f"{p}: not a run directory or a folder of run directories")
    return found


def load_run_dirs(paths: Iterable[str | Path]) -> list[SessionRecord]:
    return sorted((load_run_dir(d) for d in find_run_dirs(paths)), key=lambda s: (s.started_at or 0, s.run_id))


# --------------------------------------------------------------------------------------------- MLflow

def _cache_root(uri: str) -> Path:
    base = os.environ.get("HWBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwbench")
    return Path(base, "mlflow", hashlib.sha256(uri.encode()).hexdigest()[:16])


def _parent_runs(client: Any, exp_ids: list[str], filter_string: str, max_sessions: int | None) -> Iterator[Any]:
    token = None
    seen = 0
    while True:
        page = client.search_runs(exp_ids, filter_string=filter_string, max_results=500, page_token=token,
                                  order_by=["attributes.start_time DESC"])
        for run in page:
            if "mlflow.parentRunId" in run.data.tags:
                continue
            yield run
            seen += 1
            if max_sessions is not None and seen >= max_sessions:
                return
        token = page.token
        if not token:
            return


def load_mlflow(uri: str, experiment: str = "hwbench", *, testbed: str | None = None, host: str | None = None,
                max_sessions: int | None = None, cache: bool = True) -> list[SessionRecord]:
    """Every session logged to ``experiment`` at ``uri`` (newest ``max_sessions`` when given), oldest first.

    Sessions are the parent runs (those with the ``tests.total`` metric); each one's ``run.json`` and
    ``results.json`` artifacts are downloaded once and cached. A session whose artifacts are missing is read
    from its tags alone (no tests), so it still shows as a session with its verdict.
    """
    from mlflow.tracking import MlflowClient

    from pytest_hwbench.report.mlflow_log import _mlflow_env

    with _mlflow_env(30):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise HwbenchInputError(f"MLflow at {uri}: no experiment named {experiment!r} (the recipe's "
                                    "mlflow.experiment; default hwbench)")
        clauses = ["metrics.`tests.total` >= 0"]
        if testbed:
            clauses.append(f"tags.testbed = '{_quote(testbed)}'")
        if host:
            clauses.append(f"tags.host = '{_quote(host)}'")
        runs = list(_parent_runs(client, [exp.experiment_id], " and ".join(clauses), max_sessions))
        # two small downloads per new session, latency-bound: a few in flight (cached ones cost nothing)
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            sessions = list(pool.map(lambda run: _session_from_mlflow(client, uri, run, cache), runs))
    return sorted(sessions, key=lambda s: (s.started_at or 0, s.run_id))


def _quote(text: str) -> str:
    return text.replace("'", "\\'")


def _session_from_mlflow(client: Any, uri: str, run: Any, cache: bool) -> SessionRecord:
    run_id = run.info.run_id
    folder = _cache_root(uri) / run_id
    docs: dict[str, Any] = {}
    finished = run.info.status == "FINISHED"
    for name in ("run.json", "results.json"):
        local = folder / name
        if not (cache and finished and local.is_file()):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                local = Path(client.download_artifacts(run_id, name, str(folder)))
            except Exception:
                continue
        try:
            docs[name] = json.loads(local.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
    tags = run.data.tags
    manifest = cast("Mapping[str, Any]", docs.get("run.json") if isinstance(docs.get("run.json"), Mapping) else {})
    manifest = dict(manifest)
    manifest.setdefault("run_id", tags.get("hwbench.run_id") or run.info.run_name)
    manifest.setdefault("testbed", tags.get("testbed"))
    manifest.setdefault("started_at", run.info.start_time / 1000 if run.info.start_time else None)
    if not isinstance(manifest.get("fingerprint"), Mapping):
        manifest["fingerprint"] = {"hostname": tags.get("host"), "kernel": tags.get("env.kernel")}
    if not isinstance(manifest.get("recipe"), Mapping):
        manifest["recipe"] = {"name": tags.get("recipe.name")}
    results = docs.get("results.json") or {"tests": []}
    record = session_from_docs(manifest, results, f"mlflow:{run_id}")
    if record.verdict is None and tags.get("hwbench.verdict"):
        record = replace(record, verdict=tags["hwbench.verdict"])
    return record
