"""S3 object storage: PUT, GET and mixed throughput, latency and GET first-byte latency.

Runs against the recipe's ``s3`` service (``pytest benchmarks/ --recipe recipes/s3.yaml``): MinIO, any S3
endpoint through the external backend, or — in CI — moto's server mode, a stand-in for MinIO that measures
the S3 client path (signing, HTTP, the network stack), not storage. Skipped with the reason when the recipe
has no ``s3`` service.

Sweeps (recipe ``sweep:`` overrides the defaults below): ``object_size`` (bytes), ``object_count`` (keys
cycled through), ``concurrency`` (requests in flight). Recipe ``settings:`` knobs, declared with their
defaults in ``S3Settings`` (``pytest_hwbench/recipe/workload_settings.py``) and checked when the recipe loads:

* ``s3_requests`` (measured requests per trial), ``s3_warmup_requests``, ``s3_read_fraction`` (GET share of
  the mixed test), ``s3_read_timeout_s``;
* ``s3_access_key`` / ``s3_secret_key`` — credentials, e.g. ``${AWS_ACCESS_KEY_ID}``; when absent the
  service's own ``access_key`` / ``secret_key`` are used. Never printed or stored in reports;
* ``s3_bucket`` — a bucket to use instead of the run's own ``hwbench-<run>``;
* ``allow_existing_data`` — use a bucket that already holds objects (only this run's objects are deleted).

Metrics: ``ops_s``, ``put_mb_s`` / ``get_mb_s`` (10⁶ B/s), ``put_latency_ms`` / ``get_latency_ms``
(send → last byte), ``get_ttfb_ms`` (send → first body byte), ``error_rate``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_hwbench.workloads.engine import LoadSpec
from pytest_hwbench.workloads.s3_client import (
    BucketGuard,
    S3Config,
    S3SetupError,
    S3Workload,
    bucket_name,
    run_s3,
)

SWEEP = {"object_size": [65536], "object_count": [32], "concurrency": [1, 4]}


class Buckets:
    """The module's bucket(s), created on first use and emptied + deleted when the module ends.

    Why module scope: a bucket per trial would put bucket creation (and GET preloading) into every trial;
    one per run is what the issue asks for. Under xdist each worker gets its own (``-gw0`` suffix), so two
    workers never see each other's objects as "someone else's data".
    """

    def __init__(self) -> None:
        self.guards: dict[tuple[str, str], BucketGuard] = {}

    def get(self, config: S3Config, bucket: str, allow_existing: bool) -> BucketGuard:
        key = (config.endpoint_url, bucket)
        guard = self.guards.get(key)
        if guard is None:
            guard = BucketGuard(config, bucket, allow_existing_data=allow_existing)
            try:
                guard.prepare()
            except S3SetupError as err:
                pytest.fail(f"S3 set-up failed: {err}", pytrace=False)
            self.guards[key] = guard
        return guard

    def cleanup(self) -> list[dict[str, Any]]:
        return [g.cleanup() for g in self.guards.values()]


@pytest.fixture(scope="module")
def s3_buckets() -> Iterator[Buckets]:
    buckets = Buckets()
    yield buckets
    for report in buckets.cleanup():
        if report["problems"]:
            print(f"pytest-hwbench: S3 cleanup of bucket {report['bucket']}: {report['problems']}")


def _config(hwbench: Any, endpoint: Any) -> S3Config:
    settings, extra = hwbench.workloads.s3, endpoint.extra
    if settings.access_key or settings.secret_key:
        key, secret = settings.access_key or "", settings.secret_key or ""
        where = "settings.s3_access_key / settings.s3_secret_key"
    else:
        key, secret = extra.get("access_key") or "", extra.get("secret_key") or ""
        where = f"services.{endpoint.name or 's3'}.access_key / services.{endpoint.name or 's3'}.secret_key"
    return S3Config(endpoint_url=str(extra.get("endpoint_url") or endpoint.url), access_key=str(key),
                    secret_key=str(secret), region=str(extra.get("region") or "us-east-1"),
                    credentials_field=where, read_timeout_s=settings.read_timeout_s)


def _run(hwbench: Any, endpoint: Any, services: Any, buckets: Buckets, op: str, object_size: int,
         object_count: int, concurrency: int) -> None:
    settings = hwbench.workloads.s3  # typed and checked when the recipe loaded
    config = _config(hwbench, endpoint)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    bucket = str(settings.bucket or endpoint.extra.get("bucket") or bucket_name(services.run_id, worker))
    guard = buckets.get(config, bucket, settings.allow_existing_data)
    workload = S3Workload(op=op, object_size=int(object_size), object_count=int(object_count),  # type: ignore[arg-type]
                          read_fraction=settings.read_fraction, key_prefix=f"{op}-{object_size}-{object_count}/")
    spec = LoadSpec.closed(int(concurrency), requests=settings.requests, warmup_requests=settings.warmup_requests)
    out = run_s3(config, guard, workload, spec)
    m = out.metrics
    hwbench.record("ops_s", m.ops_s, unit="op/s")
    if m.put_mb_s is not None:
        hwbench.record("put_mb_s", m.put_mb_s, unit="MB/s")
        hwbench.record("put_latency_ms", m.put_latency_ms, unit="ms")
    if m.get_mb_s is not None:
        hwbench.record("get_mb_s", m.get_mb_s, unit="MB/s")
        hwbench.record("get_latency_ms", m.get_latency_ms, unit="ms")
        hwbench.record("get_ttfb_ms", m.get_ttfb_ms, unit="ms")
    hwbench.record("error_rate", m.error_rate, unit="ratio", better="lower")
    hwbench.extra.update(server=endpoint.extra.get("server"), bucket=bucket, op=op,
                         errors=m.errors, error_details=m.error_details, attempted=m.attempted,
                         client_bound=out.result.self_check.client_bound)


@pytest.mark.hwbench(service="s3", sweep=SWEEP)
def test_s3_put(hwbench, hwbench_endpoint, hwbench_services, s3_buckets, object_size, object_count,
                concurrency) -> None:
    """PUT objects of ``object_size`` bytes, ``concurrency`` in flight."""
    _run(hwbench, hwbench_endpoint, hwbench_services, s3_buckets, "put", object_size, object_count, concurrency)


@pytest.mark.hwbench(service="s3", sweep=SWEEP)
def test_s3_get(hwbench, hwbench_endpoint, hwbench_services, s3_buckets, object_size, object_count,
                concurrency) -> None:
    """GET preloaded objects (the body streamed to its end); first-byte latency is the first body chunk."""
    _run(hwbench, hwbench_endpoint, hwbench_services, s3_buckets, "get", object_size, object_count, concurrency)


@pytest.mark.hwbench(service="s3", sweep=SWEEP)
def test_s3_mixed(hwbench, hwbench_endpoint, hwbench_services, s3_buckets, object_size, object_count,
                  concurrency) -> None:
    """GETs and PUTs interleaved (``s3_read_fraction`` GETs, a seeded reproducible mix)."""
    _run(hwbench, hwbench_endpoint, hwbench_services, s3_buckets, "mixed", object_size, object_count,
         concurrency)
