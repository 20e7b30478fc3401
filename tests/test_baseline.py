"""Baseline store (layout, merge, locking, bad files), the statistical comparison, and the env diff."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.measure.stats import summarize
from pytest_hwbench.recipe.model import BaselinePolicy, MetricPolicy
from pytest_hwbench.verdict.baseline import (
    FAIL,
    INCONCLUSIVE,
    MISSING_METRIC,
    NEW,
    PASS,
    STALE,
    BaselineEntry,
    BaselineStore,
    SaveRecord,
    compare_test,
    list_testbeds,
    module_slug,
)
from pytest_hwbench.verdict.compare import (
    CompareSettings,
    Comparison,
    compare_metric,
    fail_boundary,
    pool_noise,
    series_noise,
)
from pytest_hwbench.verdict.decide import decide
from pytest_hwbench.verdict.envdiff import ABSENT, EnvChange, environment_diff, format_env_diff
from pytest_hwbench.verdict.result import TestResult

TB = "epyc-9554-64c"
TID = "benchmarks/test_host.py::test_matmul[256]"
STEADY = [100.0, 100.4, 99.7, 100.2, 99.9, 100.1]
NOISY = [80.0, 120.0, 95.0, 110.0, 90.0, 105.0]


def mr(name: str, values: list[float], *, unit: str = "GFLOP/s", better: str = "higher",
       estimated: bool = False) -> MetricResult:
    """A MetricResult whose trial values are ``values`` (the summary pools them, as a stand-in)."""
    return MetricResult(name=name, unit=unit, better=better, summary=summarize(values),
                        trial_values=list(values), estimated=estimated)


ENV = {"kernel": "6.1.0-18", "gpu": {"driver": "550.54", "names": ["H100", "H100"]}, "hostname": "box1",
       "timestamp": 1}


def saved_store(tmp_path: Path, results: dict | None = None) -> BaselineStore:
    store = BaselineStore(tmp_path, TB)
    store.save(results or {TID: ({"gflops": mr("gflops", STEADY)}, ENV)}, saved_at="2024-05-01T10:00:00+00:00")
    return store


# ------------------------------------------------------------------------------------------------ layout

@pytest.mark.parametrize(("nodeid", "slug"), [
    ("benchmarks/test_host.py::test_x[1]", "benchmarks__test_host"),
    ("test_a.py::TestK::test_y[a-b]", "test_a"),
    ("benchmarks/sub/test_llm.py::test_chat[model=x/y]", "benchmarks__sub__test_llm"),
    ("../other/test_b.py::t", "up__other__test_b"),
    ("bench marks/test c.py::t", "bench_marks__test_c"),
])
def test_module_slug(nodeid: str, slug: str) -> None:
    assert module_slug(nodeid) == slug


def test_file_layout_and_content(tmp_path: Path) -> None:
    store = saved_store(tmp_path)
    path = tmp_path / TB / "benchmarks__test_host.json"
    assert store.path_for(TID) == path and path.exists()
    text = path.read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"  # diff-friendly
    assert data["schema"] == 2 and data["testbed"] == TB
    entry = data["tests"][TID]["sessions"][-1]
    assert entry["saved_at"] == "2024-05-01T10:00:00+00:00" and entry["environment"] == ENV
    gflops = entry["metrics"]["gflops"]
    assert set(gflops) == {"unit", "better", "trial_values", "summary"}
    assert gflops["trial_values"] == STEADY and gflops["better"] == "higher"
    assert not list(path.parent.glob("*.tmp"))


def test_round_trip(tmp_path: Path) -> None:
    saved_store(tmp_path, {TID: ({"gflops": mr("gflops", STEADY),
                                  "tok": mr("tok", [3.0], unit="tok", better="lower", estimated=True)}, ENV)})
    entry = BaselineStore(tmp_path, TB).load(TID)
    assert isinstance(entry, BaselineEntry)
    assert entry.test_id == TID and entry.testbed == TB and entry.environment == ENV
    assert entry.metrics["gflops"].trial_values == STEADY
    assert entry.metrics["gflops"].summary == summarize(STEADY)
    assert entry.metrics["tok"].estimated and entry.metrics["tok"].better == "lower"
    assert entry.file == tmp_path / TB / "benchmarks__test_host.json"
    assert BaselineStore(tmp_path, TB).load("benchmarks/test_host.py::other") is None
    assert BaselineStore(tmp_path, TB).load("benchmarks/test_nothing.py::t") is None


def test_merge_keeps_other_tests_and_replaces_own_entry(tmp_path: Path) -> None:
    other = "benchmarks/test_host.py::test_stream"
    saved_store(tmp_path, {TID: ({"gflops": mr("gflops", STEADY), "old": mr("old", [1.0])}, ENV),
                           other: ({"gbs": mr("gbs", [50.0])}, ENV)})
    BaselineStore(tmp_path, TB).save({TID: ({"gflops": mr("gflops", [1.0, 2.0])}, {"kernel": "new"})})
    fresh = BaselineStore(tmp_path, TB)
    assert fresh.load(other).metrics["gbs"].trial_values == [50.0]
    mine = fresh.load(TID)
    assert set(mine.metrics) == {"gflops"} and mine.metrics["gflops"].trial_values == [1.0, 2.0]
    assert mine.environment == {"kernel": "new"}


def test_load_reads_each_file_once_and_save_refreshes_cache(tmp_path: Path) -> None:
    store = saved_store(tmp_path)
    assert store.load(TID) is not None
    store.path_for(TID).write_text("garbage")  # not re-read: cached for the session
    assert store.load(TID) is not None
    store.path_for(TID).unlink()
    store.save({TID: ({"gflops": mr("gflops", [7.0])}, ENV)})
    assert store.load(TID).metrics["gflops"].trial_values == [7.0]


def _save_many(root: str, who: str, count: int) -> None:
    store = BaselineStore(root, TB)
    for i in range(count):
        store.save({f"benchmarks/test_host.py::test_{who}[{i}]": ({"m": mr("m", [float(i)])}, {"who": who})})


def test_two_processes_saving_into_one_file_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(str(tmp_path), who, 12)) for who in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    data = json.loads((tmp_path / TB / "benchmarks__test_host.json").read_text())
    assert len(data["tests"]) == 24
    assert (tmp_path / TB / "benchmarks__test_host.json.lock").exists()


def test_list_testbeds(tmp_path: Path) -> None:
    assert list_testbeds(tmp_path / "missing") == []
    saved_store(tmp_path)
    BaselineStore(tmp_path, "xeon").save({TID: ({"gflops": mr("gflops", [1.0])}, {})})
    (tmp_path / "empty-dir").mkdir()
    assert list_testbeds(tmp_path) == [TB, "xeon"]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", ".hidden", "a\\b"])
def test_unusable_testbed_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(HwbenchInputError, match="--hwbench-testbed"):
        BaselineStore(tmp_path, name)


# ------------------------------------------------------------------------------------------- bad files

def write_file(tmp_path: Path, content: str | dict) -> Path:
    path = tmp_path / TB / "benchmarks__test_host.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def load_error(tmp_path: Path) -> str:
    with pytest.raises(HwbenchInputError) as info:
        BaselineStore(tmp_path, TB).load(TID)
    return str(info.value)


def test_corrupt_file(tmp_path: Path) -> None:
    path = write_file(tmp_path, '{"schema": 1, "testbed": x}')
    msg = load_error(tmp_path)
    assert str(path) in msg and "not valid JSON" in msg
    assert "delete it and re-save with --hwbench-save-baseline, or restore it from git" in msg


def test_truncated_file(tmp_path: Path) -> None:
    path = saved_store(tmp_path).path_for(TID)
    path.write_text(path.read_text()[:200])
    msg = load_error(tmp_path)
    assert str(path) in msg and "truncated" in msg and "--hwbench-save-baseline" in msg


def test_empty_and_binary_files(tmp_path: Path) -> None:
    write_file(tmp_path, "")
    assert "empty" in load_error(tmp_path)
    (tmp_path / TB / "benchmarks__test_host.json").write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8" in load_error(tmp_path)


def good_doc(tmp_path: Path) -> dict:
    path = saved_store(tmp_path).path_for(TID)
    return json.loads(path.read_text())


S0 = f"tests.'{TID}'.sessions[0]"


def _session(d: dict) -> dict:
    return d["tests"][TID]["sessions"][0]


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda d: d.update(schema=3), "schema"),
    (lambda d: d.pop("schema"), "schema"),
    (lambda d: d.update(testbed=5), "testbed"),
    (lambda d: d.update(tests=[]), "tests"),
    (lambda d: d["tests"].update({TID: "x"}), f"tests.'{TID}'"),
    (lambda d: d["tests"][TID].update(sessions=[]), f"tests.'{TID}'.sessions"),
    (lambda d: _session(d).update(saved_at=3), f"{S0}.saved_at"),
    (lambda d: _session(d).update(commit=3), f"{S0}.commit"),
    (lambda d: _session(d).update(environment=[]), f"{S0}.environment"),
    (lambda d: _session(d).update(metrics=None), f"{S0}.metrics"),
    (lambda d: _session(d)["metrics"]["gflops"].update(better="up"), f"{S0}.metrics.gflops.better"),
    (lambda d: _session(d)["metrics"]["gflops"].update(trial_values="1,2"), f"{S0}.metrics.gflops.trial_values"),
    (lambda d: _session(d)["metrics"]["gflops"].update(trial_values=[1, "2"]),
     f"{S0}.metrics.gflops.trial_values"),
    (lambda d: _session(d)["metrics"]["gflops"].update(trial_values=[]), f"{S0}.metrics.gflops.trial_values"),
    (lambda d: _session(d)["metrics"]["gflops"].update(trial_values=[None, None]),
     f"{S0}.metrics.gflops.trial_values"),
    (lambda d: _session(d)["metrics"]["gflops"]["summary"].pop("p99"), f"{S0}.metrics.gflops.summary"),
    (lambda d: _session(d)["metrics"]["gflops"].update(unit=1), f"{S0}.metrics.gflops.unit"),
])
def test_wrong_schema_or_types_name_the_field(tmp_path: Path, mutate, field: str) -> None:
    doc = good_doc(tmp_path)
    mutate(doc)
    path = write_file(tmp_path, doc)
    msg = load_error(tmp_path)
    assert msg.startswith(f"{path}: {field}: ")
    assert "re-save with --hwbench-save-baseline" in msg


def test_non_object_file(tmp_path: Path) -> None:
    write_file(tmp_path, "[1, 2]")
    assert "expected a JSON object" in load_error(tmp_path)


def test_wrong_testbed_says_who_wrote_it_and_the_fix(tmp_path: Path) -> None:
    doc = good_doc(tmp_path)
    doc["testbed"] = "xeon-8480-56c"
    path = write_file(tmp_path, doc)
    msg = load_error(tmp_path)
    assert str(path) in msg and "written by testbed 'xeon-8480-56c'" in msg and repr(TB) in msg
    assert "--hwbench-testbed xeon-8480-56c" in msg and str(tmp_path / "xeon-8480-56c") in msg


def test_error_repeats_for_every_load_and_save_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write_file(tmp_path, "{broken")
    store = BaselineStore(tmp_path, TB)
    for _ in range(2):
        with pytest.raises(HwbenchInputError, match="not valid JSON"):
            store.load(TID)
    with pytest.raises(HwbenchInputError, match="not valid JSON"):
        store.save({TID: ({"gflops": mr("gflops", [1.0])}, {})})
    assert path.read_text() == "{broken"


# ------------------------------------------------------------------------------------------ compare_metric

SETTINGS = CompareSettings()


def cmp(cur: list[float], sessions: list[list[float]], better: str = "higher", **kw) -> Comparison:
    settings = CompareSettings(**{k: kw.pop(k) for k in list(kw) if k in CompareSettings.__dataclass_fields__})
    return compare_metric("gflops", sessions, cur, settings, better=better, unit="GFLOP/s", **kw)


HISTORY = [STEADY, [x * 1.002 for x in STEADY], [x * 0.998 for x in STEADY]]


def test_same_data_passes() -> None:
    v = cmp(STEADY, HISTORY)
    assert v.status == PASS and v.ratio == pytest.approx(1.0, abs=1e-3) and v.ci_low <= 1.0 <= v.ci_high
    assert "within tolerance" in v.message and v.n_current == 6 and v.n_baseline == 18 and v.sessions == 3


@pytest.mark.parametrize(("better", "factor"), [("higher", 0.8), ("lower", 1.2)])
def test_twenty_percent_worse_fails_in_both_directions(better: str, factor: float) -> None:
    v = cmp([x * factor for x in STEADY], HISTORY, better)
    assert v.status == FAIL
    assert v.ratio == pytest.approx(factor, rel=0.01)
    assert v.message.startswith("gflops: 20.0% worse: ")
    # both medians with units, the change and its CI, the tolerance, the trials and sessions
    assert "GFLOP/s vs baseline" in v.message and "95% CI" in v.message and "tolerance 5%" in v.message
    assert "3 stored session(s)" in v.message
    assert v.ci_low <= v.ratio <= v.ci_high


@pytest.mark.parametrize("better", ["higher", "lower"])
def test_twenty_percent_better_is_not_a_failure(better: str) -> None:
    factor = 1.2 if better == "higher" else 0.8
    v = cmp([x * factor for x in STEADY], HISTORY, better, stale_factor=5.0)
    assert v.status == PASS and "20.0% better" in v.message


def test_noisy_overlap_is_inconclusive_says_noise_and_advice() -> None:
    v = cmp([x * 0.95 for x in NOISY], [NOISY], inconclusive_policy="rerun")
    assert v.status == INCONCLUSIVE and v.ci_low < 0.95 < v.ci_high
    assert v.inconclusive_policy == "rerun"
    assert "trial noise" in v.message and "session noise" in v.message and v.advice


@pytest.mark.parametrize(("better", "factor"), [("higher", 1.5), ("lower", 0.6)])
def test_big_improvement_is_stale(better: str, factor: float) -> None:
    v = cmp([x * factor for x in STEADY], HISTORY, better)
    assert v.status == STALE
    assert "baseline stale" in v.message and "--hwbench-save-baseline" in v.message


def test_single_trial_each_side_is_never_a_bare_threshold() -> None:
    v = cmp([79.0], [[100.0]])
    assert v.status == INCONCLUSIVE and "1 trial on each side" in v.message
    assert "repetitions >= 2" in v.advice


def test_one_session_uses_the_stated_prior_and_says_so() -> None:
    v = cmp([x * 0.93 for x in STEADY], [STEADY])
    assert v.status == INCONCLUSIVE  # 7 % is within what one session's shift can explain
    assert "prior baseline.session_noise" in v.message and "more stored session" in v.message
    assert cmp([x * 0.5 for x in STEADY], [STEADY]).status == FAIL  # a halving is not session noise


def test_testbed_history_calibrates_the_session_noise() -> None:
    quiet = pool_noise([series_noise(HISTORY)] * 8)
    assert quiet.calibrated and quiet.df == 16
    loud = pool_noise([series_noise([[x * f for x in STEADY] for f in (0.9, 1.0, 1.1)])] * 8)
    cur = [x * 0.9 for x in STEADY]
    assert cmp(cur, HISTORY, noise=quiet).status == FAIL
    assert cmp(cur, HISTORY, noise=loud).status == INCONCLUSIVE
    assert "estimated: 16 df from 8 stored series" in cmp(cur, HISTORY, noise=loud).message


def test_zero_baseline_median() -> None:
    def err(values: list[float]) -> Comparison:
        return compare_metric("error_rate", [[0.0, 0.0, 0.0]], values, SETTINGS, better="lower")

    assert err([0.0, 0.0]).status == PASS
    failing = err([0.01, 0.02, 0.01])
    assert failing.status == FAIL and "ratio undefined" in failing.message
    assert err([0.0, 0.02, 0.0]).status == INCONCLUSIVE


def test_missing_trials() -> None:
    empty = cmp(STEADY, [[float("nan")]])
    assert empty.status == INCONCLUSIVE and "baseline" in empty.message


def test_comparison_round_trips_as_plain_json() -> None:
    v = cmp(STEADY, HISTORY)
    d = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert d["status"] == PASS and d["metric"] == "gflops" and d["inconclusive_policy"] == "warn"
    assert Comparison.from_dict(d).to_dict() == d


def test_fail_boundary_is_strict_early_and_alpha_at_the_last_look() -> None:
    last = fail_boundary(CompareSettings(looks_planned=6, look=5))
    first = fail_boundary(CompareSettings(looks_planned=6, look=0))
    assert last == pytest.approx(2.457, abs=0.01) and first == pytest.approx(last * 6 ** 0.5)


def test_a_gross_regression_fails_at_the_first_look_with_little_history() -> None:
    """Three times slower against two stored sessions, on the first of six looks: a FAIL, not INCONCLUSIVE
    (the early-look boundary scales the t quantile; a far-tail t quantile at few df was ~190 standard errors)."""
    base = [[20.0, 20.1, 19.9], [20.5, 20.4, 20.6]]
    slow = [60.0, 60.2, 59.9]
    v = cmp(slow, base, "lower", looks_planned=6, look=0)
    assert v.status == FAIL, v.message
    # and the same code against the same history is never a FAIL at any look
    assert all(cmp([20.2, 20.0, 20.3], base, "lower", looks_planned=6, look=k).status != FAIL for k in range(6))


trials = st.lists(st.floats(min_value=1.0, max_value=1e6, allow_nan=False), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(values=trials, better=st.sampled_from(["lower", "higher"]), tol=st.sampled_from([0.0, 0.01, 0.05, 0.2]))
def test_identical_samples_never_fail(values: list[float], better: str, tol: float) -> None:
    v = cmp(values, [list(values)], better, tolerance=tol)
    assert v.status != FAIL


_RANK = {STALE: 0, PASS: 1, INCONCLUSIVE: 2, FAIL: 3}


@settings(max_examples=40, deadline=None)
@given(base=trials, cur=trials, better=st.sampled_from(["lower", "higher"]))
def test_status_is_monotone_when_current_gets_worse(base: list[float], cur: list[float], better: str) -> None:
    factors = [0.5, 0.8, 0.95, 1.0, 1.05, 1.25, 2.0]
    if better == "higher":
        factors = [1 / f for f in factors]  # worse means smaller for higher-is-better
    ranks = [_RANK[cmp([x * f for x in cur], [base, base], better).status] for f in factors]
    assert ranks == sorted(ranks)


# -------------------------------------------------------------------------------------------- compare_test

def entry_for(tmp_path: Path, metrics: dict[str, MetricResult], env: dict | None = None,
              sessions: int = 3) -> BaselineEntry:
    store = BaselineStore(tmp_path, TB)
    for i in range(sessions):
        store.save({TID: SaveRecord(metrics, ENV if env is None else env, commit=f"c0ffee{i}", run_id=f"r{i}")},
                   saved_at=f"2024-05-0{i + 1}T10:00:00+00:00")
    return BaselineStore(tmp_path, TB).load(TID)


def test_history_appends_sessions_and_keeps_the_last_k(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, TB)
    for i in range(4):
        store.save({TID: SaveRecord({"gflops": mr("gflops", [float(i + 1)] * 2)}, ENV, commit=f"c{i}")},
                   saved_at=f"2024-05-0{i + 1}T10:00:00+00:00", keep=3)
    entry = BaselineStore(tmp_path, TB).load(TID)
    assert [s.commit for s in entry.sessions] == ["c1", "c2", "c3"]
    assert entry.trial_values("gflops") == [[2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]
    data = json.loads(store.path_for(TID).read_text())
    assert data["schema"] == 2 and len(data["tests"][TID]["sessions"]) == 3


def test_old_single_session_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / TB / "benchmarks__test_host.json"
    path.parent.mkdir(parents=True)
    entry = {"saved_at": "2024-01-01T00:00:00+00:00", "environment": ENV,
             "metrics": {"gflops": {"unit": "GFLOP/s", "better": "higher", "trial_values": STEADY,
                                    "summary": summarize(STEADY).to_dict()}}}
    path.write_text(json.dumps({"schema": 1, "testbed": TB, "tests": {TID: entry}}))
    store = BaselineStore(tmp_path, TB)
    loaded = store.load(TID)
    assert len(loaded.sessions) == 1 and loaded.metrics["gflops"].trial_values == STEADY
    store.save({TID: ({"gflops": mr("gflops", STEADY)}, ENV)})
    assert len(BaselineStore(tmp_path, TB).load(TID).sessions) == 2


def test_compare_test_worst_status_new_and_missing(tmp_path: Path) -> None:
    entry = entry_for(tmp_path, {"gflops": mr("gflops", STEADY), "gone": mr("gone", STEADY)})
    current = {"gflops": mr("gflops", STEADY), "fresh": mr("fresh", [1.0])}
    result = compare_test(current, entry, BaselinePolicy(), ENV)
    statuses = {m.metric: m.status for m in result.metrics}
    assert statuses == {"gflops": PASS, "fresh": NEW, "gone": MISSING_METRIC}
    assert result.status == FAIL
    assert "gone: in the baseline but not recorded" in result.by_status(MISSING_METRIC)[0].message


def test_compare_test_all_new_is_not_a_pass(tmp_path: Path) -> None:
    entry = entry_for(tmp_path, {})
    result = compare_test({"fresh": mr("fresh", [1.0])}, entry, BaselinePolicy(), ENV)
    assert result.status == NEW


def test_compare_test_stale_counts_as_pass_but_is_listed(tmp_path: Path) -> None:
    entry = entry_for(tmp_path, {"gflops": mr("gflops", STEADY), "b": mr("b", STEADY)})
    current = {"gflops": mr("gflops", [x * 1.5 for x in STEADY]), "b": mr("b", STEADY)}
    result = compare_test(current, entry, BaselinePolicy(), ENV)
    assert result.status == PASS and [m.metric for m in result.by_status(STALE)] == ["gflops"]
    assert result.env_diff == [] and result.env_diff_text == "environment unchanged"


def test_compare_test_uses_per_metric_policy(tmp_path: Path) -> None:
    entry = entry_for(tmp_path, {"gflops": mr("gflops", STEADY), "noisy": mr("noisy", NOISY)})
    current = {"gflops": mr("gflops", [x * 0.8 for x in STEADY]), "noisy": mr("noisy", [x * 0.95 for x in NOISY])}
    strict = compare_test(current, entry, BaselinePolicy(reruns=0), ENV)
    assert strict.status == FAIL
    loose = BaselinePolicy(inconclusive="warn", reruns=0,
                           metrics={"gflops": MetricPolicy(tolerance=0.3),
                                    "noisy": MetricPolicy(inconclusive="fail")})
    result = compare_test(current, entry, loose, ENV)
    by_name = {m.metric: m for m in result.metrics}
    assert by_name["gflops"].status == PASS and by_name["gflops"].tolerance == 0.3
    assert by_name["noisy"].status == INCONCLUSIVE and by_name["noisy"].inconclusive_policy == "fail"
    assert result.status == INCONCLUSIVE and result.inconclusive_policy == "fail"


def test_failure_text_names_metric_values_history_and_env_diff(tmp_path: Path) -> None:
    entry = entry_for(tmp_path, {"gflops": mr("gflops", STEADY)})
    env = {**ENV, "kernel": "6.1.0-25", "timestamp": 2, "gpu": {"driver": "555.42", "names": ["H100"]},
           "services": {"llm": {"server": {"version": "0.6.1"}}}}
    comp = compare_test({"gflops": mr("gflops", [x * 0.79 for x in STEADY])}, entry, BaselinePolicy(), env,
                        look=5)
    assert comp.status == FAIL
    result = decide(TestResult(test_id=TID, name="test_matmul[256]", trials=6,
                               metrics={"gflops": mr("gflops", STEADY)}, baseline=comp))
    assert result.verdict == "FAIL"
    text = result.failure_text
    assert "test_matmul[256]: baseline regression: gflops: 21.0% worse:" in text
    assert "GFLOP/s vs baseline 100 GFLOP/s (medians)" in text and "tolerance 5%" in text
    assert f"baseline: {entry.file} (testbed {TB}; 3 sessions saved 2024-05-01T10:00:00+00:00 .. " in text
    assert "at commit(s) c0ffee0, c0ffee1, c0ffee2" in text
    assert "gpu.driver: 550.54 -> 555.42" in text and "kernel: 6.1.0-18 -> 6.1.0-25" in text
    assert "services.llm.server.version: (absent) -> 0.6.1" in text
    assert "timestamp" not in text
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["baseline"]["status"] == FAIL and len(d["baseline"]["sessions"]) == 3
    assert TestResult.from_dict(d).to_dict() == d


def test_differing_run_conditions_turn_a_regression_into_a_warning(tmp_path: Path) -> None:
    entry = entry_for(tmp_path, {"gflops": mr("gflops", STEADY)})
    comp = compare_test({"gflops": mr("gflops", [x * 0.6 for x in STEADY])}, entry, BaselinePolicy(), ENV, look=5,
                        conditions=["xdist workers 1 at baseline, 2 now"])
    result = decide(TestResult(test_id=TID, name="t", metrics={"gflops": mr("gflops", STEADY)}, baseline=comp))
    assert result.verdict == "WARN"
    assert any("run conditions differ (xdist workers 1 at baseline, 2 now)" in w for w in result.warnings)


def test_invalid_measurement_is_never_a_pass() -> None:
    result = decide(TestResult(test_id=TID, name="t", metrics={"gflops": mr("gflops", STEADY)},
                               invalid=["llm: load generator was the bottleneck (client-bound) in 1 trial(s)"]))
    assert result.verdict == "WARN" and "client-bound" in result.warnings[0]


# ------------------------------------------------------------------------------------------------- envdiff

def test_environment_diff_flattens_sorts_and_skips_volatile_keys() -> None:
    old = {"kernel": "6.1.0-18", "hostname": "box1", "pid": 1, "run_id": "a", "bios": {"version": "1.0",
           "date": "x"}, "pkgs": {"torch": "2.2", "numpy": "1.26"}, "gone": 1, "cpu": {"count": 64}}
    new = {"kernel": "6.1.0-25", "hostname": "box2", "pid": 2, "run_id": "b", "bios": {"version": "1.1",
           "date": "y"}, "pkgs": {"torch": "2.3", "numpy": "1.26", "vllm": "0.5"}, "cpu": {"count": 64.0}}
    changes = environment_diff(old, new)
    assert [c.key for c in changes] == ["bios.version", "gone", "hostname", "kernel", "pkgs.torch", "pkgs.vllm"]
    assert str(changes[3]) == "kernel: 6.1.0-18 -> 6.1.0-25"
    assert str(changes[1]) == "gone: 1 -> (absent)" and changes[1].kind == "removed"
    assert changes[5].baseline is ABSENT and changes[5].kind == "added"
    assert changes[5].to_dict() == {"key": "pkgs.vllm", "kind": "added", "baseline": None, "current": "0.5"}


def test_environment_diff_types_and_missing_fingerprint() -> None:
    assert environment_diff({"a": "1"}, {"a": 1}) == [EnvChange("a", "1", 1)]
    assert environment_diff({"a": True}, {"a": 1}) != []
    assert environment_diff({"a": [1, 2]}, {"a": [1, 2]}) == []
    assert [c.key for c in environment_diff(None, {"x": {"y": 1}})] == ["x.y"]
    assert environment_diff({"a": 1, "b": 2}, {"a": 2, "b": 3}, ignore={"b"}) == [EnvChange("a", 1, 2)]


def test_format_env_diff_limits_lines() -> None:
    assert format_env_diff([]) == "environment unchanged"
    changes = [EnvChange(f"k{i:02d}", i, i + 1) for i in range(25)]
    text = format_env_diff(changes, limit=20)
    lines = text.splitlines()
    assert lines[0] == "environment diff vs baseline (25 changes):"
    assert len(lines) == 22 and lines[-1] == "  ... and 5 more" and lines[1] == "  k00: 0 -> 1"
    assert len(format_env_diff(changes, limit=0).splitlines()) == 26
    long = format_env_diff([EnvChange("cmdline", "x" * 500, "y")])
    assert "…" in long and len(long.splitlines()[1]) < 140


def test_evidence_metrics_are_not_gated_unless_listed() -> None:
    """Resource figures and the server's own timings are evidence beside the result, not the result."""
    from pytest_hwbench.recipe.model import BaselinePolicy
    from pytest_hwbench.verdict.baseline import judged

    policy = BaselinePolicy()
    assert judged("ttft_ms", policy) and judged("ops_s", policy)
    for name in ("ttft_outside_server_ms", "server_prefill_ms", "server_queue_mean_ms", "host_cpu_util"):
        assert not judged(name, policy), name
