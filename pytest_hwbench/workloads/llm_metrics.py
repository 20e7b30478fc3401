"""Request records → LLM serving metrics, exactly as pinned in docs/metrics.md. Pure numpy, no I/O.

Definitions (all intervals from ``perf_counter_ns``; *measured* = not warm-up):

* ``ttft_ms`` — send → first chunk carrying generated content.
* ``itl_ms`` — gaps between consecutive content chunks of a request, pooled over requests.
* ``tpot_ms`` — (e2el − ttft) / (output_tokens − 1), for requests with output_tokens > 1.
* ``e2el_ms`` — send → last byte. This is the pinned ``latency`` (``latency_ms`` is accepted as an alias
  in per-request SLOs).
* ``latency_from_intended_ms`` — scheduled send → last byte; open-loop runs only (records with a schedule).
  It includes any time the request waited for the client (late send, max-concurrency queue), so a server
  stall shows in its tail — no coordinated omission.
* Window — first measured send → last measured completion (all measured requests, failed ones included).
* ``output_tok_s`` = Σ output tokens / window, ``total_tok_s`` = Σ (input + output tokens) / window,
  ``req_s`` = successful requests / window, ``goodput_req_s`` = requests meeting every per-request SLO /
  window, ``error_rate`` = failed / attempted (timeouts count as failed).

Failures count: a failed or timed-out request stays in ``ttft_ms`` (when no first token came),
``e2el_ms`` and ``latency_from_intended_ms`` as a *censored* value — the time until it failed, but never less
than the slowest success (``records.censored_ms``) — so a stall that ends in timeouts shows in the tail.
``tpot_ms``, ``itl_ms`` and token sums come from successful requests only (a failure has no token timing).
When any counted request's token count was estimated (no usage report from the server), the metrics
derived from it are listed in ``estimated``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads.records import ERROR_CLASSES, RequestRecord, censored_ms

#: Sample metrics: name → unit (all "lower is better").
SAMPLE_METRICS: dict[str, str] = {
    "ttft_ms": "ms", "itl_ms": "ms", "tpot_ms": "ms", "e2el_ms": "ms", "latency_from_intended_ms": "ms",
}
#: Scalar metrics: name → unit (rates with "/" are "higher is better"; error_rate is a ratio, lower better).
SCALAR_METRICS: dict[str, str] = {
    "output_tok_s": "tok/s", "total_tok_s": "tok/s", "req_s": "req/s", "goodput_req_s": "req/s",
    "error_rate": "",
}
#: Per-request quantities a goodput SLO may bound (``itl_ms`` = the request's worst gap).
REQUEST_SLO_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "latency_ms", "latency_from_intended_ms")


@dataclass
class LLMMetrics:
    """Samples (one value per request, or per chunk gap for ``itl_ms``) and scalars of one run."""

    samples: dict[str, np.ndarray]
    scalars: dict[str, float]
    estimated: frozenset[str]
    counts: dict[str, int]
    errors: dict[str, int]
    window_s: float
    request_slos: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (no raw samples; those are large and travel separately)."""
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"scalars": {k: num(v) for k, v in self.scalars.items()},
                "sample_counts": {k: int(v.size) for k, v in self.samples.items()},
                "estimated": sorted(self.estimated), "counts": dict(self.counts), "errors": dict(self.errors),
                "window_s": num(self.window_s), "request_slos": dict(self.request_slos)}


def _first_token(r: RequestRecord) -> int | None:
    return r.first_token_ns if r.first_token_ns is not None else (r.chunk_ns[0] if r.chunk_ns else None)


def compute_llm_metrics(records: Sequence[RequestRecord], *,
                        request_slos: Mapping[str, float] | None = None) -> LLMMetrics:
    """Compute every metric of the module doc from ``records`` (warm-up records are ignored).

    ``request_slos`` maps a per-request quantity (``REQUEST_SLO_METRICS``) to its upper bound, inclusive,
    e.g. ``{"ttft_ms": 500, "tpot_ms": 50}``; a request is *good* when it succeeded and meets all of them.
    ``goodput_req_s`` is reported only when SLOs are given. ``tpot_ms`` bounds are met vacuously by requests
    with a single output token (they have no TPOT).
    """
    slos = dict(request_slos or {})
    for name, bound in slos.items():
        if name not in REQUEST_SLO_METRICS:
            raise HwbenchInputError(f"no per-request metric {name!r} for goodput", field=f"goodput.{name}",
                                    fix=f"use one of {', '.join(REQUEST_SLO_METRICS)}")
        if not isinstance(bound, (int, float)) or not math.isfinite(bound):
            raise HwbenchInputError(f"bound must be a number, got {bound!r}", field=f"goodput.{name}",
                                    fix="give the largest acceptable value, e.g. 500 (ms)")
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.error is None]
    errors = {c: 0 for c in ERROR_CLASSES}
    for r in measured:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1

    tpot, itl_parts = [], []
    out_tokens = in_tokens = 0
    est_out = est_in = False
    good = 0
    for r in ok:
        lat = r.end_ns - r.send_ns
        first = _first_token(r)
        n_out = r.tokens_out or 0
        out_tokens += n_out
        in_tokens += r.tokens_in or 0
        est_out |= r.tokens_out_estimated
        est_in |= r.tokens_in_estimated or r.tokens_in is None
        req_tpot = None
        if first is not None and n_out > 1:
            req_tpot = (lat - (first - r.send_ns)) / (n_out - 1)
            tpot.append(req_tpot)
        gaps = np.diff(np.asarray(r.chunk_ns, dtype=np.int64)) if len(r.chunk_ns) > 1 else None
        if gaps is not None:
            itl_parts.append(gaps)
        if slos and _meets(slos, r, lat, first, req_tpot, gaps):
            good += 1

    window_ns = (max(r.end_ns for r in measured) - min(r.send_ns for r in measured)) if measured else 0
    window_s = window_ns / 1e9 if window_ns > 0 else math.nan

    def rate(x: float) -> float:
        return x / window_s if math.isfinite(window_s) else math.nan

    samples = {
        "ttft_ms": censored_ms(measured, stop=_first_token),
        "itl_ms": (np.concatenate(itl_parts).astype(np.float64) / 1e6) if itl_parts else np.zeros(0),
        "tpot_ms": np.asarray(tpot, dtype=np.float64) / 1e6,
        "e2el_ms": censored_ms(measured),
        "latency_from_intended_ms": censored_ms(measured, start=lambda r: r.intended_ns),
    }
    scalars = {
        "output_tok_s": rate(out_tokens),
        "total_tok_s": rate(out_tokens + in_tokens),
        "req_s": rate(len(ok)),
        "error_rate": (len(measured) - len(ok)) / len(measured) if measured else math.nan,
    }
    if slos:
        scalars["goodput_req_s"] = rate(good)
    estimated = set()
    if est_out:
        estimated |= {"output_tok_s", "total_tok_s", "tpot_ms"}
    if est_in:
        estimated.add("total_tok_s")
    counts = {"attempted": len(measured), "succeeded": len(ok), "failed": len(measured) - len(ok),
              "warmup": len(records) - len(measured), "output_tokens": out_tokens, "input_tokens": in_tokens}
    if slos:
        counts["good"] = good
    return LLMMetrics(samples=samples, scalars=scalars, estimated=frozenset(estimated), counts=counts,
                      errors={k: v for k, v in errors.items() if v}, window_s=window_s, request_slos=slos)


def _meets(slos: Mapping[str, float], r: RequestRecord, lat: int, first: int | None, tpot: float | None,
           gaps: np.ndarray | None) -> bool:
    for name, bound in slos.items():
        if name in ("e2el_ms", "latency_ms"):
            value: float | None = lat / 1e6
        elif name == "ttft_ms":
            value = None if first is None else (first - r.send_ns) / 1e6
            if value is None:
                return False
        elif name == "tpot_ms":
            value = None if tpot is None else tpot / 1e6
        elif name == "itl_ms":
            value = None if gaps is None else float(gaps.max()) / 1e6
        else:  # latency_from_intended_ms (closed-loop requests have no schedule: fall back to latency)
            value = ((r.end_ns - r.intended_ns) if r.intended_ns is not None else lat) / 1e6
        if value is not None and value > bound:
            return False
    return True
