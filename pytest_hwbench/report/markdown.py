"""``report.md``: the report document as Markdown, with its plots as PNG files in ``plots/`` beside it."""

from __future__ import annotations

from pathlib import Path

from pytest_hwbench.atomic import write_bytes_atomic, write_text_atomic
from pytest_hwbench.report.document import Document, methodology_lines, verdict_order
from pytest_hwbench.report.plots import Rendered


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _fence(text: str) -> list[str]:
    return ["```", *text.splitlines(), "```"]


def render_markdown(doc: Document, plot_files: dict[str, str]) -> str:
    run = doc.run
    out = [f"# {doc.title}", "",
           f"Testbed `{run.testbed}` · recipe `{run.recipe.get('name', '?')}` · "
           f"started {run.manifest.get('started_at')}"
           f" · {'complete' if run.complete else '**incomplete**'}", ""]
    out += [f"> {n}" for n in doc.notes] + ([""] if doc.notes else [])
    out += ["## Decision summary", "",
            " · ".join(f"**{n} {v}**" for v, n in verdict_order(doc.counts)) or "no tests", ""]
    if doc.findings:
        out += table(["verdict", "test", "what", "metric", "bound", "observed", "CI", "baseline change / detail"],
                     [[f.verdict, f.test, f.kind, f.metric, f.bound, f.observed, f.ci, f.change or f.text]
                      for f in doc.findings])
        out.append("")
        diffs = {f.test: f.env_diff for f in doc.findings if f.env_diff}
        for test, diff in diffs.items():
            out += [f"Environment diff vs baseline for `{test}`:", "", *_fence(diff), ""]
    else:
        out += ["No test failed or warned.", ""]
    if doc.sweep_lines:
        out += ["### Sweeps", ""]
        out += table(["sweep", "max load under SLO", "peak throughput", "tail latency at peak", "knee"],
                     [[s.test, s.max_sustainable, s.peak, s.tail_at_peak, s.knee] for s in doc.sweep_lines])
        out.append("")
    out += ["### Errors and timeouts", ""]
    if doc.errors:
        out += table(["test", "failed requests by class"],
                     [[t, ", ".join(f"{k} {v}" for k, v in sorted(c.items()))] for t, c in doc.errors])
    else:
        out.append("None recorded.")
    out.append("")
    if doc.skips:
        out += ["### Skipped", ""] + [f"- {n} × {reason}" for reason, n in sorted(doc.skips.items())] + [""]

    out += ["## Tests", ""]
    for sec in doc.tests:
        t = sec.record
        out += [f"### {t.test_id}", "", f"**{t.verdict}** · baseline {t.baseline.status if t.baseline else '-'} · "
                f"{t.trials} trials · {t.duration_s or 0:.1f} s", ""]
        for line in t.failures + t.warnings:
            out += [f"- {line.splitlines()[0] if line else ''}"]
        if t.failures or t.warnings:
            out.append("")
        out += table(["metric", "unit", "median", "95% CI", "p90", "p99", "p99 CI", "mean", "cv", "n", "trials",
                      "better"], sec.metric_rows)
        out.append("")
        if sec.slo_rows:
            out += [*table(["SLO", "expression", "observed", "CI"], sec.slo_rows), ""]
        if sec.baseline_rows:
            out += [*table(["baseline", "metric", "baseline median", "this run", "change", "change CI",
                            "tolerance"], sec.baseline_rows), ""]
        for plot in sec.plots:
            if plot.key in plot_files:
                out += [f"![{plot.caption}]({plot_files[plot.key]})", ""]
        for extra in sec.extras:
            out += [f"#### {extra.title}", "", *extra.lines, ""]
            out += [f"![{p.caption}]({plot_files[p.key]})" for p in extra.plots if p.key in plot_files] + [""]
    if doc.sweep_plots:
        out += ["## Sweeps", ""]
        out += [f"![{p.caption}]({plot_files[p.key]})\n" for p in doc.sweep_plots if p.key in plot_files]
    out += ["## Methodology", "", *[f"- {line}" for line in methodology_lines(run)], ""]
    out += ["## Environment", "", *table(["", ""], [[k, v] for k, v in doc.environment]), ""]
    out += ["## Reproducibility", "", *table(["", ""], [[k, v] for k, v in doc.reproduce]), ""]
    if doc.rerun_command:
        out += ["Rerun this run (same recipe, options and tests):", "", "```bash", f"hwbench rerun {run.dir}", "```",
                "", "which runs:", "", "```bash", doc.rerun_command, "```", ""]
    return "\n".join(out) + "\n"


def write_markdown(doc: Document, rendered: dict[str, Rendered]) -> Path:
    plot_dir = doc.run.dir / "plots"
    files = {}
    for key, r in rendered.items():
        write_bytes_atomic(plot_dir / f"{key}.png", r.png, durable=False)
        files[key] = f"plots/{key}.png"
    return write_text_atomic(doc.run.dir / "report.md", render_markdown(doc, files))
