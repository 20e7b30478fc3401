"""Benchmark: pytest-hwbench's overhead on 1000 trivial parametrised tests, as a ratio to plain pytest.

Three suites run in the same process tree, best of ``--rounds`` each, so the ratio is taken on the same
machine state:
- anchor: plain pytest with the plugin disabled (``-p no:hwbench``)
- plugin loaded, tests that do not use it (the cost every user pays)
- plugin measuring: each test records one value through the ``hwbench`` fixture (1 trial, no MLflow),
  so the run writes results, raw samples and the summary table

Run: ``python3 scripts/bench_overhead.py [--tests 1000] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def run(suite_dir: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite_dir), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=suite_dir, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"suite failed ({' '.join(cmd)}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
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
        best = {name: min(run(d, extra) for _ in range(args.rounds)) for name, (d, extra) in cases.items()}
    anchor = next(iter(best.values()))
    print(f"{args.tests} trivial parametrised tests, best of {args.rounds} (wall seconds, whole pytest process)")
    print(f"{'suite':45} {'seconds':>8} {'ratio':>7} {'per test':>10}")
    for name, secs in best.items():
        print(f"{name:45} {secs:8.2f} {secs / anchor:7.2f}x {1e3 * (secs - anchor) / args.tests:8.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
