"""Issue #3 "done when": a capacity-limited sweep reports the knee at the configured capacity.

The reference server serves at most 6 requests at once (more wait in its queue), each taking 40 ms TTFT +
3 x 10 ms ITL = 70 ms. A closed-loop sweep over concurrency 1..12 therefore sees throughput rise as
c / 70 ms up to c = 6 (~86 req/s) and stay flat after, while latency stays at 70 ms up to 6 and then grows as
c / 6 x 70 ms on average. Both knees must land at 6, and the highest concurrency whose e2el p99 stays under 1.5 x the
service time (105 ms; a seventh user already waits a whole service time, ~140 ms) is 6.

Service time is long compared with this machine's scheduling noise (a few ms), so one 0.6 s point per load
is enough; the whole sweep takes ~8 s.
"""

from __future__ import annotations

import numpy as np
import pytest

from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
from pytest_hwbench.verdict.knee import analyze_sweep
from pytest_hwbench.workloads.engine import LoadSpec, run_load_sync
from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics
from pytest_hwbench.workloads.openai_client import OpenAIClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts

CAPACITY = 6
LOADS = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12]


def test_capacity_limited_sweep_has_its_knee_at_the_capacity():
    cfg = ReferenceConfig(ttft_ms=40, itl_ms=10, output_tokens=4, capacity=CAPACITY)
    points = []
    with ReferenceServerProcess(cfg) as srv:
        client = OpenAIClientConfig(base_url=srv.base_url, model="hwbench-reference",
                                    prompts=synthetic_prompts(16, 32), max_tokens=None)
        for users in LOADS:
            res = run_load_sync(LoadSpec.closed(users, duration_s=0.6, warmup_requests=users), client.open)
            m = compute_llm_metrics(res.records)
            assert m.counts["failed"] == 0
            points.append({"req_s": m.scalars["req_s"],
                           "e2el_ms.mean": float(m.samples["e2el_ms"].mean()),
                           "e2el_ms.p99": float(np.percentile(m.samples["e2el_ms"], 99))})
    print("\nsweep:", [(u, round(p["req_s"], 1), round(p["e2el_ms.p99"], 1)) for u, p in zip(LOADS, points,
                                                                                          strict=True)])
    # mean latency, not a percentile: by Little's law it is exactly users / throughput, so it turns at the
    # same load as throughput (a median hides the one queued user of seven until the queue grows)
    result = analyze_sweep(LOADS, points, throughput="req_s", latency="e2el_ms.mean",
                           slo=[("e2el_ms.p99", "<", 105.0)])
    knee = result.throughput_knee
    assert knee.load == pytest.approx(CAPACITY, abs=0.5) and knee.nearest_load == CAPACITY
    assert knee.slope_before == pytest.approx(1000 / 70, rel=0.15)  # req/s per user below the knee
    assert abs(knee.slope_after) < 0.2 * knee.slope_before
    assert result.latency_knee is not None and result.latency_knee.load == pytest.approx(CAPACITY, abs=0.75)
    assert result.sustainable is not None and result.sustainable.load == CAPACITY
    assert result.sustainable.first_failing_load == CAPACITY + 1
