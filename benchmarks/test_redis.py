"""Redis GET/SET throughput and latency over a sweep of concurrent clients (and pipeline depth).

Run: ``pytest benchmarks/test_redis.py --recipe recipes/redis.yaml`` (starts a local redis-server). Without a
recipe that provides a ``redis`` service the test is skipped with the reason.

Knobs, from the recipe's ``settings.redis:`` (or top-level ``settings:``), declared with their defaults in
``RedisSettings`` (``pytest_hwbench/recipe/workload_settings.py``) and checked when the recipe loads:
``mix`` (``"get:set=90:10"``), ``value_size`` (``64``, ``"4kb"``), ``key_size``, ``keyspace``,
``duration_s`` / ``requests`` per trial, ``warmup_requests``, ``timeout_s``, ``workers`` (load-generator
processes), ``password`` / ``username`` / ``db``, ``allow_existing_data``. Sweep arguments: ``clients``
(concurrent connections) and ``pipeline``.

The key space is seeded once per sweep point before the first trial (not measured) and deleted after the
last one; each trial is one closed-loop run of the engine. Metrics: ``ops_s``, ``latency_us`` (one sample per
command), ``bytes_s``, ``error_rate`` and, for a mixed workload, ``ops_s_get`` / ``latency_us_get`` etc.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_hwbench.errors import HwbenchError
from pytest_hwbench.workloads.engine import run_load_sync
from pytest_hwbench.workloads.kv_metrics import closed_load, summarize_run
from pytest_hwbench.workloads.redis_client import RedisWorkload, metrics_of


async def _leftover_keys(workload: RedisWorkload) -> int:
    admin = workload._admin()
    try:
        return len([k async for k in admin.scan_iter(match=f"{workload.prefix}*", count=1000)])
    finally:
        await admin.aclose()


@pytest.fixture
def redis_workload(hwbench: Any, hwbench_endpoint: Any, pipeline: int) -> Iterator[RedisWorkload]:
    """The workload of this sweep point, with its key space seeded; every key it made deleted afterwards."""
    problem = ""
    try:
        workload = RedisWorkload.from_endpoint(hwbench_endpoint, hwbench.workloads.redis, pipeline=pipeline)
        prepared = workload.prepare_sync()
    except HwbenchError as err:  # refused or misconfigured: the message names the setting
        problem = str(err)
    if problem:  # failed outside the except block, so the report shows one message and no traceback
        pytest.fail(problem, pytrace=False)
    hwbench.extra["workload"] = {"mix": dict(workload.mix), "key_size": workload.key_size,
                                 "value_size": workload.value_size, "keyspace": workload.keyspace,
                                 "pipeline": workload.pipeline, "prefix": workload.prefix}
    hwbench.extra["seed_s"] = round(prepared.seed_s, 4)
    if prepared.notes:
        hwbench.extra["notes"] = list(prepared.notes)
    try:
        yield workload
    finally:
        workload.cleanup_sync()
        left = asyncio.run(_leftover_keys(workload))
        if left:
            pytest.fail(f"{left} key(s) under {workload.prefix} survived the cleanup", pytrace=False)


@pytest.mark.hwbench(service="redis", sweep={"clients": [1, 4, 16], "pipeline": [1]})
def test_redis_get_set(hwbench: Any, redis_workload: RedisWorkload, clients: int) -> None:
    """``clients`` connections issue the GET/SET mix back to back (closed loop) for one trial."""
    settings = hwbench.workloads.redis  # typed and checked when the recipe loaded
    spec = closed_load(settings, clients, drain_timeout_s=redis_workload.timeout_s + 1.0)
    run = run_load_sync(spec, redis_workload.open, workers=settings.workers)
    metrics = metrics_of(run)
    metrics.record_into(hwbench)
    trial = summarize_run(metrics, run)
    trial["warmup"] = hwbench.is_warmup
    hwbench.extra.setdefault("trials", []).append(trial)
