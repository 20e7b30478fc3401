"""A run split over worker processes: merged records, one global schedule, aligned clocks.

Both cases use the reference server in its own process and the real OpenAI client in two spawned workers
(the client factory, ``OpenAIClientConfig.open``, is pickled to them). Spawning costs ~1 s per run here.
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchError
from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
from pytest_hwbench.workloads.engine import LoadSpec, make_plans, run_load_sync
from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics
from pytest_hwbench.workloads.openai_client import OpenAIClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts


@pytest.fixture(scope="module")
def server():
    with ReferenceServerProcess(ReferenceConfig(ttft_ms=20, itl_ms=5, output_tokens=6)) as srv:
        yield srv.base_url


def client(url: str) -> OpenAIClientConfig:
    return OpenAIClientConfig(base_url=url, model="hwbench-reference", prompts=synthetic_prompts(8, 32),
                              max_tokens=None)


def test_open_loop_over_two_workers_is_the_one_global_schedule(server):
    spec = LoadSpec.open(100, kind="poisson", requests=80, warmup_requests=10, seed=3)
    res = run_load_sync(spec, client(server).open, workers=2)
    assert res.workers == 2 and len(res.records) == 90
    assert [r.index for r in res.records] == list(range(90))
    assert {r.worker for r in res.records} == {0, 1}
    # the merged intended instants are exactly the parent's schedule, in the parent's clock
    (whole,) = make_plans(spec, 1)
    intended = np.array([r.intended_ns for r in res.records]) - res.start_ns
    assert np.array_equal(intended, whole.offsets_ns)
    # aligned clocks: sends follow the schedule across both workers (a misaligned worker would be off by
    # its clock error on every request); 20 ms p90 leaves room for a busy shared runner
    lag_ms = np.array([r.send_ns - r.intended_ns for r in res.records]) / 1e6
    assert lag_ms.min() > -1 and np.percentile(lag_ms, 90) < 20
    # on one Linux host every process reads the same CLOCK_MONOTONIC: the alignment error is tiny
    assert max(abs(o) for o in res.clock_offsets_ns) < 1_000_000
    m = compute_llm_metrics(res.records)
    assert m.counts["failed"] == 0 and m.counts["warmup"] == 10
    assert res.self_check.workers == 2 and len(res.self_check.client_cpu) == 2


def test_closed_loop_users_are_split_across_workers(server):
    urllib.request.urlopen(urllib.request.Request(server + "/hwbench/reset", method="POST"), timeout=5).close()
    res = run_load_sync(LoadSpec.closed(6, requests=30, warmup_requests=6), client(server).open, workers=2)
    assert len(res.records) == 36 and len({r.index for r in res.records}) == 36
    assert sum(r.warmup for r in res.records) == 6
    with urllib.request.urlopen(server + "/hwbench/stats", timeout=5) as resp:
        stats = json.load(resp)
    assert stats["max_inflight"] == 6  # 3 users per worker, all at once, never more
    assert all(r.ok for r in res.records)


def test_a_worker_that_cannot_start_is_a_clear_error():
    bad = OpenAIClientConfig(base_url="http://127.0.0.1:9", model="m", prompts=())  # no prompts: fails in open
    with pytest.raises(HwbenchError, match="no prompts"):
        run_load_sync(LoadSpec.closed(2, requests=2), bad.open, workers=2)
