"""pytest hooks of pytest-hwbench. Only wiring: the work is in ``session.HwbenchSession`` and the stage
packages (recipe, measure, verdict, report).

Flow of one test that requests the ``hwbench`` fixture:
1. ``pytest_generate_tests`` parametrises sweep arguments from the recipe (or the marker's defaults).
2. setup: the fixture creates a ``Recorder``; a marker's ``service=`` not in the recipe skips the test.
3. call: the body runs ``warmup`` + ``repetitions`` times (one trial each), under a cross-process lock
   when xdist runs several workers, then SLOs and the baseline are judged and a violation fails the test.
4. the call report carries the payload (plain JSON) to the controller, which writes results, samples,
   baselines and MLflow, and prints the summary table.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.collection_checks import check_collection, positive_repetitions
from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.recorder import Recorder
from pytest_hwbench.outcomes import (
    DEATH_KEY,
    error_payload,
    mark_error_verdict,
    reason_of,
    reword,
    service_death,
    take_death_notes,
    teardown_text,
    touches_services,
    uses_hwbench,
)
from pytest_hwbench.report import progress
from pytest_hwbench.report.gc_pause import collector_paused
from pytest_hwbench.report.redact import redact_report
from pytest_hwbench.report.sweeps import analyze_sweeps
from pytest_hwbench.session import PAYLOAD_KEY, HwbenchSession, payload_of_property, payload_property
from pytest_hwbench.verdict.result import TestResult

SESSION_KEY = pytest.StashKey[HwbenchSession]()
RECORDER_KEY = pytest.StashKey[Recorder]()
PAYLOAD_STASH = pytest.StashKey[dict]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_hwbench import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hwbench", "benchmarks as tests (pytest-hwbench)")
    group.addoption("--recipe", dest="hwbench_recipe", metavar="PATH",
                    help="recipe YAML: services, sweeps, repetitions, SLOs, baseline policy "
                         "(default: ini hwbench_recipe, else the embedded default recipe)")
    group.addoption("--hwbench-testbed", metavar="NAME",
                    help="testbed name keying baselines (default: recipe 'testbed', else derived from "
                         "CPU model, cores, memory and GPUs)")
    group.addoption("--hwbench-host", metavar="NAME", default=os.environ.get("HWBENCH_HOST") or None,
                    help="host name reported for this machine (default: $HWBENCH_HOST, else the hostname); "
                         "for a box whose hostname is not unique in the fleet")
    group.addoption("--hwbench-save-baseline", action="store_true",
                    help="write/update baselines/<testbed>/ from this run instead of comparing")
    group.addoption("--hwbench-force-baseline", action="store_true",
                    help="with --hwbench-save-baseline: also save measurements flagged invalid (client-bound)")
    group.addoption("--hwbench-require-baseline", action="store_true",
                    help="fail tests that have no baseline (for CI gates)")
    group.addoption("--hwbench-baseline-dir", metavar="DIR", help="baseline root (default: recipe baseline.dir)")
    group.addoption("--hwbench-report-dir", metavar="DIR", help="where run directories go (default: reports)")
    group.addoption("--hwbench-mlflow", metavar="URI",
                    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under reports/)")
    group.addoption("--no-hwbench-mlflow", action="store_true", help="do not log to MLflow")
    group.addoption("--hwbench-allow-parallel", action="store_true",
                    help="let timed tests overlap under xdist (default: one timed test at a time)")
    group.addoption("--hwbench-repetitions", type=positive_repetitions, metavar="N",
                    help="override the recipe's repetitions (measured trials per test)")
    group.addoption("--no-hwbench-report", action="store_true",
                    help="do not write report.md/report.html (regenerate later with: hwbench report RUN)")
    group.addoption("--hwbench-lenient", action="store_true",
                    help="an SLO pattern matching no test or a sweep key matching no test argument is a "
                         "warning instead of an error")
    parser.addini("hwbench_recipe", "default recipe path (relative to the ini file)", default="")
    parser.addini("hwbench_report_dir", "default report directory", default="")
    parser.addini("hwbench_mlflow", "MLflow tracking URI, or 'off'", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hwbench(slo=[...], repetitions=N, warmup=N, service=NAME, sweep={arg: [values]}): "
        "pytest-hwbench settings for one benchmark")
    try:
        session = HwbenchSession(config)
    except HwbenchInputError as err:
        raise pytest.UsageError(f"pytest-hwbench: {err}") from None
    config.stash[SESSION_KEY] = session
    progress.install(config)
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(ControllerHooks(config, session), "hwbench-controller")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistControllerHooks(session), "hwbench-xdist")
    if config.pluginmanager.hasplugin("benchmark"):  # pytest-benchmark's tests get hwbench verdicts too
        from pytest_hwbench.measure.pytest_benchmark_compat import BenchmarkFixtureBridge

        config.pluginmanager.register(BenchmarkFixtureBridge(session, RECORDER_KEY, _judged),
                                      "hwbench-pytest-benchmark")


def pytest_unconfigure(config: pytest.Config) -> None:
    progress.uninstall()
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        for err in session.services.stop_all():
            print(f"pytest-hwbench: stopping a service failed: {err}")
        session.release()


def get_session(config: pytest.Config) -> HwbenchSession:
    return config.stash[SESSION_KEY]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise sweep arguments: recipe ``sweep`` wins over the marker's ``sweep`` defaults; arguments the
    test parametrises itself are left alone."""
    session = metafunc.config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    marker = metafunc.definition.get_closest_marker("hwbench")
    defaults: dict[str, Any] = (marker.kwargs.get("sweep") or {}) if marker else {}
    own = {name.strip() for m in metafunc.definition.iter_markers("parametrize")
           for name in (m.args[0].split(",") if isinstance(m.args[0], str) else m.args[0])}
    for arg in metafunc.fixturenames:
        if arg in own:
            continue
        values = session.recipe.sweep.get(arg, defaults.get(arg))
        if arg in defaults and arg in session.recipe.sweep and list(defaults[arg]) != list(values or []):
            metafunc.definition.warn(pytest.PytestWarning(
                f"sweep {arg}={list(values or [])} from recipe {session.recipe.path} overrides the marker's "
                f"sweep={{{arg!r}: {list(defaults[arg])}}} (the recipe wins; pass --recipe to choose another)"))
        if values is not None:
            metafunc.parametrize(arg, list(values), ids=[f"{arg}={v}" for v in values])


@pytest.fixture
def hwbench() -> Iterator[Recorder]:
    """Record named metrics for this benchmark: ``hwbench.record(name, value, unit=..., better=...)``,
    ``with hwbench.timer(name):``. The body runs once per trial; see the README."""
    from pytest_hwbench.measure.samplers.monitor import monitor_for

    # The test comes from pytest_runtest_protocol, not from a ``request`` argument: pytest builds a fixture
    # definition (with ``inspect.signature``) each time ``request`` is asked for, ~40 µs a test (issue #14).
    item = _RUNNING[-1]
    session = get_session(item.config)
    recorder = Recorder(item.nodeid, params=session.params_of(item), recipe=session.recipe,
                        confidence=session.recipe.baseline.confidence)
    recorder.monitor = monitor_for(session.recipe.resources,
                                   lambda: session.services.sampling_pids(session.service_names(item)))
    item.stash[RECORDER_KEY] = recorder
    yield recorder
    if recorder.monitor is not None:
        recorder.monitor.close()
    del item.stash[RECORDER_KEY]  # done with it: 1000s of finished tests' recorders would slow every gc pass


@pytest.fixture(scope="session")
def hwbench_services(request: pytest.FixtureRequest) -> Any:
    """The recipe's services: ``hwbench_services.endpoint("llm")`` starts it if needed (once per session)
    and returns its ``Endpoint`` (host, port, url, extra)."""
    return get_session(request.config).services


@pytest.fixture
def hwbench_endpoint(request: pytest.FixtureRequest, hwbench_services: Any) -> Any:
    """Endpoint of the service named by the test's ``@pytest.mark.hwbench(service="...")``."""
    marker = request.node.get_closest_marker("hwbench")
    name = marker.kwargs.get("service") if marker else None
    if not isinstance(name, str):
        raise pytest.UsageError(f"{request.node.nodeid}: hwbench_endpoint needs "
                                "@pytest.mark.hwbench(service='<name from the recipe>')")
    return hwbench_services.endpoint(name)


@pytest.fixture(scope="session")
def hwbench_sweeps(request: pytest.FixtureRequest) -> Any:
    """``hwbench_sweeps()`` analyses the sweeps among the results so far (knee, max load under SLO), for
    assertions in a test that runs after the sweep. Results reach this process only without xdist."""
    session = get_session(request.config)

    def analyse() -> list[dict[str, Any]]:
        return analyze_sweeps(list(session.results.values()))

    return analyse


class XdistControllerHooks:
    """Under xdist the controller owns the services and hands their endpoints to each worker."""

    def __init__(self, session: HwbenchSession) -> None:
        self.session = session
        self._started = False

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if not self._started:
            self._started = True
            self.session.services.start_all()
        node.workerinput.update(self.session.services.workerinput(), hwbench_run_id=self.session.run_id)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before -k/-m deselect anything: marker keywords, SLO patterns and sweep keys that select nothing."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for text in check_collection(config, session.recipe, items):
        if reporter is not None and not hasattr(config, "workerinput"):
            reporter.write_line(f"pytest-hwbench: warning: {text}", yellow=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    session = get_session(item.config)
    for name in session.service_names(item):
        session.services.check_provided(name)


@contextlib.contextmanager
def _exclusive(item: pytest.Item, session: HwbenchSession) -> Iterator[None]:
    """One hwbench test at a time across xdist workers, unless --hwbench-allow-parallel. Held for the whole
    protocol (set-up, call, teardown), so one worker's seeding, warm-up and cleanup of a shared service
    neither overlap the other's timed window nor look like foreign data to its set-up."""
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None or session.options.allow_parallel or item.stash.get(LOCK_HELD, False):
        yield
        return
    from filelock import FileLock

    lock_path = Path(tempfile.gettempdir(), f"hwbench-{workerinput['testrunuid']}.lock")
    with FileLock(str(lock_path)):
        item.stash[LOCK_HELD] = True
        try:
            yield
        finally:
            item.stash[LOCK_HELD] = False


LOCK_HELD = pytest.StashKey[bool]()


#: The tests being run, innermost last (a test that runs pytest in-process, as pytester does, nests one).
_RUNNING: list[pytest.Item] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
    _RUNNING.append(item)
    try:
        session = item.config.stash.get(SESSION_KEY, None)
        if session is None or not uses_hwbench(item):
            return (yield)
        with _exclusive(item, session):
            return (yield)
    finally:
        _RUNNING.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """Warm-up, then rounds of ``repetitions`` trials: after each round the verdict is judged, and while a
    baseline comparison is INCONCLUSIVE another round runs, up to ``baseline.reruns`` extra rounds and
    ``baseline.max_seconds`` (the FAIL boundary of each look accounts for the repeated looks). Saving a
    baseline runs every round."""
    recorder = item.stash.get(RECORDER_KEY, None)
    if recorder is None:
        return (yield)
    from pytest_hwbench.measure.fingerprint import LoadMeter, run_conditions

    session = get_session(item.config)
    warmup, reps = session.repetitions_for(item)
    policy = session.recipe.baseline
    progress.begin_test(item.nodeid)
    with _exclusive(item, session):
        conditions = run_conditions()
        try:
            for i in range(warmup):
                recorder.begin_trial(i, warmup=True)
                progress.begin_trial(i, reps, warmup=True)
                item.runtest()
            started = time.monotonic()
            meter = LoadMeter()
            for i in range(reps - 1):
                recorder.begin_trial(i)
                progress.begin_trial(i, reps)
                item.runtest()
            recorder.begin_trial(reps - 1)
            progress.begin_trial(reps - 1, reps)
            result = yield
            conditions["load_other"] = meter.external_fraction()
            recorder.end_trial()
            verdict, payload = session.judge(item, recorder, conditions, look=0)
            # Saving a baseline spends the whole budget: a stored session is compared many times.
            saving = session.options.save_baseline
            for look in range(1, policy.reruns + 1):
                if not (saving or session.wants_more_trials(verdict)):
                    break
                spent = time.monotonic() - started
                if spent + spent / look > policy.max_seconds:
                    break
                for _ in range(reps):
                    progress.begin_trial(recorder.trial_count, recorder.trial_count + 1)
                    recorder.begin_trial(recorder.trial_count)
                    item.runtest()
                conditions["load_other"] = meter.external_fraction()
                recorder.end_trial()
                verdict, payload = session.judge(item, recorder, conditions, look=look)
        except BaseException:
            recorder.end_trial()
            if recorder.metrics:  # keep partial measurements of a test that crashed
                _, payload = session.judge(item, recorder, conditions)
                payload["verdict"] = "ERROR"
                item.stash[PAYLOAD_STASH] = payload
            raise
        finally:
            progress.end_test()
    _judged(item, verdict, payload)
    return result


def _judged(item: pytest.Item, verdict: TestResult, payload: dict) -> None:
    """Hand a judged test's payload to its report, add its JUnit properties, and fail it on a FAIL."""
    item.stash[PAYLOAD_STASH] = payload
    item.user_properties.extend(junit_properties(verdict))
    if verdict.verdict == "FAIL":
        pytest.fail("\n".join(verdict.failures), pytrace=False)


def junit_properties(result: TestResult) -> list[tuple[str, Any]]:
    """Flat JUnit properties: verdict, baseline status, trials used, validity, the key stats of each
    metric, and each compared metric's change against the baseline."""
    props: list[tuple[str, Any]] = [("hwbench.verdict", result.verdict),
                                    ("hwbench.baseline", result.baseline_status),
                                    ("hwbench.trials", result.trials)]
    if result.invalid:
        props.append(("hwbench.invalid", "; ".join(result.invalid)))
    for name, metric in result.metrics.items():
        summary = metric.summary
        for stat, value in (("median", summary.percentiles.get("p50")), ("p99", summary.percentiles.get("p99")),
                            ("mean", summary.mean), ("count", summary.count)):
            if value is not None and value == value:
                props.append((f"hwbench.{name}.{stat}", value))
        if metric.unit:
            props.append((f"hwbench.{name}.unit", metric.unit))
    if result.baseline is not None:
        for comp in result.baseline.metrics:
            props.append((f"hwbench.{comp.metric}.baseline", comp.status))
            if comp.change is not None:
                props.append((f"hwbench.{comp.metric}.change", round(comp.change, 6)))
    for text in result.warnings:
        props.append(("hwbench.warning", text))
    return props


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    payload = item.stash.get(PAYLOAD_STASH, None) if call.when == "call" else None
    if payload is not None:
        del item.stash[PAYLOAD_STASH]  # it travels on the report from here (and is not kept twice)
    session = item.config.stash.get(SESSION_KEY, None)
    if payload is not None and session is not None:  # a service that died during the measurement voids it
        death = service_death(session.services, session.service_names(item))
        if death:
            payload["verdict"] = "ERROR"
            payload["failures"] = [death, *payload.get("failures", [])]
            report.outcome = "failed"
            report.longrepr = death if report.longrepr is None else f"{death}\n{report.longrepr}"
            mark_error_verdict(item, report)
        elif report.failed and payload.get("verdict") == "ERROR":  # crashed after some trials: say why
            payload["failures"] = [f"error in the test body after {payload.get('trials', 0)} trial(s): "
                                   f"{reason_of(report)}", *payload.get("failures", [])]
            payload["error_phase"] = "call"
    else:
        if (call.when == "teardown" and report.failed and call.excinfo is not None and session is not None
                and touches_services(item)):  # one paragraph, not a traceback
            text = teardown_text(item, call.excinfo, session.services.dead(session.service_names(item)))
            report.longrepr = text or report.longrepr
        if report.failed and session is not None and uses_hwbench(item):  # set-up, teardown, crash before a value
            payload = error_payload(item, report, session.params_of(item))
    if payload is not None:
        report.user_properties.append((PAYLOAD_KEY, payload_property(payload, item.config)))
    if session is not None and session.services.pending_deaths:  # a worker: the controller words them
        report.user_properties.extend((DEATH_KEY, json.dumps(n)) for n in session.services.pending_deaths)
        session.services.pending_deaths.clear()
    redact_report(report)  # terminal and JUnit render from the report
    return report


class ControllerHooks:
    """Hooks that only the controller (or a plain run) has: it is the one writer of results."""

    def __init__(self, config: pytest.Config, session: HwbenchSession) -> None:
        self.config, self.session = config, session

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Take the payload off the call report (before JUnit sees it) and hand it to the session."""
        if report.when == "setup":
            self.session.node_ids.append(report.nodeid)
        notes = take_death_notes(report)  # from a worker: worded here, where the exit status is known
        for i, (key, value) in enumerate(report.user_properties):
            if key == PAYLOAD_KEY:
                del report.user_properties[i]
                payload = payload_of_property(value)
                for note in notes:
                    reword(report, payload, note["text"], self.session.services.settle(note))
                notes = []
                kept = self.session.add_result(payload, report)
                self.config.hook.pytest_hwbench_result(config=self.config, result=kept)
                break
        else:
            if report.skipped and report.when == "setup" and "hwbench" in report.keywords:
                self.session.add_skip(report)
        for note in notes:  # a death on a test without a payload (no ``hwbench`` fixture)
            reword(report, None, note["text"], self.session.services.settle(note))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    if hasattr(config, "workerinput"):
        return
    hw = get_session(config)
    hw.finish(exitstatus)
    hook = config.hook.pytest_hwbench_run_finished
    if hw.writer is not None and hook.get_hookimpls():  # decoded only for someone who listens
        with collector_paused():
            results = list(hw.results.values())
        hook(config=config, run_dir=str(hw.writer.dir), results=results)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    hw = config.stash.get(SESSION_KEY, None)
    if hw is None or hasattr(config, "workerinput"):
        return
    if hw.services.reaped_text:  # said even when no test produced a result
        terminalreporter.write_line(hw.services.reaped_text, yellow=True)
    if not hw.results:
        return
    from pytest_hwbench.report.terminal import write_summary

    with collector_paused():
        write_summary(terminalreporter, hw)
    if hw.writer is not None and hw.writer.error:  # one line for a storage fault; the verdicts above stand
        terminalreporter.write_line(hw.writer.error, red=True, bold=True)


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Never walk the report directory during collection (thousands of run files, nothing to collect)."""
    session = config.stash.get(SESSION_KEY, None)
    if session is not None and collection_path == session.options.report_dir:
        return True
    return None
