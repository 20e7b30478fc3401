"""The shortcuts that keep the plugin's per-test cost low (issue #14) give the same answers as the long way.

Each shortcut skips work when it can prove the work would change nothing: the scan of a result's JSON text
instead of the redaction walk, one-value summaries without numpy, the sampler's sources built only at a
trial's first reading, ``results.json`` by the C encoder. These tests pin the "would change nothing" part;
the speed itself is checked by ``scripts/bench_overhead.py``, not here.
"""

from __future__ import annotations

import json
import types

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hwbench.measure.metric import Metric
from pytest_hwbench.measure.samplers.monitor import ResourceMonitor
from pytest_hwbench.measure.stats import summarize
from pytest_hwbench.report.files import redact_payload, results_json_text
from pytest_hwbench.report.redact import Redactor
from pytest_hwbench.session import payload_of_property, payload_property

SECRETS = ("hunter2-secret", "pässwörd-ünïcode", 'quo"te\\slash')

# Text that often holds what the redactor looks for: the secrets, URLs with passwords, secret flags.
_pieces = st.sampled_from([*SECRETS, "https://user:pw@host/x", "--token=abc123", "--requirepass s3cr3tvalue",
                           "--api-key=zz9", "--DB-Password hunter9", "-masterauth=q1", "--Api_Key", "PASSED",
                           "-", "pass", "key", "auth", "://", "@", " ", "=", "plain words", "é", "\n", '"'])
_text = st.lists(_pieces, max_size=6).map("".join) | st.text(max_size=20)
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                     | _text,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                     max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(_json)
def test_the_text_scan_never_misses_what_the_walk_would_mask(obj: object) -> None:
    redactor = Redactor(SECRETS)
    if redactor.data(obj) != obj:
        assert redactor.may_change_json(json.dumps(obj, sort_keys=True))


def test_redact_payload_masks_and_encodes_the_masked_result() -> None:
    payload = {"test_id": "t::x", "failures": ["server said --token=abc123def"], "extra": {"k": SECRETS[0]}}
    masked, line = redact_payload(payload, SECRETS)
    assert line is not None and json.loads(line) == masked
    assert "abc123def" not in line and SECRETS[0] not in line
    clean = {"test_id": "t::y", "verdict": "PASS", "message": "--hwbench-save-baseline passed"}
    same, line = redact_payload(clean, SECRETS)
    assert same is clean and line == json.dumps(clean, sort_keys=True)


def test_results_json_is_one_test_per_line_and_round_trips() -> None:
    doc = {"schema": 1, "run_id": "r", "complete": True, "sweeps": [{"a": [1, 2]}],
           "tests": [{"test_id": "a", "metrics": {"v": {"trial_values": [1.5]}}}, {"test_id": "b"}]}
    text = results_json_text(doc)
    assert json.loads(text) == doc
    lines = text.splitlines()
    first = lines.index('"tests": [') + 1
    assert [json.loads(line.rstrip(",")) for line in lines[first:first + 2]] == doc["tests"]
    assert json.loads(results_json_text({**doc, "tests": []})) == {**doc, "tests": []}


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_one_value_summary_matches_the_array_path(value: float) -> None:
    metric = Metric("v")
    metric.add(value, 0)
    fast = metric.result().summary
    assert fast == summarize(np.array([value]))
    assert np.frombuffer(metric.sample_bytes(), dtype="<f8").tolist() == [value]


def test_a_trial_shorter_than_its_first_reading_builds_no_sources() -> None:
    asked: list[int] = []
    monitor = ResourceMonitor(interval_s=30.0, targets=lambda: asked.append(1) or [])  # first reading at 6 s
    monitor.begin_trial()
    monitor.end_trial()
    assert monitor._sources is None  # nothing was read: no /sys or /proc look-ups, no NVML
    assert asked == [1]  # the service processes are still resolved on the test's thread
    assert len(monitor.timelines) == 1 and len(monitor.timelines[0]) == 0
    monitor.close()


def test_payload_travels_as_a_dict_in_process_and_as_json_from_a_worker() -> None:
    payload = {"test_id": "t::x", "metrics": {}}
    here = payload_property(payload, types.SimpleNamespace())  # type: ignore[arg-type]
    worker = payload_property(payload, types.SimpleNamespace(workerinput={}))  # type: ignore[arg-type]
    assert here is payload and isinstance(worker, str)
    assert payload_of_property(here) is payload and payload_of_property(worker) == payload


def test_results_are_kept_encoded_and_read_back_as_they_were() -> None:
    """``EncodedResults`` keeps each result as its results.jsonl line; reading decodes it, a result that
    cannot be encoded is kept as it is, and the terminal digest and sweep points need no decoding."""
    from pytest_hwbench.report.files import EncodedResults, result_line

    store = EncodedResults()
    measured = {"test_id": "t.py::test_a[users=4]", "name": "test_a[users=4]", "verdict": "FAIL",
                "params": {"users": 4}, "trials": 3, "warnings": ["slow start"],
                "metrics": {"rps": {"unit": "1/s", "estimated": False,
                                    "summary": {"p50": 10.0, "p99": 12.0, "ci": {"p50": [9.0, 11.0]}}}},
                "bottleneck": {"cause": "cpu", "evidence": ["server thread at 100%"], "next_action": "scale up",
                               "valid": True, "also": []}}
    store.put(measured, result_line(measured))
    assert store.encoded() == [result_line(measured)]  # results.json is written from the kept lines
    broken = {"test_id": "t.py::test_nan", "verdict": "ERROR", "metrics": {}, "value": float("nan")}
    store.put(broken)  # NaN cannot be encoded: kept as the dict, the writer reports the fault
    skipped = {"test_id": "t.py::test_s", "verdict": "SKIP", "skip_reason": "Skipped: no GPU", "metrics": {}}
    store.put(skipped)
    assert list(store) == ["t.py::test_a[users=4]", "t.py::test_nan", "t.py::test_s"]
    assert store["t.py::test_a[users=4]"] == measured and store["t.py::test_a[users=4]"] is not measured
    assert store["t.py::test_nan"] is broken
    digest = store.digests()
    assert [d.verdict for d in digest] == ["FAIL", "ERROR", "SKIP"]
    assert digest[0].rows[0][:4] == ("FAIL", "", "test_a[users=4]", "rps")
    assert digest[0].warnings == ("slow start",) and digest[0].bottleneck.startswith("test_a[users=4]: bottleneck: cpu")
    assert digest[2].skip_reason == "no GPU" and not digest[2].rows
    assert [r["test_id"] for r in store.sweep_points()] == ["t.py::test_a[users=4]"]


def test_the_collector_is_paused_only_for_the_block() -> None:
    import gc

    from pytest_hwbench.report.gc_pause import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # restored as found
    finally:
        gc.enable()


def test_the_busy_cpu_reading_matches_psutil() -> None:
    """The load meter's /proc/stat reading (pread on a kept descriptor) counts what psutil's does."""
    import psutil
    import pytest

    from pytest_hwbench.measure.fingerprint import _proc_stat_busy

    fast = _proc_stat_busy()
    if fast is None:
        pytest.skip("no /proc/stat on this system: the psutil path is the one used")
    t = psutil.cpu_times()
    slow = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
    assert fast == pytest.approx(slow, abs=1.0)  # the two readings are a few ms apart


def test_no_nvidia_driver_is_said_without_loading_nvml(monkeypatch) -> None:
    import sys

    from pytest_hwbench.measure import gpu

    monkeypatch.delitem(sys.modules, "pynvml", raising=False)
    monkeypatch.setattr(gpu.sys, "platform", "linux")
    monkeypatch.setattr(gpu.os.path, "exists", lambda path: False)
    inv = gpu.gpu_inventory()
    assert not inv.available and inv.reason.startswith("no NVIDIA driver on this machine")
    assert "/dev/nvidiactl" in inv.reason and "pynvml" not in sys.modules
    monkeypatch.setattr(gpu.os.path, "exists", lambda path: path == "/dev/nvidiactl")
    assert gpu.no_driver_reason() is None  # a driver file: NVML is asked
    monkeypatch.setitem(sys.modules, "pynvml", types.ModuleType("pynvml"))
    monkeypatch.setattr(gpu.os.path, "exists", lambda path: False)
    assert gpu.no_driver_reason() is None  # already loaded (or stood in for by a test): asked as well


def test_a_run_of_one_value_tests_never_imports_numpy(pytester) -> None:
    """numpy costs a pytest process ~50 ms to import, and its ~7,000 objects are scanned by every later full
    collection (issue #14): a run whose tests record one value each (one trial) must not import it, from
    set-up to the written report. The guard plugin records what was loaded when pytest unconfigures. (Two or
    more values per metric are summarised with numpy and scipy, and their distribution is drawn.)"""
    pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.parametrize("i", range(3))
        def test_value(hwbench, i):
            hwbench.record("value", float(i) + 0.5, unit="ms")
    """)
    pytester.makepyfile(numpy_guard="""
        import json, sys

        def pytest_unconfigure(config):
            with open("loaded.json", "w") as fh:
                json.dump(sorted(m for m in sys.modules if m.split(".")[0] == "numpy"), fh)
    """)
    # Sampling stays on (the default path), with its first reading 2 s after a trial starts (a fifth of the
    # interval): a trial preempted past it on a loaded machine would record a resource metric, which is an
    # array and rightly imports numpy.
    pytester.makefile(".yaml", r="version: 1\nresources: {interval_ms: 10000}\n")
    result = pytester.runpytest_subprocess("-p", "numpy_guard", "--recipe", "r.yaml", "--no-hwbench-mlflow",
                                           "--hwbench-repetitions", "1")
    result.assert_outcomes(passed=3)
    assert json.loads((pytester.path / "loaded.json").read_text()) == []
    run = next((pytester.path / "reports").iterdir())
    assert (run / "report.html").is_file() and (run / "results.json").is_file()
    assert (run / "samples.bin").stat().st_size == 3 * 8  # every value still kept raw
    from pytest_hwbench.report.files import read_samples

    assert read_samples(run)["test_one.py::test_value[2]"]["value"].tolist() == [2.5]
