"""``hwbench export RUN --format prometheus|bmf|pytest-benchmark``: a run in the formats other tools read.

* ``prometheus`` — the text exposition format, built with ``prometheus_client`` (so escaping and the format
  are the library's, not ours). ``--textfile-dir DIR`` writes ``DIR/hwbench.prom`` atomically for
  node-exporter's textfile collector; ``--pushgateway URL`` pushes the same families to a Pushgateway
  (grouped by job ``hwbench`` and the testbed).
* ``bmf`` — Bencher Metric Format: ``{benchmark: {measure: {value, lower_value, upper_value}}}`` with the
  median and its confidence interval.
* ``pytest-benchmark`` — pytest-benchmark's saved-run JSON, for dashboards and ``pytest-benchmark compare``.
  Only time metrics (unit ``ns``/``us``/``ms``/``s``) have a meaning there; values are converted to seconds
  and the statistics are computed from the raw samples the way pytest-benchmark computes its own.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pytest_hwbench.report.run_data import RunData, load_run

FORMATS = ("prometheus", "bmf", "pytest-benchmark")
PROM_STATS = ("p50", "p90", "p95", "p99", "p99.9", "mean", "min", "max", "stdev", "count")
TIME_UNITS_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
VERDICTS = ("PASS", "WARN", "FAIL", "ERROR", "SKIP")


# ------------------------------------------------------------------------------------------ prometheus

class RunCollector:
    """A ``prometheus_client`` collector over one run (values are fixed: the run is over)."""

    def __init__(self, run: RunData) -> None:
        self.run = run

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        run = self.run
        base = ["testbed", "run_id"]
        labels = [run.testbed, run.run_id]
        info = GaugeMetricFamily("hwbench_run_info", "A pytest-hwbench run (value 1)",
                                 labels=[*base, "recipe", "recipe_sha256", "git_commit", "complete"])
        info.add_metric([*labels, str(run.recipe.get("name", "")), str(run.recipe.get("sha256", "")),
                         str(run.git.get("commit", "")), str(run.complete).lower()], 1)
        yield info
        value = GaugeMetricFamily("hwbench_metric", "Statistic of a metric recorded by a test, in its unit",
                                  labels=[*base, "test", "metric", "stat", "unit"])
        lower = GaugeMetricFamily("hwbench_metric_ci_lower", "Lower end of the statistic's confidence interval",
                                  labels=[*base, "test", "metric", "stat", "unit"])
        upper = GaugeMetricFamily("hwbench_metric_ci_upper", "Upper end of the statistic's confidence interval",
                                  labels=[*base, "test", "metric", "stat", "unit"])
        verdict = GaugeMetricFamily("hwbench_test_verdict", "1 for the test's verdict, 0 for the others",
                                    labels=[*base, "test", "verdict"])
        trials = GaugeMetricFamily("hwbench_test_trials", "Measured trials of the test", labels=[*base, "test"])
        for t in run.tests:
            for v in VERDICTS:
                verdict.add_metric([*labels, t.test_id, v], 1.0 if t.verdict == v else 0.0)
            if not t.measured:
                continue
            trials.add_metric([*labels, t.test_id], t.trials)
            for name, m in t.metrics.items():
                s = m.summary
                for stat in PROM_STATS:
                    x = float(s.stat(stat)) if stat != "count" else float(s.count)
                    if not math.isfinite(x):
                        continue
                    key = [*labels, t.test_id, name, stat, m.unit]
                    value.add_metric(key, x)
                    ci = s.ci_of(stat) if stat not in ("min", "max", "stdev", "count") else None
                    if ci and all(c is not None and math.isfinite(c) for c in ci):
                        lower.add_metric(key, ci[0])
                        upper.add_metric(key, ci[1])
        yield from (value, lower, upper, verdict, trials)


def prometheus_registry(run: RunData) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(RunCollector(run))  # type: ignore[arg-type]
    return registry


def prometheus_text(run: RunData) -> str:
    from prometheus_client import generate_latest

    return generate_latest(prometheus_registry(run)).decode("utf-8")


def write_textfile(run: RunData, directory: str | Path) -> Path:
    """``DIR/hwbench.prom`` for node-exporter's textfile collector (written atomically by the library)."""
    from prometheus_client import write_to_textfile

    path = Path(directory) / "hwbench.prom"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), prometheus_registry(run))
    return path


def push(run: RunData, gateway: str, job: str = "hwbench") -> None:
    from prometheus_client import push_to_gateway

    push_to_gateway(gateway, job=job, registry=prometheus_registry(run), grouping_key={"testbed": run.testbed})


# ------------------------------------------------------------------------------------------------- BMF

def bmf(run: RunData) -> dict[str, Any]:
    """Bencher Metric Format: per test, per metric, the median with its confidence interval as bounds."""
    out: dict[str, Any] = {}
    for t in run.measured():
        measures = {}
        for name, m in t.metrics.items():
            med = m.summary.percentiles.get("p50")
            if med is None or not math.isfinite(med):
                continue
            entry: dict[str, float] = {"value": float(med)}
            ci = m.summary.ci_of("p50")
            if ci and all(math.isfinite(c) for c in ci):
                entry["lower_value"], entry["upper_value"] = float(ci[0]), float(ci[1])
            measures[name] = entry
        if measures:
            out[t.test_id] = measures
    return out


# -------------------------------------------------------------------------------------- pytest-benchmark

def _quartiles(data: list[float]) -> tuple[float, float]:
    """Q1 and Q3 exactly as pytest-benchmark's ``Stats`` computes them (Wikipedia methods 2 and 3)."""
    n = len(data)
    if n == 1:
        return data[0], data[0]
    if n % 2:
        k, q = n // 4, n % 4
        if q == 1:
            return 0.25 * data[k - 1] + 0.75 * data[k], 0.75 * data[3 * k] + 0.25 * data[3 * k + 1]
        return 0.75 * data[k] + 0.25 * data[k + 1], 0.25 * data[3 * k + 1] + 0.75 * data[3 * k + 2]
    return statistics.median(data[: n // 2]), statistics.median(data[n // 2:])


def benchmark_stats(values_s: list[float]) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` block for samples in seconds (same definitions as its ``Stats``)."""
    data = sorted(values_s)
    n = len(data)
    mean = statistics.fmean(data)
    stddev = statistics.stdev(data) if n > 1 else 0.0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    lo15 = data[0] if n == 1 else data[bisect_left(data, q1 - 1.5 * iqr)]
    pos = bisect_right(data, q3 + 1.5 * iqr)
    hi15 = data[0] if n == 1 else data[-1] if pos == n else data[pos]
    iqr_out = sum(1 for v in data if v < q1 - 1.5 * iqr or v > q3 + 1.5 * iqr)
    sd_out = sum(1 for v in data if v < mean - stddev or v > mean + stddev)
    return {"min": data[0], "max": data[-1], "mean": mean, "stddev": stddev, "rounds": n,
            "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": iqr_out,
            "stddev_outliers": sd_out, "outliers": f"{sd_out};{iqr_out}", "ld15iqr": lo15, "hd15iqr": hi15,
            "ops": (1.0 / mean) if mean else 0.0, "total": math.fsum(data), "iterations": 1}


def pytest_benchmark_json(run: RunData) -> dict[str, Any]:
    """pytest-benchmark's saved-run document; one benchmark per (test, time metric)."""
    fp = run.fingerprint
    cpu = fp.get("cpu") or {}
    benches = []
    for t in run.measured():
        samples = run.samples(t.test_id)
        for name, m in t.metrics.items():
            scale = TIME_UNITS_S.get(m.unit)
            if scale is None:
                continue
            raw = samples.get(name)
            values = raw[np.isfinite(raw)] if raw is not None else np.asarray(
                [v for v in m.trial_values if math.isfinite(v)])
            if values.size == 0:
                continue
            _fn, _, param = t.test_id.partition("[")
            benches.append({
                "group": name, "name": f"{t.name}:{name}", "fullname": f"{t.test_id}:{name}",
                "params": t.params or None, "param": param.rstrip("]") or None,
                "extra_info": {"hwbench_verdict": t.verdict, "hwbench_metric": name, "hwbench_unit": m.unit},
                "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 1, "max_time": 0,
                            "min_time": 0, "warmup": False},
                "stats": benchmark_stats([float(v) * scale for v in values]),
            })
    return {
        "machine_info": {"node": fp.get("hostname", ""), "processor": fp.get("arch", ""),
                         "machine": fp.get("arch", ""), "python_implementation":
                         (fp.get("python") or {}).get("implementation", ""),
                         "python_version": (fp.get("python") or {}).get("version", ""),
                         "release": fp.get("kernel", ""), "system": "Linux",
                         "cpu": {"brand_raw": cpu.get("model", ""), "count": cpu.get("logical_cores")},
                         "hwbench_testbed": run.testbed},
        "commit_info": {"id": run.git.get("commit"), "dirty": bool(run.git.get("dirty")),
                        "branch": run.git.get("branch"), "project": "pytest-hwbench"},
        "benchmarks": benches,
        "datetime": str(run.manifest.get("finished_at") or run.manifest.get("started_at") or ""),
        "version": "5.1.0",
    }


# ------------------------------------------------------------------------------------------------- CLI

def main(args: Any) -> int:
    """``hwbench export RUN --format F [-o FILE] [--textfile-dir DIR] [--pushgateway URL]``."""
    from pytest_hwbench.errors import HwbenchInputError

    try:
        run = load_run(args.run, args.report_dir)
    except HwbenchInputError as err:
        print(f"hwbench export: {err}", file=sys.stderr)
        return 2
    if args.format == "prometheus":
        text = prometheus_text(run)
        if args.textfile_dir:
            print(f"hwbench export: wrote {write_textfile(run, args.textfile_dir)}", file=sys.stderr)
        if args.pushgateway:
            try:
                push(run, args.pushgateway)
            except OSError as err:
                print(f"hwbench export: push to {args.pushgateway} failed: {err}", file=sys.stderr)
                return 1
    elif args.format == "bmf":
        text = json.dumps(bmf(run), indent=2, sort_keys=True) + "\n"
    else:
        doc = pytest_benchmark_json(run)
        if not doc["benchmarks"]:
            print("hwbench export: no time metric (unit ns/us/ms/s) in this run; pytest-benchmark's format "
                  "holds timings only", file=sys.stderr)
        text = json.dumps(doc, indent=4) + "\n"
    if args.output:
        from pytest_hwbench.atomic import write_text_atomic

        write_text_atomic(args.output, text)
    else:
        sys.stdout.write(text)
    return 0
