"""The one per-session object: options, recipe, testbed, baselines, and the results of the run.

``plugin.py`` creates it in ``pytest_configure`` and calls it from hooks. On an xdist worker it measures and
judges (verdicts must fail the test itself, so they are computed where the test runs); on the controller
(or in a plain run) it also writes: results, raw samples, baselines, the run manifest and MLflow. Workers
hand their results over in ``report.user_properties`` as plain JSON types (docs/architecture.md, Conventions).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_hwbench import __version__
from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.measure.recorder import Recorder
from pytest_hwbench.measure.samplers.metrics import pop_timelines, resources_payload
from pytest_hwbench.recipe.model import Recipe
from pytest_hwbench.report.files import SCHEMA_VERSION, EncodedResults, RunWriter, new_run_id, redact_payload
from pytest_hwbench.report.gc_pause import collector_paused
from pytest_hwbench.report.redact import redact, register_secrets
from pytest_hwbench.report.sweeps import analyze_sweeps
from pytest_hwbench.service_hub import ServiceHub
from pytest_hwbench.verdict.bottleneck import METRICS_READ, attribute_result
from pytest_hwbench.verdict.result import TestResult

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np

    from pytest_hwbench.verdict.baseline import SaveRecord

PAYLOAD_KEY = "hwbench"  # user_properties key of the per-test payload on the call report


@dataclass(frozen=True)
class Options:
    """Command-line options and ini values, resolved once."""

    recipe_path: str | None
    testbed: str | None
    save_baseline: bool
    require_baseline: bool
    baseline_dir: str | None
    report_dir: Path
    mlflow_uri: str | None
    mlflow_enabled: bool
    allow_parallel: bool
    repetitions: int | None
    force_baseline: bool = False
    write_report: bool = True

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        root = config.rootpath
        recipe = config.getoption("hwbench_recipe")
        if recipe is None:
            ini = config.getini("hwbench_recipe")
            if ini:
                base = config.inipath.parent if config.inipath else root
                recipe = _display_path(Path(base, ini), config.invocation_params.dir)
        report_dir = config.getoption("hwbench_report_dir") or config.getini("hwbench_report_dir") or "reports"
        mlflow_ini = (config.getini("hwbench_mlflow") or "").strip()
        uri = config.getoption("hwbench_mlflow") or (mlflow_ini if mlflow_ini not in ("", "off") else None)
        enabled = not config.getoption("no_hwbench_mlflow") and mlflow_ini != "off"
        return cls(recipe_path=recipe, testbed=config.getoption("hwbench_testbed"),
                   save_baseline=config.getoption("hwbench_save_baseline"),
                   require_baseline=config.getoption("hwbench_require_baseline"),
                   baseline_dir=config.getoption("hwbench_baseline_dir"),
                   report_dir=Path(root, report_dir), mlflow_uri=uri, mlflow_enabled=enabled,
                   allow_parallel=config.getoption("hwbench_allow_parallel"),
                   repetitions=config.getoption("hwbench_repetitions"),
                   force_baseline=bool(config.getoption("hwbench_force_baseline", False)),
                   write_report=not config.getoption("no_hwbench_report", False))


def _display_path(path: Path, cwd: Path) -> str:
    """``path`` relative to the working directory when it lies below it (shorter messages), else absolute."""
    try:
        return str(path.resolve().relative_to(cwd.resolve()))
    except ValueError:
        return str(path)


def load_session_recipe(path: str | None) -> Recipe:
    """The recipe named by ``--recipe``/ini, else the embedded default."""
    from pytest_hwbench.recipe.loader import default_recipe, load_recipe

    return load_recipe(path) if path else default_recipe()


def decode_samples(data: str | bytes) -> bytes:
    """Inverse of the payload's samples, as the little-endian float64 bytes ``samples.bin`` holds: base64
    text from an xdist worker, or the raw bytes where the payload never left this process (no encoding
    round trip, issue #14)."""
    return data if isinstance(data, bytes) else base64.b64decode(data)


def plain(value: Any) -> Any:
    """A parameter value as a plain JSON type (repr for anything else)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return repr(value)


_MARKER_KWARGS = pytest.StashKey[dict[str, Any]]()


def marker_kwargs(item: pytest.Item) -> dict[str, Any]:
    """The keyword arguments of the test's closest ``@pytest.mark.hwbench`` ({} without one).

    Read once per test and kept on the item: the plugin asks for them in set-up, the trial loop, judging
    and the report, and each ``get_closest_marker`` walks the node chain (issue #14). A marker is fixed at
    collection; one added later by a fixture is not seen."""
    kw = item.stash.get(_MARKER_KWARGS, None)
    if kw is None:
        marker = item.get_closest_marker("hwbench")
        kw = dict(marker.kwargs) if marker else {}
        item.stash[_MARKER_KWARGS] = kw
    return kw


class HwbenchSession:
    """State of one pytest session for pytest-hwbench."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.options = Options.from_config(config)
        self.recipe = load_session_recipe(self.options.recipe_path)
        register_secrets(self.recipe.secret_values)  # service logs, pid records and errors mask them too
        workerinput = getattr(config, "workerinput", None)
        # Workers use the controller's run id so service logs and results land in one run directory.
        self.run_id = (workerinput or {}).get("hwbench_run_id") or new_run_id()
        self.services = ServiceHub(self.recipe, self.options.report_dir / self.run_id / "services", self.run_id,
                                   workerinput)
        self.started_at = time.time()
        #: ``{test_id: result}``, kept encoded (``EncodedResults`` says why); read it as a mapping.
        self.results = EncodedResults()
        self.writer: RunWriter | None = None
        self.mlflow_warning: str | None = None
        self.mlflow_run_id: str | None = None
        self.baseline_written: list[str] = []
        self.baseline_error: str | None = None
        self.report_warning: str | None = None
        self.node_ids: list[str] = []  # every test that ran, in order (the rerun bundle's selection)
        self.baseline_refused: list[str] = []
        self.sweeps: list[dict[str, Any]] = []
        self._to_save: dict[str, SaveRecord] = {}

    # -- lazily computed environment --------------------------------------------------------------------
    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        from pytest_hwbench.measure.fingerprint import collect_fingerprint

        fp = collect_fingerprint(self.config.rootpath)
        host = self.config.getoption("hwbench_host", None)
        return {**fp, "hostname": host} if host else fp

    @cached_property
    def testbed(self) -> str:
        from pytest_hwbench.measure.fingerprint import derive_testbed

        return self.options.testbed or self.recipe.testbed or derive_testbed(self.fingerprint)

    @cached_property
    def baseline_dir(self) -> Path:
        return Path(self.config.rootpath, self.options.baseline_dir or self.recipe.baseline.dir)

    @cached_property
    def baseline_store(self) -> Any:
        from pytest_hwbench.verdict.baseline import BaselineStore

        return BaselineStore(self.baseline_dir, self.testbed)

    @property
    def require_baseline(self) -> bool:
        return self.options.require_baseline or self.recipe.baseline.require

    @staticmethod
    def service_names(item: pytest.Item) -> list[str]:
        """Services a test names in ``@pytest.mark.hwbench(service=... | services=[...])``."""
        kw = marker_kwargs(item)
        wanted = kw.get("service") or kw.get("services") or []
        return [wanted] if isinstance(wanted, str) else list(wanted)

    def environment(self, service_facts: dict[str, Any] | None,
                    conditions: dict[str, Any] | None = None,
                    tool_versions: dict[str, Any] | None = None) -> dict[str, Any]:
        """The environment a baseline is saved and compared in: the machine fingerprint, the version facts
        of the services the test used, the run conditions the test started under, and the versions of the
        hardware tools it ran (``hwbench.extra["tool_versions"]``, see workloads/hardware/runner.py)."""
        env = dict(self.fingerprint)
        if service_facts:
            env["services"] = service_facts
        if conditions:
            env["conditions"] = conditions
        if tool_versions:
            env["tools"] = tool_versions
        return env

    def repetitions_for(self, item: pytest.Item) -> tuple[int, int]:
        """(warmup, repetitions) for a test: marker, then ``--hwbench-repetitions``, then the recipe."""
        kw = marker_kwargs(item)
        reps = kw.get("repetitions") or self.options.repetitions or self.recipe.repetitions
        warmup = kw.get("warmup", self.recipe.warmup)
        return int(warmup), int(reps)

    # -- judging (runs where the test runs) ------------------------------------------------------------
    def slo_expressions(self, item: pytest.Item) -> list[Any]:
        """Parsed SLOs for a test: recipe rules matching its node id, then the marker's."""
        from pytest_hwbench.verdict.slo import parse_slo

        exprs = [parse_slo(text, f"{self.recipe.path}: slo.{pattern!r}")
                 for pattern, text in self.recipe.slos_for(item.nodeid)]
        marker_slo = marker_kwargs(item).get("slo", [])
        if isinstance(marker_slo, str):
            marker_slo = [marker_slo]
        exprs += [parse_slo(text, f"@pytest.mark.hwbench(slo=...) on {item.nodeid}") for text in marker_slo]
        return exprs

    def judge(self, item: pytest.Item, recorder: Recorder, conditions: dict[str, Any] | None = None,
              look: int = 0) -> tuple[TestResult, dict[str, Any]]:
        """Build the typed result of a finished measurement (SLOs, baseline, validity) and decide it.
        Returns the result and the payload (plain JSON) that travels to the controller."""
        from pytest_hwbench.verdict.decide import decide
        from pytest_hwbench.verdict.result import BaselineComparison, SloOutcome
        from pytest_hwbench.verdict.slo import evaluate_slos

        metrics = recorder.results()
        conditions = dict(conditions or {})
        result = TestResult(test_id=item.nodeid, name=item.name, params=self.params_of(item), metrics=metrics,
                            trials=recorder.trial_count, invalid=invalid_reasons(recorder),
                            conditions=conditions, extra=plain(recorder.extra),
                            worker=os.environ.get("PYTEST_XDIST_WORKER", "main"))
        try:
            exprs = self.slo_expressions(item)
        except HwbenchInputError as err:
            result.slo.append(SloOutcome(expression="", metric="", stat="", passed=False, message=str(err),
                                         error=True))
            exprs = []
        result.service_facts = self.services.facts(self.service_names(item))
        if metrics:
            result.slo += [SloOutcome.from_slo(r) for r in evaluate_slos(exprs, metrics, item.nodeid)]
            result.baseline = self._compare_baseline(
                item, metrics, lambda: self.environment(result.service_facts, conditions,
                                                        recorder.extra.get("tool_versions")), look)
        elif self.options.save_baseline:
            result.baseline = BaselineComparison(status="SAVED")
        self._attribute(result, recorder)
        decide(result, require_baseline=self.require_baseline)
        if result.verdict == "FAIL" and result.bottleneck is not None:
            result.failures.append(result.bottleneck.line())  # why, for the engineer reading the failure
        payload = result.to_dict()
        travels = hasattr(self.config, "workerinput")  # to the controller, as JSON: base64 text
        payload["samples"] = {name: base64.b64encode(m.sample_bytes()).decode("ascii") if travels
                              else m.sample_bytes()
                              for name, m in recorder.metrics.items()
                              if m.trials}
        return result, payload

    @staticmethod
    def _attribute(result: TestResult, recorder: Recorder) -> None:
        """Resource figures and the bottleneck attribution (``verdict.bottleneck``) of the measurement; a
        client-bound attribution makes it invalid (never a PASS), unless the engine already said so."""
        result.resources = resources_payload(recorder.monitor)
        # Only the metrics the attribution reads are encoded for it (issue #14).
        metrics = {n: result.metrics[n].to_dict() for n in METRICS_READ if n in result.metrics}
        result.bottleneck = attribute_result({"resources": result.resources, "extra": result.extra,
                                              "metrics": metrics})
        if not result.bottleneck.valid and not result.invalid:
            result.invalid.append(result.bottleneck.line())

    def _compare_baseline(self, item: pytest.Item, metrics: dict[str, MetricResult],
                          environment_of: Callable[[], dict[str, Any]], look: int) -> Any:
        """The baseline comparison; ``environment_of`` builds the environment, only when there is a
        stored baseline to compare it with."""
        from pytest_hwbench.measure.fingerprint import conditions_differ
        from pytest_hwbench.verdict.baseline import compare_test
        from pytest_hwbench.verdict.result import BaselineComparison

        if self.options.save_baseline:
            return BaselineComparison(status="SAVED")
        try:
            entry = self.baseline_store.load(item.nodeid)
            noise = self.baseline_store.session_noise()
        except HwbenchInputError as err:
            return BaselineComparison(status="ERROR", message=str(err))
        if entry is None:
            return BaselineComparison(
                status="NO_BASELINE",
                message=f"{item.name}: no baseline for testbed {self.testbed!r} in {self.baseline_dir} "
                        "(save one with --hwbench-save-baseline)")
        environment = environment_of()
        stored = [s.environment.get("conditions") or {} for s in entry.sessions]
        differ = conditions_differ(stored, environment.get("conditions") or {},
                                   contended=self.recipe.baseline.contended_cpu_share)
        return compare_test(metrics, entry, self.recipe.baseline, environment, noise=noise, conditions=differ,
                            look=look)

    @staticmethod
    def wants_more_trials(result: TestResult) -> bool:
        """True while a compared metric is INCONCLUSIVE: the sequential loop adds a round of trials."""
        return result.baseline is not None and bool(result.baseline.by_status("INCONCLUSIVE"))

    @staticmethod
    def params_of(item: pytest.Item) -> dict[str, Any]:
        callspec = getattr(item, "callspec", None)
        return {k: plain(v) for k, v in callspec.params.items()} if callspec else {}

    # -- collecting and writing (controller only) ------------------------------------------------------
    def add_result(self, payload: dict[str, Any], report: pytest.TestReport) -> dict[str, Any]:
        """Take one test's payload from its call report: keep it, append it, write its raw samples; returns
        the result as kept (secrets masked), for the ``pytest_hwbench_result`` hook."""
        samples: dict[str, bytes | np.ndarray] = {name: decode_samples(text)
                                                  for name, text in payload.pop("samples", {}).items()}
        samples.update(pop_timelines(payload))
        payload["outcome"] = report.outcome if report.when == "call" else "error"
        payload["duration_s"] = report.duration
        payload, line = redact_payload(payload, self.recipe.secret_values)
        earlier = self.results.get(payload["test_id"]) if report.when == "teardown" else None
        if earlier is not None:  # measured, then its teardown failed
            earlier.update(verdict="ERROR", outcome="error",
                           failures=[*earlier.get("failures", []), *payload.get("failures", [])])
            payload, line = earlier, None
        self.results.put(payload, line)
        writer = self._writer()
        writer.append_result(payload, line)
        writer.write_samples(payload["test_id"], samples)
        if self.options.save_baseline and payload["metrics"]:
            self._queue_baseline(payload, report)
        return payload

    def _queue_baseline(self, payload: dict[str, Any], report: pytest.TestReport) -> None:
        """Keep a passed test's measurement for the baseline file; an invalid one only when forced."""
        from pytest_hwbench.verdict.baseline import SaveRecord

        if report.outcome != "passed":
            return
        if payload.get("invalid") and not self.options.force_baseline:
            self.baseline_refused.append(f"{payload['test_id']}: " + "; ".join(payload.get("invalid_reasons", [])))
            return
        git = self.fingerprint.get("git") or {}
        self._to_save[payload["test_id"]] = SaveRecord(
            metrics={n: MetricResult.from_dict(m) for n, m in payload["metrics"].items()},
            environment=self.environment(payload.get("service_facts"), payload.get("conditions"),
                                         (payload.get("extra") or {}).get("tool_versions")),
            commit=git.get("commit"), run_id=self.run_id)

    def add_skip(self, report: pytest.TestReport) -> None:
        """Record a skipped hwbench test (e.g. the recipe provides no such service) so it shows."""
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        payload: dict[str, Any] = {
            "test_id": report.nodeid, "name": report.nodeid.split("::")[-1], "outcome": "skipped",
            "verdict": "SKIP", "skip_reason": reason, "metrics": {}, "slo": [], "baseline": None,
            "failures": [], "warnings": []}
        payload = redact(payload, self.recipe.secret_values)
        self.results.put(payload)
        self._writer().append_result(payload)

    def _writer(self) -> RunWriter:
        if self.writer is None:
            self.writer = RunWriter(self.options.report_dir, self.run_id)
            self.writer.write_manifest(self.manifest(complete=False, exitstatus=None))
        return self.writer

    def manifest(self, *, complete: bool, exitstatus: int | None) -> dict[str, Any]:
        recipe = self.recipe
        return redact({
            "schema": SCHEMA_VERSION, "run_id": self.run_id, "hwbench_version": __version__,
            "started_at": _iso(self.started_at), "finished_at": _iso(time.time()) if complete else None,
            "complete": complete, "exit_status": exitstatus,
            "command_line": [sys.executable, "-m", "pytest", *self.config.invocation_params.args],
            "invocation_args": list(self.config.invocation_params.args),
            "cwd": str(self.config.invocation_params.dir),
            "testbed": self.testbed,
            "recipe": {"path": recipe.path, "name": recipe.name, "sha256": recipe.sha256, "text": recipe.text},
            "options": {"save_baseline": self.options.save_baseline,
                        "require_baseline": self.require_baseline,
                        "allow_parallel": self.options.allow_parallel,
                        "baseline_dir": str(self.baseline_dir)},
            "fingerprint": self.fingerprint, "git": self.fingerprint.get("git"),
            "services": self.services.manifest(), "reaped_leftovers": self.services.reaped,
            "rerun": self._rerun_bundle(),
        }, recipe.secret_values)

    def _rerun_bundle(self) -> dict[str, Any]:
        from pytest_hwbench.report.rerun import bundle

        o = self.options
        options = {"testbed": o.testbed, "repetitions": o.repetitions, "baseline_dir": str(self.baseline_dir),
                   "report_dir": str(o.report_dir), "require_baseline": o.require_baseline,
                   "allow_parallel": o.allow_parallel, "mlflow_uri": o.mlflow_uri, "mlflow_enabled": o.mlflow_enabled,
                   "save_baseline": o.save_baseline}
        return bundle(node_ids=list(self.node_ids), options=options, recipe_text=self.recipe.text,
                      recipe_path=o.recipe_path, cwd=str(self.config.invocation_params.dir),
                      numprocesses=getattr(self.config.option, "numprocesses", None))

    def finish(self, exitstatus: int) -> None:
        """Session end on the controller: results.json, run.json, baselines, MLflow. Never raises for
        reporting problems: they become warnings in the terminal summary."""
        if self.writer is None:
            return
        complete = exitstatus not in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)
        with collector_paused():  # decoding and rendering 1000s of results (gc_pause says why)
            self.sweeps = analyze_sweeps(self.results.sweep_points())
            results_doc = {"schema": SCHEMA_VERSION, "run_id": self.run_id, "testbed": self.testbed,
                           "complete": complete, "sweeps": self.sweeps,
                           "recipe": {"name": self.recipe.name, "sha256": self.recipe.sha256}}
            self.writer.write_results(results_doc, self.results.encoded())
            if self._to_save and complete:
                try:
                    self.baseline_store.save(self._to_save, keep=self.recipe.baseline.sessions)
                    self.baseline_written = sorted(self._to_save)
                except HwbenchInputError as err:  # an existing file is broken: keep it, say so
                    self.baseline_error = f"baselines not saved: {err}"
                except OSError as err:  # full disk, read-only checkout: the old files stay (atomic writes)
                    self.baseline_error = (f"baselines not saved: {err.strerror or err} in {self.baseline_dir} "
                                           "(fix: free disk space or make the baseline directory writable; "
                                           "the previous baselines are unchanged)")
            manifest = self.manifest(complete=complete, exitstatus=int(exitstatus))
            self.writer.write_manifest(manifest)
            self.writer.close()
            if self.options.write_report:
                from pytest_hwbench.report.document import write_report_safely

                self.report_warning = write_report_safely(self.writer.dir)
        self._log_mlflow(manifest)

    def release(self) -> None:
        """Drop the run's results once everything is written and printed (``pytest_unconfigure``): pytest
        then runs several full garbage collections, and 1000 tests' results made each one slower."""
        self.results = EncodedResults()
        self.sweeps = []
        self._to_save = {}

    def mlflow_uri(self) -> str | None:
        if not (self.options.mlflow_enabled and self.recipe.mlflow.enabled):
            return None
        uri = (self.options.mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI")
               or self.recipe.mlflow.tracking_uri)
        return uri or f"sqlite:///{(self.options.report_dir / 'mlflow.db').resolve()}"

    def _log_mlflow(self, manifest: dict[str, Any]) -> None:
        uri = self.mlflow_uri()
        if uri is None or self.writer is None:
            return
        from pytest_hwbench.report.mlflow_log import log_session

        outcome = log_session(uri, self.recipe.mlflow.experiment, manifest, list(self.results.values()),
                              [self.writer.dir / "results.json", self.writer.dir / "run.json"],
                              self.recipe.secret_values, probe_timeout_s=self.recipe.mlflow.probe_timeout_s,
                              probe_retries=self.recipe.mlflow.probe_retries)
        self.mlflow_warning = outcome.warning
        if not outcome.ok and outcome.warning:
            assert self.mlflow_warning is not None  # it is outcome.warning, just checked
            self.mlflow_warning += f" (log it later: hwbench mlflow upload {self.writer.dir})"
        self.mlflow_run_id = outcome.parent_run_id if outcome.ok else None


def invalid_reasons(recorder: Recorder) -> list[str]:
    """Why a measurement is not valid: what the workload said (``Recorder.invalidate``), plus any load
    generator self-check in ``recorder.extra`` that found the client to be the bottleneck."""
    reasons = list(getattr(recorder, "invalid", []))
    for label, note in recorder.extra.items():
        if not isinstance(note, dict):
            continue
        totals = note.get("totals") or {}
        bound = int(totals.get("client_bound_trials") or 0) if isinstance(totals, dict) else 0
        if note.get("client_bound") is True:
            bound = max(bound, 1)
        text = f"{label}: load generator was the bottleneck (client-bound) in {bound} trial(s)"
        if bound and not any(r.startswith(f"{label}:") for r in reasons):
            reasons.append(text)
    return reasons


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def dumps_payload(payload: dict[str, Any]) -> str:
    return json.dumps(payload, allow_nan=False)


def payload_property(payload: dict[str, Any], config: pytest.Config) -> Any:
    """The payload as it rides in ``report.user_properties``: JSON text on an xdist worker (the report
    crosses to the controller), the dict itself where this process is the controller. The controller takes
    it off the report first (a ``tryfirst`` hook), so no other plugin sees it; encoding and decoding it
    in the same process cost ~0.1 ms per test (issue #14)."""
    return dumps_payload(payload) if hasattr(config, "workerinput") else payload


def payload_of_property(value: Any) -> dict[str, Any]:
    """Inverse of :func:`payload_property`."""
    return value if isinstance(value, dict) else json.loads(str(value))
