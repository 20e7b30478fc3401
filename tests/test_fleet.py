"""``hwbench fleet``: the statistics against known answers, the loader, the renderers and the command line.

The server path (sessions logged to PostgreSQL-backed MLflow, read back by ``--mlflow``) is in
tests/test_team_server.py; here the sessions are run directories written like a session writes them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sstats

from pytest_hwbench.cli import main
from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.report.fleet import (
    analyze_fleet,
    one_way_random_effects,
    render_json,
    render_markdown,
    render_table,
    replicates_needed,
)
from pytest_hwbench.report.fleet_data import find_run_dirs, load_run_dir, load_run_dirs
from tests.fleet_helpers import fleet_dirs, metric, write_run

COPY = "benchmarks/test_host.py::test_copy"


def test_random_effects_matches_textbook_anova() -> None:
    rng = np.random.default_rng(1)
    groups = [rng.normal(m, 1.0, n) for m, n in ((10, 5), (11, 4), (10.5, 6))]
    re = one_way_random_effects(groups)
    f, p = sstats.f_oneway(*groups)
    assert re.f_stat == pytest.approx(f) and re.p_value == pytest.approx(p)
    assert re.df == (2, 12)
    # balanced case: ICC(1) = (MSB - MSW) / (MSB + (n - 1) MSW)
    bal = [rng.normal(m, 1.0, 4) for m in (10, 12, 14)]
    re = one_way_random_effects(bal)
    allv = np.concatenate(bal)
    msb = sum(4 * (g.mean() - allv.mean()) ** 2 for g in bal) / 2
    msw = sum(((g - g.mean()) ** 2).sum() for g in bal) / 9
    assert re.icc == pytest.approx((msb - msw) / (msb + 3 * msw))
    assert 0.0 <= one_way_random_effects([[1, 2, 3], [1, 2, 3]]).icc <= 1e-12  # no between spread


def test_replicates_needed_follows_the_normal_approximation() -> None:
    # 2 (z_.975 + z_.8)^2 (sd/delta)^2 = 15.7 -> 16
    assert replicates_needed(1.0, 1.0, 0.05) == 16
    assert replicates_needed(1.0, 2.0, 0.05) == 4
    assert replicates_needed(0.0, 1.0, 0.05) is None


def test_slowed_machine_is_named_with_its_environment_diff(tmp_path: Path) -> None:
    fleet_dirs(tmp_path, {"box-1": 20.0, "box-2": 20.1, "box-3": 18.6, "box-4": 19.9}, sessions=3,
               env={"box-3": {"dmi": {"bios_version": "1.9.0", "board_name": "H12SSL"}}})
    comps = analyze_fleet(load_run_dirs([tmp_path]))
    assert {c.metric for c in comps} == {"copy_gb_s", "lat_ms"}
    copy = next(c for c in comps if c.metric == "copy_gb_s")
    assert copy.replicate == "session"
    assert copy.outlier is not None and copy.outlier.host == "box-3" and copy.outlier.direction == "slower"
    assert copy.outlier.ratio == pytest.approx(18.6 / 20.0, rel=0.02)
    assert [str(ch) for ch in copy.outlier.env_diff] == ["dmi.bios_version: 2.1.3 -> 1.9.0"]
    assert copy.machines[-1].host == "box-3" and copy.machines[-1].rank == 4
    assert copy.best_worst_ratio == pytest.approx(20.1 / 18.6, rel=0.02)
    assert copy.icc is not None and copy.icc > 0.8 and copy.p_value < 1e-6
    assert copy.firm
    # lower is better: the slow box has the highest latency and is also the slower one there
    lat = next(c for c in comps if c.metric == "lat_ms")
    assert lat.outlier.host == "box-3" and lat.outlier.direction == "slower" and lat.outlier.ratio > 1

    text = render_table(comps)
    assert "box-3 is slower" in text and "dmi.bios_version: 2.1.3 (rest) -> 1.9.0" in text
    assert "higher is better" in text and "lower is better" in text
    md = render_markdown(comps)
    assert "| testbed | test | metric |" in md and "**box-3**" in md
    doc = json.loads(render_json(comps))
    first = doc["comparisons"][0]
    assert first["outlier"]["host"] == "box-3"
    assert first["outlier"]["env_diff"][0] == {"key": "dmi.bios_version", "kind": "changed",
                                               "baseline": "2.1.3", "current": "1.9.0"}


def test_identical_machines_no_outlier_and_sessions_needed(tmp_path: Path) -> None:
    fleet_dirs(tmp_path, {"a": 20.0, "b": 20.0, "c": 20.0}, sessions=2, cv=0.02, seed=3)
    comps = analyze_fleet(load_run_dirs([tmp_path]), metric="copy_gb_s")
    (c,) = comps
    assert c.outlier is None
    assert c.sessions_needed is not None and c.sessions_needed >= 2
    assert c.within_cv is not None and 0.002 < c.within_cv < 0.05
    assert "sessions per machine needed" in render_table(comps) or "(firm)" in render_table(comps)


def test_one_session_per_machine_uses_trials_and_says_so(tmp_path: Path) -> None:
    fleet_dirs(tmp_path, {"a": 20.0, "b": 16.0}, sessions=1, trials=6)
    (c,) = analyze_fleet(load_run_dirs([tmp_path]), metric="copy_gb_s")
    assert c.replicate == "trial" and c.outlier.host == "b" and c.outlier.direction == "slower"
    assert any("one session" in n for n in c.notes)
    assert c.machines[0].n == 6 and c.machines[0].sessions == 1


def test_filters_and_grouping_by_testbed(tmp_path: Path) -> None:
    fleet_dirs(tmp_path / "x", {"a": 20.0, "b": 20.0}, testbed="tb-x")
    fleet_dirs(tmp_path / "y", {"c": 20.0}, testbed="tb-y")  # one host only: nothing to compare
    sessions = load_run_dirs([tmp_path / "x", tmp_path / "y"])
    assert len(sessions) == 6
    comps = analyze_fleet(sessions)
    assert {c.testbed for c in comps} == {"tb-x"}
    assert {c.test_id for c in analyze_fleet(sessions, test="test_copy")} == {COPY}
    assert analyze_fleet(sessions, testbed="tb-y") == []
    assert "nothing to compare" in render_table([])


def test_loader_reads_a_killed_run_from_jsonl(tmp_path: Path) -> None:
    d = write_run(tmp_path, host="h", testbed="t", tests={COPY: {"copy_gb_s": metric([1.0, 2.0, 3.0], "GB/s",
                                                                                    "higher")}})
    (d / "results.json").unlink()
    with (d / "results.jsonl").open("a") as fh:
        fh.write('{"test_id": "cut off')  # the last line of a killed run
    s = load_run_dir(d)
    assert s.host == "h" and s.testbed == "t" and len(s.tests) == 1
    series = s.tests[0].metrics["copy_gb_s"]
    assert series.trial_values == (1.0, 2.0, 3.0) and series.better == "higher" and series.median == 2.0


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(HwbenchInputError, match=r"no run\.json here"):
        load_run_dir(tmp_path)
    bad = tmp_path / "r1"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    with pytest.raises(HwbenchInputError, match=r"r1/run.json: not valid JSON"):
        load_run_dirs([tmp_path])
    assert find_run_dirs([tmp_path]) == [bad]


def test_cli_formats_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet_dirs(tmp_path / "reports", {"a": 20.0, "b": 17.0}, sessions=2)
    assert main(["fleet", str(tmp_path / "reports"), "--format", "json", "--metric", "copy_gb_s"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["comparisons"][0]["outlier"]["host"] == "b"
    out = tmp_path / "fleet.md"
    assert main(["fleet", str(tmp_path / "reports"), "--format", "markdown", "-o", str(out)]) == 0
    assert "4 sessions from 2 hosts" in capsys.readouterr().out and out.read_text().startswith("# Fleet")
    assert main(["fleet", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "not a run directory" in err and "Traceback" not in err
    assert main(["fleet", "--resolve", "5", str(tmp_path / "reports")]) == 2
    assert main(["fleet", str(tmp_path / "reports"), "--fail-on-outlier", "-o", str(out)]) == 1


def test_nan_free_json_for_degenerate_data(tmp_path: Path) -> None:
    for host in ("a", "b"):  # constant values: zero within-machine spread
        write_run(tmp_path, host=host, testbed="t", run_id=f"r-{host}",
                  tests={COPY: {"x_s": metric([5.0, 5.0, 5.0], "ops/s", "higher")}})
    comps = analyze_fleet(load_run_dirs([tmp_path]))
    doc = json.loads(render_json(comps))  # must not contain NaN/Infinity
    assert doc["comparisons"][0]["best_worst_ratio"] == 1.0
    assert not any(isinstance(v, float) and math.isnan(v) for v in doc["comparisons"][0].values())
