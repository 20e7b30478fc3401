"""Vector databases for the load engine: Qdrant over its REST API (aiohttp) and Chroma through its async client.

One benchmark trial (:func:`run_vector_trial`) does what an application does and times each part apart:

1. create the collection ``hwbench_<run>`` with the distance asked for (an existing collection of that name
   is refused unless ``allow_existing`` — then it is dropped and re-created: the name is the run's own);
2. insert seeded synthetic vectors in batches through the engine (``insert_concurrency`` batches in
   flight) → ``insert_vectors_s`` (vectors in successful batches / window) and ``insert_batch_ms``;
3. top-k queries through the engine (``concurrency`` in flight) → ``query_qps`` and ``query_latency_ms``;
4. recall@k of every answered query against exact numpy ground truth (``recall``) → ``recall_at_k``;
5. drop the collection (always, also after a failure; a failed drop is reported, never raised over the
   trial's own error).

Why REST + aiohttp for Qdrant rather than ``qdrant-client``: it is not a dependency, and the documented REST
API is stable across versions; the request and response shapes used here are exactly those of the API
reference (``PUT /collections/{c}``, ``PUT /collections/{c}/points?wait=true`` with a ``batch`` body,
``POST /collections/{c}/points/query`` or the older ``/points/search``, ``DELETE /collections/{c}``).
Inserts wait for the write to be applied (``wait=true``), so insert throughput is "searchable vectors per
second", not "accepted into a queue". Why Chroma's own async client: its HTTP API is versioned with the
package and the client hides tenant/database routing; its HTTP layer (httpx) has no timeout by default, so
every call here is bounded with ``asyncio.wait_for``.

Every failed operation of the timed phases is a classified record (``records.ErrorClass``): HTTP 4xx/5xx
(a missing collection is the server's 404), timeouts, refused or reset connections, malformed answers.
Set-up failures (cannot connect, collection exists, create refused) raise :class:`VectorSetupError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.workloads.engine import LoadSpec, RunResult, run_load
from pytest_hwbench.workloads.loop import frozen_heap, new_event_loop, precise_timers
from pytest_hwbench.workloads.recall import (
    METRICS,
    GroundTruth,
    RecallError,
    RecallResult,
    exact_topk,
    recall_at_k,
)
from pytest_hwbench.workloads.records import ERROR_CLASSES, ErrorClass, RequestRecord, censored_ms

_perf = time.perf_counter_ns

#: Our metric names → each database's distance names (same geometry; see ``recall``).
QDRANT_DISTANCE = {"cosine": "Cosine", "l2": "Euclid", "ip": "Dot"}
CHROMA_SPACE = {"cosine": "cosine", "l2": "l2", "ip": "ip"}


class VectorSetupError(HwbenchError):
    """The vector benchmark cannot start or must not: unreachable server, a collection it must not touch."""


class VectorOpError(Exception):
    """One failed operation, already classified (what the timed phases turn into a failed record)."""

    def __init__(self, error_class: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{error_class}: {detail}")
        self.error_class = error_class
        self.detail = detail
        self.status = status


def collection_name(run_id: str, suffix: str = "") -> str:
    """``hwbench_<run>[_<suffix>]`` with only letters, digits and '_' (valid for Qdrant and Chroma)."""
    raw = "_".join(p for p in ("hwbench", run_id, suffix) if p)
    name = "".join(c if c.isalnum() else "_" for c in raw)
    return name[:60].rstrip("_")


class VectorStore(Protocol):
    """One collection on one server, as the trial drives it. Operations raise :class:`VectorOpError`."""

    kind: str
    collection: str

    async def exists(self) -> bool: ...

    async def create(self, dim: int, metric: str) -> None: ...

    async def drop(self) -> bool: ...

    async def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    async def query(self, vector: np.ndarray, k: int) -> list[int]: ...

    async def count(self) -> int: ...

    async def aclose(self) -> None: ...


# -- Qdrant (REST) --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QdrantConfig:
    """How to reach Qdrant's REST API. ``api_key`` goes into the ``api-key`` header and nowhere else.

    ``query_api``: ``"query"`` (``/points/query``, Qdrant >= 1.10, the current API) or ``"search"``
    (``/points/search``, older servers).
    """

    url: str
    collection: str
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    max_connections: int = 64
    query_api: str = "query"

    async def open(self) -> QdrantStore:
        return QdrantStore(self)


def _qdrant_error(status: int, body: bytes) -> VectorOpError:
    """Qdrant's error answer ``{"status": {"error": "..."}}`` (or any body) → a classified error."""
    text = body[:2000].decode("utf-8", "replace")
    detail = text.strip()[:300]
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        doc = json.loads(text)
        st = doc.get("status")
        if isinstance(st, Mapping) and st.get("error"):
            detail = str(st["error"])[:300]
    cls = ErrorClass.HTTP_4XX if status < 500 else ErrorClass.HTTP_5XX
    return VectorOpError(cls, f"HTTP {status}: {detail}", status)


class QdrantStore:
    """A Qdrant collection over REST with one pooled aiohttp session."""

    kind = "qdrant"

    def __init__(self, config: QdrantConfig) -> None:
        import aiohttp

        self.config = config
        self.collection = config.collection
        headers = {"content-type": "application/json"}
        if config.api_key:
            headers["api-key"] = config.api_key
        self._session = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=max(1, config.max_connections)),
            timeout=aiohttp.ClientTimeout(total=config.timeout_s, sock_connect=config.connect_timeout_s))
        self._base = config.url.rstrip("/")

    async def _call(self, method: str, path: str, body: Any = None, *,
                    params: Mapping[str, str] | None = None, ok_404: bool = False) -> Any:
        """One request → the answer's ``result``; every failure raised as a classified VectorOpError."""
        import aiohttp

        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        try:
            async with self._session.request(method, self._base + path, data=data, params=params) as resp:
                raw = await resp.read()
                status = resp.status
        except (asyncio.TimeoutError, TimeoutError) as exc:
            raise VectorOpError(ErrorClass.TIMEOUT, f"no answer within {self.config.timeout_s:g}s "
                                f"({type(exc).__name__})") from None
        except aiohttp.ClientPayloadError as exc:
            raise VectorOpError(ErrorClass.STREAM_CLOSED, f"{type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise VectorOpError(ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}") from None
        if status == 404 and ok_404:
            return None
        if status >= 400:
            raise _qdrant_error(status, raw)
        try:
            doc = json.loads(raw)
        except ValueError:
            raise VectorOpError(ErrorClass.MALFORMED, f"HTTP {status}: not JSON: {raw[:120]!r}", status) from None
        if not isinstance(doc, Mapping):
            raise VectorOpError(ErrorClass.MALFORMED, f"HTTP {status}: expected an object, got {raw[:120]!r}",
                                status)
        st = doc.get("status")
        if isinstance(st, Mapping) and st.get("error"):
            raise VectorOpError(ErrorClass.SERVER, str(st["error"])[:300], status)
        if "result" not in doc:
            raise VectorOpError(ErrorClass.MALFORMED, f"HTTP {status}: answer has no 'result': {raw[:120]!r}",
                                status)
        return doc["result"]

    def _path(self, suffix: str = "") -> str:
        return f"/collections/{self.collection}{suffix}"

    async def exists(self) -> bool:
        res = await self._call("GET", self._path("/exists"), ok_404=True)
        if isinstance(res, Mapping) and "exists" in res:
            return bool(res["exists"])
        # before Qdrant 1.8 there is no /exists: the collection's own info answers 200 or 404
        return await self._call("GET", self._path(), ok_404=True) is not None

    async def create(self, dim: int, metric: str) -> None:
        res = await self._call("PUT", self._path(), {"vectors": {"size": int(dim),
                                                                 "distance": QDRANT_DISTANCE[metric]}})
        if res is not True:
            raise VectorOpError(ErrorClass.SERVER, f"create collection answered result={res!r}")

    async def drop(self) -> bool:
        res = await self._call("DELETE", self._path(), ok_404=True)
        return bool(res)

    async def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        body = {"batch": {"ids": [int(i) for i in ids], "vectors": np.asarray(vectors, dtype=np.float32).tolist()}}
        res = await self._call("PUT", self._path("/points"), body, params={"wait": "true"})
        status = res.get("status") if isinstance(res, Mapping) else None
        if status not in ("completed", "acknowledged"):
            raise VectorOpError(ErrorClass.MALFORMED, f"upsert answered result={str(res)[:200]}")

    async def query(self, vector: np.ndarray, k: int) -> list[int]:
        vec = np.asarray(vector, dtype=np.float32).tolist()
        if self.config.query_api == "search":
            res = await self._call("POST", self._path("/points/search"),
                                   {"vector": vec, "limit": int(k), "with_payload": False, "with_vector": False})
            points = res
        else:
            res = await self._call("POST", self._path("/points/query"),
                                   {"query": vec, "limit": int(k), "with_payload": False, "with_vector": False})
            points = res.get("points") if isinstance(res, Mapping) else None
        if not isinstance(points, list):
            raise VectorOpError(ErrorClass.MALFORMED, f"query answer has no list of points: {str(res)[:200]}")
        try:
            return [int(p["id"]) for p in points]
        except (KeyError, TypeError, ValueError):
            raise VectorOpError(ErrorClass.MALFORMED, f"query answer point without an integer id: "
                                f"{str(points[:2])[:200]}") from None

    async def count(self) -> int:
        res = await self._call("POST", self._path("/points/count"), {"exact": True})
        try:
            return int(res["count"])
        except (KeyError, TypeError, ValueError):
            raise VectorOpError(ErrorClass.MALFORMED, f"count answered {str(res)[:200]}") from None

    async def aclose(self) -> None:
        await self._session.close()


# -- Chroma (its async HTTP client) ---------------------------------------------------------------------
@dataclass(frozen=True)
class ChromaConfig:
    """How to reach a Chroma server (``chroma run``). ``headers`` carry an auth token when one is set."""

    host: str
    port: int
    collection: str
    ssl: bool = False
    timeout_s: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    tenant: str | None = None
    database: str | None = None

    async def open(self) -> ChromaStore:
        store = ChromaStore(self)
        await store.connect()
        return store


def classify_chroma(exc: BaseException) -> VectorOpError:
    """An exception out of chromadb's async client (ChromaError, httpx, asyncio) → a classified error."""
    import httpx
    from chromadb.errors import ChromaError

    if isinstance(exc, VectorOpError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | httpx.TimeoutException):
        return VectorOpError(ErrorClass.TIMEOUT, f"{type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, ChromaError):
        try:
            status = int(exc.code())
        except Exception:
            status = 500
        cls = ErrorClass.HTTP_4XX if 400 <= status < 500 else ErrorClass.HTTP_5XX
        return VectorOpError(cls, f"HTTP {status} {type(exc).__name__}: {exc}"[:300], status)
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | httpx.ConnectError
                  | httpx.NetworkError | ConnectionError | OSError):
        return VectorOpError(ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}"[:300])
    if isinstance(exc, httpx.DecodingError | ValueError | KeyError):
        return VectorOpError(ErrorClass.MALFORMED, f"{type(exc).__name__}: {exc}"[:300])
    if type(exc) is Exception:  # chromadb raises a bare Exception(body) for an error it does not know
        return VectorOpError(ErrorClass.SERVER, str(exc)[:300])
    return VectorOpError(ErrorClass.CLIENT, f"{type(exc).__name__}: {exc}"[:300])


class ChromaStore:
    """A Chroma collection through ``chromadb.AsyncHttpClient``; each call bounded by ``timeout_s``."""

    kind = "chroma"

    def __init__(self, config: ChromaConfig) -> None:
        self.config = config
        self.collection = config.collection
        self._client: Any = None
        self._col: Any = None

    async def _bounded(self, make: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await asyncio.wait_for(make(), self.config.timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            raise classify_chroma(exc) from None

    async def connect(self) -> None:
        import chromadb
        from chromadb.config import Settings

        kw: dict[str, Any] = {}
        if self.config.tenant:
            kw["tenant"] = self.config.tenant
        if self.config.database:
            kw["database"] = self.config.database
        self._client = await self._bounded(lambda: chromadb.AsyncHttpClient(
            host=self.config.host, port=int(self.config.port), ssl=self.config.ssl,
            headers=dict(self.config.headers) or None, settings=Settings(anonymized_telemetry=False), **kw))

    async def _collection(self) -> Any:
        if self._col is None:
            self._col = await self._bounded(lambda: self._client.get_collection(self.collection))
        return self._col

    async def exists(self) -> bool:
        try:
            await self._bounded(lambda: self._client.get_collection(self.collection))
        except VectorOpError as err:
            if err.status == 404:
                return False
            raise
        return True

    async def create(self, dim: int, metric: str) -> None:
        self._col = await self._bounded(lambda: self._client.create_collection(
            self.collection, configuration={"hnsw": {"space": CHROMA_SPACE[metric]}}, embedding_function=None))

    async def drop(self) -> bool:
        self._col = None
        try:
            await self._bounded(lambda: self._client.delete_collection(self.collection))
        except VectorOpError as err:
            if err.status == 404:
                return False
            raise
        return True

    async def insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        col = await self._collection()
        await self._bounded(lambda: col.add(ids=[str(int(i)) for i in ids],
                                            embeddings=np.asarray(vectors, dtype=np.float32)))

    async def query(self, vector: np.ndarray, k: int) -> list[int]:
        col = await self._collection()
        res = await self._bounded(lambda: col.query(
            query_embeddings=np.asarray(vector, dtype=np.float32).reshape(1, -1), n_results=int(k), include=[]))
        try:
            return [int(i) for i in res["ids"][0]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise VectorOpError(ErrorClass.MALFORMED, f"query answered {str(res)[:200]}") from None

    async def count(self) -> int:
        col = await self._collection()
        return int(await self._bounded(col.count))

    async def aclose(self) -> None:
        # chromadb keeps one httpx client per event loop; close ours so no socket outlives the loop
        clients = getattr(getattr(self._client, "_server", None), "_clients", None)
        if isinstance(clients, dict):
            for c in list(clients.values()):
                with contextlib.suppress(Exception):
                    await c.aclose()
            clients.clear()


# -- synthetic data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VectorWorkload:
    """What one trial does. Vectors and queries are standard normal, float32, from ``seed`` (reproducible)."""

    vectors: int = 2000
    dim: int = 64
    queries: int = 200
    k: int = 10
    metric: str = "cosine"
    batch_size: int = 256
    concurrency: int = 1
    insert_concurrency: int = 1
    warmup_queries: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise HwbenchInputError(f"unknown distance metric {self.metric!r}", field="metric",
                                    fix="use one of " + ", ".join(METRICS))
        for name in ("vectors", "dim", "queries", "k", "batch_size", "concurrency", "insert_concurrency"):
            if int(getattr(self, name)) < 1:
                raise HwbenchInputError(f"{name} must be >= 1, got {getattr(self, name)}", field=name,
                                        fix="give a positive number")

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return (rng.standard_normal((self.vectors, self.dim), dtype=np.float32),
                rng.standard_normal((self.queries, self.dim), dtype=np.float32))


@dataclass
class VectorDataset:
    """Vectors, queries and their exact top-k: computed once and reused by every trial of a test."""

    vectors: np.ndarray
    queries: np.ndarray
    metric: str
    k: int
    _truth: GroundTruth | None = None

    @classmethod
    def synthetic(cls, workload: VectorWorkload) -> VectorDataset:
        v, q = workload.data()
        return cls(vectors=v, queries=q, metric=workload.metric, k=workload.k)

    @property
    def truth(self) -> GroundTruth:
        if self._truth is None:
            self._truth = exact_topk(self.vectors, self.queries, self.k, self.metric)
        return self._truth


# -- metrics --------------------------------------------------------------------------------------------
def _window_s(recs: Sequence[RequestRecord]) -> float:
    if not recs:
        return 0.0
    return max((max(r.end_ns for r in recs) - min(r.send_ns for r in recs)) / 1e9, 1e-9)


def _errors(recs: Sequence[RequestRecord]) -> tuple[dict[str, int], dict[str, str]]:
    counts: dict[str, int] = {}
    details: dict[str, str] = {}
    for r in recs:
        if r.error is not None:
            counts[r.error] = counts.get(r.error, 0) + 1
            details.setdefault(r.error, r.error_detail[:200])
    return {c: counts[c] for c in ERROR_CLASSES if c in counts}, details


@dataclass
class VectorTrialResult:
    """One trial's evidence and metrics. ``recall`` is None when it could not be computed (``recall_error``)."""

    store: str
    collection: str
    insert: RunResult | None
    query: RunResult | None
    recall: RecallResult | None
    recall_error: str | None
    insert_vectors_s: float
    insert_batch_ms: np.ndarray
    query_qps: float
    query_latency_ms: np.ndarray
    insert_error_rate: float
    query_error_rate: float
    errors: dict[str, dict[str, int]]
    error_details: dict[str, dict[str, str]]
    cleanup: dict[str, Any]
    answers: list[list[int] | None] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for ``hwbench.extra``: scalars, error breakdown, recall evidence, cleanup outcome."""

        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {"store": self.store, "collection": self.collection,
                "insert_vectors_s": num(self.insert_vectors_s), "query_qps": num(self.query_qps),
                "insert_error_rate": num(self.insert_error_rate), "query_error_rate": num(self.query_error_rate),
                "recall": None if self.recall is None else self.recall.to_dict(), "recall_error": self.recall_error,
                "errors": self.errors, "error_details": self.error_details, "cleanup": dict(self.cleanup),
                "client_bound": bool(self.query is not None and self.query.self_check.client_bound)}


# -- one trial ------------------------------------------------------------------------------------------
StoreFactory = Callable[[], Awaitable[VectorStore]]


async def _prepare(store: VectorStore, workload: VectorWorkload, allow_existing: bool) -> None:
    try:
        present = await store.exists()
    except VectorOpError as err:
        raise VectorSetupError(f"{store.kind}: cannot check collection {store.collection!r}: {err}") from None
    if present:
        if not allow_existing:
            raise VectorSetupError(
                f"{store.kind}: collection {store.collection!r} already exists; refusing to drop or write into it "
                "(fix: drop it yourself, or set allow_existing_data: true in the recipe's settings to have the "
                "benchmark drop and re-create it)")
        try:
            await store.drop()
        except VectorOpError as err:
            raise VectorSetupError(f"{store.kind}: could not drop existing collection "
                                   f"{store.collection!r}: {err}") from None
    try:
        await store.create(workload.dim, workload.metric)
    except VectorOpError as err:
        raise VectorSetupError(f"{store.kind}: creating collection {store.collection!r} failed: {err}") from None


def _record(index: int) -> RequestRecord:
    return RequestRecord(index=index, send_wall_ns=time.time_ns(), send_ns=_perf())


async def run_vector_trial_async(factory: StoreFactory, workload: VectorWorkload, dataset: VectorDataset, *,
                                 allow_existing: bool = False, insert_spec: LoadSpec | None = None,
                                 query_spec: LoadSpec | None = None,
                                 on_phase: Callable[[str], None] | None = None) -> VectorTrialResult:
    """Create → insert → query → recall → drop, in the running loop (see the module docstring).

    ``insert_spec`` / ``query_spec`` override the load shapes (e.g. a duration-bound query phase); by default
    every batch is inserted once and every query asked once after ``warmup_queries`` warm-up queries.
    ``on_phase`` is called with "insert" and "query" as each phase starts (tests inject faults there).
    """
    try:
        store = await factory()
    except VectorOpError as err:
        raise VectorSetupError(f"cannot connect to the vector database: {err}") from None
    vectors, queries = dataset.vectors, dataset.queries
    n_batches = math.ceil(len(vectors) / workload.batch_size)
    answers: dict[int, list[int] | None] = {}
    warm = workload.warmup_queries
    cleanup: dict[str, Any] = {"collection": store.collection, "dropped": False, "problem": None}
    insert_run = query_run = None
    owned = False  # only a collection this trial created is dropped: a refused one is left alone
    try:
        await _prepare(store, workload, allow_existing)
        owned = True

        async def insert_send(index: int) -> RequestRecord:
            lo = (index % n_batches) * workload.batch_size
            hi = min(lo + workload.batch_size, len(vectors))
            rec = _record(index)
            try:
                await store.insert(np.arange(lo, hi), vectors[lo:hi])
                rec.tokens_out = hi - lo  # vectors written by this request
            except VectorOpError as err:
                rec.status = err.status
                rec.fail(err.error_class, err.detail)
            rec.end_ns = _perf()
            return rec

        async def query_send(index: int) -> RequestRecord:
            qi = (index - warm if index >= warm else index) % len(queries)
            rec = _record(index)
            try:
                ids = await store.query(queries[qi], workload.k)
                rec.tokens_out = len(ids)
                if index >= warm:
                    answers.setdefault(index, ids)
            except VectorOpError as err:
                rec.status = err.status
                rec.fail(err.error_class, err.detail)
                if index >= warm:
                    answers.setdefault(index, None)
            rec.end_ns = _perf()
            return rec

        if on_phase:
            on_phase("insert")
        insert_run = await run_load(insert_spec or LoadSpec.closed(workload.insert_concurrency, requests=n_batches),
                                    insert_send)
        if on_phase:
            on_phase("query")
        query_run = await run_load(query_spec or LoadSpec.closed(workload.concurrency, requests=len(queries),
                                                                 warmup_requests=warm), query_send)
    finally:
        try:
            if owned:
                cleanup["dropped"] = await store.drop()
        except VectorOpError as err:
            cleanup["problem"] = str(err)
        finally:
            await store.aclose()

    # recall over every measured query request, in index order (a duration-bound run may repeat queries)
    order = sorted(answers)
    found = [answers[i] for i in order]
    rows = np.array([(i - warm) % len(queries) for i in order], dtype=np.int64)
    recall: RecallResult | None = None
    recall_error = None
    if found:
        t = dataset.truth
        sub = GroundTruth(ids=t.ids[rows], distances=t.distances[rows], metric=t.metric, k=t.k,
                          n_vectors=t.n_vectors)
        try:
            recall = recall_at_k(found, sub, workload.k, vectors=vectors, queries=queries[rows])
        except RecallError as err:
            recall_error = str(err)
    else:
        recall_error = "no measured query was sent"

    ins = [r for r in insert_run.records if not r.warmup] if insert_run else []
    qry = [r for r in query_run.records if not r.warmup] if query_run else []
    ins_ok = [r for r in ins if r.ok]
    q_ok = [r for r in qry if r.ok]
    ins_err, ins_det = _errors(ins)
    q_err, q_det = _errors(qry)
    iw, qw = _window_s(ins), _window_s(qry)
    return VectorTrialResult(
        store=store.kind, collection=store.collection, insert=insert_run, query=query_run, recall=recall,
        recall_error=recall_error,
        insert_vectors_s=sum(r.tokens_out or 0 for r in ins_ok) / iw if ins else 0.0,
        insert_batch_ms=np.array([(r.end_ns - r.send_ns) / 1e6 for r in ins_ok]),
        query_qps=len(q_ok) / qw if qry else 0.0,
        query_latency_ms=censored_ms(qry),
        insert_error_rate=(len(ins) - len(ins_ok)) / len(ins) if ins else math.nan,
        query_error_rate=(len(qry) - len(q_ok)) / len(qry) if qry else math.nan,
        errors={"insert": ins_err, "query": q_err}, error_details={"insert": ins_det, "query": q_det},
        cleanup=cleanup, answers=found)


def run_vector_trial(factory: StoreFactory, workload: VectorWorkload, dataset: VectorDataset | None = None, *,
                     allow_existing: bool = False, precise: bool = True, **kw: Any) -> VectorTrialResult:
    """:func:`run_vector_trial_async` from synchronous code (a benchmark body), on a fresh event loop."""
    dataset = dataset or VectorDataset.synthetic(workload)
    _ = dataset.truth  # computed before the timed phases, never during them
    loop = new_event_loop(precise)
    try:
        with precise_timers() if precise else contextlib.nullcontext(), frozen_heap():
            return loop.run_until_complete(run_vector_trial_async(factory, workload, dataset,
                                                                  allow_existing=allow_existing, **kw))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


__all__ = ["CHROMA_SPACE", "QDRANT_DISTANCE", "ChromaConfig", "ChromaStore", "QdrantConfig", "QdrantStore",
           "VectorDataset", "VectorOpError", "VectorSetupError", "VectorStore", "VectorTrialResult",
           "VectorWorkload", "classify_chroma", "collection_name", "run_vector_trial", "run_vector_trial_async"]
