"""Operation records of data-service workloads (Redis, PostgreSQL, ...) → throughput, latency, bytes, rows.

Why a record subclass rather than new fields on :class:`RequestRecord`: the LLM metrics do not need an
operation type or a byte count, and the engine only ever touches the base fields, so a data-service client
returns a :class:`KVRecord` (still a ``RequestRecord`` for the engine, pickled as is by multi-process runs)
and everything specific to key-value / SQL operations is computed here.

One *request* is what one ``send(index)`` did: a single command, a pipeline of ``P`` commands (Redis), or
one SQL operation / transaction (PostgreSQL). One *operation* is one command or one SQL operation; a
request carries ``op_counts`` (attempted operations per type) and ``op_failed`` (failed ones per type).

Definitions (intervals from ``perf_counter_ns``; *measured* = not warm-up; docs/metrics.md has them all):

* Window — first measured send → last measured completion (failed requests included).
* ``<throughput>`` (``ops_s``, or ``tps`` for a transaction workload) = succeeded operations / window.
* ``latency_us`` — send → last byte of the request's last reply, one sample per operation: the commands of
  a pipeline all complete when its replies arrive, so each gets the pipeline's latency (``redis-benchmark``
  counts pipelined latency the same way). A failed or timed-out operation stays in as a *censored* value:
  the time until its request failed, but never less than the slowest success (``records.censored_ms``), so
  a stall that ends in timeouts shows in the tail; it is also counted in ``error_rate``.
* ``bytes_s`` = payload bytes moved by succeeded requests / window: keys and values sent plus values
  received (protocol framing excluded, so the figure does not depend on the wire protocol).
* ``rows_s`` = rows returned or affected / window; ``qps`` = SQL statements / window (BEGIN/COMMIT excluded).
* ``error_rate`` = failed operations / attempted operations; timeouts count as failed.
* ``serialization_failures`` = operations that failed with SQLSTATE 40001 (serialization_failure) or
  40P01 (deadlock_detected): the conflicts a database resolves by aborting one transaction. They are
  counted as errors (class ``server``) *and* separately, because a rising count is a contention finding,
  not a broken server.

Per operation type: ``<throughput>_<op>`` and ``latency_us_<op>`` (only when the mix has several types).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.recipe.workload_settings import PostgresSettings, RedisSettings, parse_mix, parse_size

__all__ = ["SERIALIZATION_SQLSTATES", "UNKNOWN_OP", "KVMetrics", "KVRecord", "closed_load", "compute_kv_metrics",
           "mix64", "mix_table", "parse_mix", "parse_size", "summarize_run"]
from pytest_hwbench.workloads.records import RequestRecord

#: SQLSTATEs of transactions the server aborted to resolve a conflict (retryable by the application).
SERIALIZATION_SQLSTATES: frozenset[str] = frozenset({"40001", "40P01"})
#: Operation type given to records the engine made itself (a client bug or a request cancelled at drain).
UNKNOWN_OP = "unknown"


@dataclass(slots=True)
class KVRecord(RequestRecord):
    """A :class:`RequestRecord` that also says which operations it carried and what they moved."""

    #: Operation type (``get``, ``set``, ``tpcb``, ...), or ``mixed`` for a pipeline of several types.
    op: str = ""
    #: Attempted operations per type (a pipeline holds several; a single command holds one).
    op_counts: dict[str, int] | None = None
    #: Failed operations per type; ``None`` when none failed.
    op_failed: dict[str, int] | None = None
    #: Payload bytes sent (keys + values) and received (values), framing excluded.
    bytes_out: int = 0
    bytes_in: int = 0
    #: Rows returned or affected (SQL), and statements executed (BEGIN/COMMIT not counted).
    rows: int = 0
    statements: int = 0
    #: GETs that found no value (a key-space that was not seeded, or lost in a server restart).
    misses: int = 0
    #: SQLSTATE of the error, when the server gave one.
    sqlstate: str | None = None

    def fail_all(self, error: str, detail: str = "", end_ns: int | None = None) -> KVRecord:
        """Mark the request failed with every operation in it failed (the connection broke, it timed out)."""
        self.fail(error, detail, end_ns)
        self.op_failed = dict(self.op_counts or {self.op or UNKNOWN_OP: 1})
        return self


def mix_table(weights: Mapping[str, float], size: int = 1024) -> tuple[str, ...]:
    """A lookup table of ``size`` operation names whose shares follow ``weights`` (largest remainder).

    Why a table: the client picks an operation with one hash and one index, not a weighted draw.
    """
    names = sorted(weights)
    exact = [weights[n] * size for n in names]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(names)), key=lambda i: exact[i] - counts[i], reverse=True)[:size - sum(counts)]:
        counts[i] += 1
    return tuple(n for n, c in zip(names, counts, strict=True) for _ in range(c))


_M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """SplitMix64 finaliser: a well-mixed 64-bit hash of ``x``.

    Why hash the request index instead of drawing from an RNG: the index is unique across worker processes,
    so every process makes the same, reproducible choices without sharing RNG state.
    """
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


@dataclass
class KVMetrics:
    """Samples and scalars of one data-service run, plus the counts behind them."""

    throughput: str
    samples: dict[str, np.ndarray]
    scalars: dict[str, float]
    counts: dict[str, int]
    per_op: dict[str, dict[str, float]]
    errors: dict[str, int]
    sqlstates: dict[str, int]
    window_s: float
    error_details: list[str] = field(default_factory=list)

    @property
    def ops(self) -> int:
        """Succeeded operations in the measurement window."""
        return self.counts["succeeded_ops"]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (no raw samples; those travel as metrics)."""
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"throughput": self.throughput, "scalars": {k: num(v) for k, v in self.scalars.items()},
                "sample_counts": {k: int(v.size) for k, v in self.samples.items()},
                "counts": dict(self.counts), "errors": dict(self.errors), "sqlstates": dict(self.sqlstates),
                "per_op": {op: {k: num(v) for k, v in d.items()} for op, d in self.per_op.items()},
                "window_s": num(self.window_s), "error_details": list(self.error_details)}

    def record_into(self, recorder: Any, *, per_op: bool = True) -> None:
        """Record every metric into the ``hwbench`` fixture (one trial's worth).

        Scalars are recorded once per call (one value per trial); ``latency_us`` as the trial's samples.
        A scalar that is undefined (no measured request at all) raises: a trial that measured nothing is a
        broken benchmark, not a zero.
        """
        if not math.isfinite(self.window_s):
            raise HwbenchError("the run measured no operation (every request was warm-up, or none was sent); "
                               "give a longer duration_s or more requests")
        unit = "tx/s" if self.throughput == "tps" else "ops/s"
        recorder.record(self.throughput, self.scalars[self.throughput], unit=unit)
        recorder.record("latency_us", self.samples["latency_us"], unit="us")
        recorder.record("error_rate", self.scalars["error_rate"], unit="", better="lower")
        if "bytes_s" in self.scalars:
            recorder.record("bytes_s", self.scalars["bytes_s"], unit="B/s")
        if "rows_s" in self.scalars:
            recorder.record("rows_s", self.scalars["rows_s"], unit="rows/s")
        if "qps" in self.scalars:
            recorder.record("qps", self.scalars["qps"], unit="queries/s")
        if "serialization_failures" in self.scalars:
            recorder.record("serialization_failures", self.scalars["serialization_failures"], unit="",
                            better="lower")
        if per_op and len([op for op in self.per_op if op != UNKNOWN_OP]) > 1:
            for op in self.per_op:
                if op == UNKNOWN_OP:
                    continue
                recorder.record(f"{self.throughput}_{op}", self.scalars[f"{self.throughput}_{op}"], unit=unit)
                lat = self.samples.get(f"latency_us_{op}")
                if lat is not None and lat.size:
                    recorder.record(f"latency_us_{op}", lat, unit="us")


def compute_kv_metrics(records: Iterable[RequestRecord], *, throughput: str = "ops_s", sql: bool = False,
                       track_bytes: bool = True, max_error_details: int = 5) -> KVMetrics:
    """Compute the metrics of the module doc from ``records`` (warm-up records are ignored).

    ``throughput`` names the rate (``ops_s`` or ``tps``); ``sql`` adds ``rows_s``, ``qps`` and
    ``serialization_failures``; ``track_bytes`` adds ``bytes_s``. Plain ``RequestRecord`` objects (what the
    engine makes when a client raised or a request was cancelled at drain) count as one failed operation of
    type ``unknown``.
    """
    if not re.fullmatch(r"[a-z][a-z0-9_]*", throughput):
        raise HwbenchInputError(f"throughput name {throughput!r} is not a metric name", field="throughput",
                                fix="use ops_s or tps")
    records = list(records)
    measured = [r for r in records if not r.warmup]
    attempted: dict[str, int] = {}
    failed: dict[str, int] = {}
    lat_parts: dict[str, list[np.ndarray]] = {}
    lat_all: list[int] = []
    lat_weights: list[int] = []
    censored: list[tuple[str, int, int]] = []  # (op, failed operations, ns until the request failed)
    errors: dict[str, int] = {}
    sqlstates: dict[str, int] = {}
    details: list[str] = []
    bytes_total = rows = statements = misses = serialization = failed_requests = 0
    for r in measured:
        counts = getattr(r, "op_counts", None) or {getattr(r, "op", "") or UNKNOWN_OP: 1}
        bad = getattr(r, "op_failed", None) or {}
        if r.error is not None and not bad:  # a failed request that did not say which operations failed
            bad = dict(counts)
        n_failed = 0
        for op, n in counts.items():
            attempted[op] = attempted.get(op, 0) + n
        for op, n in bad.items():
            failed[op] = failed.get(op, 0) + n
            n_failed += n
        state = getattr(r, "sqlstate", None)
        if r.error is not None:
            failed_requests += 1
            errors[r.error] = errors.get(r.error, 0) + max(n_failed, 1)
            if state:
                sqlstates[state] = sqlstates.get(state, 0) + 1
                if state in SERIALIZATION_SQLSTATES:
                    serialization += 1
            if len(details) < max_error_details and r.error_detail:
                details.append(f"{r.error}: {r.error_detail}")
        if r.error is None or n_failed < sum(counts.values()):
            bytes_total += getattr(r, "bytes_out", 0) + getattr(r, "bytes_in", 0)
            rows += getattr(r, "rows", 0)
            statements += getattr(r, "statements", 0)
            misses += getattr(r, "misses", 0)
        lat = r.end_ns - r.send_ns
        if r.error is None:
            n_ok = sum(counts.values())
            lat_all.append(lat)
            lat_weights.append(n_ok)
            for op, n in counts.items():
                lat_parts.setdefault(op, []).append(np.full(n, lat, dtype=np.int64))
        else:
            for op, n in (bad or counts).items():
                censored.append((op, n, max(lat, 0)))

    window_ns = (max(r.end_ns for r in measured) - min(r.send_ns for r in measured)) if measured else 0
    window_s = window_ns / 1e9 if window_ns > 0 else math.nan

    def rate(x: float) -> float:
        return x / window_s if math.isfinite(window_s) else math.nan

    floor = max(lat_all, default=0)
    for op, n, ns in censored:  # failures in the tail, never faster than the slowest success
        lat_all.append(max(ns, floor))
        lat_weights.append(n)
        lat_parts.setdefault(op, []).append(np.full(n, max(ns, floor), dtype=np.int64))
    latency = (np.repeat(np.asarray(lat_all, dtype=np.float64), lat_weights) / 1e3) if lat_all else np.zeros(0)
    samples: dict[str, np.ndarray] = {"latency_us": latency}
    total_attempted = sum(attempted.values())
    total_failed = sum(failed.values())
    succeeded = total_attempted - total_failed
    scalars: dict[str, float] = {
        throughput: rate(succeeded),
        "error_rate": total_failed / total_attempted if total_attempted else math.nan,
    }
    if track_bytes:
        scalars["bytes_s"] = rate(bytes_total)
    if sql:
        scalars["rows_s"] = rate(rows)
        scalars["qps"] = rate(statements)
        scalars["serialization_failures"] = float(serialization)
    per_op: dict[str, dict[str, float]] = {}
    for op in sorted(attempted):
        ok = attempted[op] - failed.get(op, 0)
        lat_op = (np.concatenate(lat_parts[op]).astype(np.float64) / 1e3) if op in lat_parts else np.zeros(0)
        samples[f"latency_us_{op}"] = lat_op
        scalars[f"{throughput}_{op}"] = rate(ok)
        p50, p99 = (np.percentile(lat_op, [50, 99]) if lat_op.size else (math.nan, math.nan))
        per_op[op] = {"attempted": float(attempted[op]), "failed": float(failed.get(op, 0)),
                      throughput: rate(ok), "error_rate": failed.get(op, 0) / attempted[op],
                      "latency_us_p50": float(p50), "latency_us_p99": float(p99)}
    counts_out = {"requests": len(measured), "failed_requests": failed_requests,
                  "warmup_requests": len(records) - len(measured), "attempted_ops": total_attempted,
                  "succeeded_ops": succeeded, "failed_ops": total_failed, "bytes": bytes_total, "misses": misses}
    if sql:
        counts_out.update(rows=rows, statements=statements, serialization_failures=serialization)
    return KVMetrics(throughput=throughput, samples=samples, scalars=scalars, counts=counts_out, per_op=per_op,
                     errors=errors, sqlstates=sqlstates, window_s=window_s, error_details=details)


def summarize_run(metrics: KVMetrics, run: Any) -> dict[str, Any]:
    """What a benchmark keeps in ``hwbench.extra`` per trial: the counts, the errors and the self-check."""
    out = metrics.to_dict()
    out.pop("sample_counts", None)
    check = getattr(run, "self_check", None)
    if check is not None:
        out["client_bound"] = bool(check.client_bound)
        if check.client_bound:
            out["client_bound_reasons"] = list(check.reasons)
    return out


def closed_load(settings: RedisSettings | PostgresSettings, users: int, *, drain_timeout_s: float) -> Any:
    """A closed-loop ``LoadSpec`` for ``users`` concurrent clients, sized by the recipe's typed settings
    (``duration_s`` / ``requests`` / ``warmup_requests``, defaults declared in ``workload_settings``).

    Why closed loop: these benchmarks measure capacity at a given concurrency (the ``clients`` /
    ``connections`` sweep), the way ``redis-benchmark`` and ``pgbench`` do.
    """
    from pytest_hwbench.workloads.engine import LoadSpec

    return LoadSpec.closed(users, duration_s=settings.duration_s, requests=settings.requests,
                           warmup_requests=settings.warmup_requests, drain_timeout_s=drain_timeout_s)
