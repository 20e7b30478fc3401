"""S3 client for the load engine: PUT / GET / mixed against any S3 endpoint (MinIO, RGW, AWS, moto).

Why boto3 in threads: boto3 is the S3 client people actually run (its signing, checksums and connection
pool are part of what is measured), it is installed, and aiobotocore is not a dependency. Each request runs
in a worker thread of a pool sized to the run's concurrency; the timings are stamped *inside* that thread
around the boto3 call, so the hand-off to the thread is not counted as server time. boto3 clients are
thread-safe, and the connection pool is sized to the concurrency so no request waits for a connection.

Per request (``S3Record``, a ``RequestRecord`` with the operation and its byte count):

* ``send_ns`` just before the boto3 call; ``end_ns`` after the last byte (PUT: the response; GET: the end
  of the body stream). ``latency`` = end − send (docs/architecture.md).
* GET only: ``first_byte_ns`` when the response headers arrived and ``first_token_ns`` when the *first
  chunk of the body* arrived — "first-byte latency" of a GET is send → first body chunk (``get_ttfb_ms``).
* ``nbytes``: the object bytes moved (the body, not HTTP overhead). MB/s uses 10⁶ bytes.

Addressing is path-style (``http://host:port/bucket/key``) so any endpoint works without wildcard DNS.
Retries are off by default (``retries=0``): a retried request would hide a failure and double a latency.
Every failure becomes a classified record, never an exception out of ``send``: S3 error answers by HTTP
status (the S3 code, e.g. ``NoSuchBucket``, in the detail), timeouts, refused/reset connections, a body
that ended early.

Bucket lifecycle (:class:`BucketGuard`): a run uses its own bucket ``hwbench-<run>`` (created here,
emptied and deleted at the end). A bucket that already exists and holds objects this run did not write is
refused unless ``allow_existing_data`` — then only the objects this run wrote are deleted, and the bucket
is kept. Wrong credentials fail set-up with the recipe setting that holds them named, never their value.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from pytest_hwbench.errors import HwbenchError
from pytest_hwbench.workloads.engine import LoadSpec, RunResult, run_load
from pytest_hwbench.workloads.loop import frozen_heap, new_event_loop, precise_timers
from pytest_hwbench.workloads.records import ERROR_CLASSES, ErrorClass, RequestRecord, censored_ms

Op = Literal["put", "get", "mixed"]
OPS: tuple[str, ...] = ("put", "get", "mixed")
_perf = time.perf_counter_ns

#: S3 error codes that mean "these credentials are wrong" (as opposed to "not allowed").
CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                              "InvalidSecurity", "AuthorizationHeaderMalformed", "InvalidClientTokenId"})
_BUCKET_RE = re.compile(r"[^a-z0-9-]+")


class S3SetupError(HwbenchError):
    """The S3 benchmark cannot start: wrong credentials, unreachable endpoint, a bucket it must not use.

    The message names the recipe setting to fix (never its value: keys are secrets).
    """


def bucket_name(run_id: str, suffix: str = "") -> str:
    """``hwbench-<run>[-<suffix>]`` made a valid bucket name (lower case, digits, '-', 3..63 chars)."""
    raw = "-".join(p for p in ("hwbench", run_id, suffix) if p).lower()
    name = _BUCKET_RE.sub("-", raw).strip("-")
    name = re.sub("-{2,}", "-", name)[:63].rstrip("-")
    return name if len(name) >= 3 else "hwbench"


@dataclass(frozen=True)
class S3Config:
    """How to reach one S3 endpoint. Keys are kept out of ``repr`` so they cannot leak into a log.

    ``credentials_field`` is the recipe field that holds the keys (``services.s3.access_key`` or
    ``settings.s3_access_key``); it is what an error message names.
    """

    endpoint_url: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    credentials_field: str = "services.s3.access_key / services.s3.secret_key"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    retries: int = 0
    max_connections: int = 10
    verify_tls: bool = True

    def client(self, max_connections: int | None = None) -> Any:
        """A boto3 S3 client: path-style, retries as configured, a pool of ``max_connections``."""
        import boto3
        from botocore.config import Config

        cfg = Config(region_name=self.region, s3={"addressing_style": "path"},
                     retries={"total_max_attempts": 1 + max(0, self.retries), "mode": "standard"},
                     connect_timeout=self.connect_timeout_s, read_timeout=self.read_timeout_s,
                     max_pool_connections=max(1, max_connections or self.max_connections),
                     signature_version="s3v4")
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, config=cfg, verify=self.verify_tls)


# -- error classification -------------------------------------------------------------------------------
def classify(exc: BaseException) -> tuple[str, str, int | None]:
    """(error class, detail, HTTP status) of an exception raised by boto3/botocore."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        meta = exc.response.get("ResponseMetadata", {}) if isinstance(exc.response, dict) else {}
        err = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
        status = meta.get("HTTPStatusCode")
        code = str(err.get("Code") or status or "?")
        detail = f"{code}: {err.get('Message') or ''}".strip().rstrip(":")
        if isinstance(status, int) and 400 <= status < 500:
            return ErrorClass.HTTP_4XX, detail, status
        if isinstance(status, int) and status >= 500:
            return ErrorClass.HTTP_5XX, detail, status
        return ErrorClass.SERVER, detail, status
    if isinstance(exc, bx.ReadTimeoutError | bx.ConnectTimeoutError | TimeoutError):
        return ErrorClass.TIMEOUT, f"{type(exc).__name__}: {exc}", None
    if isinstance(exc, bx.IncompleteReadError | bx.ResponseStreamingError):
        return ErrorClass.STREAM_CLOSED, f"{type(exc).__name__}: {exc}", None
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.ConnectionError
                  | ConnectionError):
        return ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}", None
    if isinstance(exc, bx.HTTPClientError | OSError):
        return ErrorClass.CONNECTION, f"{type(exc).__name__}: {exc}", None
    return ErrorClass.CLIENT, f"{type(exc).__name__}: {exc}", None


# -- bucket lifecycle -----------------------------------------------------------------------------------
@dataclass
class BucketGuard:
    """Owns the benchmark's bucket: checks it may be used, creates it, and cleans up what the run wrote.

    ``prepare`` must be called before any load; ``cleanup`` at the end (it never raises: it returns what it
    did and what went wrong, because a cleanup failure must not replace the run's own result).
    """

    config: S3Config
    bucket: str
    allow_existing_data: bool = False
    created: bool = False
    existed: bool = False
    written: set[str] = field(default_factory=set)
    #: (key prefix, object size, object count) sets already preloaded, so trials after the first skip it
    preloaded: set[tuple[str, int, int]] = field(default_factory=set)
    _client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            self._client = self.config.client()
        return self._client

    def _fail(self, exc: BaseException, doing: str) -> S3SetupError:
        cls, detail, status = classify(exc)
        code = detail.split(":", 1)[0]
        where = f"S3 endpoint {self.config.endpoint_url}"
        if code in CREDENTIAL_CODES:
            return S3SetupError(
                f"{where} rejected the credentials while {doing} ({code}): fix {self.config.credentials_field} "
                "(the key id or the secret is wrong; their values are not shown)")
        if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
            return S3SetupError(
                f"{where} denied access to bucket {self.bucket!r} while {doing} ({detail}): the keys in "
                f"{self.config.credentials_field} lack permission, or the bucket belongs to someone else "
                "(choose another bucket)")
        if cls in (ErrorClass.CONNECTION, ErrorClass.TIMEOUT):
            return S3SetupError(f"cannot reach {where} while {doing} ({cls}: {detail}): check the service's "
                                "url/port and that it runs")
        return S3SetupError(f"{where} failed while {doing} ({cls}: {detail})")

    def prepare(self) -> None:
        """Check credentials and the bucket; create it when absent; refuse someone else's data."""
        s3 = self._s3()
        try:
            listing = s3.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
        except Exception as exc:
            detail = classify(exc)[1]
            if not detail.startswith("NoSuchBucket"):
                raise self._fail(exc, f"checking bucket {self.bucket!r}") from None
            try:
                kw: dict[str, Any] = {}
                if self.config.region and self.config.region != "us-east-1":
                    kw["CreateBucketConfiguration"] = {"LocationConstraint": self.config.region}
                s3.create_bucket(Bucket=self.bucket, **kw)
            except Exception as exc2:
                raise self._fail(exc2, f"creating bucket {self.bucket!r}") from None
            self.created = True
            return
        self.existed = True
        if listing.get("KeyCount", len(listing.get("Contents", []))) and not self.allow_existing_data:
            raise S3SetupError(
                f"bucket {self.bucket!r} already exists and holds objects this run did not create; refusing to "
                "write into it (fix: set allow_existing_data: true in the recipe's settings to use it — only "
                "the objects this run writes are deleted — or point the benchmark at another bucket)")

    def note_written(self, keys: Sequence[str]) -> None:
        self.written.update(keys)

    def cleanup(self) -> dict[str, Any]:
        """Delete what this run wrote (everything, when it created the bucket) and the bucket it created."""
        report: dict[str, Any] = {"bucket": self.bucket, "deleted_objects": 0, "bucket_deleted": False,
                                  "problems": []}
        if not (self.created or self.existed):
            return report
        s3 = self._s3()
        try:
            if self.created:
                keys: list[str] = []
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
                    keys.extend(o["Key"] for o in page.get("Contents", []))
            else:
                keys = sorted(self.written)
            for i in range(0, len(keys), 1000):
                chunk = keys[i:i + 1000]
                out = s3.delete_objects(Bucket=self.bucket,
                                        Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
                errors = out.get("Errors") or []
                report["deleted_objects"] += len(chunk) - len(errors)
                report["problems"].extend(f"{e.get('Key')}: {e.get('Code')}" for e in errors[:5])
            if self.created:
                s3.delete_bucket(Bucket=self.bucket)
                report["bucket_deleted"] = True
        except Exception as exc:
            cls, detail, _ = classify(exc)
            report["problems"].append(f"{cls}: {detail}")
        return report


# -- the load client ------------------------------------------------------------------------------------
@dataclass(slots=True)
class S3Record(RequestRecord):
    """A request record that also says which operation it was and how many object bytes it moved."""

    op: str = ""
    key: str = ""
    nbytes: int = 0


@dataclass(frozen=True)
class S3Workload:
    """What one S3 run does. ``object_count`` keys are cycled through; GET/mixed read keys preloaded first."""

    op: Op = "put"
    object_size: int = 65536
    object_count: int = 64
    read_fraction: float = 0.5
    key_prefix: str = "obj/"
    seed: int = 0
    chunk_size: int = 65536

    def __post_init__(self) -> None:
        from pytest_hwbench.errors import HwbenchInputError

        if self.op not in OPS:
            raise HwbenchInputError(f"unknown S3 operation {self.op!r}", field="op", fix="use put, get or mixed")
        if self.object_size < 0 or self.object_count < 1:
            raise HwbenchInputError("object_size must be >= 0 and object_count >= 1", field="object_size",
                                    fix="give a size in bytes and a positive count")
        if not 0.0 <= self.read_fraction <= 1.0:
            raise HwbenchInputError(f"read_fraction must be in [0, 1], got {self.read_fraction}",
                                    field="read_fraction", fix="give the share of GETs in a mixed run")

    def key(self, i: int) -> str:
        return f"{self.key_prefix}{i % self.object_count:08d}"

    def keys(self) -> list[str]:
        return [self.key(i) for i in range(self.object_count)]

    def op_for(self, index: int) -> str:
        """The operation of request ``index``: fixed for put/get; for mixed a seeded, reproducible draw."""
        if self.op != "mixed":
            return self.op
        h = (index * 0x9E3779B97F4A7C15 + self.seed * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
        return "get" if h / 2.0**64 < self.read_fraction else "put"

    def payload(self) -> bytes:
        """Incompressible bytes (seeded), so no layer can shortcut the transfer by compressing it."""
        return np.random.default_rng(self.seed).bytes(self.object_size)


class S3LoadClient:
    """The engine's client: ``send(index)`` runs one PUT or GET in a worker thread and returns its record."""

    def __init__(self, config: S3Config, bucket: str, workload: S3Workload, concurrency: int) -> None:
        self.config = config
        self.bucket = bucket
        self.workload = workload
        self._s3 = config.client(max_connections=max(concurrency, 1))
        self._pool = ThreadPoolExecutor(max_workers=max(concurrency, 1), thread_name_prefix="hwbench-s3")
        self._payload = workload.payload()

    async def send(self, index: int) -> S3Record:
        op = self.workload.op_for(index)
        key = self.workload.key(index)
        fn = self._get if op == "get" else self._put
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, index, key)

    def _put(self, index: int, key: str) -> S3Record:
        rec = S3Record(index=index, op="put", key=key, send_wall_ns=time.time_ns())
        rec.send_ns = _perf()
        try:
            out = self._s3.put_object(Bucket=self.bucket, Key=key, Body=self._payload)
            rec.end_ns = rec.first_byte_ns = _perf()
            rec.status = out.get("ResponseMetadata", {}).get("HTTPStatusCode")
            rec.nbytes = len(self._payload)
        except Exception as exc:
            cls, detail, status = classify(exc)
            rec.status = status
            rec.fail(cls, detail, end_ns=_perf())
        return rec

    def _get(self, index: int, key: str) -> S3Record:
        rec = S3Record(index=index, op="get", key=key, send_wall_ns=time.time_ns())
        rec.send_ns = _perf()
        body = None
        try:
            out = self._s3.get_object(Bucket=self.bucket, Key=key)
            rec.first_byte_ns = _perf()
            rec.status = out.get("ResponseMetadata", {}).get("HTTPStatusCode")
            body = out["Body"]
            expected = out.get("ContentLength")
            n = 0
            for chunk in body.iter_chunks(self.workload.chunk_size):
                if n == 0 and chunk:
                    rec.first_token_ns = _perf()
                n += len(chunk)
            rec.end_ns = _perf()
            if rec.first_token_ns is None:  # an empty object: its first byte is its end
                rec.first_token_ns = rec.end_ns
            rec.nbytes = n
            if expected is not None and n != expected:
                rec.fail(ErrorClass.STREAM_CLOSED, f"body ended after {n} of {expected} bytes")
        except Exception as exc:
            cls, detail, status = classify(exc)
            rec.status = status if status is not None else rec.status
            rec.fail(cls, detail, end_ns=_perf())
        finally:
            if body is not None:
                body.close()
        return rec

    def preload(self) -> list[str]:
        """PUT every key once (not measured) so GETs find objects; raises on the first failure."""
        keys = self.workload.keys()
        futures = [self._pool.submit(self._put, i, k) for i, k in enumerate(keys)]
        failed = [r for r in (f.result() for f in futures) if not r.ok]
        if failed:
            raise S3SetupError(f"preloading {len(keys)} objects into bucket {self.bucket!r} failed for "
                               f"{len(failed)} of them (first: {failed[0].error}: {failed[0].error_detail})")
        return keys

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        close = getattr(self._s3, "close", None)
        if close is not None:
            close()


# -- metrics --------------------------------------------------------------------------------------------
@dataclass
class S3Metrics:
    """The pinned S3 metrics of one run (measured records only).

    * ``ops_s`` — successful requests / window; window = first measured send → last measured completion
      (failed requests included in the window, as in docs/metrics.md).
    * ``put_mb_s`` / ``get_mb_s`` — object bytes of successful PUTs / GETs / window, in 10⁶ B/s.
    * ``put_latency_ms`` / ``get_latency_ms`` — send → last byte; a failed request stays in as a censored
      value (``records.censored_ms``). ``get_ttfb_ms`` — send → first body chunk (successes).
    * ``error_rate`` — failed / attempted; ``errors`` by class.
    """

    attempted: int
    succeeded: int
    window_s: float
    ops_s: float
    put_mb_s: float | None
    get_mb_s: float | None
    put_latency_ms: np.ndarray
    get_latency_ms: np.ndarray
    get_ttfb_ms: np.ndarray
    error_rate: float
    errors: dict[str, int]
    error_details: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """Scalars and counts as plain JSON (sample arrays are recorded as metrics, not here)."""
        return {"attempted": self.attempted, "succeeded": self.succeeded, "window_s": self.window_s,
                "ops_s": self.ops_s, "put_mb_s": self.put_mb_s, "get_mb_s": self.get_mb_s,
                "error_rate": self.error_rate, "errors": dict(self.errors),
                "error_details": dict(self.error_details)}


def compute_s3_metrics(records: Sequence[RequestRecord]) -> S3Metrics:
    """Records of one run → :class:`S3Metrics`. Warm-up records are ignored; an empty run gives zeros."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    span = (max(r.end_ns for r in measured) - min(r.send_ns for r in measured)) / 1e9 if measured else 0.0
    window = max(span, 1e-9)

    def op(r: RequestRecord) -> str:
        return getattr(r, "op", "")

    def lat(kind: str) -> np.ndarray:
        return censored_ms([r for r in measured if op(r) == kind])

    puts = [r for r in ok if op(r) == "put"]
    gets = [r for r in ok if op(r) == "get"]
    has_put = any(op(r) == "put" for r in measured)
    has_get = any(op(r) == "get" for r in measured)
    errors = {c: 0 for c in ERROR_CLASSES}
    details: dict[str, str] = {}
    for r in measured:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
            details.setdefault(r.error, r.error_detail[:200])
    ttfb = np.array([(r.first_token_ns - r.send_ns) / 1e6 for r in gets if r.first_token_ns is not None],
                    dtype=np.float64)
    return S3Metrics(
        attempted=len(measured), succeeded=len(ok), window_s=window if measured else 0.0,
        ops_s=len(ok) / window if measured else 0.0,
        put_mb_s=sum(getattr(r, "nbytes", 0) for r in puts) / 1e6 / window if has_put else None,
        get_mb_s=sum(getattr(r, "nbytes", 0) for r in gets) / 1e6 / window if has_get else None,
        put_latency_ms=lat("put"), get_latency_ms=lat("get"), get_ttfb_ms=ttfb,
        error_rate=(len(measured) - len(ok)) / len(measured) if measured else math.nan,
        errors={k: v for k, v in errors.items() if v}, error_details=details)


# -- one run, from synchronous code ---------------------------------------------------------------------
@dataclass
class S3RunOutcome:
    result: RunResult
    metrics: S3Metrics


async def run_s3_async(config: S3Config, bucket: BucketGuard, workload: S3Workload, spec: LoadSpec,
                       *, concurrency: int | None = None, preload: bool | None = None) -> S3RunOutcome:
    """One S3 run in the running loop: preload (GET/mixed), then ``spec`` through the engine.

    The bucket must be prepared; the keys this run writes are noted on it for cleanup.
    """
    users = concurrency or spec.users
    client = S3LoadClient(config, bucket.bucket, workload, users)
    loop = asyncio.get_running_loop()
    try:
        ident = (workload.key_prefix, workload.object_size, workload.object_count)
        wanted = preload if preload is not None else workload.op in ("get", "mixed") \
            and ident not in bucket.preloaded
        if wanted:
            bucket.note_written(await loop.run_in_executor(None, client.preload))
            bucket.preloaded.add(ident)
        if workload.op in ("put", "mixed"):
            bucket.note_written(workload.keys())
        result = await run_load(spec, client.send)
    finally:
        await client.aclose()
    return S3RunOutcome(result=result, metrics=compute_s3_metrics(result.records))


def run_s3(config: S3Config, bucket: BucketGuard, workload: S3Workload, spec: LoadSpec, *,
           precise: bool = True) -> S3RunOutcome:
    """:func:`run_s3_async` from synchronous code (a benchmark body) on a fresh event loop."""
    loop = new_event_loop(precise)
    try:
        with precise_timers() if precise else contextlib.nullcontext(), frozen_heap():
            return loop.run_until_complete(run_s3_async(config, bucket, workload, spec))
    finally:
        loop.close()


__all__ = ["OPS", "BucketGuard", "S3Config", "S3LoadClient", "S3Metrics", "S3Record", "S3RunOutcome",
           "S3SetupError", "S3Workload", "bucket_name", "classify", "compute_s3_metrics", "run_s3",
           "run_s3_async"]
