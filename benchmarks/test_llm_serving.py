"""LLM serving benchmarks against the recipe's ``llm`` service (vLLM, llama.cpp, Ollama, the reference server).

Four questions a serving engineer asks, one test each; every test body is one trial (the plugin repeats it),
and sizes come from the recipe's ``settings.llm`` (``workloads.llm_bench.LLMSettings``) so the same file runs
in seconds on the reference server and for minutes on a GPU box:

* ``test_llm_latency`` — one user, back to back: the best-case TTFT / ITL / TPOT / end-to-end latency.
* ``test_llm_throughput`` — closed loop at each ``concurrency`` of the sweep: tokens/s and req/s against
  latency; the sweep's ``req_s`` flattening out is the saturation knee.
* ``test_llm_long_prompt`` — long prompts, few output tokens: prefill cost (TTFT, prefill_tok_s).
* ``test_llm_goodput`` — open loop (Poisson by default) at each offered ``rate``: requests meeting every
  per-request SLO of the run per second (goodput) and latency from the *intended* send time, so a server
  that falls behind shows it instead of silently slowing the client down.

Every request of a trial gets a prompt never sent before (``trial_prompts``): engines cache prompt prefixes,
and a repeated prompt would measure a cache hit. Skipped with the reason when the recipe has no ``llm``
service. Metric definitions: docs/metrics.md.
"""

from __future__ import annotations

import pytest

from pytest_hwbench.workloads.engine import LoadSpec
from pytest_hwbench.workloads.llm_bench import llm_settings, request_slos_for, run_llm_load, trial_prompts


@pytest.mark.hwbench(service="llm")
def test_llm_latency(hwbench, hwbench_endpoint) -> None:
    """One user, one request at a time: no queueing and no batching, so this is the engine's floor."""
    s = llm_settings(hwbench)
    prompts = trial_prompts(hwbench, s, count=s.warmup_requests + s.requests)
    run_llm_load(hwbench, hwbench_endpoint, settings=s, prompts=prompts, max_tokens=s.output_tokens,
                 load=LoadSpec.closed(1, requests=s.requests, warmup_requests=s.warmup_requests,
                                      drain_timeout_s=s.drain_timeout_s))


@pytest.mark.hwbench(service="llm", sweep={"concurrency": [1, 2, 4, 8]})
def test_llm_throughput(hwbench, hwbench_endpoint, concurrency) -> None:
    """``concurrency`` users back to back: throughput (req_s, output_tok_s) and latency at that load.

    Each user sends ``requests_per_user`` measured requests (or runs ``sweep_duration_s``), after one
    warm-up request each, so every user is busy for the whole measurement window.
    """
    s = llm_settings(hwbench)
    users = int(concurrency)
    requests = None if s.sweep_duration_s else s.requests_per_user * users
    prompts = trial_prompts(hwbench, s, count=(s.warmup_requests * users + requests) if requests else 0)
    run_llm_load(hwbench, hwbench_endpoint, settings=s, prompts=prompts, max_tokens=s.output_tokens,
                 load=LoadSpec.closed(users, requests=requests, duration_s=s.sweep_duration_s,
                                      warmup_requests=s.warmup_requests * users, ramp_up_s=s.ramp_up_s,
                                      drain_timeout_s=s.drain_timeout_s))


@pytest.mark.hwbench(service="llm")
def test_llm_long_prompt(hwbench, hwbench_endpoint) -> None:
    """Long synthetic prompts (``long_prompt_tokens``) and a handful of output tokens: TTFT is prefill."""
    s = llm_settings(hwbench)
    prompts = trial_prompts(hwbench, s, s.long_prompt_tokens, count=s.warmup_requests + s.long_requests,
                            dataset=False)
    run_llm_load(hwbench, hwbench_endpoint, settings=s, prompts=prompts, max_tokens=s.long_output_tokens,
                 record_prefill=True,
                 load=LoadSpec.closed(1, requests=s.long_requests, warmup_requests=s.warmup_requests,
                                      drain_timeout_s=s.drain_timeout_s))


@pytest.mark.hwbench(service="llm", sweep={"rate": [2, 5]})
def test_llm_goodput(hwbench, hwbench_endpoint, request, rate) -> None:
    """Open loop at ``rate`` req/s: goodput under the run's SLOs, and latency from the intended send.

    About ``rate x goodput_duration_s`` requests per trial; each trial draws its own arrival times (seeded
    by the trial index, so a re-run sees the same schedules).
    """
    s = llm_settings(hwbench)
    rate = float(rate)
    requests = max(s.goodput_min_requests, round(rate * s.goodput_duration_s))
    prompts = trial_prompts(hwbench, s, count=s.warmup_requests + requests)
    run_llm_load(hwbench, hwbench_endpoint, settings=s, prompts=prompts, max_tokens=s.output_tokens,
                 request_slos=request_slos_for(hwbench, request, s),
                 load=LoadSpec.open(rate, kind=s.arrival, burstiness=s.burstiness, requests=requests,
                                    warmup_requests=s.warmup_requests, max_concurrency=s.max_concurrency,
                                    seed=(s.seed or 0) + max(hwbench.trial, 0), drain_timeout_s=s.drain_timeout_s))
