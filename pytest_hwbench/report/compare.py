"""``hwbench compare A B``: two runs (or a baseline and a run) side by side, judged like the gate judges.

A and B are each a run directory, a run id under ``--report-dir`` (``latest`` for the newest), a baseline
file (``baselines/<testbed>/<module>.json``), a testbed name (every baseline file of
``baselines/<testbed>/``), or the newest session logged to MLflow for a host or testbed
(``mlflow:host=box7``, ``mlflow:testbed=...``; see ``mlflow_fetch``). A is the reference, B the candidate:
"B regressed" means B is worse than A.

Per test and metric, :func:`judge` calls the gate's own comparison engine with A's per-trial values as the
stored session(s) and B's as this session's, with the tolerance and inconclusive policy of B's recipe (or
``--recipe``, or ``--tolerance`` / ``--inconclusive`` for every metric), and a testbed's pooled session noise
when A is a baseline. So ``compare`` judges B as the gate would have judged it against a baseline saved from
A — in one look (see :func:`judge`). Rows present on one side only are shown
(``ONLY_A`` / ``ONLY_B``, or ``MISSING_METRIC`` for a metric B no longer records), never dropped. Resource
metrics (CPU, memory, ... sampled during the run) are left out as the gate leaves them out, unless the
recipe's ``baseline.metrics`` names them.

Exit codes (CI scripts branch on them; README "Compare"):

==== ===========================================================================================
0    nothing regressed (PASS, STALE, or INCONCLUSIVE under a ``warn``/``rerun`` policy)
1    at least one metric regressed (FAIL, or MISSING_METRIC: B stopped recording a metric A has)
2    usage or input error (bad arguments, unreadable run or baseline file)
3    nothing regressed, but a metric is INCONCLUSIVE and its policy is ``fail``
==== ===========================================================================================
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.recipe.model import BaselinePolicy
from pytest_hwbench.report.terminal import fmt
from pytest_hwbench.verdict.baseline import judged
from pytest_hwbench.verdict.compare import SessionNoise

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
REGRESSED = ("FAIL", "MISSING_METRIC")


@dataclass
class Side:
    """One side of a comparison: per test, per metric, the trial values of each stored session."""

    label: str
    kind: str  # run | baseline
    tests: dict[str, dict[str, MetricResult]]
    sessions: dict[str, dict[str, list[list[float]]]]
    environment: dict[str, Any] = field(default_factory=dict)
    recipe_text: str | None = None
    noise: SessionNoise | None = None  # a testbed's pooled session history, as the gate uses it


@dataclass
class Row:
    test: str
    metric: str
    status: str
    unit: str = ""
    better: str = ""
    a: float | None = None
    b: float | None = None
    change: float | None = None
    ci_low: float | None = None  # of the change (ratio - 1)
    ci_high: float | None = None
    tolerance: float | None = None
    policy: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        def j(v: float | None) -> float | None:
            return v if v is None or math.isfinite(v) else None

        return {"test": self.test, "metric": self.metric, "status": self.status, "unit": self.unit,
                "better": self.better, "a_median": j(self.a), "b_median": j(self.b), "change": j(self.change),
                "change_ci": [j(self.ci_low), j(self.ci_high)] if self.ci_low is not None else None,
                "tolerance": self.tolerance, "inconclusive_policy": self.policy, "message": self.message}


@dataclass
class Result:
    a: str
    b: str
    rows: list[Row]
    policy_source: str

    @property
    def exit_code(self) -> int:
        if any(r.status in REGRESSED for r in self.rows):
            return EXIT_REGRESSION
        if any(r.status == "INCONCLUSIVE" and r.policy == "fail" for r in self.rows):
            return EXIT_INCONCLUSIVE
        return EXIT_OK

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out


# ------------------------------------------------------------------------------------------ the engine

def judge(name: str, current: MetricResult, sessions: list[list[float]], policy: BaselinePolicy,
          noise: SessionNoise | None = None) -> Row:
    """One metric through the gate's own comparison: ``verdict.compare.compare_metric`` with the settings
    ``verdict.baseline.compare_settings`` derives from the policy, as the gate calls them. Two finished runs
    are one final look at the data, so the FAIL boundary is the one the gate uses at its last look
    (``looks_planned=1``), not the stricter early-look boundary of its sequential plan."""
    from pytest_hwbench.verdict.baseline import compare_settings
    from pytest_hwbench.verdict.compare import compare_metric

    settings = replace(compare_settings(policy, name), looks_planned=1, look=0)
    c = compare_metric(name, sessions, current.trial_values, settings, better=current.better,
                       unit=current.unit, noise=noise, inconclusive_policy=policy.inconclusive_for(name))
    return Row(test="", metric=name, status=c.status, unit=current.unit, better=current.better,
               a=c.baseline_median, b=c.current_median, change=c.change,
               ci_low=None if c.ci_low is None else c.ci_low - 1,
               ci_high=None if c.ci_high is None else c.ci_high - 1,
               tolerance=c.tolerance, policy=c.inconclusive_policy, message=c.message)




def compare_sides(a: Side, b: Side, policy: BaselinePolicy, policy_source: str) -> Result:
    rows: list[Row] = []
    for test in _ordered(a, b):
        ma, mb = a.tests.get(test), b.tests.get(test)
        if ma is not None:
            ma = {n: m for n, m in ma.items() if judged(n, policy)}
        if mb is not None:
            mb = {n: m for n, m in mb.items() if judged(n, policy)}
        if ma is None or mb is None:
            present = mb if ma is None else ma
            status = "ONLY_B" if ma is None else "ONLY_A"
            for name, m in sorted((present or {}).items()):
                med = m.summary.percentiles.get("p50")
                rows.append(Row(test=test, metric=name, status=status, unit=m.unit, better=m.better,
                                a=med if status == "ONLY_A" else None, b=med if status == "ONLY_B" else None,
                                message=f"{test}: only in {'A' if status == 'ONLY_A' else 'B'}"))
            continue
        for name in sorted(set(ma) | set(mb)):
            if name not in mb:
                m = ma[name]
                rows.append(Row(test=test, metric=name, status="MISSING_METRIC", unit=m.unit, better=m.better,
                                a=m.summary.percentiles.get("p50"), policy=policy.inconclusive_for(name),
                                tolerance=policy.tolerance_for(name),
                                message=f"{name}: recorded in A but not in B"))
                continue
            if name not in ma:
                m = mb[name]
                rows.append(Row(test=test, metric=name, status="NEW", unit=m.unit, better=m.better,
                                b=m.summary.percentiles.get("p50"), message=f"{name}: recorded in B only"))
                continue
            if mb[name].unit != ma[name].unit:
                rows.append(Row(test=test, metric=name, status="FAIL", unit=mb[name].unit, better=mb[name].better,
                                message=f"{name}: unit changed from {ma[name].unit!r} (A) to {mb[name].unit!r} (B)"))
                continue
            row = judge(name, mb[name], a.sessions[test][name], policy, a.noise)
            row.test = test
            rows.append(row)
    return Result(a=a.label, b=b.label, rows=rows, policy_source=policy_source)


def _ordered(a: Side, b: Side) -> list[str]:
    seen = dict.fromkeys(a.tests)
    seen.update(dict.fromkeys(b.tests))
    return list(seen)


# ------------------------------------------------------------------------------------------ the sides

def load_side(ref: str, report_dir: str, baseline_dir: str, mlflow_uri: str | None = None) -> Side:
    """A side from a run directory / run id, a baseline file, a testbed's baseline directory, or a session
    logged to MLflow (``mlflow:host=...``)."""
    from pytest_hwbench.report.run_data import load_run

    if ref.startswith("mlflow:"):
        import tempfile

        from pytest_hwbench.report import mlflow_fetch

        uri = mlflow_uri or mlflow_fetch.default_uri(report_dir)
        side = load_side(str(mlflow_fetch.fetch(ref, Path(tempfile.mkdtemp(prefix="hwbench-compare-")), uri=uri)),
                         report_dir, baseline_dir)
        side.label = f"{side.label} ({ref} at {uri})"
        return side
    path = Path(ref)
    if path.is_file() and path.suffix == ".json":
        return _baseline_side(ref, [path], path.parent.parent, path.parent.name)
    if (path / "run.json").is_file() or (Path(report_dir) / ref / "run.json").is_file() or ref.startswith("latest"):
        run = load_run(ref, report_dir)
        tests = {t.test_id: dict(t.metrics) for t in run.measured() if t.verdict not in ("ERROR",)}
        return Side(label=f"run {run.run_id}", kind="run", tests=tests,
                    sessions={tid: {n: [list(m.trial_values)] for n, m in ms.items()} for tid, ms in tests.items()},
                    environment=run.fingerprint, recipe_text=run.recipe.get("text"))
    tb_dir = Path(baseline_dir) / ref
    if path.is_dir() and any(path.glob("*.json")):
        tb_dir = path
    if tb_dir.is_dir() and any(tb_dir.glob("*.json")):
        return _baseline_side(ref, sorted(tb_dir.glob("*.json")), tb_dir.parent, tb_dir.name)
    raise HwbenchInputError(f"{ref!r} is neither a run directory, a run id under {report_dir!r}, a baseline file "
                            f"nor a testbed with baselines under {baseline_dir!r}", file=ref,
                            fix="pass reports/<run-id>, a run id, baselines/<testbed>/<module>.json or a testbed")


def _baseline_side(label: str, files: list[Path], root: Path, testbed: str) -> Side:
    from pytest_hwbench.verdict.baseline import BaselineStore

    store = BaselineStore(root, testbed)
    tests: dict[str, dict[str, MetricResult]] = {}
    sessions: dict[str, dict[str, list[list[float]]]] = {}
    env: dict[str, Any] = {}
    for f in files:
        try:
            ids = list(json.loads(f.read_text(encoding="utf-8")).get("tests") or {})
        except (OSError, ValueError, AttributeError) as err:
            raise HwbenchInputError(f"not a baseline file ({err})", file=str(f),
                                    fix="pass a file written by --hwbench-save-baseline") from None
        for tid in ids:
            entry = store.load(tid)
            if entry is not None:
                tests[tid] = dict(entry.metrics)
                sessions[tid] = {n: entry.trial_values(n) for n in entry.metrics}
                env = env or dict(entry.environment)
    return Side(label=f"baseline {label}", kind="baseline", tests=tests, sessions=sessions, environment=env,
                noise=store.session_noise())


def resolve_policy(args: Any, b: Side) -> tuple[BaselinePolicy, str]:
    """The baseline policy the comparison uses: ``--recipe``, else B's recorded recipe, else the defaults;
    ``--tolerance`` / ``--inconclusive`` override every metric."""
    from pytest_hwbench.recipe.loader import load_recipe, load_recipe_text

    policy, source = BaselinePolicy(), "default baseline policy"
    if args.recipe:
        policy, source = load_recipe(args.recipe).baseline, f"recipe {args.recipe}"
    elif b.recipe_text:
        try:
            policy, source = load_recipe_text(b.recipe_text, f"{b.label}: recipe").baseline, f"the recipe of {b.label}"
        except HwbenchError as err:
            source = f"default baseline policy (B's recorded recipe did not load: {err})"
    if args.tolerance is not None or args.inconclusive:
        policy = replace(policy, metrics={},
                         tolerance=policy.tolerance if args.tolerance is None else args.tolerance,
                         inconclusive=args.inconclusive or policy.inconclusive)
        source += " with command-line overrides"
    return policy, source


# ------------------------------------------------------------------------------------------ rendering

def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:+.1f}%"


def _ci(r: Row) -> str:
    return "" if r.ci_low is None or r.ci_high is None else f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}]"


def table_rows(result: Result) -> list[list[str]]:
    return [[r.status, r.test, r.metric, f"{fmt(r.a)} {r.unit}".strip() if r.a is not None else "-",
             f"{fmt(r.b)} {r.unit}".strip() if r.b is not None else "-", _pct(r.change), _ci(r),
             f"{r.tolerance * 100:g}%" if r.tolerance is not None else "", r.better] for r in result.rows]


HEADER = ["status", "test", "metric", "A", "B", "change", "95% CI", "tolerance", "better"]


def render_terminal(result: Result) -> str:
    rows = table_rows(result)
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(HEADER)]
    lines = [f"A = {result.a}", f"B = {result.b}", f"policy: {result.policy_source}", "",
             "  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += ["", summary_line(result)]
    lines += [f"  {r.status} {r.test}: {r.message}" for r in result.rows
              if r.status in REGRESSED or (r.status == "INCONCLUSIVE" and r.policy == "fail")]
    return "\n".join(lines) + "\n"


def summary_line(result: Result) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(result.counts().items()))
    regressed = sorted({f"{r.test} {r.metric}" for r in result.rows if r.status in REGRESSED})
    verdict = {EXIT_OK: "no regression", EXIT_REGRESSION: f"REGRESSED: {', '.join(regressed)}",
               EXIT_INCONCLUSIVE: "inconclusive under policy fail"}[result.exit_code]
    return f"{verdict} ({counts or 'nothing compared'}; exit {result.exit_code})"


def render_markdown(result: Result) -> str:
    from pytest_hwbench.report.markdown import table

    lines = ["# hwbench compare", "", f"- A: {result.a}", f"- B: {result.b}", f"- policy: {result.policy_source}",
             "", *table(HEADER, table_rows(result)), "", f"**{summary_line(result)}**", ""]
    return "\n".join(lines)


def render_json(result: Result) -> str:
    return json.dumps({"a": result.a, "b": result.b, "policy": result.policy_source, "exit_code": result.exit_code,
                       "counts": result.counts(), "rows": [r.to_dict() for r in result.rows]},
                      indent=2, sort_keys=True) + "\n"


def main(args: Any) -> int:
    try:
        a = load_side(args.a, args.report_dir, args.baseline_dir, args.mlflow_uri)
        b = load_side(args.b, args.report_dir, args.baseline_dir, args.mlflow_uri)
        policy, source = resolve_policy(args, b)
    except HwbenchError as err:
        print(f"hwbench compare: {err}", file=sys.stderr)
        return EXIT_USAGE
    result = compare_sides(a, b, policy, source)
    text = {"table": render_terminal, "md": render_markdown, "json": render_json}[args.format](result)
    if args.output:
        from pytest_hwbench.atomic import write_text_atomic

        write_text_atomic(args.output, text)
        print(summary_line(result))
    else:
        sys.stdout.write(text)
    return result.exit_code
