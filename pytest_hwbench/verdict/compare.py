"""The baseline comparison of one metric: this session's trials against the stored sessions.

Why this model (the simulation that chose it is ``scripts/bench_verdicts.py``; table in docs/verdicts.md)
--------------------------------------------------------------------------------------------------------
A trial value (one per repetition) moves for two reasons: trial-to-trial noise inside a session, and a
shift of the whole session (another process on the box, thermal state, page cache, a noisy neighbour). On
a shared machine the second kind dominates, and a comparison that only looks at the trials of one session
calls an unchanged rerun a regression. So, on the log scale (ratios become differences)::

    log x[session s, trial j] = mu + shift_s + noise_sj,   shift_s ~ (0, tau^2),   noise ~ (0, sigma^2)

* ``d`` = mean log of this session's trials minus the mean over stored sessions of each session's mean log
  trial value, so ``exp(d)`` is the ratio of geometric means (``ratio``);
* ``sigma^2`` is pooled from the trials within every session of this metric (this one and the stored ones);
* ``tau^2`` comes from the spread of the stored sessions' means, pooled over every test and metric of the
  testbed (a machine's drift is shared by its tests; one test's 3 sessions say little) and combined with
  the stated prior ``baseline.session_noise`` weighted as ``PRIOR_WEIGHT`` sessions, so that with no
  history the prior rules and with a long history the data do;
* ``Var(d) = tau^2 (1 + 1/K) + sigma^2 (1/n + mean(1/m_k)/K)`` for n current trials and K stored sessions
  of m_k trials; degrees of freedom by Welch–Satterthwaite.

With ``w`` the slowdown (``d`` for lower-is-better, ``-d`` otherwise), ``se = sqrt(Var(d))`` and the
tolerance ``tol`` on the log scale:

* **FAIL** when ``w > tol`` and ``w / se`` exceeds the FAIL boundary: the one-sided ``alpha_fail`` t quantile
  at the last planned look, higher at earlier looks (O'Brien-Fleming shape, ``fail_boundary``), which keeps
  the false-FAIL rate at its target however often the sequential trial loop looks;
* **PASS** when the one-sided upper ``confidence`` bound of ``w`` is within ``tol`` (STALE when even the
  bound on the improvement is beyond ``stale_factor * tol``);
* **INCONCLUSIVE** otherwise — the data cannot tell; the message says which noise it saw and what would
  make it decisive.

Everything is vectorised over a leading axis so the simulation runs the very same code on many replicates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a run of one-value tests never loads it (issue #14)
    import numpy as np


def _stats() -> Any:
    """``scipy.stats``, imported on first use: it costs ~0.6 s, which every pytest run that loads the plugin
    would otherwise pay, measuring or not (issue #14, plugin overhead)."""
    from scipy import stats

    return stats

PASS, FAIL, INCONCLUSIVE, STALE = "PASS", "FAIL", "INCONCLUSIVE", "STALE"
_CODES = (PASS, FAIL, INCONCLUSIVE, STALE)

#: Weight of the ``session_noise`` prior, in sessions' worth of degrees of freedom.
PRIOR_WEIGHT = 3.0
#: Stored sessions (pooled degrees of freedom) from which the between-session estimate counts as calibrated.
CALIBRATED_DF = 8


@dataclass(frozen=True)
class CompareSettings:
    """The knobs of the rule; defaults are the ones the simulation chose (docs/verdicts.md)."""

    tolerance: float = 0.05
    confidence: float = 0.95      # of the reported CI of the change
    pass_confidence: float = 0.80  # one-sided bound that must lie within the tolerance for PASS
    alpha_fail: float = 0.007     # one-sided level of the FAIL test at the last look
    looks_planned: int = 1        # (set by the caller) how many looks the sequential plan may take
    look: int = 0                 # (set by the caller) which look this is, 0-based
    session_noise: float = 0.03
    stale_factor: float = 2.0
    prior_weight: float = PRIOR_WEIGHT


@dataclass(frozen=True)
class SessionNoise:
    """Between-session variance estimated from stored history (log units), before the prior is mixed in.

    ``between_var`` is the variance of session means less the share the trial noise explains, pooled
    (weighted by degrees of freedom) over every series (test × metric) with at least two stored sessions;
    ``df`` is ``sum (K-1)`` over those series.
    """

    between_var: float = 0.0
    df: int = 0
    series: int = 0

    def combined(self, prior: float, weight: float = PRIOR_WEIGHT) -> tuple[float, float]:
        """(tau^2, degrees of freedom) after mixing in the prior SD ``prior`` (relative, e.g. 0.03)."""
        import numpy as np
        tau2, df = combine_prior(np.asarray(self.between_var), self.df, prior, weight)
        return float(tau2), df

    @property
    def calibrated(self) -> bool:
        return self.df >= CALIBRATED_DF

    def describe(self, prior: float) -> str:
        tau2, _ = self.combined(prior)
        sd = math.expm1(math.sqrt(tau2)) * 100
        if self.df == 0:
            return f"session noise {sd:.1f}% (prior baseline.session_noise; no stored history to estimate it)"
        source = "estimated" if self.calibrated else "mostly the prior baseline.session_noise"
        return (f"session noise {sd:.1f}% ({source}: {self.df} df from {self.series} stored series, prior "
                f"{prior * 100:g}% weighted as {PRIOR_WEIGHT:g})")

    def to_dict(self) -> dict[str, Any]:
        return {"between_var": self.between_var, "df": self.df, "series": self.series}


def combine_prior(between_var: np.ndarray, df: int, prior: float,
                  weight: float = PRIOR_WEIGHT) -> tuple[np.ndarray, float]:
    """The session variance: the measured ``between_var`` (``df`` degrees of freedom, negative estimates
    read as 0) mixed with the prior SD ``prior`` weighted as ``PRIOR_WEIGHT`` degrees of freedom."""
    import numpy as np
    prior_var = math.log1p(prior) ** 2
    est = np.maximum(between_var, 0.0)
    return (weight * prior_var + df * est) / (weight + df), weight + df


def _logs(values: Iterable[float]) -> np.ndarray:
    import numpy as np
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    return np.log(arr[np.isfinite(arr) & (arr > 0)])


def series_noise(sessions: Sequence[Sequence[float]]) -> SessionNoise:
    """The between-session contribution of one series (one test's metric across its stored sessions)."""
    import numpy as np
    logs = [x for x in (_logs(s) for s in sessions) if x.size]
    k = len(logs)
    if k < 2:
        return SessionNoise()
    means = np.array([x.mean() for x in logs])
    ss_w = sum(float(((x - x.mean()) ** 2).sum()) for x in logs)
    df_w = sum(x.size - 1 for x in logs)
    within = ss_w / df_w if df_w else 0.0
    h = float(np.mean([1.0 / x.size for x in logs]))
    ms_between = float(means.var(ddof=1))
    return SessionNoise(between_var=ms_between - within * h, df=k - 1, series=1)


def pool_noise(parts: Iterable[SessionNoise]) -> SessionNoise:
    """Pool series estimates, weighted by their degrees of freedom."""
    ss, df, n = 0.0, 0, 0
    for p in parts:
        if p.df:
            ss, df, n = ss + p.between_var * p.df, df + p.df, n + p.series
    return SessionNoise(between_var=ss / df if df else 0.0, df=df, series=n)


def pooled_noise_arrays(base: np.ndarray) -> tuple[np.ndarray, int]:
    """Vectorised ``pool_noise(series_noise(...))`` for base of shape (R, T, K, m) in log units: per
    replicate the pooled between-session mean square over T series, and its degrees of freedom."""
    import numpy as np
    _, t, k, m = base.shape
    if k < 2:
        return np.zeros(base.shape[0]), 0
    means = base.mean(axis=3)
    within = base.var(axis=3, ddof=1).mean(axis=2) if m > 1 else np.zeros(base.shape[:2])
    ms_between = means.var(axis=2, ddof=1)
    contrib = ms_between - within / m
    return contrib.mean(axis=1), t * (k - 1)


@dataclass
class Stats:
    """The arithmetic of one comparison (arrays over replicates, or 0-d for one comparison)."""

    d: np.ndarray
    se: np.ndarray
    df: np.ndarray
    within_var: np.ndarray
    tau2: float | np.ndarray
    n: int
    k: int


def log_stats(cur: np.ndarray, sessions: Sequence[np.ndarray], tau2: float | np.ndarray,
              tau_df: float) -> Stats:
    """``cur`` (R, n) and each stored session (R, m_k), all log values; ``tau2`` the session variance."""
    import numpy as np
    n, k = cur.shape[-1], len(sessions)
    cur_mean = cur.mean(axis=-1)
    sess_means = np.stack([s.mean(axis=-1) for s in sessions], axis=-1)
    d = cur_mean - sess_means.mean(axis=-1)
    ss = ((cur - cur_mean[..., None]) ** 2).sum(axis=-1)
    for s in sessions:
        ss = ss + ((s - s.mean(axis=-1)[..., None]) ** 2).sum(axis=-1)
    df_w = (n - 1) + sum(s.shape[-1] - 1 for s in sessions)
    h = float(np.mean([1.0 / s.shape[-1] for s in sessions]))
    # One trial everywhere: the session spread carries the trial noise too.
    within = ss / df_w if df_w > 0 else np.zeros_like(d)
    a = tau2 * (1.0 + 1.0 / k) + np.zeros_like(d)
    b = within * (1.0 / n + h / k)
    var = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = a ** 2 / tau_df + (b ** 2 / df_w if df_w > 0 else 0.0)
        df = np.where(denom > 0, var ** 2 / np.where(denom > 0, denom, 1.0), np.inf)
    df = np.maximum(df, 1.0)
    return Stats(d=d, se=np.sqrt(var), df=df, within_var=within, tau2=tau2, n=n, k=k)


def look_factor(s: CompareSettings) -> float:
    """The O'Brien-Fleming widening at look ``s.look`` of ``s.looks_planned``: ``sqrt(looks / (look + 1))``,
    1 at the last look."""
    looks = max(s.looks_planned, 1)
    k = min(max(s.look, 0), looks - 1) + 1
    return math.sqrt(looks / k)


def fail_boundary(s: CompareSettings) -> float:
    """The z boundary of the FAIL test at look ``s.look`` of ``s.looks_planned``: O'Brien-Fleming shaped,
    ``z(1 - alpha_fail) * sqrt(looks / (look + 1))``, so early looks on few trials only FAIL on a change far
    beyond the noise, and the repeated looks keep the overall false-FAIL rate near ``alpha_fail``
    (checked by scripts/bench_verdicts.py). The rule itself scales the t quantile (``decide_codes``)."""
    return float(_stats().norm.ppf(1.0 - s.alpha_fail)) * look_factor(s)


def decide_codes(st: Stats, lower_is_better: bool, s: CompareSettings) -> np.ndarray:
    """Verdict codes (indexes into ``_CODES``) for every replicate: the rule of the module docstring."""
    import numpy as np
    w = st.d if lower_is_better else -st.d
    tol = math.log1p(s.tolerance) if lower_is_better else -math.log1p(-min(s.tolerance, 0.99))
    # The O'Brien-Fleming factor scales the t quantile, not the tail probability: a far-tail t quantile at
    # a few degrees of freedom is enormous (at 4 df and an early look it was ~190 standard errors, so even a
    # 3x slowdown with a little stored history was only INCONCLUSIVE); at many df both forms agree.
    t_fail = _stats().t.ppf(1.0 - s.alpha_fail, st.df) * look_factor(s)
    t_pass = _stats().t.ppf(s.pass_confidence, st.df)
    with np.errstate(divide="ignore", invalid="ignore"):
        fail = (w > tol) & (w > t_fail * st.se)
    upper = w + t_pass * st.se
    passed = upper <= tol
    stale = passed & (s.tolerance > 0) & (-upper > s.stale_factor * tol)
    codes = np.full(np.shape(w), 2, dtype=np.int8)
    codes[passed] = 0
    codes[stale] = 3
    codes[fail] = 1
    return codes


# ------------------------------------------------------------------------------------ one comparison

@dataclass
class Comparison:
    """The outcome of comparing one metric with its stored sessions (what every report writer reads)."""

    metric: str
    status: str
    unit: str = ""
    better: str = "lower"
    current_median: float | None = None
    baseline_median: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    tolerance: float = 0.05
    confidence: float = 0.95
    n_current: int = 0
    n_baseline: int = 0
    sessions: int = 0
    within_cv: float | None = None
    session_sd: float | None = None
    noise: str = ""
    advice: str = ""
    message: str = ""
    inconclusive_policy: str = "warn"
    stale_factor: float = 2.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> float | None:
        """Relative change current vs baseline (+0.15 = 15 % higher), from the ratio."""
        return None if self.ratio is None else self.ratio - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "status": self.status, "unit": self.unit, "better": self.better,
                "current_median": _j(self.current_median), "baseline_median": _j(self.baseline_median),
                "ratio": _j(self.ratio), "change": _j(self.change), "ci_low": _j(self.ci_low),
                "ci_high": _j(self.ci_high), "tolerance": self.tolerance, "confidence": self.confidence,
                "n_current": self.n_current, "n_baseline": self.n_baseline, "sessions": self.sessions,
                "within_cv": _j(self.within_cv), "session_sd": _j(self.session_sd), "noise": self.noise,
                "advice": self.advice, "message": self.message,
                "inconclusive_policy": self.inconclusive_policy, "stale_factor": self.stale_factor}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        keys = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kw = {k: data[k] for k in keys if k in data}
        kw.setdefault("inconclusive_policy", data.get("inconclusive", "warn"))
        return cls(**kw)


def _j(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    text = f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return f"{text} {unit}".strip()


def compare_metric(name: str, baseline_sessions: Sequence[Sequence[float]], current: Sequence[float],
                   settings: CompareSettings, *, better: str = "lower", unit: str = "",
                   noise: SessionNoise | None = None, inconclusive_policy: str = "warn") -> Comparison:
    """Compare ``current`` trial values with ``baseline_sessions`` (one list of trial values per stored
    session) under ``settings``; ``noise`` is the testbed's pooled session history (default: this
    metric's own sessions only). Pure: ``hwbench compare`` and the simulation call it too."""
    import numpy as np
    cur_raw = [float(v) for v in current if v is not None and math.isfinite(float(v))]
    sess_raw = [[float(v) for v in s if v is not None and math.isfinite(float(v))] for s in baseline_sessions]
    sess_raw = [s for s in sess_raw if s]
    base_all = [v for s in sess_raw for v in s]
    common: dict[str, Any] = dict(
        metric=name, unit=unit, better=better, tolerance=settings.tolerance, confidence=settings.confidence,
        n_current=len(cur_raw), n_baseline=len(base_all), sessions=len(sess_raw),
        current_median=float(np.median(cur_raw)) if cur_raw else None,
        baseline_median=float(np.median(base_all)) if base_all else None,
        inconclusive_policy=inconclusive_policy, stale_factor=settings.stale_factor)
    tol_text = f"tolerance {settings.tolerance * 100:g}%"
    if not cur_raw or not base_all:
        side = "this run" if not cur_raw else "the baseline"
        return Comparison(status=INCONCLUSIVE, message=f"{name}: no finite trial values in {side}, nothing "
                                                       f"to compare ({tol_text})", **common)
    if common["baseline_median"] <= 0 or common["current_median"] <= 0:
        return _compare_by_sign(cur_raw, base_all, tol_text, common)
    # Positive medians: the ratio is defined; a stray non-positive trial value (e.g. an ITL median of 0
    # when chunks arrived coalesced) has no logarithm and is left out of the ratio and its CI.
    cur_pos = [v for v in cur_raw if v > 0]
    sess_pos = [p for p in ([v for v in s if v > 0] for s in sess_raw) if p]
    if not cur_pos or not sess_pos:
        return _compare_by_sign(cur_raw, base_all, tol_text, common)
    cur_raw, sess_raw = cur_pos, sess_pos
    lower = better == "lower"
    cur = np.log(np.asarray(cur_raw))[None, :]
    sessions = [np.log(np.asarray(s))[None, :] for s in sess_raw]
    noise = noise if noise is not None else pool_noise([series_noise(sess_raw)])
    tau2, tau_df = noise.combined(settings.session_noise, settings.prior_weight)
    st = log_stats(cur, sessions, tau2, tau_df)
    if len(cur_raw) == 1 and all(len(s) == 1 for s in sess_raw):
        return Comparison(
            status=INCONCLUSIVE, ratio=math.exp(float(st.d[0])),
            message=(f"{name}: 1 trial on each side ({_fmt(common['current_median'], unit)} vs "
                     f"{_fmt(common['baseline_median'], unit)}): no measure of the trial-to-trial noise, so no "
                     f"verdict ({tol_text}); run with repetitions >= 2"), advice="run with repetitions >= 2",
            **common)
    code = int(decide_codes(st, lower, settings)[0])
    d, se, df = float(st.d[0]), float(st.se[0]), float(st.df[0])
    t2 = float(_stats().t.ppf(0.5 + settings.confidence / 2, df))
    ratio, lo, hi = math.exp(d), math.exp(d - t2 * se), math.exp(d + t2 * se)
    within_cv = math.expm1(math.sqrt(float(st.within_var[0]))) if st.within_var[0] > 0 else 0.0
    session_sd = math.expm1(math.sqrt(tau2))
    noise_text = (f"trial noise {within_cv * 100:.1f}% over {len(cur_raw) + len(base_all)} trials, "
                  + noise.describe(settings.session_noise))
    status = _CODES[code]
    worse = (ratio - 1.0) if lower else (1.0 - ratio)
    how = "same as baseline" if worse == 0 else f"{abs(worse) * 100:.1f}% {'worse' if worse > 0 else 'better'}"
    detail = (f"{_fmt(common['current_median'], unit)} vs baseline {_fmt(common['baseline_median'], unit)} "
              f"(medians); change {_pct(ratio - 1)}, {settings.confidence * 100:g}% CI {_pct(lo - 1)} to "
              f"{_pct(hi - 1)}; {tol_text}; {len(cur_raw)} trials vs {len(sess_raw)} stored session(s) of "
              f"{len(base_all)} trials")
    advice = ""
    if status == INCONCLUSIVE:
        advice = _advice(st, settings, lower, noise, tau2)
    text = {PASS: f"{name}: {how}, within tolerance: {detail}",
            FAIL: f"{name}: {how}: {detail}",
            STALE: f"{name}: {how}, beyond {settings.stale_factor:g}x the tolerance: baseline stale, re-save "
                   f"with --hwbench-save-baseline: {detail}",
            INCONCLUSIVE: f"{name}: inconclusive, {how} but the CI straddles the tolerance: {detail}; "
                          f"{noise_text}; {advice}"}[status]
    return Comparison(status=status, ratio=ratio, ci_low=lo, ci_high=hi, within_cv=within_cv,
                      session_sd=session_sd, noise=noise_text, advice=advice, message=text, **common)


def _advice(st: Stats, s: CompareSettings, lower: bool, noise: SessionNoise, tau2: float) -> str:
    """What would make an inconclusive comparison decisive: more trials, or more stored sessions."""
    tol = math.log1p(s.tolerance)
    session_part = tau2 * (1 + 1 / st.k)
    # To tell a change of 2x the tolerance from no change, se must be about tol / 2.5.
    target = (tol / 2.5) ** 2
    within = float(st.within_var[0])
    if session_part >= target:
        more = "" if noise.calibrated else (f"; {max(CALIBRATED_DF - noise.df, 1)} more stored session(s) across "
                                            "the testbed would replace the prior with a measured value")
        return (f"the session-to-session noise ({math.expm1(math.sqrt(tau2)) * 100:.1f}%) alone is too large "
                f"to tell a {2 * s.tolerance * 100:g}% change apart: save more sessions (baseline.sessions), "
                f"quiet the machine, or raise the tolerance{more}")
    room = target - session_part
    per_trial = within  # each extra trial of this session shrinks within * (1/n) only
    need = math.ceil(per_trial / max(room - within * (1 / max(st.k, 1)) / max(st.n, 1), 1e-12)) if within else st.n
    if need > 10 * max(st.n, 1):
        return (f"the trial-to-trial noise ({math.expm1(math.sqrt(within)) * 100:.0f}%) is too large for this "
                "tolerance: more trials would not make it decisive soon; measure more samples per trial, "
                "quiet the machine, or raise the tolerance")
    return (f"about {max(need, st.n + 1)} trials in this session would make it decisive (budget: "
            "baseline.reruns, baseline.max_seconds)")


def _compare_by_sign(cur: list[float], base: list[float], tol_text: str, common: dict[str, Any]) -> Comparison:
    """Baseline values of 0 (typical for ``error_rate``) or negative: a ratio is undefined, so judge by
    sign. Every current trial on the bad side of the baseline median is a FAIL (0 errors before, errors in
    every trial now is a regression however small), all equal a PASS, a mix INCONCLUSIVE."""
    name, lower = common["metric"], common["better"] == "lower"
    med_cur, med_base = common["current_median"], common["baseline_median"]
    why = f"baseline median {med_base:g}, ratio undefined"
    if all(v == med_base for v in cur):
        return Comparison(status=PASS, message=f"{name}: same as baseline ({why}, {tol_text})", **common)
    bad = [v > med_base if lower else v < med_base for v in cur]
    if all(bad):
        return Comparison(status=FAIL, message=f"{name}: worse than baseline in every trial (median "
                                               f"{med_cur:g} vs {med_base:g}; {why})", **common)
    if not any(bad):
        return Comparison(status=PASS, message=f"{name}: better than baseline (median {med_cur:g} vs "
                                               f"{med_base:g}; {why})", **common)
    return Comparison(status=INCONCLUSIVE, message=f"{name}: inconclusive, trials on both sides of the "
                                                   f"baseline (median {med_cur:g} vs {med_base:g}; {why})",
                      **common)


__all__ = ["FAIL", "INCONCLUSIVE", "PASS", "STALE", "CompareSettings", "Comparison", "SessionNoise",
           "combine_prior", "compare_metric", "decide_codes", "fail_boundary", "log_stats", "look_factor",
           "pool_noise", "pooled_noise_arrays", "series_noise"]
