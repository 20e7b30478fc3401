"""Benchmark: pytest-hwbench's overhead on 1000 trivial parametrised tests, as a ratio to plain pytest.

Three suites run in the same process tree, interleaved (every run does all three, in a rotating order),
``--runs`` times; each ratio is min / median / max over the runs, printed next to its target (the load
guard of ``_bench_common.py`` refuses a busy machine unless ``--allow-busy``):
- anchor: plain pytest with the plugin disabled (``-p no:hwbench``)
- plugin loaded, tests that do not use it (the cost every user pays)
- plugin measuring: each test records one value through the ``hwbench`` fixture (1 trial, no MLflow),
  so the run writes results, raw samples and the summary table
Each table is printed twice: wall seconds (what the target is stated on) and CPU seconds of the pytest
process (user + system), which a busy machine distorts much less.

Run: ``python3 scripts/bench_overhead.py [--tests 1000] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench_common import LoadGuard, add_load_args, fmt_mmm, machine_line, ratio_line

PLAIN = """
import pytest
@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    assert i >= 0
"""
MEASURING = """
import pytest
@pytest.mark.parametrize("i", range({n}))
def test_trivial(hwbench, i):
    hwbench.record("value", float(i))
"""


def run(suite_dir: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the kernel's accounting of the finished child) of one
    pytest process. CPU time is printed beside the wall time because on a shared machine it moves much less
    with the neighbours' load; the target is stated on wall time."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite_dir), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=suite_dir, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"suite failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


TARGET = 1.2  # plugin measuring 1 value per test ÷ plain pytest (issue #14)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=1000)
    add_load_args(ap)
    args = ap.parse_args()
    guard = LoadGuard.from_args(args)
    print(machine_line())
    # The plugin's bytecode is compiled once, as ``pip install`` does for an installed package: an editable
    # checkout on a machine with PYTHONDONTWRITEBYTECODE set would otherwise compile every module from
    # source in every run (~55 ms), a cost no installed copy pays.
    import pytest_hwbench

    compileall.compile_dir(str(Path(pytest_hwbench.__file__).parent), quiet=1)
    print("plugin bytecode: compiled once before the runs (as pip does on install)")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("bytecode cache: PYTHONDONTWRITEBYTECODE is set: pytest re-writes and compiles its assertion-"
              "rewritten plugins (hypothesis, dash here) from source in every run, the anchor's included")
    guard.check("before")
    with tempfile.TemporaryDirectory() as tmp:
        plain, measuring = Path(tmp, "plain"), Path(tmp, "measuring")
        for d, body in ((plain, PLAIN), (measuring, MEASURING)):
            d.mkdir()
            (d / "test_suite.py").write_text(body.format(n=args.tests))
        cases = {
            "plain pytest (-p no:hwbench)  [anchor]": (plain, ["-p", "no:hwbench"]),
            "plugin loaded, tests not using it": (plain, []),
            "plugin measuring, 1 value per test": (measuring, ["--hwbench-repetitions", "1",
                                                               "--no-hwbench-mlflow"]),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(args.runs):  # interleaved: every run does all three suites, in a rotating order
            names = list(cases)
            for name in names[i % 3:] + names[:i % 3]:
                d, extra = cases[name]
                wall_s, cpu_s = run(d, extra)
                times[name].append(wall_s)
                cpu[name].append(cpu_s)
            guard.check(f"after run {i + 1}/{args.runs}")
    busy = "  [BUSY]" if guard.busy else ""
    for label, table in (("wall", times), ("CPU (user + system)", cpu)):
        anchor = next(iter(table.values()))
        print(f"\n{args.tests} trivial parametrised tests, {args.runs} interleaved runs ({label} seconds of the "
              f"whole pytest process, min / median / max){busy}")
        print(f"{'suite':40} {'seconds':>22} {'ratio':>20} {'per test':>10}")
        for name, secs in table.items():
            ratios = [s / a for s, a in zip(secs, anchor, strict=True)]
            extra_ms = 1e3 * (statistics.median(secs) - statistics.median(anchor)) / args.tests
            print(f"{name:40} {fmt_mmm(secs):>22} {fmt_mmm(ratios):>20} {extra_ms:8.2f}ms")
    anchor = next(iter(times.values()))
    measuring_ratios = [s / a for s, a in zip(times["plugin measuring, 1 value per test"], anchor, strict=True)]
    print(ratio_line("plugin measuring ÷ plain pytest, wall time (lower is better)", measuring_ratios, TARGET,
                     higher_is_better=False, busy=guard.busy))
    print(guard.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
