"""PostgreSQL OLTP throughput and latency (pgbench's TPC-B-like transaction by default) over a sweep of
connections.

Run: ``pytest benchmarks/test_postgres.py --recipe recipes/postgres.yaml`` (initdb + a local postgres).
Without a recipe that provides a ``postgres`` service the test is skipped with the reason.

Knobs, from the recipe's ``settings.postgres:`` (or top-level ``settings:``; declared, with their defaults,
in ``PostgresSettings`` of ``pytest_hwbench/recipe/workload_settings.py`` and checked when the recipe loads):
``mix`` (``tpcb``, or e.g.
``"point_select:range_scan:insert:update:tpcb=40:10:20:20:10"``), ``scale`` and ``accounts_per_branch``
(pgbench: 100 000), ``range_rows``, ``isolation``, ``statement_timeout_s``, ``duration_s`` / ``requests``
per trial, ``warmup_requests``, ``workers``, ``dsn``, ``allow_existing_data``. Sweep argument:
``connections``.

Schema ``hwbench_<run>`` is created and loaded once per sweep point before the first trial (not measured)
and dropped after the last one. Metrics: ``tps`` (a ``tpcb``-only mix) or ``ops_s``, ``latency_us``,
``rows_s``, ``qps`` (statements/s), ``error_rate``, ``serialization_failures``, and per operation type for
a mix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_hwbench.errors import HwbenchError
from pytest_hwbench.workloads.engine import run_load_sync
from pytest_hwbench.workloads.kv_metrics import closed_load, summarize_run
from pytest_hwbench.workloads.postgres_client import PostgresWorkload, metrics_of


@pytest.fixture
def postgres_workload(hwbench: Any, hwbench_endpoint: Any, connections: int) -> Iterator[PostgresWorkload]:
    """The workload of this sweep point with its schema loaded; the schema dropped afterwards."""
    settings = hwbench.workloads.postgres  # typed and checked when the recipe loaded
    per_worker = -(-connections // settings.workers)  # each load process opens a pool for its share of the users
    problem = ""
    try:
        workload = PostgresWorkload.from_endpoint(hwbench_endpoint, settings, connections=per_worker)
        prepared = workload.prepare_sync()
    except HwbenchError as err:  # refused or misconfigured: the message names the setting
        problem = str(err)
    if problem:  # failed outside the except block, so the report shows one message and no traceback
        pytest.fail(problem, pytrace=False)
    hwbench.extra["workload"] = {"mix": dict(workload.mix), "scale": workload.scale,
                                 "accounts": workload.accounts, "isolation": workload.isolation,
                                 "schema": workload.schema, "server_version": prepared.server_version}
    hwbench.extra["seed_s"] = round(prepared.seed_s, 4)
    try:
        yield workload
    finally:
        workload.cleanup_sync()
        if asyncio.run(workload.schema_exists()):
            pytest.fail(f"schema {workload.schema} survived the cleanup", pytrace=False)


@pytest.mark.hwbench(service="postgres", sweep={"connections": [1, 4, 8]})
def test_postgres_oltp(hwbench: Any, postgres_workload: PostgresWorkload, connections: int) -> None:
    """``connections`` clients run the mix back to back (closed loop, like pgbench) for one trial."""
    settings = hwbench.workloads.postgres
    spec = closed_load(settings, connections, drain_timeout_s=postgres_workload.statement_timeout_s + 2.0)
    run = run_load_sync(spec, postgres_workload.open, workers=settings.workers)
    metrics = metrics_of(run, postgres_workload)
    metrics.record_into(hwbench)
    trial = summarize_run(metrics, run)
    trial["warmup"] = hwbench.is_warmup
    hwbench.extra.setdefault("trials", []).append(trial)
