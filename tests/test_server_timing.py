"""Server-reported timings beside the client's (``workloads/server_timing.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_hwbench.workloads.records import RequestRecord
from pytest_hwbench.workloads.server_timing import (
    llamacpp_timing,
    parse_prometheus,
    per_request_samples,
    run_means,
)

# The final event of a llama.cpp stream (shape of llama-server's OpenAI-compatible answer).
LLAMA_FINAL = json.loads('{"choices":[{"finish_reason":"length","index":0,"delta":{}}],"object":'
                         '"chat.completion.chunk","timings":{"prompt_n":12,"prompt_ms":30.5,'
                         '"prompt_per_token_ms":2.54,"prompt_per_second":393.4,"predicted_n":16,'
                         '"predicted_ms":160.0,"predicted_per_token_ms":10.0,"predicted_per_second":100.0}}')


def test_llamacpp_timings_are_kept_and_give_prefill_tpot_and_time_outside_the_server():
    st = llamacpp_timing(LLAMA_FINAL)
    assert st == {"prompt_n": 12, "prompt_ms": 30.5, "prompt_per_token_ms": 2.54, "predicted_n": 16,
                  "predicted_ms": 160.0, "predicted_per_token_ms": 10.0}
    assert llamacpp_timing({"choices": []}) is None
    ok = RequestRecord(index=0, send_ns=0, first_token_ns=40_500_000, end_ns=200_000_000, server_timing=st)
    failed = RequestRecord(index=1, send_ns=0, end_ns=1, server_timing=st).fail("server", "x")
    warm = RequestRecord(index=2, send_ns=0, end_ns=1, server_timing=st, warmup=True)
    ollama = RequestRecord(index=3, send_ns=0, first_token_ns=50_000_000, end_ns=9,
                           server_timing={"prompt_eval_duration": 20e6, "eval_duration": 90e6, "eval_count": 9})
    s = per_request_samples([ok, failed, warm, ollama, RequestRecord(index=4, send_ns=0, end_ns=1)])
    assert s["server_prefill_ms"].tolist() == [30.5, 20.0]
    assert s["server_tpot_ms"].tolist() == [10.0, 10.0]
    assert np.allclose(s["ttft_outside_server_ms"], [10.0, 30.0])


VLLM_BEFORE = """# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 1.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 2.0
vllm:time_to_first_token_seconds_count{model_name="m"} 2.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 0.3
# HELP vllm:request_queue_time_seconds queue
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{le="+Inf",model_name="m"} 2.0
vllm:request_queue_time_seconds_count{model_name="m"} 2.0
vllm:request_queue_time_seconds_sum{model_name="m"} 0.01
"""
VLLM_AFTER = (VLLM_BEFORE.replace('_count{model_name="m"} 2.0', '_count{model_name="m"} 12.0')
              .replace('seconds_sum{model_name="m"} 0.3', 'seconds_sum{model_name="m"} 1.3')
              .replace('seconds_sum{model_name="m"} 0.01', 'seconds_sum{model_name="m"} 0.06'))

TRITON = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} %d
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="m",version="1"} %d
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="m",version="1"} %d
"""


def test_metrics_endpoint_means_over_exactly_the_run():
    means = run_means(parse_prometheus(VLLM_BEFORE), parse_prometheus(VLLM_AFTER))
    assert means == {"server_ttft_mean_ms": pytest.approx(100.0), "server_queue_mean_ms": pytest.approx(5.0)}
    tri = run_means(parse_prometheus(TRITON % (10, 1000, 50_000)), parse_prometheus(TRITON % (30, 3000, 250_000)))
    assert tri == {"server_queue_mean_ms": pytest.approx(0.1), "server_compute_mean_ms": pytest.approx(10.0)}
    assert run_means(None, parse_prometheus(VLLM_AFTER)) == {}
