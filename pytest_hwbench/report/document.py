"""The one-page report of a run, as a document model that ``markdown.py`` and ``html.py`` both render.

Order of the page (issue #11): a decision summary first — counts by verdict, every FAIL/WARN with metric,
bound, observed value and CI, baseline change and environment diff, each sweep's max load under SLO and its
peak throughput with the tail latency there, errors and timeouts — then one section per measured test
(metrics table with CIs, distributions from the raw samples, baseline vs this run), then the sweeps, the
methodology and what is needed to reproduce the run.

Other stages add to a test's section through :func:`register_test_section` (the resource timelines do), so
the report does not have to know them.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_hwbench.report.plots import Plot, SweepSeries, distribution_plot, sweep_plot, trials_plot
from pytest_hwbench.report.run_data import RunData, SweepRecord, TestRecord
from pytest_hwbench.report.terminal import fmt as _terminal_fmt

METRICS_DOC = "docs/metrics.md"


def fmt(value: float | None) -> str:
    """A number as the terminal table writes it; "-" for a missing or undefined (nan) value."""
    return "-" if value is None or not math.isfinite(value) else _terminal_fmt(value)
VERDICT_ORDER = ("FAIL", "ERROR", "WARN", "PASS", "SKIP")


@dataclass
class Finding:
    """One reason a test is FAIL or WARN, in the words a gate reader needs."""

    test: str
    verdict: str
    kind: str  # "SLO" | "baseline" | "test"
    metric: str = ""
    bound: str = ""
    observed: str = ""
    ci: str = ""
    change: str = ""
    env_diff: str = ""
    text: str = ""


@dataclass
class SweepLine:
    test: str
    load_param: str
    max_sustainable: str
    peak: str
    tail_at_peak: str
    knee: str


@dataclass
class ExtraSection:
    """A block another stage adds to a test's section: title, plain text lines, plots."""

    title: str
    lines: list[str] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)


@dataclass
class TestSection:
    __test__ = False

    record: TestRecord
    anchor: str
    metric_rows: list[list[str]]
    slo_rows: list[list[str]]
    baseline_rows: list[list[str]]
    plots: list[Plot]
    extras: list[ExtraSection]


@dataclass
class Document:
    run: RunData
    title: str
    counts: dict[str, int]
    findings: list[Finding]
    sweep_lines: list[SweepLine]
    errors: list[tuple[str, dict[str, int]]]
    skips: dict[str, int]
    tests: list[TestSection]
    sweep_plots: list[Plot]
    environment: list[tuple[str, str]]
    reproduce: list[tuple[str, str]]
    rerun_command: str
    notes: list[str]


TestSectionProvider = Callable[[RunData, TestRecord], list[ExtraSection]]
_TEST_SECTION_PROVIDERS: list[TestSectionProvider] = []


def register_test_section(provider: TestSectionProvider) -> TestSectionProvider:
    """Add blocks to each test's section (e.g. resource timelines). Usable as a decorator; a provider that
    raises costs its own block only, never the report."""
    if provider not in _TEST_SECTION_PROVIDERS:
        _TEST_SECTION_PROVIDERS.append(provider)
    return provider


# -------------------------------------------------------------------------------------------- building

def build_document(run: RunData) -> Document:
    from pytest_hwbench.report import resource_timelines  # noqa: F401  (registers the "Resources" block)

    counts: dict[str, int] = {}
    for t in run.tests:
        counts[t.verdict] = counts.get(t.verdict, 0) + 1
    skips: dict[str, int] = {}
    for t in run.tests:
        if t.verdict == "SKIP":
            skips[t.skip_reason] = skips.get(t.skip_reason, 0) + 1
    notes = []
    if not run.complete:
        notes.append("This run did not complete (interrupted or killed): the report shows what was measured.")
    return Document(run=run, title=f"hwbench run {run.run_id}", counts=counts, findings=findings(run),
                    sweep_lines=[sweep_line(run, s) for s in run.sweeps], errors=errors_seen(run), skips=skips,
                    tests=[test_section(run, t, i) for i, t in enumerate(run.measured())],
                    sweep_plots=[p for s in run.sweeps if (p := _sweep_plot(run, s)) is not None],
                    environment=environment_rows(run), reproduce=reproduce_rows(run),
                    rerun_command=rerun_command(run), notes=notes)


def findings(run: RunData) -> list[Finding]:
    out: list[Finding] = []
    for t in run.tests:
        if t.verdict not in ("FAIL", "WARN", "ERROR"):
            continue
        env = ""
        if t.baseline is not None and t.baseline.metrics:
            env = f"baseline: {t.baseline.describe_sessions()} ({t.baseline.file})\n{t.baseline.env_diff_text}"
            if t.baseline.conditions:
                env += "\nrun conditions differ: " + "; ".join(t.baseline.conditions)
        n = len(out)
        for s in t.slo:
            if not s.passed:
                unit = f" {s.unit}" if s.unit else ""
                out.append(Finding(test=t.test_id, verdict=t.verdict, kind="SLO", metric=f"{s.metric}.{s.stat}",
                                   bound=f"{s.op} {fmt(s.bound)}{unit}", observed=f"{fmt(s.observed)}{unit}",
                                   ci=_ci(s.ci), text=s.expression))
        for m in t.baseline.metrics if t.baseline else ():
            if m.status in ("FAIL", "INCONCLUSIVE", "MISSING_METRIC"):
                change_ci = ((m.ci_low - 1, m.ci_high - 1) if m.ci_low is not None and m.ci_high is not None
                             else None)
                out.append(Finding(test=t.test_id, verdict=t.verdict, kind=f"baseline {m.status}", metric=m.metric,
                                   bound=_tolerance(m.tolerance, m.better),
                                   observed=f"{fmt(m.current_median)} {m.unit}", ci=_ci(change_ci, pct=True),
                                   change=_change(m.ratio, m.baseline_median, m.current_median), env_diff=env,
                                   text=m.message))
        if len(out) == n:  # failed for another reason (crash, no metric, self-check): its own words
            lines = t.failures or t.warnings
            out.append(Finding(test=t.test_id, verdict=t.verdict, kind="test", text=lines[0] if lines else t.outcome,
                               env_diff=env))
    return out


def _ci(ci: tuple[float | None, float | None] | None, pct: bool = False) -> str:
    if ci is None or ci[0] is None or ci[1] is None:
        return ""
    if pct:
        return f"[{ci[0] * 100:+.1f}%, {ci[1] * 100:+.1f}%]"
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _tolerance(tol: float | None, better: str) -> str:
    if tol is None:
        return ""
    return f"{'+' if better == 'lower' else '−'}{tol * 100:g}% ({better} is better)"


def _change(ratio: float | None, base: float | None, cur: float | None) -> str:
    if ratio is None:
        return f"{fmt(base)} → {fmt(cur)}" if base is not None else ""
    return f"{fmt(base)} → {fmt(cur)} ({(ratio - 1) * 100:+.1f}%)"


def sweep_line(run: RunData, s: SweepRecord) -> SweepLine:
    tput_name = s.throughput_metric
    lat_name, lat_stat = (s.latency_metric.rsplit(".", 1) if s.latency_metric and "." in s.latency_metric
                          else (s.latency_metric, "p99"))
    best: tuple[float, float, TestRecord] | None = None
    for tid in s.members:
        t = run.test(tid)
        m = t.metrics.get(tput_name) if t else None
        if t is None or m is None:
            continue
        v = m.summary.percentiles.get("p50", math.nan)
        if math.isfinite(v) and (best is None or v > best[0]):
            best = (v, float(t.params[s.load_param]), t)
    peak = tail = "-"
    if best is not None:
        v, load, t = best
        unit = t.metrics[tput_name].unit
        peak = f"{fmt(v)} {unit} at {s.load_param}={load:g}"
        if lat_name and lat_name in t.metrics:
            lm = t.metrics[lat_name]
            tail = f"{lat_name}.{lat_stat} {fmt(lm.summary.percentiles.get(lat_stat))} {lm.unit}"
    if not s.has_slo:
        sus = "no SLOs"
    elif s.max_sustainable is None:
        sus = f"SLOs fail already at {s.load_param}={min(s.loads):g}" if s.loads else "-"
    else:
        sus = f"{s.load_param}={s.max_sustainable:g}"
        if s.first_failing_load is not None:
            sus += f" (first failing {s.first_failing_load:g})"
    knee = f"{s.load_param}={s.knee_load:.3g}" if s.knee_load is not None else "none inside the sweep"
    return SweepLine(test=s.test, load_param=s.load_param, max_sustainable=sus, peak=peak, tail_at_peak=tail,
                     knee=knee)


def errors_seen(run: RunData) -> list[tuple[str, dict[str, int]]]:
    """Per test, failed requests by class (timeouts included) as the workloads reported them in ``extra``."""
    out = []
    for t in run.measured():
        counts: dict[str, int] = {}
        _collect_errors(t.extra, counts)
        counts = {k: v for k, v in counts.items() if v}
        if counts:
            out.append((t.test_id, counts))
    return out


def _collect_errors(node: Any, counts: dict[str, int]) -> None:
    if isinstance(node, dict):
        totals = node.get("totals")
        if isinstance(totals, dict) and isinstance(totals.get("errors"), dict):
            _add(totals["errors"], counts)
            return
        if isinstance(node.get("errors"), dict):
            _add(node["errors"], counts)
            return
        for v in node.values():
            _collect_errors(v, counts)
    elif isinstance(node, list):
        for v in node:
            _collect_errors(v, counts)


def _add(errors: dict[str, Any], counts: dict[str, int]) -> None:
    for k, v in errors.items():
        if isinstance(v, int) and not isinstance(v, bool):
            counts[str(k)] = counts.get(str(k), 0) + v


def anchor_of(test_id: str) -> str:
    from pytest_hwbench.report.files import file_slug

    return "t-" + file_slug(test_id, 80)


def test_section(run: RunData, t: TestRecord, index: int) -> TestSection:
    rows = []
    for name, m in t.metrics.items():
        s = m.summary
        est = " (est.)" if m.estimated else ""
        rows.append([name + est, m.unit, fmt(s.percentiles.get("p50")), _ci(s.ci_of("p50")),
                     fmt(s.percentiles.get("p90")), fmt(s.percentiles.get("p99")), _ci(s.ci_of("p99")), fmt(s.mean),
                     fmt(s.cv), str(s.count), str(len(m.trial_values)), m.better])
    slo_rows = [["met" if s.passed else "MISSED", s.expression, f"{fmt(s.observed)} {s.unit}".strip(), _ci(s.ci)]
                for s in t.slo]
    baseline_rows = []
    if t.baseline:
        for c in t.baseline.metrics:
            lo_hi = (c.ci_low - 1, c.ci_high - 1) if c.ci_low is not None and c.ci_high is not None else None
            baseline_rows.append([c.status, c.metric, fmt(c.baseline_median), fmt(c.current_median),
                                  f"{(c.ratio - 1) * 100:+.1f}%" if c.ratio is not None else "-", _ci(lo_hi, pct=True),
                                  _tolerance(c.tolerance, c.better)])
    key = f"{index:03d}-" + anchor_of(t.test_id)[2:][:60]
    plots: list[Plot] = []
    from pytest_hwbench.measure.samplers.metrics import is_resource_metric

    # Resource readings are timelines (their own section), not distributions of the benchmark's metric.
    # A distribution needs two samples: a run of one-value tests reads no raw samples (nor imports numpy).
    drawable = any(m.summary.count > 1 for m in t.metrics.values())
    samples = {n: v for n, v in run.samples(t.test_id).items() if not is_resource_metric(n)} if drawable else {}
    if samples:
        p = distribution_plot(f"{key}-dist", t.name, samples, t.metrics)
        if p is not None:
            plots.append(p)
    sessions = run.baseline_sessions(t.test_id)
    if sessions:
        p = trials_plot(f"{key}-trials", t.name, t.metrics, sessions)
        if p is not None:
            plots.append(p)
    extras: list[ExtraSection] = []
    if t.result.bottleneck is not None:  # verdict.bottleneck's attribution from the resource samples
        extras.append(ExtraSection(title="Bottleneck", lines=[t.result.bottleneck.line()]))
    for provider in _TEST_SECTION_PROVIDERS:
        try:
            extras.extend(provider(run, t))
        except Exception as err:
            extras.append(ExtraSection(title=getattr(provider, "__name__", "section"),
                                       lines=[f"(could not be drawn: {err})"]))
    return TestSection(record=t, anchor=anchor_of(t.test_id), metric_rows=rows, slo_rows=slo_rows,
                       baseline_rows=baseline_rows, plots=plots, extras=extras)


def sweep_series(run: RunData, s: SweepRecord) -> SweepSeries | None:
    members = [t for tid in s.members if (t := run.test(tid)) is not None]
    if not members:
        return None
    lat_name, lat_stat = (s.latency_metric.rsplit(".", 1) if s.latency_metric and "." in s.latency_metric
                          else (s.latency_metric, "p99"))
    tm = members[0].metrics.get(s.throughput_metric)
    lm = members[0].metrics.get(lat_name) if lat_name else None
    return SweepSeries(
        load_param=s.load_param, loads=[float(t.params[s.load_param]) for t in members],
        throughput_name=s.throughput_metric, throughput_unit=tm.unit if tm else "",
        throughput=[_stat(t, s.throughput_metric, "p50") for t in members],
        latency_name=f"{lat_name}.{lat_stat}" if lat_name else None, latency_unit=lm.unit if lm else "",
        latency_p99=[_stat(t, lat_name, lat_stat) if lat_name else None for t in members],
        slo_ok=[all(x.passed for x in t.slo) for t in members], knee=s.knee_load,
        max_sustainable=s.max_sustainable, has_slo=s.has_slo)


def _stat(t: TestRecord, metric: str, stat: str) -> float | None:
    m = t.metrics.get(metric)
    if m is None:
        return None
    v = m.summary.percentiles.get(stat)
    return v if v is not None and math.isfinite(v) else None


def _sweep_plot(run: RunData, s: SweepRecord) -> Plot | None:
    series = sweep_series(run, s)
    if series is None:
        return None
    return sweep_plot("sweep-" + anchor_of(s.test)[2:][:60], s.test.split("::")[-1], series)


def environment_rows(run: RunData) -> list[tuple[str, str]]:
    fp = run.fingerprint
    cpu = fp.get("cpu") or {}
    gpu = fp.get("gpu") or {}
    osd = fp.get("os") or {}
    rows = [("testbed", run.testbed), ("host", str(fp.get("hostname", ""))),
            ("CPU", f"{cpu.get('model', '?')}, {cpu.get('logical_cores', '?')} logical cores"),
            ("memory", f"{fp.get('memory_gib', '?')} GiB"),
            ("OS / kernel", f"{osd.get('pretty_name', '?')} / {fp.get('kernel', '?')}"),
            ("GPUs", ", ".join(gpu.get("names") or []) or (gpu.get("reason") or "none")),
            ("driver", str(gpu.get("driver_version") or "-"))]
    dmi = fp.get("dmi") or {}
    if dmi:
        rows.append(("BIOS / board", ", ".join(f"{k}={v}" for k, v in sorted(dmi.items()))))
    for name, svc in sorted((run.manifest.get("services") or {}).items()):
        if isinstance(svc, dict):
            what = svc.get("binary_version") or svc.get("image_digest") or svc.get("image") or ""
            rows.append((f"service {name}", f"{svc.get('kind', '')} ({svc.get('backend', '')}) {what} "
                                            f"{svc.get('model') or ''}".strip()))
    return rows


def reproduce_rows(run: RunData) -> list[tuple[str, str]]:
    recipe = run.recipe
    git = run.git
    py = (run.fingerprint.get("python") or {}).get("version", "?")
    pkgs = run.fingerprint.get("packages") or {}
    rows = [("recipe", f"{recipe.get('name', '?')} ({recipe.get('path') or 'embedded default'})"),
            ("recipe sha256", str(recipe.get("sha256", ""))),
            ("git commit", f"{git.get('commit', '?')}{' (dirty working tree)' if git.get('dirty') else ''}"),
            ("pytest-hwbench", str(run.manifest.get("hwbench_version", "?"))), ("Python", str(py)),
            ("packages", ", ".join(f"{k} {v}" for k, v in sorted(pkgs.items())) or "-"),
            ("started / finished", f"{run.manifest.get('started_at')} / {run.manifest.get('finished_at')}")]
    if run.rerun.get("rerun_of"):
        rows.append(("rerun of", str(run.rerun["rerun_of"])))
    return rows


def rerun_command(run: RunData) -> str:
    argv = run.rerun.get("argv")
    if isinstance(argv, list) and argv:
        return shlex.join(str(a) for a in argv)
    return ""


def methodology_lines(run: RunData) -> list[str]:
    conf = next((m.summary.confidence for t in run.measured() for m in t.metrics.values()), 0.95)
    return [
        "Each test body runs `warmup` discarded trials, then `repetitions` measured trials; a metric's per-trial "
        "value is the median of that trial's samples.",
        "Percentiles (p50 … p99.9) are taken over the pooled raw samples with numpy's linear method; each has an "
        f"exact percentile-bootstrap {conf * 100:g}% CI, the mean a Student-t CI.",
        "Baseline comparison: this run's per-trial values against the stored sessions' on the log scale, allowing "
        "for trial-to-trial noise and for the shift of a whole session; FAIL when the slowdown is beyond the "
        "metric's tolerance and clear of that noise, PASS when its upper confidence bound is within the "
        "tolerance, otherwise INCONCLUSIVE (the recipe's policy decides).",
        f"Every metric (TTFT, ITL, TPOT, end-to-end latency, goodput, ops/s, ...) is defined in {METRICS_DOC} of "
        "pytest-hwbench.",
    ]


def verdict_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    keys = [k for k in VERDICT_ORDER if k in counts] + sorted(k for k in counts if k not in VERDICT_ORDER)
    return [(k, counts[k]) for k in keys]


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """(Re)write ``report.md`` (+ ``plots/*.png``) and ``report.html`` for a run directory."""
    from pytest_hwbench.report.html import write_html
    from pytest_hwbench.report.markdown import write_markdown
    from pytest_hwbench.report.plots import render
    from pytest_hwbench.report.run_data import load_run

    run = load_run(run_dir)
    doc = build_document(run)
    rendered = {}
    for plot in all_plots(doc):
        try:
            rendered[plot.key] = render(plot)
        except Exception as err:
            doc.notes.append(f"plot {plot.key} could not be drawn: {err}")
    return write_markdown(doc, rendered), write_html(doc, rendered)


def all_plots(doc: Document) -> list[Plot]:
    plots = [p for s in doc.tests for p in s.plots] + [p for s in doc.tests for e in s.extras for p in e.plots]
    return plots + list(doc.sweep_plots)


def write_report_safely(run_dir: str | Path) -> str | None:
    """``write_report`` at session end: a reporting problem is a warning line, never a failed run."""
    try:
        write_report(run_dir)
    except Exception as err:
        return f"report not written ({type(err).__name__}: {err}); regenerate it with: hwbench report {run_dir}"
    return None
