"""The terminal summary: one table of tests, key metrics and verdicts, then where the files went."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_hwbench.session import HwbenchSession


def fmt(value: float | None) -> str:
    """Compact number: 4 significant digits, no scientific notation for everyday magnitudes."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    mag = abs(value)
    if 1e-3 <= mag < 1e7:
        return f"{value:.4g}" if mag < 1e4 else f"{value:,.0f}"
    return f"{value:.3e}"


def metric_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, median unit, CI, p99) for each metric of one result."""
    from pytest_hwbench.measure.samplers.metrics import is_resource_metric

    rows = []
    named = {slo.get("metric") for slo in result.get("slo") or []}
    for name, m in result.get("metrics", {}).items():
        if is_resource_metric(name) and name not in named:
            continue  # resource figures: in results.json, and here only when an SLO names them
        s = m["summary"]
        ci = (s.get("ci") or {}).get("p50")
        ci_text = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""
        est = " (est.)" if m.get("estimated") else ""
        rows.append((name, f"{fmt(s.get('p50'))} {m.get('unit', '')}{est}".strip(), ci_text, fmt(s.get("p99"))))
    return rows


def build_table(results: list[dict[str, Any]]) -> list[str]:
    header = ("verdict", "baseline", "test", "metric", "median", "95% CI", "p99", "trials")
    rows: list[tuple[str, ...]] = []
    for r in results:
        mrows = metric_rows(r) or [("-", "", "", "")]
        for i, (metric, median, ci, p99) in enumerate(mrows):
            first = i == 0
            rows.append((r.get("verdict", "") if first else "", (r.get("baseline_status") or "") if first else "",
                         r.get("name", r["test_id"]) if first else "", metric, median, ci, p99,
                         str(r.get("trials", "")) if first else ""))
    if not rows:
        return []
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return out


def write_summary(tr: Any, hw: HwbenchSession) -> None:
    results = list(hw.results.values())
    counts: dict[str, int] = {}
    for r in results:
        counts[r.get("verdict", "?")] = counts.get(r.get("verdict", "?"), 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    tr.write_sep("=", f"hwbench: {tally} | testbed {hw.testbed} | recipe {hw.recipe.name}")
    for line in build_table([r for r in results if r.get("verdict") != "SKIP"]):
        tr.write_line(line)
    notes = [(r["name"], text) for r in results for text in r.get("warnings", [])]
    if notes:
        tr.write_line("")
        for _, text in notes:
            tr.write_line(f"WARN {text}", yellow=True)
    failing = [r for r in results if r.get("verdict") in ("FAIL", "ERROR") and r.get("bottleneck")]
    if failing:
        from pytest_hwbench.verdict.bottleneck import Attribution

        tr.write_line("")
        for r in failing:
            tr.write_line(f"{r.get('name', r['test_id'])}: {Attribution.from_dict(r['bottleneck']).line()}")
    if hw.sweeps:
        from pytest_hwbench.report.sweeps import describe

        tr.write_line("")
        for sweep in hw.sweeps:
            tr.write_line(f"sweep {describe(sweep)}")
            for point in sweep.get("bottlenecks") or []:
                if point.get("past_knee"):
                    tr.write_line(f"  {sweep['load_param']}={point['load']:g}: bottleneck {point['cause']}"
                                  + (f" — {'; '.join(point['evidence'])}" if point.get("evidence") else ""))
    reasons: dict[str, int] = {}
    for r in results:
        if r.get("verdict") == "SKIP":
            reason = str(r.get("skip_reason", "")).removeprefix("Skipped: ")
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, n in sorted(reasons.items()):
        tr.write_line(f"SKIP x{n}: {reason}")
    if hw.writer is not None:
        html = hw.writer.dir / "report.html"
        tr.write_line(f"hwbench report: {html if html.is_file() else hw.writer.dir}")
    if hw.report_warning:
        tr.write_line(f"hwbench WARNING: {hw.report_warning}", yellow=True, bold=True)
    if hw.baseline_written:
        tr.write_line(f"hwbench baselines saved for {len(hw.baseline_written)} test(s) under "
                      f"{hw.baseline_dir / hw.testbed}")
    for text in hw.baseline_refused:
        tr.write_line(f"hwbench baseline NOT saved (invalid measurement; --hwbench-force-baseline saves it): "
                      f"{text}", yellow=True)
    if hw.baseline_error:
        tr.write_line(f"hwbench ERROR: {hw.baseline_error}", red=True, bold=True)
    if hw.mlflow_run_id:
        tr.write_line(f"hwbench MLflow run {hw.mlflow_run_id} at {hw.mlflow_uri()}")
    if hw.mlflow_warning:
        tr.write_line(f"hwbench WARNING: {hw.mlflow_warning}", yellow=True, bold=True)
