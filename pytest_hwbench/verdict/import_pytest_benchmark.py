"""``hwbench baseline import-pytest-benchmark FILE...``: pytest-benchmark's saved runs become baseline history.

Why: a team moving a suite of ``benchmark``-fixture tests under hwbench (``measure/pytest_benchmark_compat``)
already has months of ``.benchmarks/<machine>/NNNN_*.json`` files. Each file becomes one stored *session*
of every test it holds, oldest first (by the file's ``datetime``), so the first hwbench run is compared
with that history instead of starting from NO_BASELINE.

Mapping (pytest-benchmark JSON → baseline session of ``verdict/baseline.py``):

* test id — the benchmark's ``fullname`` (a pytest node id, relative to the rootdir, as hwbench's);
* metric ``time_s`` (seconds per call, better lower) — the same name the ``benchmark``-fixture bridge
  records, so the imported history is what those tests are compared with;
* samples — the rounds themselves when the file has them (``--benchmark-save-data``): the summary is
  computed from them exactly like a live run's; otherwise pytest-benchmark's own statistics (rounds, mean,
  stddev, min, max, median) with the upper percentiles unknown;
* trial values — with the rounds: the medians of ``trials`` consecutive blocks of rounds, as the bridge
  does for a live run (``pytest_benchmark_compat.split_rounds``); without them, the median alone;
* environment — pytest-benchmark's ``machine_info`` and ``commit_info`` under ``pytest_benchmark``, and
  ``commit`` from ``commit_info.id``.

A file that is not pytest-benchmark JSON, or a benchmark without the fields above, is refused with the
file, the field and the fix; nothing is written unless every file is good.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.measure.metric import MetricResult
from pytest_hwbench.measure.pytest_benchmark_compat import split_rounds
from pytest_hwbench.measure.stats import PERCENTILES, Summary, summarize
from pytest_hwbench.verdict.baseline import BaselineStore, SaveRecord

#: The metric name shared with ``measure.pytest_benchmark_compat``.
METRIC = "time_s"
_FIX = "pass a file written by pytest --benchmark-save / --benchmark-autosave / --benchmark-json"


@dataclass(frozen=True)
class ImportedRun:
    """One pytest-benchmark file: when it was taken, and a save record per test."""

    path: Path
    saved_at: str
    records: dict[str, SaveRecord]


def _summary_from_stats(stats: Mapping[str, Any], where: Path, name: str) -> Summary:
    def num(key: str) -> float:
        value = stats.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise HwbenchInputError(f"benchmark {name!r} has no numeric stats.{key}", file=str(where),
                                    field=f"benchmarks[{name}].stats.{key}", fix=_FIX)
        return float(value)

    rounds = int(num("rounds"))
    mean, median = num("mean"), num("median")
    stdev = float(stats.get("stddev") or 0.0) if rounds > 1 else math.nan
    percentiles = {p: math.nan for p, _ in PERCENTILES}
    percentiles["p50"] = median
    return Summary(count=rounds, mean=mean, stdev=stdev, cv=stdev / abs(mean) if mean and rounds > 1 else math.nan,
                   min=num("min"), max=num("max"), percentiles=percentiles, ci={})


def read_run(path: str | Path, trials: int = 3) -> ImportedRun:
    """Parse one pytest-benchmark JSON file into save records; raises HwbenchInputError naming the problem."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise HwbenchInputError(f"cannot read pytest-benchmark JSON: {err}", file=str(p), fix=_FIX) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise HwbenchInputError("not a pytest-benchmark file: no 'benchmarks' list", file=str(p),
                                field="benchmarks", fix=_FIX)
    machine = cast("dict[str, Any]", doc.get("machine_info") if isinstance(doc.get("machine_info"), dict) else {})
    commit = cast("dict[str, Any]", doc.get("commit_info") if isinstance(doc.get("commit_info"), dict) else {})
    env = {"imported_from": "pytest-benchmark", "pytest_benchmark": {
        "version": doc.get("version"), "machine_info": machine,
        "commit_info": {k: commit.get(k) for k in ("id", "branch", "time", "dirty") if k in commit}}}
    records: dict[str, SaveRecord] = {}
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not isinstance(bench.get("fullname"), str) \
                or not isinstance(bench.get("stats"), dict):
            raise HwbenchInputError(f"benchmark #{i} has no 'fullname' or no 'stats'", file=str(p),
                                    field=f"benchmarks[{i}]", fix=_FIX)
        name, stats = bench["fullname"], bench["stats"]
        data = stats.get("data")
        if isinstance(data, list) and data:
            samples = np.asarray(data, dtype=np.float64)
            if not np.isfinite(samples).all():
                raise HwbenchInputError(f"benchmark {name!r} has non-finite rounds", file=str(p),
                                        field=f"benchmarks[{name}].stats.data", fix=_FIX)
            summary = summarize(samples)
            values = [float(np.median(b)) for b in split_rounds(samples, trials)]
        else:
            summary = _summary_from_stats(stats, p, name)
            values = [summary.percentiles["p50"]]
        metric = MetricResult(name=METRIC, unit="s", better="lower", summary=summary, trial_values=values)
        records[name] = SaveRecord(metrics={METRIC: metric}, environment=env,
                                   commit=commit.get("id") if isinstance(commit.get("id"), str) else None,
                                   run_id=f"pytest-benchmark:{p.name}")
    stamp = cast(str, doc.get("datetime") if isinstance(doc.get("datetime"), str) else "")
    return ImportedRun(path=p, saved_at=stamp, records=records)


def import_files(paths: Sequence[str | Path], store: BaselineStore, *, keep: int = 5,
                 trials: int = 3) -> list[ImportedRun]:
    """Read every file first (all or nothing), then save one session per file, oldest first."""
    runs = sorted((read_run(p, trials) for p in paths), key=lambda r: (r.saved_at, str(r.path)))
    for run in runs:
        if run.records:
            store.save(run.records, saved_at=run.saved_at or None, keep=keep)
    return runs
