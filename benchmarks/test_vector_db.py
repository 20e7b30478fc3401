"""Vector databases (Chroma, Qdrant): batched inserts, top-k query throughput and latency, and recall@k.

Each trial creates the collection ``hwbench_<run>``, inserts seeded synthetic vectors in batches, asks
top-k queries, computes recall@k against exact numpy ground truth (cosine / l2 / ip, matching the
collection's distance), and drops the collection. Runs against the recipe's ``chroma`` or ``qdrant`` service
(``pytest benchmarks/ --recipe recipes/chroma.yaml`` / ``recipes/qdrant.yaml``); a test whose service the
recipe lacks is skipped with the reason.

Sweeps (recipe ``sweep:`` overrides these defaults): ``vector_count``, ``dim``, ``top_k``, ``concurrency``
(queries in flight). Recipe ``settings:`` knobs, declared with their defaults in ``VectorSettings``
(``pytest_hwbench/recipe/workload_settings.py``) and checked when the recipe loads: ``vector_queries``,
``vector_batch_size``, ``vector_metric`` (cosine | l2 | ip), ``vector_insert_concurrency``,
``vector_warmup_queries``, ``vector_timeout_s``, ``vector_seed``, ``qdrant_query_api`` (query | search),
``allow_existing_data`` (drop and re-create an existing ``hwbench_<run>`` collection instead of refusing).

Metrics: ``insert_vectors_s``, ``insert_batch_ms``, ``query_qps``, ``query_latency_ms``, ``recall_at_k``
(higher is better), ``insert_error_rate``, ``query_error_rate``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_hwbench.recipe.workload_settings import VectorSettings
from pytest_hwbench.workloads.vector_client import (
    ChromaConfig,
    QdrantConfig,
    VectorDataset,
    VectorSetupError,
    VectorTrialResult,
    VectorWorkload,
    collection_name,
    run_vector_trial,
)

SWEEP = {"vector_count": [2000], "dim": [64], "top_k": [10], "concurrency": [1, 4]}
_DATASETS: dict[VectorWorkload, VectorDataset] = {}


def _workload(settings: VectorSettings, vector_count: int, dim: int, top_k: int, concurrency: int) \
        -> VectorWorkload:
    return VectorWorkload(vectors=int(vector_count), dim=int(dim), k=int(top_k), concurrency=int(concurrency),
                          queries=settings.queries, batch_size=settings.batch_size, metric=settings.metric,
                          insert_concurrency=settings.insert_concurrency, warmup_queries=settings.warmup_queries,
                          seed=settings.seed)


def _dataset(workload: VectorWorkload) -> VectorDataset:
    """Data and exact ground truth depend only on size, dim, k, metric and seed: computed once per module."""
    key = VectorWorkload(vectors=workload.vectors, dim=workload.dim, queries=workload.queries, k=workload.k,
                         metric=workload.metric, seed=workload.seed)
    if key not in _DATASETS:
        _DATASETS[key] = VectorDataset.synthetic(workload)
    return _DATASETS[key]


def _record(hwbench: Any, result: VectorTrialResult) -> None:
    hwbench.record("insert_vectors_s", result.insert_vectors_s, unit="vec/s")
    hwbench.record("insert_batch_ms", result.insert_batch_ms, unit="ms")
    hwbench.record("query_qps", result.query_qps, unit="query/s")
    hwbench.record("query_latency_ms", result.query_latency_ms, unit="ms")
    if result.recall is not None:
        hwbench.record("recall_at_k", result.recall.value, unit="ratio", better="higher")
    hwbench.record("insert_error_rate", result.insert_error_rate, unit="ratio", better="lower")
    hwbench.record("query_error_rate", result.query_error_rate, unit="ratio", better="lower")
    hwbench.extra.update(result.to_dict())


def _run(hwbench: Any, services: Any, factory: Any, workload: VectorWorkload) -> None:
    try:
        result = run_vector_trial(factory, workload, _dataset(workload),
                                  allow_existing=hwbench.workloads.vector.allow_existing_data)
    except VectorSetupError as err:
        pytest.fail(f"vector database set-up failed: {err}", pytrace=False)
    _record(hwbench, result)


def _collection(services: Any) -> str:
    return collection_name(services.run_id, os.environ.get("PYTEST_XDIST_WORKER", ""))


@pytest.mark.hwbench(service="chroma", sweep=SWEEP)
def test_chroma_insert_query(hwbench, hwbench_endpoint, hwbench_services, vector_count, dim, top_k,
                             concurrency) -> None:
    """Chroma through its async HTTP client."""
    s = hwbench.workloads.vector  # typed and checked when the recipe loaded
    cfg = ChromaConfig(host=hwbench_endpoint.host, port=hwbench_endpoint.port, collection=_collection(hwbench_services),
                       ssl=hwbench_endpoint.url.startswith("https"), timeout_s=s.timeout_s)
    _run(hwbench, hwbench_services, cfg.open, _workload(s, vector_count, dim, top_k, concurrency))


@pytest.mark.hwbench(service="qdrant", sweep=SWEEP)
def test_qdrant_insert_query(hwbench, hwbench_endpoint, hwbench_services, vector_count, dim, top_k,
                             concurrency) -> None:
    """Qdrant through its REST API (aiohttp)."""
    s = hwbench.workloads.vector
    cfg = QdrantConfig(url=hwbench_endpoint.url, collection=_collection(hwbench_services),
                       api_key=hwbench_endpoint.extra.get("api_key") or None, timeout_s=s.timeout_s,
                       query_api=s.qdrant_query_api)
    _run(hwbench, hwbench_services, cfg.open, _workload(s, vector_count, dim, top_k, concurrency))
