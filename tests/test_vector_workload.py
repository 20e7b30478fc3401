"""Vector workloads: exact recall (numpy), Chroma for real (``chroma run`` through the process backend),
Qdrant's REST handling against a recorded-shape stand-in, and Qdrant for real when ``HWBENCH_QDRANT_URL``
points at a server.

Why Qdrant is an explicit, documented skip and not ``unavailable(...)``: no Qdrant binary or image can exist
on this project's CI machines (no registry), so CI's "unavailable is a failure" rule would make the suite
permanently red. Its request/response handling is still tested here, against
:class:`QdrantShapeStandIn` — a recorded-shape Qdrant stand-in for request/response parsing only.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_hwbench.services import ServiceSet
from pytest_hwbench.services.base import Endpoint
from pytest_hwbench.workloads.engine import LoadSpec
from pytest_hwbench.workloads.recall import (
    GroundTruth,
    RecallError,
    exact_topk,
    pairwise_distances,
    recall_at_k,
)
from pytest_hwbench.workloads.records import ErrorClass
from pytest_hwbench.workloads.vector_client import (
    ChromaConfig,
    QdrantConfig,
    QdrantStore,
    VectorDataset,
    VectorOpError,
    VectorSetupError,
    VectorWorkload,
    classify_chroma,
    collection_name,
    run_vector_trial,
)
from tests.service_helpers import need_binary, our_processes, spec

REPO = Path(__file__).resolve().parents[1]
QDRANT_SKIP = "set HWBENCH_QDRANT_URL=http://host:6333 to run the Qdrant tests against a real server"
CHROMA_HINT = "pip install chromadb (it provides `chroma run`)"


def _name() -> str:
    return collection_name(f"t{uuid.uuid4().hex[:10]}")


# == recall (numpy only) ================================================================================
def test_recall_by_hand() -> None:
    truth = GroundTruth(ids=np.array([[0, 1, 2], [3, 4, 5]]), distances=np.zeros((2, 3)), metric="l2", k=3,
                        n_vectors=10)
    r = recall_at_k([[0, 1, 9], [5, 4, 3]], truth)
    assert r.value == pytest.approx((2 / 3 + 1) / 2) and list(r.per_query) == pytest.approx([2 / 3, 1.0])
    assert recall_at_k([[0, 0, 0], [3, 4, 5]], truth).per_query[0] == pytest.approx(1 / 3)  # duplicates once
    assert recall_at_k([[0, 1, 2, 7], [3]], truth, k=2).per_query.tolist() == [1.0, 0.5]


def test_recall_on_empty_and_failed_answers() -> None:
    truth = GroundTruth(ids=np.array([[0, 1], [2, 3], [4, 5]]), distances=np.zeros((3, 2)), metric="l2", k=2,
                        n_vectors=6)
    # an empty answer is a wrong answer: 0 for that query, counted and flagged
    r = recall_at_k([[0, 1], [], None], truth)
    assert (r.value, r.answered, r.failed, r.empty_results, r.all_empty) == (0.5, 2, 1, 1, False)
    r = recall_at_k([[], [], []], truth)
    assert r.value == 0.0 and r.all_empty and r.empty_results == 3
    assert r.to_dict()["all_empty"] is True
    # nothing answered at all: recall is undefined, and saying 0 would claim a measurement
    with pytest.raises(RecallError, match="undefined: none of the 3 queries was answered"):
        recall_at_k([None, None, None], truth)
    with pytest.raises(RecallError, match="2 answers for 3 ground-truth queries"):
        recall_at_k([[0], [1]], truth)


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_exact_topk_matches_brute_force_in_any_block_size(metric: str) -> None:
    rng = np.random.default_rng(1)
    x, q = rng.standard_normal((997, 12)), rng.standard_normal((37, 12))
    d = pairwise_distances(q, x, metric)
    ref = np.argsort(d, axis=1, kind="stable")[:, :7]
    for budget in (50, 1000, 1 << 22):  # tiny blocks exercise the running merge across vector blocks
        gt = exact_topk(x, q, 7, metric, budget_elems=budget)
        assert (gt.ids == ref).all()
        assert np.allclose(gt.distances, np.take_along_axis(d, ref, axis=1))
    # the geometry of each metric, by hand
    axes = np.eye(3)
    qv = np.array([[2.0, 0.1, 0.0]])
    assert exact_topk(axes, qv, 1, "cosine").ids[0, 0] == 0
    assert exact_topk(np.array([[10.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0]]), 1, "l2").ids[0, 0] == 1
    assert exact_topk(np.array([[10.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0]]), 1, "ip").ids[0, 0] == 0


def test_exact_topk_bounded_memory_and_edges() -> None:
    import tracemalloc

    rng = np.random.default_rng(2)
    x = rng.standard_normal((20000, 32), dtype=np.float32)
    q = rng.standard_normal((500, 32), dtype=np.float32)
    tracemalloc.start()
    gt = exact_topk(x, q, 10, "l2", budget_elems=1 << 18)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert gt.ids.shape == (500, 10) and peak < 16e6, f"peak {peak / 1e6:.1f} MB: the 40 MB matrix was built"
    assert exact_topk(x[:3], q[:2], 10, "l2").k == 3  # k capped at the collection size
    with pytest.raises(RecallError, match="empty collection"):
        exact_topk(np.zeros((0, 4)), np.ones((1, 4)), 3)


def test_recall_counts_ties_with_the_kth_neighbour() -> None:
    vectors = np.eye(5)
    query = np.array([[1.0, 0.0, 0.0, 0.0, 0.0]])  # nearest: 0, then four vectors at the same distance
    truth = exact_topk(vectors, query, 2, "l2")
    assert truth.ids[0].tolist() == [0, 1]  # ties broken by id, deterministically
    assert recall_at_k([[0, 4]], truth, vectors=vectors, queries=query).value == 1.0  # 4 ties with 1
    assert recall_at_k([[0, 4]], truth).value == 0.5  # without the data only ids can be compared


# == the axis dataset: recall computable by hand =========================================================
def axis_dataset() -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """10 unit vectors on the axes; query i = e_i + 0.5 e_(i+1) + 0.25 e_(i+2): its 3 nearest neighbours
    are i, i+1, i+2 (mod 10) in that order, for cosine, l2 and ip alike."""
    vectors = np.eye(10, dtype=np.float32)
    queries = np.zeros((10, 10), dtype=np.float32)
    expected = []
    for i in range(10):
        for j, w in enumerate((1.0, 0.5, 0.25)):
            queries[i, (i + j) % 10] = w
        expected.append([i, (i + 1) % 10, (i + 2) % 10])
    return vectors, queries, expected


# == Chroma for real ====================================================================================
@pytest.fixture(scope="module")
def chroma_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceSet]:
    need_binary("chroma", CHROMA_HINT)
    root = tmp_path_factory.mktemp("chroma")
    with ServiceSet(log_dir=root / "logs", state_dir=root / "state", run_id=f"vt{uuid.uuid4().hex[:8]}",
                    source="tests/test_vector_workload.py", handle_signals=False) as s:
        yield s


@pytest.fixture(scope="module")
def chroma(chroma_services: ServiceSet) -> Endpoint:
    return chroma_services.start(spec("chroma")).endpoint


def _chroma_cfg(ep: Endpoint, name: str | None = None, **kw: Any) -> ChromaConfig:
    return ChromaConfig(host=ep.host, port=ep.port, collection=name or _name(), **kw)


def _collections(ep: Endpoint) -> list[str]:
    import chromadb

    return [c.name for c in chromadb.HttpClient(host=ep.host, port=ep.port).list_collections()]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_chroma_recall_equals_the_hand_computed_value(chroma: Endpoint, metric: str) -> None:
    vectors, queries, expected = axis_dataset()
    wl = VectorWorkload(vectors=10, dim=10, queries=10, k=3, metric=metric, batch_size=4)
    ds = VectorDataset(vectors=vectors, queries=queries, metric=metric, k=3)
    assert ds.truth.ids.tolist() == expected  # the exact ground truth is the hand-made one
    cfg = _chroma_cfg(chroma)
    result = run_vector_trial(cfg.open, wl, ds)
    assert result.answers == expected, "Chroma's top-3 differs from the hand-computed neighbours"
    assert result.recall is not None and result.recall.value == 1.0 and result.recall.answered == 10
    # recall of a hand-degraded answer set is exactly the hand value too: 2 of 3 right in 5 of 10 queries
    degraded = [a if i % 2 else [a[0], a[1], (a[2] + 5) % 10] for i, a in enumerate(result.answers)]
    assert recall_at_k(degraded, ds.truth, vectors=vectors, queries=queries).value == pytest.approx(5 / 6)
    assert result.insert_error_rate == 0 and result.query_error_rate == 0
    assert result.insert_batch_ms.size == 3 and result.query_latency_ms.size == 10  # batches 4+4+2
    assert result.cleanup["dropped"] and cfg.collection not in _collections(chroma)


def test_chroma_benchmark_metrics(chroma: Endpoint) -> None:
    wl = VectorWorkload(vectors=600, dim=16, queries=40, k=5, metric="ip", batch_size=200, concurrency=3,
                        warmup_queries=4)
    result = run_vector_trial(_chroma_cfg(chroma).open, wl)
    assert result.insert_vectors_s > 0 and result.query_qps > 0
    assert result.insert_batch_ms.size == 3 and result.query_latency_ms.size == 40  # warm-up not counted
    assert result.recall is not None and result.recall.value >= 0.9 and result.recall.queries == 40
    d = result.to_dict()
    json.dumps(d)
    assert d["errors"] == {"insert": {}, "query": {}} and d["cleanup"]["dropped"]


def test_chroma_existing_collection_refused_unless_allowed(chroma: Endpoint) -> None:
    import chromadb

    name = _name()
    chromadb.HttpClient(host=chroma.host, port=chroma.port).create_collection(name)
    wl = VectorWorkload(vectors=20, dim=4, queries=5, k=2)
    with pytest.raises(VectorSetupError, match=f"collection '{name}' already exists.*allow_existing_data: true"):
        run_vector_trial(_chroma_cfg(chroma, name).open, wl)
    assert name in _collections(chroma), "a refused run must not touch the collection"
    result = run_vector_trial(_chroma_cfg(chroma, name).open, wl, allow_existing=True)
    assert result.recall is not None and result.cleanup["dropped"] and name not in _collections(chroma)


def test_chroma_collection_missing_mid_run_is_classified(chroma: Endpoint) -> None:
    import chromadb

    cfg = _chroma_cfg(chroma)

    def drop_before_queries(phase: str) -> None:
        if phase == "query":
            chromadb.HttpClient(host=chroma.host, port=chroma.port).delete_collection(cfg.collection)

    wl = VectorWorkload(vectors=50, dim=8, queries=10, k=3)
    result = run_vector_trial(cfg.open, wl, on_phase=drop_before_queries)
    assert result.insert_error_rate == 0 and result.insert_batch_ms.size == 1  # the insert phase is kept
    assert result.query_error_rate == 1.0 and result.errors["query"] == {"http_4xx": 10}
    assert "404" in result.error_details["query"]["http_4xx"]
    assert result.recall is None and "undefined" in (result.recall_error or "")
    assert result.cleanup == {"collection": cfg.collection, "dropped": False, "problem": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_chroma_server_restarted_mid_run_keeps_partial_results(tmp_path: Path) -> None:
    need_binary("chroma", CHROMA_HINT)
    from pytest_hwbench.services.manager import start_service

    port = _free_port()
    kw: dict[str, Any] = {"run_id": f"vr{uuid.uuid4().hex[:8]}", "log_dir": tmp_path / "logs",
                          "state_dir": tmp_path / "state"}
    first = start_service(spec("chroma", name="c1", port=port), **kw)
    later: list[Any] = []
    cfg = _chroma_cfg(first.endpoint, timeout_s=10)

    class Faulty:
        """The real store, with the server crashed before query 10 and restarted (empty) before query 20."""

        def __init__(self, inner: Any) -> None:
            self.inner, self.n = inner, 0
            self.kind, self.collection = inner.kind, inner.collection

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def query(self, vector: np.ndarray, k: int) -> list[int]:
            self.n += 1
            if self.n == 10:
                first.proc.kill()
                first.proc.wait(10)
            if self.n == 20:
                later.append(await asyncio.to_thread(start_service, spec("chroma", name="c2", port=port), **kw))
            return list(await self.inner.query(vector, k))

    async def factory() -> Any:
        return Faulty(await cfg.open())

    try:
        wl = VectorWorkload(vectors=100, dim=8, queries=30, k=3)
        result = run_vector_trial(factory, wl)
    finally:
        first.stop()
        for svc in later:
            svc.stop()
    assert our_processes(kw["run_id"]) == [], "a restarted server outlived the test"
    q = result.query
    assert q is not None
    errs = [r.error for r in q.measured()]
    assert errs[:9] == [None] * 9, "results before the crash must be kept"
    assert set(errs[9:19]) == {ErrorClass.CONNECTION}
    assert set(errs[19:]) == {ErrorClass.HTTP_4XX}  # the restarted server has no such collection
    # Failures stay in the latency distribution as censored values (never below the slowest success).
    lat = result.query_latency_ms
    assert lat.size == 30 and result.errors["query"] == {"http_4xx": 11, "connection": 10}
    assert (lat[9:] >= lat[:9].max()).all()
    assert result.recall is not None and result.recall.answered == 9 and result.recall.failed == 21
    assert result.cleanup["dropped"] is False


def test_chroma_timeouts_and_unreachable_server_are_setup_errors() -> None:
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)  # accepts (in the kernel) and never answers
    try:
        cfg = ChromaConfig(host="127.0.0.1", port=hole.getsockname()[1], collection=_name(), timeout_s=0.5)
        t0 = time.perf_counter()
        with pytest.raises(VectorSetupError, match=r"cannot connect.*timeout"):
            run_vector_trial(cfg.open, VectorWorkload(vectors=5, dim=2, queries=1, k=1))
        assert time.perf_counter() - t0 < 10
    finally:
        hole.close()
    cfg = ChromaConfig(host="127.0.0.1", port=_free_port(), collection=_name(), timeout_s=5)
    with pytest.raises(VectorSetupError, match=r"cannot connect.*connection"):
        run_vector_trial(cfg.open, VectorWorkload(vectors=5, dim=2, queries=1, k=1))


def test_chroma_error_classification() -> None:
    import httpx
    from chromadb.errors import InternalError, NotFoundError

    assert classify_chroma(NotFoundError("gone")).error_class == ErrorClass.HTTP_4XX
    assert classify_chroma(NotFoundError("gone")).status == 404
    assert classify_chroma(InternalError("boom")).error_class == ErrorClass.HTTP_5XX
    assert classify_chroma(asyncio.TimeoutError()).error_class == ErrorClass.TIMEOUT
    assert classify_chroma(httpx.ReadTimeout("slow")).error_class == ErrorClass.TIMEOUT
    assert classify_chroma(httpx.ConnectError("refused")).error_class == ErrorClass.CONNECTION
    assert classify_chroma(httpx.RemoteProtocolError("closed")).error_class == ErrorClass.CONNECTION
    assert classify_chroma(Exception('{"error":"x"}')).error_class == ErrorClass.SERVER
    assert classify_chroma(RuntimeError("bug")).error_class == ErrorClass.CLIENT


def test_chroma_recipe_runs_the_sweep_and_writes_results(pytester: pytest.Pytester) -> None:
    need_binary("chroma", CHROMA_HINT)
    pytester.makepyfile(test_vector_db=(REPO / "benchmarks" / "test_vector_db.py").read_text())
    shutil.copy(REPO / "recipes" / "chroma.yaml", pytester.path / "chroma.yaml")
    res = pytester.runpytest_subprocess("--recipe", "chroma.yaml", "--no-hwbench-mlflow", "--hwbench-repetitions",
                                        "1", "-p", "no:cacheprovider", "-rs")
    res.assert_outcomes(passed=2, skipped=2)  # the Qdrant tests: the recipe has no qdrant service
    (run_dir,) = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    chroma_tests = [t for t in results["tests"] if t["name"].startswith("test_chroma")]
    assert len(chroma_tests) == 2 and {t["params"]["concurrency"] for t in chroma_tests} == {1, 4}
    for t in chroma_tests:
        assert {"insert_vectors_s", "insert_batch_ms", "query_qps", "query_latency_ms", "recall_at_k",
                "query_error_rate"} <= set(t["metrics"])
        assert t["metrics"]["query_latency_ms"]["summary"]["count"] == 100
        assert t["metrics"]["recall_at_k"]["summary"]["min"] >= 0.9
        assert t["extra"]["cleanup"]["dropped"] and t["verdict"] == "PASS"
    assert json.loads((run_dir / "run.json").read_text())["services"]["chroma"]["backend"] == "process"


# == Qdrant: REST handling against a recorded-shape stand-in =============================================
class QdrantShapeStandIn:
    """A recorded-shape Qdrant stand-in for request/response parsing only.

    It answers the REST paths the client uses with the request and response shapes of Qdrant's API
    reference (``{"result": ..., "status": "ok", "time": ...}``; errors as ``{"status": {"error": ...}}``
    with Qdrant's status codes and messages), searches by brute force, records every request, and can
    inject faults. It is not Qdrant — no index, no persistence — and nothing it serves is a measurement.
    """

    def __init__(self, api_key: str | None = None, has_exists: bool = True) -> None:
        self.api_key = api_key
        self.has_exists = has_exists
        self.collections: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.fault: Callable[[Any], Any] | None = None
        self.url = ""

    @staticmethod
    def ok(result: Any) -> Any:
        from aiohttp import web

        return web.json_response({"result": result, "status": "ok", "time": 0.0001})

    @staticmethod
    def err(status: int, message: str) -> Any:
        from aiohttp import web

        return web.json_response({"status": {"error": message}, "time": 0.0}, status=status)

    def app(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def record(request: Any, handler: Any) -> Any:
            body = await request.json() if request.can_read_body else None
            self.requests.append((request.method, request.path, dict(request.query), body))
            if self.api_key is not None:
                given = request.headers.get("api-key")
                if given is None:
                    return self.err(401, "Must provide an API key or an Authorization bearer token")
                if given != self.api_key:
                    return self.err(403, "Invalid API key or JWT")
            if self.fault is not None:
                out = await self.fault(request)
                if out is not None:
                    return out
            return await handler(request)

        def coll(request: Any) -> tuple[str, dict[str, Any] | None]:
            name = request.match_info["name"]
            return name, self.collections.get(name)

        def missing(name: str) -> Any:
            return self.err(404, f"Not found: Collection `{name}` doesn't exist!")

        async def exists(request: Any) -> Any:
            if not self.has_exists:
                return web.Response(status=404, text="")
            _, c = coll(request)
            return self.ok({"exists": c is not None})

        async def info(request: Any) -> Any:
            name, c = coll(request)
            if c is None:
                return missing(name)
            return self.ok({"status": "green", "points_count": len(c["ids"]),
                            "config": {"params": {"vectors": {"size": c["dim"], "distance": c["distance"]}}}})

        async def create(request: Any) -> Any:
            name, c = coll(request)
            if c is not None:
                return self.err(409, f"Wrong input: Collection `{name}` already exists!")
            v = (await request.json())["vectors"]
            self.collections[name] = {"dim": v["size"], "distance": v["distance"], "ids": [], "vecs": []}
            return self.ok(True)

        async def delete(request: Any) -> Any:
            name, _ = coll(request)
            return self.ok(self.collections.pop(name, None) is not None)

        async def upsert(request: Any) -> Any:
            name, c = coll(request)
            if c is None:
                return missing(name)
            batch = (await request.json())["batch"]
            for pid, vec in zip(batch["ids"], batch["vectors"], strict=True):
                if len(vec) != c["dim"]:
                    return self.err(400, f"Wrong input: Vector dimension error: expected dim: {c['dim']}, "
                                         f"got {len(vec)}")
                c["ids"].append(pid)
                c["vecs"].append(vec)
            return self.ok({"operation_id": len(self.requests), "status": "completed"})

        def search(c: dict[str, Any], vec: list[float], limit: int) -> list[dict[str, Any]]:
            x, q = np.asarray(c["vecs"], dtype=np.float64), np.asarray(vec, dtype=np.float64)
            if c["distance"] == "Cosine":
                score = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
                order = np.argsort(-score, kind="stable")
            elif c["distance"] == "Dot":
                score = x @ q
                order = np.argsort(-score, kind="stable")
            else:
                score = np.linalg.norm(x - q, axis=1)
                order = np.argsort(score, kind="stable")
            return [{"id": c["ids"][i], "version": 0, "score": float(score[i])} for i in order[:limit]]

        async def query(request: Any) -> Any:
            name, c = coll(request)
            if c is None:
                return missing(name)
            body = await request.json()
            return self.ok({"points": search(c, body["query"], body["limit"])})

        async def legacy_search(request: Any) -> Any:
            name, c = coll(request)
            if c is None:
                return missing(name)
            body = await request.json()
            return self.ok(search(c, body["vector"], body["limit"]))

        async def count(request: Any) -> Any:
            name, c = coll(request)
            return missing(name) if c is None else self.ok({"count": len(c["ids"])})

        async def readyz(request: Any) -> Any:
            return web.Response(text="all shards are ready")

        app = web.Application(middlewares=[record])
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/collections/{name}/exists", exists)
        app.router.add_get("/collections/{name}", info)
        app.router.add_put("/collections/{name}", create)
        app.router.add_delete("/collections/{name}", delete)
        app.router.add_put("/collections/{name}/points", upsert)
        app.router.add_post("/collections/{name}/points/query", query)
        app.router.add_post("/collections/{name}/points/search", legacy_search)
        app.router.add_post("/collections/{name}/points/count", count)
        return app


@pytest.fixture
def standin() -> Iterator[QdrantShapeStandIn]:
    """The stand-in served from its own thread and loop (the client under test runs its own loop)."""
    from aiohttp import web

    server = QdrantShapeStandIn()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        runner = web.AppRunner(server.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        server.url = f"http://127.0.0.1:{port}"
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_qdrant_trial_request_and_response_shapes(standin: QdrantShapeStandIn) -> None:
    standin.api_key = "qk-secret"
    name = _name()
    cfg = QdrantConfig(url=standin.url, collection=name, api_key="qk-secret")
    assert "qk-secret" not in repr(cfg)
    vectors, queries, expected = axis_dataset()
    ds = VectorDataset(vectors=vectors, queries=queries, metric="cosine", k=3)
    result = run_vector_trial(cfg.open, VectorWorkload(vectors=10, dim=10, queries=10, k=3, batch_size=4), ds)
    assert result.answers == expected and result.recall is not None and result.recall.value == 1.0
    assert result.cleanup["dropped"] and name not in standin.collections

    reqs = standin.requests
    assert reqs[0][:2] == ("GET", f"/collections/{name}/exists")
    assert reqs[1] == ("PUT", f"/collections/{name}", {}, {"vectors": {"size": 10, "distance": "Cosine"}})
    upserts = [r for r in reqs if r[0] == "PUT" and r[1].endswith("/points")]
    assert [len(r[3]["batch"]["ids"]) for r in upserts] == [4, 4, 2] and all(r[2] == {"wait": "true"} for r in upserts)
    assert upserts[0][3]["batch"] == {"ids": [0, 1, 2, 3], "vectors": vectors[:4].tolist()}
    q = [r for r in reqs if r[1].endswith("/points/query")]
    assert len(q) == 10 and q[0][3] == {"query": queries[0].tolist(), "limit": 3, "with_payload": False,
                                        "with_vector": False}
    assert reqs[-1][:2] == ("DELETE", f"/collections/{name}")


@pytest.mark.parametrize("metric,distance", [("l2", "Euclid"), ("ip", "Dot")])
def test_qdrant_legacy_search_api_and_distances(standin: QdrantShapeStandIn, metric: str, distance: str) -> None:
    standin.has_exists = False  # a server older than 1.8: existence from GET /collections/{name}
    cfg = QdrantConfig(url=standin.url, collection=_name(), query_api="search")
    wl = VectorWorkload(vectors=300, dim=8, queries=20, k=5, metric=metric, batch_size=100, concurrency=2)
    result = run_vector_trial(cfg.open, wl)
    assert result.recall is not None and result.recall.value == 1.0  # brute force on both sides
    creates = [r for r in standin.requests if r[0] == "PUT" and r[3] and "vectors" in r[3] and "batch" not in r[3]]
    assert creates[0][3]["vectors"]["distance"] == distance
    assert any(r[1].endswith("/points/search") for r in standin.requests)
    assert ("GET", f"/collections/{cfg.collection}", {}, None) in standin.requests


def _store_call(cfg: QdrantConfig, fn: Callable[[QdrantStore], Any]) -> Any:
    async def main() -> Any:
        store = await cfg.open()
        try:
            return await fn(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def test_qdrant_error_mapping(standin: QdrantShapeStandIn) -> None:
    from aiohttp import web

    cfg = QdrantConfig(url=standin.url, collection="hwbench_missing", timeout_s=0.3)

    def fails(fn: Callable[[QdrantStore], Any]) -> VectorOpError:
        with pytest.raises(VectorOpError) as info:
            _store_call(cfg, fn)
        return info.value

    e = fails(lambda s: s.query(np.zeros(4), 3))
    assert (e.error_class, e.status) == (ErrorClass.HTTP_4XX, 404)
    assert "Not found: Collection `hwbench_missing` doesn't exist!" in e.detail
    assert _store_call(cfg, lambda s: s.exists()) is False and _store_call(cfg, lambda s: s.drop()) is False

    _store_call(cfg, lambda s: s.create(4, "cosine"))
    e = fails(lambda s: s.insert(np.array([1]), np.zeros((1, 3))))
    assert e.error_class == ErrorClass.HTTP_4XX and "expected dim: 4, got 3" in e.detail
    e = fails(lambda s: s.create(4, "cosine"))
    assert e.status == 409 and "already exists" in e.detail

    def fault(kind: str) -> Callable[[Any], Any]:
        async def inject(request: Any) -> Any:
            if kind == "500":
                return QdrantShapeStandIn.err(500, "Service internal error: boom")
            if kind == "html":
                return web.Response(status=200, text="<html>proxy</html>")
            if kind == "no-result":
                return web.json_response({"status": "ok", "time": 0})
            if kind == "in-band":
                return web.json_response({"result": None, "status": {"error": "in-band failure"}})
            if kind == "shape":
                return QdrantShapeStandIn.ok({"points": [{"score": 1.0}]})
            await asyncio.sleep(1.2)  # "slow": longer than the client's timeout
            return None

        return inject

    expected = {"500": ErrorClass.HTTP_5XX, "html": ErrorClass.MALFORMED, "no-result": ErrorClass.MALFORMED,
                "in-band": ErrorClass.SERVER, "shape": ErrorClass.MALFORMED, "slow": ErrorClass.TIMEOUT}
    for kind, cls in expected.items():
        standin.fault = fault(kind)
        t0 = time.perf_counter()
        e = fails(lambda s: s.query(np.zeros(4), 3))
        assert e.error_class == cls, (kind, e)
        assert time.perf_counter() - t0 < 1.1
    standin.fault = None
    refused = QdrantConfig(url=f"http://127.0.0.1:{_free_port()}", collection="x")
    with pytest.raises(VectorOpError) as info:
        _store_call(refused, lambda s: s.count())
    assert info.value.error_class == ErrorClass.CONNECTION


def test_qdrant_setup_failures(standin: QdrantShapeStandIn) -> None:
    wl = VectorWorkload(vectors=10, dim=4, queries=2, k=2)
    standin.api_key = "right"
    with pytest.raises(VectorSetupError, match=r"cannot check collection.*HTTP 403: Invalid API key"):
        run_vector_trial(QdrantConfig(url=standin.url, collection=_name(), api_key="wrong").open, wl)
    with pytest.raises(VectorSetupError, match="HTTP 401: Must provide an API key"):
        run_vector_trial(QdrantConfig(url=standin.url, collection=_name()).open, wl)
    name = _name()
    cfg = QdrantConfig(url=standin.url, collection=name, api_key="right")
    _store_call(cfg, lambda s: s.create(4, "l2"))
    with pytest.raises(VectorSetupError, match="already exists; refusing"):
        run_vector_trial(cfg.open, wl)
    assert name in standin.collections
    result = run_vector_trial(cfg.open, wl, allow_existing=True)
    assert result.recall is not None and result.recall.value == 1.0 and name not in standin.collections


def test_qdrant_collection_missing_and_timeouts_mid_run(standin: QdrantShapeStandIn) -> None:
    cfg = QdrantConfig(url=standin.url, collection=_name(), timeout_s=0.5)
    calls = {"n": 0}

    async def flaky(request: Any) -> Any:
        if request.path.endswith("/points/query"):
            calls["n"] += 1
            if calls["n"] in (3, 4):
                await asyncio.sleep(1.0)
            if calls["n"] == 6:
                standin.collections.pop(cfg.collection, None)
        return None

    standin.fault = flaky
    wl = VectorWorkload(vectors=40, dim=4, queries=10, k=2)
    result = run_vector_trial(cfg.open, wl, query_spec=LoadSpec.closed(1, requests=10))
    errs = [r.error for r in result.query.measured()] if result.query else []
    assert errs == [None, None, "timeout", "timeout", None] + ["http_4xx"] * 5
    assert result.recall is not None and result.recall.answered == 3 and result.recall.value == 1.0
    assert result.cleanup["dropped"] is False


# == Qdrant for real (only with HWBENCH_QDRANT_URL) ======================================================
@pytest.fixture
def qdrant_url() -> str:
    url = os.environ.get("HWBENCH_QDRANT_URL")
    if not url:
        pytest.skip(QDRANT_SKIP)  # documented exception to `unavailable`: see the module docstring
    return url.rstrip("/")


def test_qdrant_real_server_trial(qdrant_url: str) -> None:
    cfg = QdrantConfig(url=qdrant_url, collection=_name(), api_key=os.environ.get("QDRANT_API_KEY") or None)
    vectors, queries, expected = axis_dataset()
    ds = VectorDataset(vectors=vectors, queries=queries, metric="cosine", k=3)
    result = run_vector_trial(cfg.open, VectorWorkload(vectors=10, dim=10, queries=10, k=3, batch_size=4), ds)
    assert result.answers == expected and result.recall is not None and result.recall.value == 1.0
    big = run_vector_trial(QdrantConfig(url=qdrant_url, collection=_name(), api_key=cfg.api_key).open,
                           VectorWorkload(vectors=2000, dim=32, queries=50, k=10, concurrency=4))
    assert big.recall is not None and big.recall.value >= 0.9 and big.query_error_rate == 0
    assert big.cleanup["dropped"]


def test_qdrant_real_server_missing_collection(qdrant_url: str) -> None:
    cfg = QdrantConfig(url=qdrant_url, collection=_name(), api_key=os.environ.get("QDRANT_API_KEY") or None)
    with pytest.raises(VectorOpError) as info:
        _store_call(cfg, lambda s: s.query(np.zeros(4), 3))
    assert info.value.error_class == ErrorClass.HTTP_4XX and info.value.status == 404
