"""``report.html``: the report as one self-contained file.

Plots are inline SVG; there is no JavaScript, no stylesheet or font fetched from anywhere, no image file
referenced, so the page opens from ``file://`` on an air-gapped box and can be attached to a ticket as is. The
colours are CSS variables switched by ``prefers-color-scheme``; the SVGs use the same variables (see
``plots.py``), so plots follow the reader's light or dark mode. A Content-Security-Policy meta tag forbids
every fetch, so even a mistake in a test name cannot make the page load something.
"""

from __future__ import annotations

import functools
import re
from html import escape
from pathlib import Path

from pytest_hwbench.atomic import write_text_atomic
from pytest_hwbench.report.document import Document, methodology_lines, verdict_order
from pytest_hwbench.report.plots import Plot, Rendered

CSS = """
:root { --bg:#ffffff; --fg:#1f2328; --muted:#59636e; --grid:#d0d7de; --panel:#f6f8fa; --border:#d0d7de;
        --fail:#cf222e; --warn:#9a6700; --pass:#1a7f37; --skip:#6e7781; color-scheme: light dark; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#0d1117; --fg:#e6edf3; --muted:#9198a1; --grid:#3d444d; --panel:#161b22; --border:#3d444d;
          --fail:#ff7b72; --warn:#d29922; --pass:#3fb950; --skip:#9198a1; } }
body { background:var(--bg); color:var(--fg); font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       max-width:1200px; margin:0 auto; padding:1rem 1.5rem 3rem; }
h1 { font-size:1.5rem; } h2 { border-bottom:1px solid var(--border); padding-bottom:.2rem; margin-top:2rem; }
h3 { margin-top:1.6rem; font-family:ui-monospace, monospace; font-size:1rem; word-break:break-all; }
table { border-collapse:collapse; margin:.5rem 0 1rem; font-size:13px; }
th, td { border:1px solid var(--border); padding:.2rem .5rem; text-align:left; vertical-align:top; }
th { background:var(--panel); } td.num { text-align:right; font-variant-numeric:tabular-nums; }
pre, code { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:12px; }
pre { background:var(--panel); border:1px solid var(--border); padding:.5rem; overflow-x:auto; }
.muted { color:var(--muted); } .v-FAIL, .v-ERROR, .v-MISSED { color:var(--fail); font-weight:600; }
.v-WARN, .v-INCONCLUSIVE { color:var(--warn); font-weight:600; } .v-PASS, .v-met { color:var(--pass); }
.v-SKIP { color:var(--skip); }
figure { margin:.5rem 0 1rem; } figure svg { max-width:100%; height:auto; display:block; }
figcaption { color:var(--muted); font-size:12px; }
.counts span { margin-right:1rem; font-size:1.1rem; }
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _v(text: str) -> str:
    return f'<span class="v-{escape(text.split()[0] if text else "")}">{escape(text)}</span>'


def _table(header: list[str], rows: list[list[str]], verdict_cols: tuple[int, ...] = ()) -> str:
    head = _head(tuple(header))
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            text = str(c)
            if i in verdict_cols:
                cells.append(f"<td>{_v(text)}</td>")
            else:
                cls = ' class="num"' if _NUMERIC.fullmatch(text) else ""
                cells.append(f"<td{cls}>{_esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# A report of 1000 tests has ~12,000 table cells: the helpers below keep each cell to a regex test in the
# common case (issue #14: rendering was a tenth of the plugin's time on 1000 trivial tests).

#: A number as the report formats it (digits with , . % + -), padded by spaces: right-aligned.
_NUMERIC = re.compile(r"\s*[,%+\-.]*\d[\d,%+\-.]*\s*")
_SPECIAL = re.compile(r"[&<>\"']")


def _esc(text: str) -> str:
    """``html.escape``, skipped for the common cell with nothing to escape."""
    return escape(text) if _SPECIAL.search(text) else text


@functools.lru_cache(maxsize=64)
def _head(header: tuple[str, ...]) -> str:
    return "".join(f"<th>{escape(h)}</th>" for h in header)


def _figure(plot: Plot, rendered: dict[str, Rendered]) -> str:
    r = rendered.get(plot.key)
    if r is None:
        return ""
    return (f'<figure id="plot-{escape(plot.key)}" class="plot">{r.svg}'
            f"<figcaption>{escape(plot.caption)}</figcaption></figure>")


def render_html(doc: Document, rendered: dict[str, Rendered]) -> str:
    run = doc.run
    p: list[str] = []
    p.append(f"<h1>{escape(doc.title)}</h1>")
    p.append(f'<p class="muted">Testbed <code>{escape(run.testbed)}</code> · recipe '
             f"<code>{escape(str(run.recipe.get('name', '?')))}</code> · started "
             f"{escape(str(run.manifest.get('started_at')))} · "
             f"{'complete' if run.complete else '<b>incomplete</b>'}</p>")
    p += [f"<p><b>{escape(n)}</b></p>" for n in doc.notes]
    p.append('<h2 id="summary">Decision summary</h2><p class="counts">'
             + "".join(f"<span>{_v(v)} {n}</span>" for v, n in verdict_order(doc.counts)) + "</p>")
    if doc.findings:
        p.append(_table(["verdict", "test", "what", "metric", "bound", "observed", "CI", "baseline change / detail"],
                        [[f.verdict, f.test, f.kind, f.metric, f.bound, f.observed, f.ci, f.change or f.text]
                         for f in doc.findings], verdict_cols=(0,)))
        for test, diff in {f.test: f.env_diff for f in doc.findings if f.env_diff}.items():
            p.append(f"<p>Environment diff vs baseline for <code>{escape(test)}</code>:</p><pre>{escape(diff)}</pre>")
    else:
        p.append("<p>No test failed or warned.</p>")
    if doc.sweep_lines:
        p.append("<h3>Sweeps</h3>")
        p.append(_table(["sweep", "max load under SLO", "peak throughput", "tail latency at peak", "knee"],
                        [[s.test, s.max_sustainable, s.peak, s.tail_at_peak, s.knee] for s in doc.sweep_lines]))
    p.append("<h3>Errors and timeouts</h3>")
    p.append(_table(["test", "failed requests by class"],
                    [[t, ", ".join(f"{k} {v}" for k, v in sorted(c.items()))] for t, c in doc.errors])
             if doc.errors else "<p>None recorded.</p>")
    if doc.skips:
        p.append("<h3>Skipped</h3><ul>" + "".join(f"<li>{n} × {escape(r)}</li>" for r, n in sorted(doc.skips.items()))
                 + "</ul>")
    p.append('<h2 id="tests">Tests</h2>')
    for sec in doc.tests:
        t = sec.record
        p.append(f'<section id="{escape(sec.anchor)}"><h3>{escape(t.test_id)}</h3>')
        p.append(f"<p>{_v(t.verdict)} · baseline {escape(t.baseline.status if t.baseline else '-')} · "
                 f"{t.trials} trials · {t.duration_s or 0:.1f} s</p>")
        notes = [line.splitlines()[0] for line in t.failures + t.warnings if line]
        if notes:
            p.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
        p.append(_table(["metric", "unit", "median", "95% CI", "p90", "p99", "p99 CI", "mean", "cv", "n", "trials",
                         "better"], sec.metric_rows))
        if sec.slo_rows:
            p.append(_table(["SLO", "expression", "observed", "CI"], sec.slo_rows, verdict_cols=(0,)))
        if sec.baseline_rows:
            p.append(_table(["baseline", "metric", "baseline median", "this run", "change", "change CI", "tolerance"],
                            sec.baseline_rows, verdict_cols=(0,)))
        p += [_figure(pl, rendered) for pl in sec.plots]
        for extra in sec.extras:
            p.append(f"<h4>{escape(extra.title)}</h4>" + "".join(f"<p>{escape(x)}</p>" for x in extra.lines))
            p += [_figure(pl, rendered) for pl in extra.plots]
        p.append("</section>")
    if doc.sweep_plots:
        p.append('<h2 id="sweeps">Sweeps</h2>')
        p += [_figure(pl, rendered) for pl in doc.sweep_plots]
    p.append('<h2 id="methodology">Methodology</h2><ul>'
             + "".join(f"<li>{escape(x)}</li>" for x in methodology_lines(run)) + "</ul>")
    p.append('<h2 id="environment">Environment</h2>' + _table(["", ""], [[k, v] for k, v in doc.environment]))
    p.append('<h2 id="reproduce">Reproducibility</h2>' + _table(["", ""], [[k, v] for k, v in doc.reproduce]))
    if doc.rerun_command:
        p.append(f"<p>Rerun this run (same recipe, options and tests):</p><pre>hwbench rerun {escape(str(run.dir))}"
                 f"</pre><p>which runs:</p><pre>{escape(doc.rerun_command)}</pre>")
    body = "\n".join(x for x in p if x)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="color-scheme" content="light dark">\n'
            f"<title>{escape(doc.title)}</title>\n<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_html(doc: Document, rendered: dict[str, Rendered]) -> Path:
    return write_text_atomic(doc.run.dir / "report.html", render_html(doc, rendered))
