"""Fleet statistics ("silicon lottery"): how much identical machines differ, which one is off, and why.

A team runs the same suite on several machines of one testbed (same CPU, memory, GPUs). For each test and
metric this module answers:

* **Per machine**: the median of its observations with a confidence interval, and its rank (best first, in
  the metric's good direction).
* **Between vs within**: a one-way random-effects analysis with machines as groups. The intraclass
  correlation ``ICC = s_b² / (s_b² + s_w²)`` says which share of the spread is the machine rather than noise
  between repeats; the F-test (``MS_between / MS_within``, scipy) says whether machines differ at all; the
  best/worst ratio says by how much (always >= 1, in the good direction).
* **The outlier**: each machine against the others (three or more machines: its mean as a new draw from the
  spread of the others' machine means — a prediction-interval test, Bonferroni over the machines; two
  machines: Welch's t-test on their replicates), at least 1 % apart, so a real but negligible 0.2 % is not
  a finding. The one most clearly off is named, slower or faster, with the environment diff against what
  most of the others run (BIOS, firmware, driver, kernel, memory configuration) as the likely explanation.
  The rule was chosen by simulation against the rules teams use by hand (scripts/sim_fleet.py; the table
  is in docs/scaling.md).
* **Enough data?** How many sessions per machine a difference of ``resolve`` (default 2 %) between two
  machines would need to be found with 80 % power, from the within-machine spread seen.

What is one observation: when every machine has at least two sessions, a session's median (so drift between
sessions on one machine counts as within-machine noise, as it should); otherwise each trial of the single
session (the output says so: drift between sessions is then unseen, and the answer is less firm than the
p-value suggests).
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sstats

from pytest_hwbench.measure.stats import summarize
from pytest_hwbench.report.fleet_data import SessionRecord
from pytest_hwbench.verdict.envdiff import IGNORED, EnvChange, environment_diff, flatten, format_value

__all__ = [
    "FleetComparison", "MachineStats", "Outlier", "analyze_fleet", "render_json", "render_markdown",
    "render_table",
]

#: Environment keys that differ between machines by nature and explain nothing.
FLEET_IGNORED: frozenset[str] = IGNORED | {"hostname", "dirty", "commit", "branch", "cwd"}
POWER = 0.80


@dataclass(frozen=True)
class MachineStats:
    host: str
    sessions: int
    n: int  # observations (sessions or trials, see FleetComparison.unit)
    median: float
    ci: tuple[float, float]
    rank: int  # 1 = best
    vs_rest: float  # this machine's median / the median of the others' observations

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "sessions": self.sessions, "n": self.n, "median": self.median,
                "ci": list(self.ci), "rank": self.rank, "vs_rest": self.vs_rest}


@dataclass(frozen=True)
class Outlier:
    host: str
    direction: str  # "slower" | "faster" (worse or better in the metric's good direction)
    ratio: float  # machine median / rest median
    p_value: float  # Bonferroni-adjusted
    env_diff: tuple[EnvChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "direction": self.direction, "ratio": self.ratio, "p_value": self.p_value,
                "env_diff": [c.to_dict() for c in self.env_diff]}


@dataclass(frozen=True)
class FleetComparison:
    """One test and metric across the machines of one testbed."""

    testbed: str
    test_id: str
    metric: str
    unit: str
    better: str
    replicate: str  # "session" | "trial": what one observation is
    machines: tuple[MachineStats, ...]  # ranked, best first
    icc: float | None
    f_stat: float | None
    p_value: float | None
    df: tuple[int, int]
    best_worst_ratio: float
    within_cv: float | None  # within-machine stdev / grand median
    between_cv: float | None  # between-machine stdev (random effect) / grand median
    outlier: Outlier | None
    sessions_needed: int | None  # per machine, to resolve `resolve` with 80 % power
    sessions_have: int  # the fewest sessions any machine has
    resolve: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def firm(self) -> bool:
        """The data answer the question: a significant outlier, or enough sessions to rule one out."""
        return self.outlier is not None or (self.sessions_needed is not None
                                            and self.sessions_have >= self.sessions_needed)

    def to_dict(self) -> dict[str, Any]:
        return {"testbed": self.testbed, "test_id": self.test_id, "metric": self.metric, "unit": self.unit,
                "better": self.better, "replicate": self.replicate,
                "machines": [m.to_dict() for m in self.machines], "icc": self.icc, "f_stat": self.f_stat,
                "p_value": self.p_value, "df": list(self.df), "best_worst_ratio": self.best_worst_ratio,
                "within_cv": self.within_cv, "between_cv": self.between_cv,
                "outlier": self.outlier.to_dict() if self.outlier else None,
                "sessions_needed": self.sessions_needed, "sessions_have": self.sessions_have,
                "resolve": self.resolve, "firm": self.firm, "notes": list(self.notes)}


# ---------------------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class RandomEffects:
    """One-way random-effects ANOVA for unbalanced groups (Searle's n0 for the group size)."""

    f_stat: float | None
    p_value: float | None
    df: tuple[int, int]
    ms_within: float
    var_between: float
    icc: float | None


def one_way_random_effects(groups: Sequence[Sequence[float] | np.ndarray]) -> RandomEffects:
    data = [np.asarray(g, dtype=float) for g in groups if len(g) > 0]
    k = len(data)
    n_total = sum(g.size for g in data)
    df_b, df_w = k - 1, n_total - k
    if k < 2 or df_w < 1:
        return RandomEffects(None, None, (df_b, df_w), math.nan, math.nan, None)
    grand = float(np.concatenate(data).mean())
    ss_b = float(sum(g.size * (g.mean() - grand) ** 2 for g in data))
    ss_w = float(sum(((g - g.mean()) ** 2).sum() for g in data))
    ms_b, ms_w = ss_b / df_b, ss_w / df_w
    n0 = (n_total - sum(g.size ** 2 for g in data) / n_total) / df_b
    var_b = max(0.0, (ms_b - ms_w) / n0)
    if ms_w == 0.0:
        f = math.inf if ms_b > 0 else None
        p = 0.0 if ms_b > 0 else None
        icc = 1.0 if ms_b > 0 else None
    else:
        f = ms_b / ms_w
        p = float(sstats.f.sf(f, df_b, df_w))
        icc = var_b / (var_b + ms_w)
    return RandomEffects(f, p, (df_b, df_w), ms_w, var_b, icc)


def _loo_p(mine: np.ndarray, others: Sequence[np.ndarray]) -> float:
    """Is this machine from the same population as the others? The machine's mean against the others'
    machine means, as a new draw from their spread (prediction interval, externally studentised, k-2 df).

    The spread of the others' means holds both the machine-to-machine variation and the repeat noise, so
    a fleet whose machines all differ a little names nobody; one machine outside that spread is named.
    """
    means = np.array([o.mean() for o in others])
    centre, spread = float(means.mean()), float(means.std(ddof=1))
    diff = float(mine.mean()) - centre
    if spread == 0.0:
        return 0.0 if diff != 0.0 else 1.0
    t = diff / (spread * math.sqrt(1.0 + 1.0 / means.size))
    return float(2.0 * sstats.t.sf(abs(t), means.size - 1))


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or b.size < 2:
        return 1.0
    if a.std() == 0 and b.std() == 0:
        return 0.0 if a.mean() != b.mean() else 1.0
    return float(sstats.ttest_ind(a, b, equal_var=False).pvalue)


def replicates_needed(within_sd: float, delta: float, alpha: float, power: float = POWER) -> int | None:
    """Observations per machine for a two-sample comparison to find ``delta`` (normal approximation)."""
    if not (within_sd > 0 and delta > 0):
        return None
    z = sstats.norm.ppf(1 - alpha / 2) + sstats.norm.ppf(power)
    return max(2, math.ceil(2 * (z * within_sd / delta) ** 2))


def _consensus(envs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """For every flattened key, the value most of ``envs`` have (keys absent from most are left out)."""
    flats = [flatten(e) for e in envs]
    keys = {k for f in flats for k in f}
    out: dict[str, Any] = {}
    for key in keys:
        counts = Counter(json.dumps(f[key], sort_keys=True, default=str) for f in flats if key in f)
        value, count = counts.most_common(1)[0]
        if count * 2 > len(flats) or len(flats) <= 2:
            out[key] = json.loads(value)
    return out


def _machine_env(sessions: Sequence[SessionRecord]) -> Mapping[str, Any]:
    latest = max(sessions, key=lambda s: s.started_at or 0)
    return latest.fingerprint


def _compare(testbed: str, test_id: str, metric: str, per_host: dict[str, list[tuple[SessionRecord, Any]]], *,
             alpha: float, resolve: float, min_effect: float) -> FleetComparison:
    series0 = next(iter(per_host.values()))[0][1]
    unit, better = series0.unit, series0.better
    higher = better == "higher"
    by_session = all(len(v) >= 2 for v in per_host.values())
    obs: dict[str, np.ndarray] = {}
    trials_per_session = []
    for host, items in per_host.items():
        if by_session:
            vals = [float(np.median(s.values)) for _, s in items if s.values]
        else:
            vals = [v for _, s in items for v in s.values]
            trials_per_session += [len(s.values) for _, s in items]
        obs[host] = np.asarray(vals, dtype=float)
    obs = {h: v for h, v in obs.items() if v.size}
    medians = {h: float(np.median(v)) for h, v in obs.items()}
    order = sorted(medians, key=lambda h: medians[h], reverse=higher)
    re = one_way_random_effects([obs[h] for h in order])
    grand = float(np.median(np.concatenate(list(obs.values()))))
    notes = []
    if not by_session:
        notes.append("one session on some machine: trials are the replicates, so drift between sessions is "
                     "not seen; run each machine at least twice for a firmer answer")

    machines = []
    pvals: dict[str, float] = {}
    ratios: dict[str, float] = {}
    k = len(order)
    for rank, host in enumerate(order, 1):
        rest = np.concatenate([obs[h] for h in order if h != host])
        rest_median = float(np.median(rest))
        ratio = medians[host] / rest_median if rest_median else math.nan
        ratios[host] = ratio
        if k > 2:
            pvals[host] = min(1.0, _loo_p(obs[host], [obs[h] for h in order if h != host]) * k)
        else:
            pvals[host] = _welch_p(obs[host], rest)
        s = summarize(obs[host])
        lo, hi = s.ci.get("p50", (medians[host], medians[host]))
        machines.append(MachineStats(host=host, sessions=len(per_host[host]), n=int(obs[host].size),
                                     median=medians[host], ci=(float(lo), float(hi)), rank=rank, vs_rest=ratio))

    worst, best = medians[order[-1]], medians[order[0]]
    hi_med, lo_med = (best, worst) if higher else (worst, best)
    bw = hi_med / lo_med if lo_med > 0 else math.inf

    outlier = None
    candidates = [h for h in order if pvals[h] < alpha and abs(ratios[h] - 1) >= min_effect]
    if candidates:
        # with two machines both tests are the same one: the worse machine is the finding
        host = min(candidates, key=lambda h: (pvals[h], -order.index(h)))
        worse = (ratios[host] < 1) if higher else (ratios[host] > 1)
        rest_envs = [_machine_env([s for s, _ in per_host[h]]) for h in order if h != host]
        env = _machine_env([s for s, _ in per_host[host]])
        diff = tuple(environment_diff(_consensus(rest_envs), env, ignore=FLEET_IGNORED)) if env else ()
        outlier = Outlier(host=host, direction="slower" if worse else "faster", ratio=ratios[host],
                          p_value=pvals[host], env_diff=diff)

    within_sd = math.sqrt(re.ms_within) if math.isfinite(re.ms_within) else math.nan
    needed_obs = replicates_needed(within_sd, resolve * abs(grand), alpha / max(1, k if k > 2 else 1))
    sessions_have = min(len(v) for v in per_host.values())
    if needed_obs is None:
        sessions_needed = None
    elif by_session:
        sessions_needed = needed_obs
    else:
        per = max(1, int(np.median(trials_per_session))) if trials_per_session else 1
        sessions_needed = max(2, math.ceil(needed_obs / per))
    return FleetComparison(
        testbed=testbed, test_id=test_id, metric=metric, unit=unit, better=better,
        replicate="session" if by_session else "trial", machines=tuple(machines), icc=re.icc,
        f_stat=re.f_stat, p_value=re.p_value, df=re.df, best_worst_ratio=bw,
        within_cv=within_sd / abs(grand) if grand and math.isfinite(within_sd) else None,
        between_cv=math.sqrt(re.var_between) / abs(grand) if grand and math.isfinite(re.var_between) else None,
        outlier=outlier, sessions_needed=sessions_needed, sessions_have=sessions_have, resolve=resolve,
        notes=tuple(notes))


def analyze_fleet(sessions: Iterable[SessionRecord], *, testbed: str | None = None, test: str | None = None,
                  metric: str | None = None, alpha: float = 0.05, resolve: float = 0.02,
                  min_effect: float = 0.01) -> list[FleetComparison]:
    """Every (testbed, test, metric) measured on two or more hosts, outliers first, then by spread.

    ``test`` and ``metric`` are fnmatch patterns (a test pattern also matches any tail of the node id, as in
    recipes). Skipped and errored tests contribute nothing; a session with no value for a metric is left out
    of that metric only.
    """
    groups: dict[tuple[str, str, str], dict[str, list[tuple[SessionRecord, Any]]]] = {}
    for s in sessions:
        if testbed and s.testbed != testbed:
            continue
        for t in s.tests:
            if t.verdict in ("SKIP", "ERROR") or (test and not _matches(t.test_id, test)):
                continue
            for name, series in t.metrics.items():
                if (metric and not fnmatch.fnmatchcase(name, metric)) or not series.values:
                    continue
                groups.setdefault((s.testbed, t.test_id, name), {}).setdefault(s.host, []).append((s, series))
    out = [_compare(tb, tid, m, per_host, alpha=alpha, resolve=resolve, min_effect=min_effect)
           for (tb, tid, m), per_host in sorted(groups.items()) if len(per_host) >= 2]
    return sorted(out, key=lambda c: (c.outlier is None, -(c.best_worst_ratio if math.isfinite(
        c.best_worst_ratio) else 1e9)))


def _matches(test_id: str, pattern: str) -> bool:
    if fnmatch.fnmatchcase(test_id, pattern):
        return True
    return any(fnmatch.fnmatchcase(test_id[i + len(sep):], pattern) for sep in ("/", "::")
               for i in _find_all(test_id, sep))


def _find_all(text: str, sep: str) -> list[int]:
    out, i = [], text.find(sep)
    while i >= 0:
        out.append(i)
        i = text.find(sep, i + 1)
    return out


# ------------------------------------------------------------------------------------------ rendering

def _num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}"


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x * 100:.1f} %"


def headline(c: FleetComparison) -> str:
    if c.outlier:
        o = c.outlier
        return (f"{o.host} is {o.direction}: {_pct(abs(o.ratio - 1))} {'below' if o.ratio < 1 else 'above'} "
                f"the rest (p={_num(o.p_value, 2)})")
    if c.p_value is not None and c.p_value < 0.05:
        return "machines differ, but no single one stands out"
    if c.firm:
        return f"no machine differs by more than {_pct(c.resolve)} (firm)"
    need = c.sessions_needed if c.sessions_needed is not None else "?"
    return f"no difference found; {need} sessions per machine needed to resolve {_pct(c.resolve)} " \
           f"(have {c.sessions_have})"


def _better_arrow(c: FleetComparison) -> str:
    return "higher is better" if c.better == "higher" else "lower is better"


def render_table(comparisons: Sequence[FleetComparison], env_limit: int = 8) -> str:
    """Plain text for a terminal: one block per test and metric."""
    if not comparisons:
        return "hwbench fleet: nothing to compare (no test and metric was measured on two or more hosts)"
    lines = []
    for c in comparisons:
        lines.append(f"{c.testbed}  {c.test_id}  {c.metric} [{c.unit}] ({_better_arrow(c)})")
        lines.append(f"  {headline(c)}")
        lines.append(f"  ICC {_num(c.icc, 2)}  F({c.df[0]},{c.df[1]})={_num(c.f_stat, 3)} p={_num(c.p_value, 2)}"
                     f"  best/worst {_num(c.best_worst_ratio, 4)}  within-machine CV {_pct(c.within_cv)}"
                     f"  replicate: {c.replicate}")
        lines.append(f"  {'rank':>4}  {'host':<24} {'sessions':>8} {'n':>4} {'median':>12} {'95% CI':>25} "
                     f"{'vs rest':>8}")
        for m in c.machines:
            mark = "  <- " + c.outlier.direction if c.outlier and c.outlier.host == m.host else ""
            lines.append(f"  {m.rank:>4}  {m.host:<24} {m.sessions:>8} {m.n:>4} {_num(m.median, 6):>12} "
                         f"{'[' + _num(m.ci[0], 5) + ', ' + _num(m.ci[1], 5) + ']':>25} "
                         f"{_num(m.vs_rest, 4):>8}{mark}")
        if c.outlier:
            lines += _env_lines(c.outlier, env_limit, "  ")
        lines += [f"  note: {n}" for n in c.notes]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _env_lines(o: Outlier, limit: int, indent: str) -> list[str]:
    if not o.env_diff:
        return [f"{indent}environment of {o.host}: same as the rest (look at hardware: cooling, DIMMs, "
                "power limits)"]
    noun = "difference" if len(o.env_diff) == 1 else "differences"
    out = [f"{indent}environment of {o.host} vs the rest ({len(o.env_diff)} {noun}):"]
    for ch in o.env_diff[:limit]:
        out.append(f"{indent}  {ch.key}: {format_value(ch.baseline)} (rest) -> {format_value(ch.current)}")
    if len(o.env_diff) > limit:
        out.append(f"{indent}  ... and {len(o.env_diff) - limit} more")
    return out


def render_markdown(comparisons: Sequence[FleetComparison], env_limit: int = 8) -> str:
    if not comparisons:
        return "# Fleet\n\nNothing to compare: no test and metric was measured on two or more hosts.\n"
    lines = ["# Fleet", "", "| testbed | test | metric | finding | ICC | p | best/worst | sessions needed |",
             "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        lines.append(f"| {c.testbed} | `{c.test_id}` | {c.metric} ({_better_arrow(c)}) | {headline(c)} | "
                     f"{_num(c.icc, 2)} | {_num(c.p_value, 2)} | {_num(c.best_worst_ratio, 4)} | "
                     f"{c.sessions_needed if c.sessions_needed is not None else '-'} (have {c.sessions_have}) |")
    for c in comparisons:
        lines += ["", f"## {c.testbed} · `{c.test_id}` · {c.metric} [{c.unit}]", "",
                  f"{headline(c)}. Replicate: {c.replicate}; {_better_arrow(c)}.", "",
                  "| rank | host | sessions | n | median | 95 % CI | vs rest |", "|---|---|---|---|---|---|---|"]
        for m in c.machines:
            host = f"**{m.host}**" if c.outlier and c.outlier.host == m.host else m.host
            lines.append(f"| {m.rank} | {host} | {m.sessions} | {m.n} | {_num(m.median, 6)} | "
                         f"{_num(m.ci[0], 5)} – {_num(m.ci[1], 5)} | {_num(m.vs_rest, 4)} |")
        if c.outlier:
            head, *rest = _env_lines(c.outlier, env_limit, "")
            lines += ["", head, ""] + [f"- {ln.strip()}" for ln in rest]
        lines += [f"\n> {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def render_json(comparisons: Sequence[FleetComparison]) -> str:
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return json.dumps({"schema": 1, "comparisons": [clean(c.to_dict()) for c in comparisons]}, indent=2,
                      sort_keys=True, default=str) + "\n"
