"""Round-trip latency of the data services a recipe provides (the smallest useful probe of each).

Skipped with the reason when the recipe provides no such service (e.g. the default ``recipes/local.yaml``);
``--recipe recipes/redis.yaml`` or ``recipes/postgres.yaml`` start the real server for the session.
"""

from __future__ import annotations

import time

import pytest

ROUND_TRIPS = 200


@pytest.mark.hwbench(service="redis")
def test_redis_ping(hwbench, hwbench_endpoint) -> None:
    """PING round trips on one connection: client + loopback + server dispatch, in microseconds."""
    import redis

    client = redis.Redis(host=hwbench_endpoint.host, port=hwbench_endpoint.port, socket_timeout=5)
    try:
        client.ping()
        samples = []
        for _ in range(ROUND_TRIPS):
            t0 = time.perf_counter_ns()
            client.ping()
            samples.append((time.perf_counter_ns() - t0) / 1e3)
    finally:
        client.close()
    hwbench.record("ping_us", samples, unit="us")
    hwbench.extra["endpoint_port"] = hwbench_endpoint.port


@pytest.mark.hwbench(service="postgres")
def test_postgres_select1(hwbench, hwbench_endpoint) -> None:
    """``SELECT 1`` round trips on one connection (protocol + parser + executor), in microseconds."""
    import psycopg

    with psycopg.connect(hwbench_endpoint.extra["dsn"], connect_timeout=10, autocommit=True) as conn:
        conn.execute("SELECT 1").fetchone()
        samples = []
        for _ in range(ROUND_TRIPS):
            t0 = time.perf_counter_ns()
            conn.execute("SELECT 1").fetchone()
            samples.append((time.perf_counter_ns() - t0) / 1e3)
    hwbench.record("select1_us", samples, unit="us")
