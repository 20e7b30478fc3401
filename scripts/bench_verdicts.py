#!/usr/bin/env python3
"""Choose and check the baseline decision rule by simulation (docs/verdicts.md shows the table).

Simulates a testbed whose tests are compared with their stored baseline sessions:

* trial values with independent noise of CV 2 / 5 / 10 % (normal and lognormal), and whole-session shifts
  of SD 1 / 2 / 5 % on top of CV 5 %;
* no change, +5 % and +10 % regressions (metrics where lower is better: a latency grows);
* 1, 3 and 5 stored sessions of ``repetitions`` trials each; the testbed has ``--series`` tests whose
  stored history is pooled to estimate the session noise, as ``BaselineStore.session_noise`` does.

On the same samples it runs the project's own comparison (``verdict.compare``: the very functions the
plugin calls, with its sequential rounds under the default recipe policy) and the anchors' rules:

* pytest-benchmark ``--benchmark-compare-fail=mean:5%``: mean of this run's trials against the mean of the
  newest saved run;
* asv (``asv compare``): "different" by Mann-Whitney U (p < 0.002) when the sample sizes allow that p at
  all, else by non-overlapping 99 % CIs of the medians; a difference counts when the ratio of medians also
  exceeds the factor (1 + tolerance);
* Welch t-test plus threshold: one-sided Welch t-test (p < 0.05) of this run's trials against all stored
  trials, and the ratio of means above 1 + tolerance;
* Bencher t-test: the newest value (mean of this run's trials) above the 99 % upper boundary of a Student t
  fit to the stored sessions' values (one per session; needs 2 sessions, otherwise no alert).

Prints one table: scenario x method -> FAIL %, INCONCLUSIVE %, mean trials used; then checks the targets
of the defaults and exits non-zero when one is missed. ``--quick`` uses fewer replicates.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from pytest_hwbench.recipe.model import BaselinePolicy
from pytest_hwbench.verdict.compare import (
    CompareSettings,
    combine_prior,
    decide_codes,
    log_stats,
    pooled_noise_arrays,
)

FAIL, INCONCLUSIVE = 1, 2
TOL = 0.05


@dataclass(frozen=True)
class Scenario:
    noise: str  # normal | lognormal
    cv: float
    shift: float  # SD of a whole session's relative shift
    sessions: int  # stored baseline sessions
    change: float  # true relative change of the current session (+0.10 = 10 % slower)

    @property
    def label(self) -> str:
        return (f"{self.noise[:4]} cv{self.cv * 100:g} shift{self.shift * 100:g} K{self.sessions} "
                f"{self.change * 100:+g}%")


def draw(rng: np.random.Generator, sc: Scenario, shape: tuple[int, ...], change: float) -> np.ndarray:
    """Trial values around 100 with the scenario's noise; one session shift per leading (R, T, session)."""
    shift = 1.0 + sc.shift * rng.standard_normal((*shape[:-1], 1))
    if sc.noise == "normal":
        noise = 1.0 + sc.cv * rng.standard_normal(shape)
        noise = np.maximum(noise, 0.05)
    else:
        sigma = math.sqrt(math.log1p(sc.cv ** 2))
        noise = np.exp(sigma * rng.standard_normal(shape) - sigma ** 2 / 2)
    return 100.0 * (1.0 + change) * np.maximum(shift, 0.05) * noise


def simulate(sc: Scenario, reps: int, rounds: int, series: int, replicates: int, settings: CompareSettings,
             seed: int, save_trials: int) -> dict[str, tuple[float, float, float]]:
    """{method: (FAIL fraction, INCONCLUSIVE fraction, mean trials used)} for one scenario."""
    rng = np.random.default_rng(seed)
    r, t, k, m = replicates, series, sc.sessions, save_trials
    n_max = reps * (1 + rounds)
    base = draw(rng, sc, (r, t, k, m), 0.0)          # stored sessions
    cur = draw(rng, sc, (r, t, 1, n_max), sc.change)[:, :, 0, :]  # this session, all possible trials
    out: dict[str, tuple[float, float, float]] = {}

    # --- the project's rule, with its sequential rounds --------------------------------------------
    lb = np.log(base)
    est, df = pooled_noise_arrays(lb)
    tau2, tau_df = combine_prior(est, df, settings.session_noise, settings.prior_weight)
    tau2 = np.repeat(tau2, t)
    flat_b = lb.reshape(r * t, k, m)
    sessions = [flat_b[:, j, :] for j in range(k)]
    lc = np.log(cur).reshape(r * t, n_max)
    final = np.full(r * t, INCONCLUSIVE, dtype=np.int8)
    used = np.full(r * t, n_max)
    open_ = np.ones(r * t, dtype=bool)
    for look in range(1 + rounds):
        n = reps * (look + 1)
        st = log_stats(lc[:, :n], sessions, tau2, tau_df)
        codes = decide_codes(st, True, dataclasses.replace(settings, looks_planned=1 + rounds, look=look))
        decided = open_ & (codes != INCONCLUSIVE)
        final[decided] = codes[decided]
        used[decided] = n
        open_ &= ~decided
    out["hwbench"] = ((final == FAIL).mean(), (final == INCONCLUSIVE).mean(), used.mean())

    # --- anchors: the default repetitions, against the same stored sessions --------------------------
    c = cur[:, :, :reps].reshape(r * t, reps)
    newest = base[:, :, -1, :].reshape(r * t, m)
    allb = base.reshape(r * t, k * m)
    pb = c.mean(axis=1) / newest.mean(axis=1) - 1 > TOL
    out["pytest-benchmark mean:5%"] = (pb.mean(), 0.0, reps)
    out["asv compare"] = (_asv(c, newest).mean(), 0.0, reps)
    tt = sps.ttest_ind(c, allb, axis=1, equal_var=False, alternative="greater")
    welch = (tt.pvalue < 0.05) & (c.mean(axis=1) / allb.mean(axis=1) - 1 > TOL) if k * m > 1 else pb
    out["Welch t + 5%"] = (np.asarray(welch).mean(), 0.0, reps)
    if k >= 2:
        hist = base.mean(axis=3).reshape(r * t, k)
        limit = hist.mean(axis=1) + sps.t.ppf(0.99, k - 1) * hist.std(axis=1, ddof=1)
        bencher = c.mean(axis=1) > limit
    else:
        bencher = np.zeros(r * t, dtype=bool)
    out["Bencher t-test"] = (bencher.mean(), 0.0, reps)
    return out


def _asv(cur: np.ndarray, base: np.ndarray, p_threshold: float = 0.002) -> np.ndarray:
    """asv's ``is_different`` and factor, vectorised (see the module docstring)."""
    n1, n2 = cur.shape[1], base.shape[1]
    ratio = np.median(cur, axis=1) / np.median(base, axis=1)
    if 1.0 / math.comb(n1 + n2, min(n1, n2)) < p_threshold:
        p = sps.mannwhitneyu(cur, base, axis=1).pvalue
        different = p < p_threshold
    else:
        lo1, hi1 = _median_ci99(cur)
        lo2, hi2 = _median_ci99(base)
        different = (hi1 < lo2) | (hi2 < lo1)
    return different & (ratio > 1 + TOL)


def _median_ci99(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distribution-free 99 % CI of the median from order statistics (all of the range for n <= 7)."""
    n = x.shape[1]
    s = np.sort(x, axis=1)
    j = int(sps.binom.ppf(0.005, n, 0.5))
    lo_i = max(j - 1, 0)
    return s[:, lo_i], s[:, n - 1 - lo_i]


def scenarios() -> list[Scenario]:
    out = []
    for noise in ("normal", "lognormal"):
        for cv in (0.02, 0.05, 0.10):
            for k in (1, 3, 5):
                for change in (0.0, 0.05, 0.10):
                    out.append(Scenario(noise, cv, 0.0, k, change))
    for shift in (0.01, 0.02, 0.05):
        for k in (1, 3, 5):
            for change in (0.0, 0.05, 0.10):
                out.append(Scenario("normal", 0.05, shift, k, change))
    return out


def check_targets(rows: dict[Scenario, dict[str, tuple[float, float, float]]]) -> list[str]:
    """The issue's targets for the defaults; returns the misses (empty when all hold).

    "No worse than the best anchor on false FAIL" compares with the anchors that detect +10 % at least as
    often as we do less 5 points (a rule that never fails is trivially best on false FAIL); "within a few
    points on detection" compares with the anchors whose false FAIL meets the 1 % target."""
    misses = []
    for sc, res in rows.items():
        fail, inc, _ = res["hwbench"]
        if sc.change == 0 and fail > 0.01:
            misses.append(f"{sc.label}: false FAIL {fail:.1%} > 1%")
        if sc.change == 0:
            ten = rows[dataclasses.replace(sc, change=0.10)]
            ours10 = ten["hwbench"][0]
            peers = [res[m][0] for m in res if m != "hwbench" and ten[m][0] >= ours10 - 0.05]
            if peers and fail > min(peers) + 0.002:
                misses.append(f"{sc.label}: false FAIL {fail:.1%} worse than an anchor as sensitive ({min(peers):.1%})")
        if sc.change > 0 and sc.sessions > 1:
            # With one stored session the session-to-session variance is not identifiable: an anchor that
            # detects here fails 5-30 % of unchanged runs once sessions shift (the shift rows), so K1 is
            # held to false FAIL <= 1 % and INCONCLUSIVE-with-advice only (docs/verdicts.md).
            zero = rows[dataclasses.replace(sc, change=0.0)]
            ok = [res[m][0] for m in res if m != "hwbench" and zero[m][0] <= 0.01]
            if ok and fail < max(ok) - 0.05:
                misses.append(f"{sc.label}: detection {fail:.1%} more than 5 points below an anchor with "
                              f"false FAIL <= 1% ({max(ok):.1%})")
        if sc.shift == 0 and sc.cv == 0.05 and sc.sessions >= 3:
            if sc.change == 0.10 and fail < 0.95:
                misses.append(f"{sc.label}: FAIL on +10% {fail:.1%} < 95%")
            if sc.change in (0.0, 0.10) and inc > 0.05:
                misses.append(f"{sc.label}: INCONCLUSIVE {inc:.1%} > 5%")
        if sc.shift == 0.02 and sc.sessions >= 3 and sc.change == 0.10 and fail < 0.90:
            misses.append(f"{sc.label}: FAIL on +10% {fail:.1%} < 90% (see the bound below)")
    return misses


def oracle_power(sc: Scenario, n: int, m: int, alpha: float, change: float = 0.10) -> float:
    """Detection of ``change`` by a test that KNOWS both variances (the best any rule can do at this
    false-FAIL level): the current session's own shift cannot be told from a regression, so
    Var(d) = tau^2 (1 + 1/K) + sigma^2 (1/n + 1/(K m))."""
    tau2 = math.log1p(sc.shift) ** 2
    sig2 = math.log1p(sc.cv ** 2)
    sd = math.sqrt(tau2 * (1 + 1 / sc.sessions) + sig2 * (1 / n + 1 / (sc.sessions * m)))
    return float(sps.norm.cdf(math.log1p(change) / sd - sps.norm.ppf(1 - alpha)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer replicates (about 4x faster, noisier)")
    ap.add_argument("--replicates", type=int, default=None, help="testbeds simulated per scenario")
    ap.add_argument("--series", type=int, default=8, help="tests per testbed (pooled session history)")
    ap.add_argument("--repetitions", type=int, default=None, help="trials per round (default: recipe)")
    ap.add_argument("--reruns", type=int, default=None, help="extra sequential rounds (default: recipe)")
    ap.add_argument("--session-noise", type=float, default=None, help="prior session SD (default: recipe)")
    ap.add_argument("--prior-weight", type=float, default=None)
    ap.add_argument("--alpha", type=float, default=None, help="one-sided FAIL level at the last look")
    ap.add_argument("--pass-confidence", type=float, default=None)
    ap.add_argument("--save-trials", type=int, default=None,
                    help="trials per stored session (default: the full sequential budget, as the plugin saves)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    policy = BaselinePolicy()
    from pytest_hwbench.recipe.model import Recipe
    reps = args.repetitions or Recipe(path="", name="", text="", sha256="").repetitions
    rounds = policy.reruns if args.reruns is None else args.reruns
    settings = CompareSettings(tolerance=TOL, confidence=policy.confidence,
                               session_noise=policy.session_noise if args.session_noise is None
                               else args.session_noise)
    if args.prior_weight is not None:
        settings = dataclasses.replace(settings, prior_weight=args.prior_weight)
    if args.pass_confidence is not None:
        settings = dataclasses.replace(settings, pass_confidence=args.pass_confidence)
    save_trials = args.save_trials or reps * (1 + rounds)
    if args.alpha is not None:
        settings = dataclasses.replace(settings, alpha_fail=args.alpha)
    replicates = args.replicates or (150 if args.quick else 600)
    t0 = time.perf_counter()
    rows = {}
    for i, sc in enumerate(scenarios()):
        rows[sc] = simulate(sc, reps, rounds, args.series, replicates, settings, args.seed + i, save_trials)
    methods = list(next(iter(rows.values())))
    print(f"# bench_verdicts: tolerance {TOL:.0%}, {reps} trials per round, up to {rounds} extra rounds, "
          f"session_noise prior {settings.session_noise:.0%} (weight {settings.prior_weight:g}), "
          f"alpha {settings.alpha_fail:g}, PASS bound {settings.pass_confidence:g}, stored sessions of {save_trials} "
          f"trials, {args.series} tests x {replicates} testbeds per scenario")
    head = ["scenario", *methods]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print("  ".join([f"{'scenario':34}"] + [f"{m[:24]:>24}" for m in methods]))
    for sc, res in rows.items():
        cells = []
        for m in methods:
            f, inc, n = res[m]
            cells.append(f"{f:6.1%} F {inc:5.1%} I {n:4.1f}t" if m == "hwbench" else f"{f:6.1%} F")
        if args.markdown:
            print("| " + " | ".join([sc.label, *cells]) + " |")
        else:
            print("  ".join([f"{sc.label:34}"] + [f"{c:>24}" for c in cells]))
    misses = check_targets(rows)
    print(f"# {time.perf_counter() - t0:.1f} s; F = FAIL, I = INCONCLUSIVE, t = mean trials used "
          "(anchors: the first round's trials)")
    for miss in misses:
        print(f"TARGET MISSED: {miss}")
    for shift in (0.02, 0.05):
        for k in (3, 5):
            sc = Scenario("normal", 0.05, shift, k, 0.10)
            print(f"# bound: shift {shift:.0%}, K{k}: a rule that knew both variances would detect +10% in "
                  f"{oracle_power(sc, reps * (1 + rounds), save_trials, settings.alpha_fail):.0%} at this "
                  f"budget, {oracle_power(sc, 10**9, 10**9, settings.alpha_fail):.0%} with unlimited trials")
    if not misses:
        print("all targets met")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
