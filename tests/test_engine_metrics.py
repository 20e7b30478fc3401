"""LLM metrics from hand-made records: every formula of docs/metrics.md checked on numbers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics
from pytest_hwbench.workloads.records import ERROR_CLASSES, ErrorClass, RequestRecord

MS = 1_000_000


def rec(index: int, send: float, chunks: list[float], end: float, *, tokens_out: int | None = None,
        tokens_in: int = 10, intended: float | None = None, warmup: bool = False, error: str | None = None,
        estimated: bool = False) -> RequestRecord:
    """A record with times in ms from an arbitrary origin."""
    r = RequestRecord(index=index, warmup=warmup, send_ns=int(send * MS), end_ns=int(end * MS),
                      intended_ns=None if intended is None else int(intended * MS),
                      chunk_ns=[int(c * MS) for c in chunks], tokens_in=tokens_in,
                      tokens_out=len(chunks) if tokens_out is None else tokens_out,
                      tokens_out_estimated=estimated, error=error)
    r.first_token_ns = r.chunk_ns[0] if r.chunk_ns else None
    return r


def test_every_metric_matches_the_pinned_definitions():
    records = [
        rec(0, 0, [50, 60], 61, warmup=True),  # warm-up: ignored everywhere
        rec(1, 100, [140, 150, 165], 170, intended=95, tokens_out=3),
        rec(2, 110, [130, 150], 160, intended=105, tokens_out=2),
        rec(3, 120, [200], 300, intended=110, tokens_out=1, error=ErrorClass.STREAM_CLOSED),
    ]
    m = compute_llm_metrics(records)
    assert m.samples["ttft_ms"].tolist() == [40, 20, 80]  # the failed one did get its first token
    assert m.samples["itl_ms"].tolist() == [10, 15, 20]  # pooled gaps of successful requests
    assert m.samples["e2el_ms"].tolist() == [70, 50, 180]  # the failure stays in, censored at 180 ms
    assert m.samples["tpot_ms"].tolist() == pytest.approx([(70 - 40) / 2, (50 - 20) / 1])
    assert m.samples["latency_from_intended_ms"].tolist() == [75, 55, 190]
    # window: first measured send (100) -> last measured completion (300, the failed one counts) = 0.2 s
    assert m.window_s == pytest.approx(0.2)
    assert m.scalars["output_tok_s"] == pytest.approx(5 / 0.2)
    assert m.scalars["total_tok_s"] == pytest.approx((5 + 20) / 0.2)
    assert m.scalars["req_s"] == pytest.approx(2 / 0.2)
    assert m.scalars["error_rate"] == pytest.approx(1 / 3)
    assert "goodput_req_s" not in m.scalars
    assert m.counts == {"attempted": 3, "succeeded": 2, "failed": 1, "warmup": 1,
                        "output_tokens": 5, "input_tokens": 20}
    assert m.errors == {ErrorClass.STREAM_CLOSED: 1}
    assert m.estimated == frozenset()


def test_goodput_counts_requests_meeting_every_slo():
    records = [rec(i, 10 * i, [10 * i + t, 10 * i + t + g], 10 * i + t + g + 1)
               for i, (t, g) in enumerate([(20, 5), (40, 5), (20, 30), (10, 1)])]
    records.append(rec(9, 0, [], 5, error=ErrorClass.TIMEOUT))
    m = compute_llm_metrics(records, request_slos={"ttft_ms": 30, "itl_ms": 10})
    assert m.counts["good"] == 2  # #0 and #3; #1 misses TTFT, #2 misses ITL, the failed one never counts
    assert m.scalars["goodput_req_s"] == pytest.approx(2 / m.window_s)
    assert compute_llm_metrics(records, request_slos={"latency_ms": 1000}).counts["good"] == 4
    with pytest.raises(HwbenchInputError, match="ttft_p99"):
        compute_llm_metrics(records, request_slos={"ttft_p99": 1})


def test_estimated_token_counts_mark_the_derived_metrics():
    m = compute_llm_metrics([rec(0, 0, [1, 2, 3], 4, estimated=True), rec(1, 0, [1, 2], 3)])
    assert m.estimated == {"output_tok_s", "total_tok_s", "tpot_ms"}
    m = compute_llm_metrics([rec(0, 0, [1, 2], 3, tokens_in=None)])  # type: ignore[arg-type]
    assert m.estimated == {"total_tok_s"}


def test_closed_loop_records_have_no_latency_from_intended_and_empty_runs_are_nan():
    m = compute_llm_metrics([rec(0, 0, [5], 6)])
    assert m.samples["latency_from_intended_ms"].size == 0
    assert m.samples["tpot_ms"].size == 0  # a single token has no TPOT
    empty = compute_llm_metrics([])
    assert math.isnan(empty.window_s) and math.isnan(empty.scalars["error_rate"])
    assert all(v.size == 0 for v in empty.samples.values())
    assert empty.to_dict()["window_s"] is None


def test_all_failed_run_reports_error_rate_one_and_only_censored_latencies():
    records = [rec(i, i, [], i + 1, error=cls) for i, cls in enumerate(ERROR_CLASSES)]
    m = compute_llm_metrics(records)
    assert m.scalars["error_rate"] == 1.0 and m.scalars["req_s"] == 0.0
    assert set(m.errors) == set(ERROR_CLASSES)
    assert m.samples["e2el_ms"].tolist() == [1.0] * len(ERROR_CLASSES)  # time until each one failed
    assert m.samples["ttft_ms"].tolist() == [1.0] * len(ERROR_CLASSES)
    assert m.samples["tpot_ms"].size == m.samples["itl_ms"].size == 0


def test_failures_are_censored_in_the_tail_never_faster_than_a_success():
    records = [rec(i, 10 * i, [10 * i + 5], 10 * i + 8) for i in range(98)]
    records.append(rec(98, 2000, [], 2000.2, error=ErrorClass.CONNECTION))  # refused in 0.2 ms
    records.append(rec(99, 3000, [], 3500, error=ErrorClass.TIMEOUT))  # timed out after 500 ms
    m = compute_llm_metrics(records)
    e2el = m.samples["e2el_ms"]
    assert e2el.size == 100 and e2el.min() == pytest.approx(8)  # the refused one ranks with the slowest
    assert sorted(e2el)[-1] == pytest.approx(500) and np.percentile(e2el, 99) > 8


def test_records_round_trip_through_plain_json_and_clock_shifts():
    r = rec(3, 100, [140, 150], 170, intended=95)
    r.server_timing = {"eval_count": 2}
    back = RequestRecord.from_dict(r.to_dict())
    assert back == r
    back.shift(-95 * MS)
    assert back.intended_ns == 0 and back.send_ns == 5 * MS and back.chunk_ns == [45 * MS, 55 * MS]
    assert back.end_ns - back.send_ns == r.end_ns - r.send_ns
