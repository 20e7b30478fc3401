#!/usr/bin/env python
"""Benchmark ``summarize`` on a large sample against ``np.percentile`` on the same array.

Why an anchor: absolute seconds depend on the machine and on whoever else shares it, so the figure that
means something is the ratio to ``np.percentile(x, [50, 90, 95, 99, 99.9])`` measured in the same run on
the same array. That call does the irreducible work (copy + partition); ``summarize`` adds the moments and
the exact bootstrap CIs, and should stay within ~3x the anchor's time and ~2 extra copies of the array.

Memory is measured two ways: tracemalloc's peak during the call (numpy reports its buffers to it) and the
process's peak RSS growth, sampled with psutil from a background thread (and, on Linux, cross-checked
with the kernel's exact high-water mark VmHWM after resetting it, when the kernel allows that).

Usage: ``python scripts/bench_stats.py [--n 10000000] [--repeats 5] [--seed 0]``
"""

from __future__ import annotations

import argparse
import gc
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from pytest_hwbench.measure.stats import PERCENTILES, summarize

MIB = 1024.0 ** 2


def best_times(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Fastest of ``repeats`` runs of each function, interleaved round by round.

    On a shared machine the minimum is the least noisy estimate, and interleaving exposes both functions
    to the same background load, so their ratio stays meaningful even when absolute times drift.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            gc.collect()
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def tracemalloc_peak(fn: Callable[[], object]) -> int:
    """Peak bytes allocated (and traced) while ``fn`` runs, excluding what existed before."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def rss_peak_delta(fn: Callable[[], object], interval_s: float = 0.0005) -> int:
    """Peak RSS growth over the RSS before the call, sampled by a psutil polling thread."""
    proc = psutil.Process()
    gc.collect()
    base = proc.memory_info().rss
    peak = base
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(interval_s)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        fn()
        peak = max(peak, proc.memory_info().rss)
    finally:
        done.set()
        thread.join()
    return peak - base


def hwm_peak_delta(fn: Callable[[], object]) -> int | None:
    """Exact peak RSS growth from Linux's VmHWM, reset via /proc/self/clear_refs; None where unsupported."""
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def read_kib(field: str) -> int:
        for line in status.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    try:
        gc.collect()
        clear.write_text("5")  # resets the high-water mark to the current RSS
        base = read_kib("VmRSS")
        if read_kib("VmHWM") > base + 1024:  # reset not honoured: the figure would be meaningless
            return None
        fn()
        return (read_kib("VmHWM") - base) * 1024
    except (OSError, KeyError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="number of float64 samples")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (best of each is reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    x = np.random.default_rng(args.seed).lognormal(mean=0.0, sigma=1.0, size=args.n)
    pcts = [p for _, p in PERCENTILES]
    anchor = lambda: np.percentile(x, pcts)  # noqa: E731
    ours = lambda: summarize(x)  # noqa: E731

    # Warm up (imports, page faults, scipy's first calls), and check both agree before timing anything.
    summary, reference = ours(), anchor()
    assert [summary.percentiles[name] for name, _ in PERCENTILES] == reference.tolist()

    cases = {"np.percentile (anchor)": anchor, "summarize": ours}
    times = best_times(list(cases.values()), args.repeats)
    rows = {name: (sec, tracemalloc_peak(fn), rss_peak_delta(fn), hwm_peak_delta(fn))
            for (name, fn), sec in zip(cases.items(), times, strict=True)}

    copy = x.nbytes
    print(f"n = {args.n:,} float64 samples (lognormal, seed {args.seed}); one copy = {copy / MIB:.1f} MiB; "
          f"best of {args.repeats}; {psutil.cpu_count()} logical CPUs")
    header = f"{'':24} {'time s':>8} {'tracemalloc peak':>22} {'peak RSS delta (psutil)':>26} " \
             f"{'peak RSS delta (VmHWM)':>25}"
    print(header)
    print("-" * len(header))

    def mem(b: int | None) -> str:
        return "n/a" if b is None else f"{b / MIB:7.1f} MiB ({b / copy:4.2f} cp)"

    for name, (sec, traced, rss, hwm) in rows.items():
        print(f"{name:24} {sec:8.3f} {mem(traced):>22} {mem(rss):>26} {mem(hwm):>25}")
    (t_a, m_a, r_a, h_a), (t_s, m_s, r_s, h_s) = rows.values()

    def ratio(a: float | None, b: float | None) -> str:
        return "n/a" if a is None or b is None or b <= 0 else f"{a / b:.2f}x"

    print(f"{'ratio summarize/anchor':24} {ratio(t_s, t_a):>8} {ratio(m_s, m_a):>22} {ratio(r_s, r_a):>26} "
          f"{ratio(h_s, h_a):>25}")
    print(f"\ntarget: time <= ~3x anchor -> {'OK' if t_s <= 3 * t_a else 'MISSED'}; "
          f"peak memory <= ~2 extra copies -> {'OK' if m_s <= 2.05 * copy else 'MISSED'} "
          f"(tracemalloc {m_s / copy:.2f} copies)")


if __name__ == "__main__":
    main()
