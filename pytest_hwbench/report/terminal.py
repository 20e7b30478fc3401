"""The terminal summary: one table of tests, key metrics and verdicts, then where the files went."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

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


class Digest(NamedTuple):
    """What the terminal summary prints of one result, taken when the result is kept (``digest``).

    Why: the results are kept encoded (``report.files.EncodedResults``); decoding all of them again only to
    print a table cost ~25 µs per test (issue #14). A tuple of strings is also left alone by the garbage
    collector, unlike the result's dicts."""

    verdict: str
    rows: tuple[tuple[str, ...], ...]  # the test's rows of the table (``TABLE_HEADER`` columns)
    warnings: tuple[str, ...]
    bottleneck: str  # "name: bottleneck ..." for a FAIL or ERROR with an attribution, else ""
    skip_reason: str  # for a SKIP, else ""
    sweep_point: bool  # measured at a load parameter: a candidate point of a sweep


TABLE_HEADER = ("verdict", "baseline", "test", "metric", "median", "95% CI", "p99", "trials")


def digest(result: dict[str, Any]) -> Digest:
    """The terminal's view of one result (a results.json entry)."""
    from pytest_hwbench.report.sweeps import sweep_load_param

    verdict = str(result.get("verdict", "?"))
    rows: tuple[tuple[str, ...], ...] = ()
    if verdict != "SKIP":
        mrows = metric_rows(result) or [("-", "", "", "")]
        rows = tuple((verdict if i == 0 else "", (result.get("baseline_status") or "") if i == 0 else "",
                      result.get("name", result["test_id"]) if i == 0 else "", metric, median, ci, p99,
                      str(result.get("trials", "")) if i == 0 else "")
                     for i, (metric, median, ci, p99) in enumerate(mrows))
    bottleneck = ""
    if verdict in ("FAIL", "ERROR") and result.get("bottleneck"):
        from pytest_hwbench.verdict.bottleneck import Attribution

        bottleneck = (f"{result.get('name', result['test_id'])}: "
                      f"{Attribution.from_dict(result['bottleneck']).line()}")
    skip = str(result.get("skip_reason", "")).removeprefix("Skipped: ") if verdict == "SKIP" else ""
    return Digest(verdict=verdict, rows=rows, warnings=tuple(result.get("warnings") or ()),
                  bottleneck=bottleneck, skip_reason=skip, sweep_point=sweep_load_param(result) is not None)


def table_lines(rows: list[tuple[str, ...]]) -> list[str]:
    """The table's lines: header, rule and ``rows``, columns padded to their widest cell."""
    header = TABLE_HEADER
    if not rows:
        return []
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return out


def write_summary(tr: Any, hw: HwbenchSession) -> None:
    digests = hw.results.digests()
    counts: dict[str, int] = {}
    for d in digests:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    tr.write_sep("=", f"hwbench: {tally} | testbed {hw.testbed} | recipe {hw.recipe.name}")
    lines = table_lines([row for d in digests for row in d.rows])
    if lines:
        tr.write_line("\n".join(lines))  # one write for the whole table, not one per row
    notes = [text for d in digests for text in d.warnings]
    if notes:
        tr.write_line("")
        for text in notes:
            tr.write_line(f"WARN {text}", yellow=True)
    failing = [d.bottleneck for d in digests if d.bottleneck]
    if failing:
        tr.write_line("")
        for line in failing:
            tr.write_line(line)
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
    for d in digests:
        if d.verdict == "SKIP":
            reasons[d.skip_reason] = reasons.get(d.skip_reason, 0) + 1
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
