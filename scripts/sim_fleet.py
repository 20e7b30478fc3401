#!/usr/bin/env python
"""Simulate the fleet outlier rule against the rules teams use by hand, on the same synthetic fleets.

Each fleet has ``--machines`` identical machines, ``--sessions`` sessions each of ``--trials`` trials; every
measurement has within-session noise (``--cv``) and every session a drift (``--drift``, the part of the noise
that repeats within a session, which is what makes trials-as-replicates overconfident). One machine is made
slower by 0 % (the null: nobody should be named), 2 %, 3 % and 5 %. Rules, all seeing the same data:

* **hwbench fleet** — each machine against the rest pooled (Welch, Bonferroni over machines), at least 1 %
  apart; session medians as replicates (``analyze_fleet``).
* **ratio > 3 %** — name the machine whose median is more than 3 % off the fleet median (eyeballing a table).
* **ANOVA then worst** — if the one-way F-test on all trials says p < 0.05, name the worst machine.
* **z-score > 2** — name the machine whose median is more than 2 standard deviations of the machine
  medians from their mean.

Printed: how often each rule names a machine when none is off (false alarm), and how often it names the
right one when one is (power). docs/scaling.md holds the latest table.

Usage: ``python scripts/sim_fleet.py [--reps 400] [--machines 8] [--sessions 3] [--trials 5]``
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import stats as sstats

from pytest_hwbench.report.fleet import analyze_fleet
from pytest_hwbench.report.fleet_data import MetricSeries, SessionRecord, TestRecord


def fleet(rng: np.random.Generator, machines: int, sessions: int, trials: int, cv: float, drift: float,
          slow: float) -> list[SessionRecord]:
    out = []
    for m in range(machines):
        mean = 100.0 * (1 - slow if m == 0 else 1.0)
        for s in range(sessions):
            session_mean = mean * (1 + rng.normal(0, drift))
            values = tuple(rng.normal(session_mean, cv * session_mean, trials))
            series = MetricSeries("x_s", "ops/s", "higher", values, float(np.median(values)), None)
            test = TestRecord("t.py::test_x", "test_x", "PASS", {}, {}, {"x_s": series})
            out.append(SessionRecord(run_id=f"{m}-{s}", testbed="tb", host=f"m{m}", recipe="r",
                                     started_at=float(s), git_commit=None, verdict="PASS", complete=True,
                                     source="sim", tests=(test,)))
    return out


def by_machine(sessions: list[SessionRecord]) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for s in sessions:
        out.setdefault(s.host, []).extend(s.tests[0].metrics["x_s"].values)
    return {h: np.asarray(v) for h, v in out.items()}


def rule_hwbench(sessions: list[SessionRecord]) -> str | None:
    (c,) = analyze_fleet(sessions)
    return c.outlier.host if c.outlier and c.outlier.direction == "slower" else (c.outlier.host if c.outlier
                                                                                   else None)


def rule_ratio(sessions: list[SessionRecord], threshold: float = 0.03) -> str | None:
    med = {h: float(np.median(v)) for h, v in by_machine(sessions).items()}
    fleet_median = float(np.median(list(med.values())))
    worst = max(med, key=lambda h: abs(med[h] / fleet_median - 1))
    return worst if abs(med[worst] / fleet_median - 1) > threshold else None


def rule_anova(sessions: list[SessionRecord]) -> str | None:
    data = by_machine(sessions)
    p = sstats.f_oneway(*data.values()).pvalue
    if p >= 0.05:
        return None
    return min(data, key=lambda h: float(np.median(data[h])))


def rule_z(sessions: list[SessionRecord]) -> str | None:
    med = {h: float(np.median(v)) for h, v in by_machine(sessions).items()}
    vals = np.array(list(med.values()))
    sd = vals.std(ddof=1)
    if sd == 0:
        return None
    worst = max(med, key=lambda h: abs(med[h] - vals.mean()))
    return worst if abs(med[worst] - vals.mean()) / sd > 2 else None


RULES = (("hwbench fleet", rule_hwbench), ("ratio > 3 %", rule_ratio), ("ANOVA then worst", rule_anova),
         ("z-score > 2", rule_z))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--machines", type=int, default=8)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--cv", type=float, default=0.01)
    ap.add_argument("--drift", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    slows = (0.0, 0.02, 0.03, 0.05)
    rng = np.random.default_rng(args.seed)
    hits = {name: {s: 0 for s in slows} for name, _ in RULES}
    for slow in slows:
        for _ in range(args.reps):
            data = fleet(rng, args.machines, args.sessions, args.trials, args.cv, args.drift, slow)
            for name, rule in RULES:
                named = rule(data)
                ok = named is not None if slow == 0 else named == "m0"
                hits[name][slow] += ok
    print(f"{args.machines} machines x {args.sessions} sessions x {args.trials} trials, within-session CV "
          f"{args.cv:.1%}, session drift {args.drift:.1%}, {args.reps} fleets per column\n")
    print("| rule | false alarm (none slower) | right machine, 2 % slower | 3 % slower | 5 % slower |")
    print("|---|---|---|---|---|")
    for name, _ in RULES:
        h = hits[name]
        print(f"| {name} | {h[0.0] / args.reps:.1%} | {h[0.02] / args.reps:.1%} | {h[0.03] / args.reps:.1%} | "
              f"{h[0.05] / args.reps:.1%} |")


if __name__ == "__main__":
    main()
