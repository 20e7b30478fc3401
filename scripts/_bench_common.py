"""What every benchmark script in ``scripts/`` shares: the load guard, interleaved pairs, ratio lines.

Why these rules (docs/performance.md says the same to readers):

* **Load guard.** A figure taken while other programs compete for the CPUs measures the competition, and
  not evenly: a busy machine slows a C tool and a Python client by different amounts, so even the *ratio*
  moves (we saw 0.35 quiet vs 0.75-0.87 busy for the same engine and wrk). Every script prints the load
  average before and after, and refuses to run above ``--max-load`` (default 1.2 on 2 cores: 0.6 per CPU)
  unless ``--allow-busy``, in which case every table says BUSY in capitals.
* **Interleaved pairs.** The two commands alternate (ours, anchor, ours, anchor, ...), so a slow minute
  hits both; each pair gives one ratio, and the ratio is reported as min / median / max over ``--runs``
  (at least 3) pairs, never as best-of.
* **No priority tricks.** No real-time scheduling or renicing of either side: ``SCHED_FIFO`` changes what
  is measured (wrk's p99 rose to 31-35 ms under throttling).
* **Targets in the same line.** Each ratio is printed next to its target with ``ok`` or ``MISS``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def add_load_args(ap: argparse.ArgumentParser, runs: int = 3) -> None:
    ap.add_argument("--runs", type=int, default=runs, help=f"interleaved pairs per comparison (>= 3, default {runs})")
    ap.add_argument("--max-load", type=float, default=0.6 * (os.cpu_count() or 1),
                    help="refuse to start above this 1-minute load average (default 0.6 per CPU)")
    ap.add_argument("--allow-busy", action="store_true",
                    help="run anyway above --max-load; every table is then marked BUSY")


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def machine_line() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        pass
    return (f"machine: {os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


@dataclass
class LoadGuard:
    """Prints the load average around a script's runs; refuses or marks the figures BUSY above a limit."""

    max_load: float
    allow_busy: bool
    busy: bool = False
    seen: list[float] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LoadGuard:
        if args.runs < 3:
            sys.exit("--runs must be at least 3 (min / median / max of the ratios)")
        return cls(args.max_load, args.allow_busy)

    def check(self, when: str) -> None:
        """Print and remember the load; exit when it is over the limit and busy runs are not allowed.

        From the second check on, up to two busy processes of the benchmark's own (a client and a server or
        tool) are allowed for: the 1-minute average still carries them, and a script must not refuse to go
        on because of its own work. The first check comes before anything of ours ran."""
        own = float(min(2, os.cpu_count() or 1)) if self.seen else 0.0
        load = load_average()
        self.seen.append(max(load[0] - own, 0.0))
        over = load[0] - own > self.max_load
        mark = ""
        if over:
            self.busy = True
            mark = (f"  <-- BUSY: above --max-load {self.max_load:g}; these figures measure the neighbours too"
                    if self.allow_busy else "")
        own_text = f" (up to {own:g} of it this benchmark's own processes)" if own else ""
        print(f"load average {when}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
              f"{own_text}{mark}", flush=True)
        if over and not self.allow_busy:
            sys.exit(f"refusing to benchmark: 1-minute load average {load[0]:.2f}{own_text} > --max-load "
                     f"{self.max_load:g}. "
                     "Wait for a quiet machine, or pass --allow-busy to run anyway (figures marked BUSY).")

    def summary(self) -> str:
        lo, hi = min(self.seen, default=float("nan")), max(self.seen, default=float("nan"))
        state = "BUSY (figures distorted by other programs)" if self.busy else "quiet"
        return (f"load average during the runs, less the benchmark's own processes after each: {lo:.2f}-{hi:.2f} "
                f"on {os.cpu_count()} CPUs: {state}")


def interleaved(runs: int, ours: Callable[[], Any], anchor: Callable[[], Any],
                guard: LoadGuard | None = None) -> tuple[list[Any], list[Any]]:
    """``runs`` pairs, alternating which side goes first, so drift and order effects hit both sides."""
    a: list[Any] = []
    b: list[Any] = []
    for i in range(runs):
        if i % 2 == 0:
            a.append(ours())
            b.append(anchor())
        else:
            b.append(anchor())
            a.append(ours())
        if guard is not None:  # a client and a server (or tool) per side: up to two busy processes of ours
            guard.check(f"after pair {i + 1}/{runs}")
    return a, b


def mmm(values: Sequence[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def fmt_mmm(values: Sequence[float], spec: str = ".2f") -> str:
    lo, med, hi = mmm(values)
    return f"{lo:{spec}} / {med:{spec}} / {hi:{spec}}"


def ratio_line(label: str, ratios: Sequence[float], target: float | None, *, higher_is_better: bool = True,
               busy: bool = False) -> str:
    """``label: ratio min / median / max  (target >= T: ok|MISS)``; judged on the median."""
    lo, med, hi = mmm(ratios)
    verdict = ""
    if target is not None:
        good = med >= target if higher_is_better else med <= target
        verdict = f"  target {'>=' if higher_is_better else '<='} {target:g}: {'ok' if good else 'MISS'}"
        if busy:
            verdict += " (BUSY machine: not a valid check)"
    return f"{label}: ratio {lo:.2f} / {med:.2f} / {hi:.2f} (min / median / max of {len(ratios)}){verdict}"
