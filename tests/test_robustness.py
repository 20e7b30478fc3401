"""Bad input and bad storage (issue #9): hostile YAML and JSON, collection-time checks, full disks.

Each case must end in one clear message naming the file (or option) and the fix — never a traceback, a hang
or a silent pass — and a storage fault must not lose the run.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.loader import load_recipe, load_recipe_text
from pytest_hwbench.verdict.baseline import BaselineStore, module_slug

NO_MLFLOW = "--no-hwbench-mlflow"

_BOMB = "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh", strict=True)
) + "settings: {x: *h}\n"

HOSTILE_RECIPES = {
    "alias bomb": (_BOMB, "alias bomb"),
    "recursive mapping": ("version: 1\nsettings: &a {x: *a}\n", "recursive alias"),
    "recursive list": ("version: 1\nsettings: {x: &a [*a]}\n", "recursive alias"),
    "deep lists": ("version: 1\nsettings: {x: " + "[" * 400 + "]" * 400 + "}\n", "nesting deeper"),
    "deep mappings": ("version: 1\nsettings: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n", "nesting deeper"),
    "huge integer": ("version: 1\nrepetitions: " + "9" * 5000 + "\n", "invalid value"),
    "10**30 repetitions": ("version: 1\nrepetitions: " + "1" + "0" * 30 + "\n", "more than the maximum"),
    "NUL byte": ("version: 1\x00\n", "invalid YAML"),
    "infinite bound": ("version: 1\nbaseline: {stale_factor: .inf}\n", "is not a number"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_RECIPES))
def test_hostile_recipes_get_a_bounded_clear_error(case: str) -> None:
    text, expected = HOSTILE_RECIPES[case]
    t0 = time.perf_counter()
    with pytest.raises(HwbenchInputError) as info:
        load_recipe_text(text, "r.yaml", env={})
    assert time.perf_counter() - t0 < 10  # generous on a loaded 2-core box; unbounded input takes minutes
    assert str(info.value).startswith("r.yaml: ") and expected in str(info.value)
    assert "(fix: " in str(info.value) or "is not a number" in str(info.value)  # the bound says it all


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/urandom"])
def test_endless_device_as_recipe(path: str) -> None:
    with pytest.raises(HwbenchInputError, match=r"larger than 1 MiB \(or never ends\)"):
        load_recipe(path)


def _baseline(tmp_path: Path, text: str) -> BaselineStore:
    store = BaselineStore(tmp_path, "box")
    target = tmp_path / "box" / f"{module_slug('t.py::test_a')}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return store


@pytest.mark.parametrize(("text", "expected"), [
    ("[" * 100_000 + "]" * 100_000, "nesting deeper"),
    ('{"schema": 1, "x": NaN}', "NaN"),
    ('{"schema": 1, "x": -Infinity}', "-Infinity"),
])
def test_hostile_baseline_json(tmp_path: Path, text: str, expected: str) -> None:
    store = _baseline(tmp_path, text)
    with pytest.raises(HwbenchInputError) as info:
        store.load("t.py::test_a")
    assert expected in str(info.value) and "(fix: " in str(info.value)


@pytest.mark.parametrize("value", ["-1", "0", "many", "1000000000"])
def test_repetitions_option_is_checked(pytester: pytest.Pytester, value: str) -> None:
    pytester.makepyfile(test_a="def test_a(hwbench):\n    hwbench.record('x', 1.0)\n")
    res = pytester.runpytest(NO_MLFLOW, f"--hwbench-repetitions={value}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines(["*--hwbench-repetitions*(fix: *"])


RECIPE_WITH_TYPOS = """\
version: 1
sweep:
  sizee: [1, 2]
slo:
  "test_a.py::test_sizes*": ["x < 100"]
  "test_a.py::test_szes*": ["x < 100"]
"""
SIZES = """
import pytest
@pytest.mark.parametrize("size", [8])
def test_sizes(hwbench, size):
    hwbench.record("x", 1.0)
"""


def test_unmatched_slo_pattern_and_sweep_key_are_errors(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", r=RECIPE_WITH_TYPOS)
    pytester.makepyfile(test_a=SIZES)
    res = pytester.runpytest(NO_MLFLOW, "--recipe", "r.yaml", ".")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    res.stderr.fnmatch_lines([
        "*r.yaml: slo.'test_a.py::test_szes*': matches no collected test (fix: did you mean 'test_sizes'?*",
        "*r.yaml: sweep.sizee: no collected test has an argument 'sizee'*did you mean 'size'?*",
    ])
    assert "test_a.py::test_sizes*'" not in res.stderr.str()

    lenient = pytester.runpytest(NO_MLFLOW, "--recipe", "r.yaml", "--hwbench-lenient", ".")
    lenient.assert_outcomes(passed=1)
    lenient.stdout.fnmatch_lines(["*warning: *slo.'test_a.py::test_szes*'*", "*warning: *sweep.sizee*"])


def test_subset_runs_do_not_trip_on_other_files(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", r="version: 1\nsweep: {other: [1]}\nslo: {'test_b.py::*': ['x < 1']}\n")
    pytester.makepyfile(test_a=SIZES)
    res = pytester.runpytest(NO_MLFLOW, "--recipe", "r.yaml", "test_a.py")
    res.assert_outcomes(passed=1)
    res.stdout.fnmatch_lines(["*warning: *sweep.other*"])


# ---------------------------------------------------------------------------------------------- storage

MANY = """
import pytest
@pytest.mark.parametrize("n", range(6))
def test_many(hwbench, n):
    hwbench.record("lat_ms", [1.0 + i * 1e-4 for i in range(4000)])
"""


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A 96 KiB tmpfs: fills up part-way through the run. Needs root (or CAP_SYS_ADMIN) to mount."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()}): run as root to test a "
                    "full disk")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_keeps_the_run(pytester: pytest.Pytester, small_tmpfs: Path) -> None:
    baselines = pytester.path / "baselines"
    pytester.makepyfile(test_a=MANY)
    saved = pytester.runpytest(NO_MLFLOW, "--hwbench-save-baseline", "--hwbench-testbed=box", "-p", "no:randomly")
    saved.assert_outcomes(passed=6)
    before = {p: p.read_bytes() for p in baselines.rglob("*.json")}
    assert before
    res = pytester.runpytest(NO_MLFLOW, f"--hwbench-report-dir={small_tmpfs}", "--hwbench-save-baseline",
                             "--hwbench-baseline-dir", str(small_tmpfs / "b"), "--hwbench-testbed=box")
    res.assert_outcomes(passed=6)  # every test ran
    out = res.stdout.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert out.count("PASS ") >= 6  # the verdict table printed
    errors = [line for line in out.splitlines() if "could not write" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "(fix: " in errors[0]
    assert {p: p.read_bytes() for p in baselines.rglob("*.json")} == before  # other baselines untouched


def test_unusable_report_dir_keeps_the_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a=MANY)
    (pytester.path / "afile").write_text("x")
    res = pytester.runpytest(NO_MLFLOW, "--hwbench-report-dir=afile/reports")
    res.assert_outcomes(passed=6)
    out = res.stdout.str()
    assert "INTERNALERROR" not in out and out.count("PASS ") >= 6
    assert "could not write the run directory" in out and "Not a directory" in out


def test_reports_are_not_collected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a(hwbench):\n    hwbench.record('x', 1.0)\n")
    trap = pytester.path / "reports" / f"run-{uuid.uuid4().hex}"
    trap.mkdir(parents=True)
    (trap / "test_trap.py").write_text("raise SystemExit('collected the report directory')\n")
    res = pytester.runpytest(NO_MLFLOW)
    res.assert_outcomes(passed=1)
    assert json.loads(json.dumps({"ok": True}))


def test_missing_local_image_names_the_build_command() -> None:
    from pytest_hwbench.services.local_images import BUILD_COMMAND, LOCAL_IMAGES, build_fix

    assert "hwbench/redis-server:local" in LOCAL_IMAGES
    assert BUILD_COMMAND in (build_fix("hwbench/redis-server:local") or "")
    assert build_fix("redis:7") is None
