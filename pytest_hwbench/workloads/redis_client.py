"""Redis GET/SET workload for the load engine (``redis.asyncio``): mix, sizes, key space, pipelining.

What one ``send(index)`` does: ``pipeline`` commands (1 = no pipelining), each a GET or a SET chosen by the
``mix`` weights, on a key drawn uniformly from the ``keyspace`` seeded keys, written in one go on one
connection, then all replies read. The record says how many commands of each type it carried, which of them
failed, the payload bytes moved (keys and values sent, values received) and the GETs that found nothing.

Why ``redis.asyncio.Connection`` rather than the ``Redis`` client object: the client object's pool, command
dispatch and retry machinery cost about a third of the per-command time in Python, all of it client-side
overhead that ``redis-benchmark`` does not pay; the connection class still does the socket, the RESP parser,
AUTH/SELECT on connect and the socket timeouts. Commands are encoded here as RESP once per request (a value is
passed as its own buffer, never copied into the frame). Each connection is owned by one request at a time,
so ``clients`` concurrent users use exactly ``clients`` connections.

Why retries are off: a benchmark must see every failure. A broken connection fails the request in flight
(classified ``connection``), is dropped and reopened by the next request that needs it; a connection that
cannot be reopened (server down) fails fast and the client pauses ``reconnect_backoff_s`` so a dead server
does not turn into a busy loop of errors. A read past ``timeout_s`` is a ``timeout``; the connection is then
closed, since a late reply would otherwise be read by the next request.

Safety (the server may hold someone's data): every key lives under ``hwbench:<run>:`` with a fresh ``run``,
:meth:`RedisWorkload.prepare` refuses a database that already holds keys (``DBSIZE > 0``) unless
``allow_existing_data``, and :meth:`RedisWorkload.cleanup` deletes the prefix with SCAN + UNLINK. Limits the
server would refuse (value larger than ``proto-max-bulk-len``, key space larger than ``maxmemory``) are
checked before seeding and reported with the setting to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.workloads.kv_metrics import (
    KVMetrics,
    KVRecord,
    as_bool,
    as_float,
    as_int,
    compute_kv_metrics,
    merged_settings,
    mix64,
    mix_table,
    parse_mix,
    parse_size,
)
from pytest_hwbench.workloads.records import ErrorClass

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - redis-py depends on async-timeout below 3.11.3
    from async_timeout import timeout as _timeout

_perf = time.perf_counter_ns
OPERATIONS = ("get", "set")
#: Redis refuses string values over 512 MB whatever proto-max-bulk-len says.
MAX_STRING = 512 * 1024 * 1024
#: Bytes of server memory per key beyond key and value (dict entry, robj, SDS headers, allocator slack).
PER_KEY_OVERHEAD = 80
SEED_BATCH = 1000
#: The recipe settings this workload reads (under ``settings:`` or ``settings.redis:``).
SETTINGS = ("mix", "key_size", "value_size", "keyspace", "pipeline", "timeout_s", "connect_timeout_s",
            "allow_existing_data", "db", "username", "password", "seed", "reconnect_backoff_s")


def _redis() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError as err:  # pragma: no cover - redis is a declared dependency of the services extra
        raise HwbenchError("the Redis workload needs redis-py (pip install 'pytest-hwbench[services]')") \
            from err
    return aioredis


def _no_retry() -> Any:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class PrepareReport:
    """What :meth:`RedisWorkload.prepare` did, outside the measured window."""

    dbsize_before: int
    seeded: int
    seed_s: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RedisWorkload:
    """One Redis workload: where, what mix, which sizes. Picklable; ``open`` is a ``ClientFactory``.

    ``key_size`` is the full key length in bytes (prefix included); the default is the shortest key that
    holds the prefix and every index of the key space. ``value_size`` accepts ``64``, ``"4kb"``, ``"1mb"``.
    ``settings_field`` is where error messages say the knobs live (``settings`` of the recipe);
    ``credentials_field`` where the password/username came from.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    mix: Any = "get:set=90:10"
    key_size: int | None = None
    value_size: Any = 64
    keyspace: int = 10_000
    pipeline: int = 1
    timeout_s: float = 5.0
    connect_timeout_s: float = 5.0
    allow_existing_data: bool = False
    seed: int = 0
    reconnect_backoff_s: float = 0.05
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    settings_field: str = "settings"
    credentials_field: str = "settings"

    def __post_init__(self) -> None:
        f = self.settings_field

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("mix", parse_mix(self.mix, OPERATIONS, field=f"{f}.mix"))
        put("value_size", parse_size(self.value_size, field=f"{f}.value_size", minimum=0))
        if self.value_size > MAX_STRING:
            raise HwbenchInputError(f"value_size {self.value_size} is over Redis's 512 MB string limit",
                                    field=f"{f}.value_size", fix="use a smaller value_size")
        put("keyspace", as_int(self.keyspace, field=f"{f}.keyspace", minimum=1))
        put("pipeline", as_int(self.pipeline, field=f"{f}.pipeline", minimum=1))
        put("db", as_int(self.db, field=f"{f}.db", minimum=0))
        put("seed", as_int(self.seed, field=f"{f}.seed"))
        put("timeout_s", as_float(self.timeout_s, field=f"{f}.timeout_s"))
        put("connect_timeout_s", as_float(self.connect_timeout_s, field=f"{f}.connect_timeout_s"))
        put("reconnect_backoff_s", as_float(self.reconnect_backoff_s, field=f"{f}.reconnect_backoff_s",
                                            positive=False))
        put("allow_existing_data", as_bool(self.allow_existing_data, field=f"{f}.allow_existing_data"))
        if not self.run.isalnum():
            raise HwbenchInputError(f"run id {self.run!r} must be letters and digits", field="run",
                                    fix="leave run out (a random id is chosen)")
        shortest = len(self.prefix) + len(str(self.keyspace - 1))
        if self.key_size is None:
            put("key_size", shortest)
        else:
            put("key_size", parse_size(self.key_size, field=f"{f}.key_size", minimum=1))
            if self.key_size < shortest:
                raise HwbenchInputError(
                    f"key_size {self.key_size} cannot hold the prefix {self.prefix!r} and "
                    f"{len(str(self.keyspace - 1))} digits of the key index", field=f"{f}.key_size",
                    fix=f"use key_size >= {shortest}, or leave it out")

    # -- construction from a recipe ------------------------------------------------------------------------
    @classmethod
    def from_endpoint(cls, endpoint: Any, settings: Mapping[str, Any] | None = None, **overrides: Any) \
            -> RedisWorkload:
        """A workload against the recipe service ``endpoint`` with the recipe's ``settings``.

        Credentials and the database index come from ``settings`` (``password``, ``username``, ``db``),
        else from the endpoint's ``extra`` (an external service's ``extra: {password: ...}``). Keyword
        ``overrides`` (e.g. sweep parameters) win over both.
        """
        s = merged_settings(settings, "redis")
        extra = dict(getattr(endpoint, "extra", {}) or {})
        kw: dict[str, Any] = {k: s[k] for k in SETTINGS if k in s and s[k] is not None}
        name = getattr(endpoint, "name", "") or "redis"
        cred_field = "settings"
        for key in ("password", "username", "db"):
            if key not in kw and extra.get(key) is not None:
                kw[key] = extra[key]
                if key != "db":
                    cred_field = f"services.{name}.extra"
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(host=endpoint.host, port=int(endpoint.port), credentials_field=cred_field, **kw)

    def with_run(self, run: str | None = None) -> RedisWorkload:
        """The same workload under a new key prefix (``run``): a second, independent key space."""
        return replace(self, run=run or secrets.token_hex(4))

    # -- keys and values -----------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        """Every key this workload creates starts with it: ``hwbench:<run>:``."""
        return f"hwbench:{self.run}:"

    def key(self, index: int) -> bytes:
        """Key number ``index`` of the key space, exactly ``key_size`` bytes."""
        assert self.key_size is not None
        return (self.prefix + str(index).zfill(self.key_size - len(self.prefix))).encode()

    def value(self) -> bytes:
        """The value every SET writes: random bytes, so no layer on the way can shortcut repeated content."""
        return os.urandom(self.value_size)

    # -- connections ---------------------------------------------------------------------------------------
    def _admin(self) -> Any:
        return _redis().Redis(host=self.host, port=self.port, db=self.db, username=self.username,
                              password=self.password, socket_timeout=max(self.timeout_s, 10.0),
                              socket_connect_timeout=self.connect_timeout_s, retry=_no_retry(),
                              decode_responses=False, protocol=2)

    def connection(self) -> Any:
        """A fresh (not yet connected) ``redis.asyncio`` connection with this workload's timeouts."""
        from redis.asyncio.connection import Connection

        return Connection(host=self.host, port=self.port, db=self.db, username=self.username,
                          password=self.password, socket_timeout=self.timeout_s,
                          socket_connect_timeout=self.connect_timeout_s, retry=_no_retry(), protocol=2)

    def setup_error(self, err: BaseException) -> HwbenchError:
        """A connect-time failure as one clear message that names the setting to change."""
        from redis import exceptions as rex

        where = f"Redis at {self.host}:{self.port}"
        text = str(err).strip() or type(err).__name__
        low = text.lower()
        cf = self.credentials_field
        if "noauth" in low or "authentication required" in low:
            return HwbenchInputError(f"{where} requires a password and none was given ({text})",
                                     field=f"{cf}.password", fix=f"set {cf}.password: ${{REDIS_PASSWORD}}")
        if isinstance(err, rex.AuthenticationError) or "wrongpass" in low or "invalid password" in low \
                or "invalid username-password" in low:
            return HwbenchInputError(f"{where} rejected the credentials ({text})", field=f"{cf}.password",
                                     fix=f"set {cf}.password (and {cf}.username for an ACL user) to the "
                                         "server's, e.g. password: ${REDIS_PASSWORD}")
        if "db index is out of range" in low or "invalid db index" in low:
            return HwbenchInputError(f"{where} has no database {self.db} ({text})",
                                     field=f"{self.settings_field}.db",
                                     fix="use a database index below the server's 'databases' setting "
                                         "(default 16: 0-15)")
        if isinstance(err, (rex.TimeoutError, asyncio.TimeoutError, TimeoutError)):
            return HwbenchError(f"{where} did not answer within {self.connect_timeout_s:g} s ({text}); "
                                "check that the server runs and is not paused, or raise "
                                f"{self.settings_field}.connect_timeout_s")
        if isinstance(err, (rex.ConnectionError, OSError)):
            return HwbenchError(f"could not connect to {where}: {text}")
        return HwbenchError(f"{where}: {type(err).__name__}: {text}")

    # -- before and after the measured window --------------------------------------------------------------
    async def check_server(self, admin: Any) -> tuple[int, list[str]]:
        """Refuse what must not be done to this server; returns (DBSIZE, notes). Raises on refusal."""
        from redis import exceptions as rex

        try:
            await admin.ping()
            dbsize = int(await admin.dbsize())
        except (rex.RedisError, OSError, asyncio.TimeoutError) as err:
            raise self.setup_error(err) from None
        f = self.settings_field
        if dbsize > 0 and not self.allow_existing_data:
            raise HwbenchInputError(
                f"Redis at {self.host}:{self.port} database {self.db} already holds {dbsize} key(s) that this "
                "benchmark did not create; it refuses to write into it", field=f"{f}.allow_existing_data",
                fix=f"point it at an empty database ({f}.db), or set {f}.allow_existing_data: true (its keys "
                    f"then go under the unique prefix hwbench:<run>: and only those are deleted)")
        notes: list[str] = []
        limits = await self._config(admin, "proto-max-bulk-len", "maxmemory")
        bulk = limits.get("proto-max-bulk-len")
        if bulk is None:
            notes.append("CONFIG GET not allowed: server limits not checked")
        elif self.value_size > bulk:
            raise HwbenchInputError(
                f"value_size {self.value_size} bytes is larger than the server allows (proto-max-bulk-len "
                f"{bulk} bytes): every SET would fail", field=f"{f}.value_size",
                fix=f"use value_size <= {bulk}, or raise the server's limit (CONFIG SET proto-max-bulk-len)")
        maxmemory = limits.get("maxmemory") or 0
        if maxmemory:
            assert self.key_size is not None
            need = self.keyspace * (self.key_size + self.value_size + PER_KEY_OVERHEAD)
            used = await self._used_memory(admin)
            if used + need > maxmemory:
                raise HwbenchInputError(
                    f"the key space needs about {need} bytes ({self.keyspace} keys x (key {self.key_size} + "
                    f"value {self.value_size} + ~{PER_KEY_OVERHEAD} overhead)) but maxmemory is {maxmemory} "
                    f"with {used} in use", field=f"{f}.keyspace",
                    fix="use a smaller keyspace or value_size, or raise the server's maxmemory")
        return dbsize, notes

    @staticmethod
    async def _config(admin: Any, *names: str) -> dict[str, int]:
        from redis import exceptions as rex

        out: dict[str, int] = {}
        for name in names:
            try:
                got = await admin.config_get(name)
            except rex.ResponseError:
                continue
            for k, v in got.items():
                key = k.decode() if isinstance(k, bytes) else str(k)
                with contextlib.suppress(ValueError):
                    out[key] = int(v)
        return out

    @staticmethod
    async def _used_memory(admin: Any) -> int:
        try:
            info = await admin.info("memory")
        except Exception:
            return 0
        return int(info.get("used_memory", 0))

    async def prepare(self) -> PrepareReport:
        """Check the server, then write every key of the key space (not measured).

        Why seed at all: GETs of missing keys measure a different code path (and move no bytes), so the
        measured GETs must find their keys.
        """
        admin = self._admin()
        seeding = False
        try:
            t0 = _perf()
            dbsize, notes = await self.check_server(admin)
            value = self.value()
            seeding = True
            for start in range(0, self.keyspace, SEED_BATCH):
                pipe = admin.pipeline(transaction=False)
                for i in range(start, min(start + SEED_BATCH, self.keyspace)):
                    pipe.set(self.key(i), value)
                replies = await pipe.execute(raise_on_error=False)
                bad = next((r for r in replies if isinstance(r, Exception)), None)
                if bad is not None:
                    raise HwbenchError(f"seeding Redis at {self.host}:{self.port} failed: {bad}")
            return PrepareReport(dbsize_before=dbsize, seeded=self.keyspace, seed_s=(_perf() - t0) / 1e9,
                                 notes=tuple(notes))
        except BaseException as err:
            if seeding:  # whatever was written before the failure goes too
                with contextlib.suppress(Exception):
                    await self._cleanup_with(admin)
            if isinstance(err, HwbenchError) or not isinstance(err, Exception):
                raise
            raise self.setup_error(err) from None
        finally:
            await admin.aclose()

    async def cleanup(self) -> int:
        """Delete every key under this workload's prefix (SCAN + UNLINK); returns how many were deleted."""
        admin = self._admin()
        try:
            return await self._cleanup_with(admin)
        finally:
            await admin.aclose()

    async def _cleanup_with(self, admin: Any) -> int:
        deleted = 0
        batch: list[bytes] = []
        async for key in admin.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(await admin.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(await admin.unlink(*batch))
        return deleted

    def prepare_sync(self) -> PrepareReport:
        """:meth:`prepare` from synchronous code (a fixture)."""
        return asyncio.run(self.prepare())

    def cleanup_sync(self) -> int:
        """:meth:`cleanup` from synchronous code (a fixture's teardown)."""
        return asyncio.run(self.cleanup())

    async def open(self) -> RedisLoadClient:
        """Create the load client in the running loop (the engine's ``ClientFactory``)."""
        return RedisLoadClient(self)


class RedisLoadClient:
    """Sends ``pipeline`` GET/SET commands per ``send(index)`` and returns their :class:`KVRecord`."""

    def __init__(self, workload: RedisWorkload) -> None:
        from redis import exceptions as rex

        self.w = workload
        self._rex = rex
        self._free: list[Any] = []
        self._all: list[Any] = []
        self._table = mix_table(workload.mix)
        self._value = workload.value()
        self._set_tail = b"\r\n"
        self._seed = workload.seed * 0x100000001B3

    def _commands(self, index: int) -> tuple[list[bytes], list[bool], dict[str, int], int]:
        """RESP frames of request ``index``: (buffers, is_get per command, counts per op, bytes sent)."""
        w = self.w
        depth = w.pipeline
        bufs: list[bytes] = []
        gets: list[bool] = []
        n_get = 0
        sent = 0
        vlen = len(self._value)
        table = self._table
        for j in range(depth):
            h = mix64((index * depth + j) ^ self._seed)
            key = w.key((h >> 16) % w.keyspace)
            if table[h & 1023] == "get":
                bufs.append(b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key))
                gets.append(True)
                n_get += 1
                sent += len(key)
            else:
                bufs.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, vlen))
                bufs.append(self._value)
                bufs.append(self._set_tail)
                gets.append(False)
                sent += len(key) + vlen
        counts = {}
        if n_get:
            counts["get"] = n_get
        if depth - n_get:
            counts["set"] = depth - n_get
        return bufs, gets, counts, sent

    async def send(self, index: int) -> KVRecord:
        bufs, gets, counts, sent = self._commands(index)
        rec = KVRecord(index=index, op=next(iter(counts)) if len(counts) == 1 else "mixed", op_counts=counts)
        conn = self._free.pop() if self._free else self._new()
        rex = self._rex
        keep = False
        rec.send_wall_ns = time.time_ns()
        rec.send_ns = _perf()
        try:
            if not conn.is_connected:
                await conn.connect()
            await conn.send_packed_command(bufs, check_health=False)
            failed: dict[str, int] = {}
            first_error = ""
            received = misses = 0
            # One deadline for the whole pipeline: a timer per reply costs more than parsing the reply.
            async with _timeout(self.w.timeout_s):
                for is_get in gets:
                    try:
                        reply = await conn.read_response(disable_decoding=True, timeout=math.inf)
                    except rex.ResponseError as err:  # an error reply: this command failed, not the others
                        op = "get" if is_get else "set"
                        failed[op] = failed.get(op, 0) + 1
                        first_error = first_error or str(err)
                        continue
                    if is_get:
                        if reply is None:
                            misses += 1
                        else:
                            received += len(reply)
            rec.end_ns = _perf()
            rec.bytes_out = sent
            rec.bytes_in = received
            rec.misses = misses
            if failed:
                rec.fail(ErrorClass.SERVER, first_error)
                rec.op_failed = failed
            keep = True
        except (rex.TimeoutError, asyncio.TimeoutError, TimeoutError) as err:
            rec.fail_all(ErrorClass.TIMEOUT, f"no reply within {self.w.timeout_s:g} s: {err}", _perf())
            await self._drop(conn)
            keep = True
        except (rex.ConnectionError, OSError) as err:
            rec.fail_all(ErrorClass.CONNECTION, f"{type(err).__name__}: {err}", _perf())
            await self._drop(conn)
            keep = True
            if self.w.reconnect_backoff_s > 0:  # do not spin on a server that is down
                await asyncio.sleep(self.w.reconnect_backoff_s)
        except rex.ResponseError as err:  # AUTH/SELECT refused on a reconnect
            rec.fail_all(ErrorClass.SERVER, str(err), _perf())
            await self._drop(conn)
            keep = True
        except rex.RedisError as err:
            rec.fail_all(ErrorClass.MALFORMED if "protocol" in type(err).__name__.lower() else ErrorClass.CLIENT,
                         f"{type(err).__name__}: {err}", _perf())
            await self._drop(conn)
            keep = True
        finally:
            if keep:  # cancelled mid-command: the connection's state is unknown, aclose() closes it
                self._free.append(conn)
        return rec

    def _new(self) -> Any:
        conn = self.w.connection()
        self._all.append(conn)
        return conn

    @staticmethod
    async def _drop(conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)

    async def aclose(self) -> None:
        for conn in self._all:
            await self._drop(conn)
        self._all.clear()
        self._free.clear()


@dataclass
class RedisRun:
    """Result of :func:`run_redis`: the engine's run, its metrics, and what seeding and cleanup did."""

    result: Any
    metrics: KVMetrics
    prepared: PrepareReport
    deleted: int


def metrics_of(result: Any) -> KVMetrics:
    """The Redis metrics of an engine :class:`RunResult` (``ops_s``, ``latency_us``, ``bytes_s``, ...)."""
    return compute_kv_metrics(result.records, throughput="ops_s", track_bytes=True)


def run_redis(workload: RedisWorkload, spec: Any, *, workers: int = 1, cleanup: bool = True) -> RedisRun:
    """Seed, run ``spec`` through the engine, compute metrics, delete the keys (also when the run fails).

    For benchmarks that seed once and measure several trials, call ``prepare_sync`` / ``run_load_sync`` /
    ``cleanup_sync`` separately (see ``benchmarks/test_redis.py``).
    """
    from pytest_hwbench.workloads.engine import run_load_sync

    prepared = workload.prepare_sync()
    deleted = 0
    try:
        result = run_load_sync(spec, workload.open, workers=workers)
    finally:
        if cleanup:
            deleted = workload.cleanup_sync()
    return RedisRun(result=result, metrics=metrics_of(result), prepared=prepared, deleted=deleted)
