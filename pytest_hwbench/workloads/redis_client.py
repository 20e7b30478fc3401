"""Redis GET/SET workload for the load engine (``redis.asyncio``): mix, sizes, key space, pipelining.

What one ``send(index)`` does: ``pipeline`` commands (1 = no pipelining), each a GET or a SET chosen by the
``mix`` weights, on a key drawn uniformly from the ``keyspace`` seeded keys, written in one go on one
connection, then all replies read. The record says how many commands of each type it carried, which of them
failed, the payload bytes moved (keys and values sent, values received) and the GETs that found nothing.

Why a protocol-level client (``_RespConn``) rather than redis-py on the measured path: redis-py's client
object and even its bare ``Connection`` spend most of a pipeline-1 operation in asyncio machinery (a
``wait_for`` per command, an awaited ``read_response`` per reply), client-side overhead that
``redis-benchmark`` does not pay. Here commands are encoded as RESP once per request and written in one
go, replies are parsed in ``data_received`` (``hiredis`` when installed, else a pure-Python reader that
skips over values without copying them), and the request completes from that callback. redis-py is still
what seeds, checks and cleans the server (outside the measured window). Each connection is owned by one
request at a time, so ``clients`` concurrent users use exactly ``clients`` connections.

Why retries are off: a benchmark must see every failure. A broken connection fails the request in flight
(classified ``connection``), is dropped and reopened by the next request that needs it; a connection that
cannot be reopened (server down) fails fast and the client pauses ``reconnect_backoff_s`` so a dead server
does not turn into a busy loop of errors. A reply later than ``timeout_s`` is a ``timeout`` (checked by one
sweep per client, so it fires within 1.25 x ``timeout_s``); the connection is then closed, since a late
reply would otherwise be read by the next request.

Safety (the server may hold someone's data): every key lives under ``hwbench:<run>:`` with a fresh ``run``,
:meth:`RedisWorkload.prepare` refuses a database that already holds keys (``DBSIZE > 0``) unless
``allow_existing_data``, and :meth:`RedisWorkload.cleanup` deletes the prefix with SCAN + UNLINK. Limits the
server would refuse (value larger than ``proto-max-bulk-len``, key space larger than ``maxmemory``) are
checked before seeding and reported with the setting to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.recipe.specs import default_of
from pytest_hwbench.recipe.workload_settings import (
    REDIS,
    REDIS_MAX_STRING,
    REDIS_OPERATIONS,
    REDIS_PARSERS,
    RedisSettings,
)
from pytest_hwbench.workloads.kv_metrics import (
    KVMetrics,
    KVRecord,
    compute_kv_metrics,
    mix_table,
)
from pytest_hwbench.workloads.records import ErrorClass

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - redis-py depends on async-timeout below 3.11.3
    from async_timeout import timeout as _timeout

_perf = time.perf_counter_ns
OPERATIONS = REDIS_OPERATIONS
#: Redis refuses string values over 512 MB whatever proto-max-bulk-len says.
MAX_STRING = REDIS_MAX_STRING
#: Bytes of server memory per key beyond key and value (dict entry, robj, SDS headers, allocator slack).
PER_KEY_OVERHEAD = 80
SEED_BATCH = 1000
#: The recipe settings (``RedisSettings``) this workload object holds; the others size the benchmark's trials.
SETTINGS = ("mix", "key_size", "value_size", "keyspace", "pipeline", "timeout_s", "connect_timeout_s",
            "allow_existing_data", "db", "username", "password", "seed", "reconnect_backoff_s", "parser")
#: RESP readers: ``auto`` = hiredis when installed, else the pure-Python one.
PARSERS = REDIS_PARSERS


def _default(name: str) -> Any:
    """The default declared in ``RedisSettings`` (written once, there)."""
    return field(default_factory=lambda: default_of(RedisSettings, name))


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
    ``credentials_field`` where the password/username came from. Values given in code are checked by the
    recipe's own declaration (``RedisSettings``), so ``value_size="4kb"`` works here as in a recipe.
    """

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    mix: Any = field(default_factory=lambda: default_of(RedisSettings, "mix"))
    key_size: int | None = None
    value_size: Any = field(default_factory=lambda: default_of(RedisSettings, "value_size"))
    keyspace: int = _default("keyspace")
    pipeline: int = _default("pipeline")
    timeout_s: float = _default("timeout_s")
    connect_timeout_s: float = _default("connect_timeout_s")
    allow_existing_data: bool = _default("allow_existing_data")
    seed: int = _default("seed")
    reconnect_backoff_s: float = _default("reconnect_backoff_s")
    parser: str = _default("parser")
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    settings_field: str = "settings"
    credentials_field: str = "settings"

    def __post_init__(self) -> None:
        f = self.settings_field

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        given = {k: getattr(self, k) for k in SETTINGS if getattr(self, k) is not None}
        for name, value in REDIS.coerce(given, f).items():
            put(name, value)
        if not self.run.isalnum():
            raise HwbenchInputError(f"run id {self.run!r} must be letters and digits", field="run",
                                    fix="leave run out (a random id is chosen)")
        shortest = len(self.prefix) + len(str(self.keyspace - 1))
        if self.key_size is None:
            put("key_size", shortest)
        elif self.key_size < shortest:
            raise HwbenchInputError(
                f"key_size {self.key_size} cannot hold the prefix {self.prefix!r} and "
                f"{len(str(self.keyspace - 1))} digits of the key index", field=f"{f}.key_size",
                fix=f"use key_size >= {shortest}, or leave it out")

    # -- construction from a recipe ------------------------------------------------------------------------
    @classmethod
    def from_endpoint(cls, endpoint: Any, settings: RedisSettings | None = None, **overrides: Any) \
            -> RedisWorkload:
        """A workload against the recipe service ``endpoint`` with the recipe's typed ``settings``
        (``hwbench.workloads.redis``, checked when the recipe loaded).

        Credentials and the database index come from ``settings`` (``password``, ``username``, ``db``),
        else from the endpoint's ``extra`` (an external service's ``extra: {password: ...}``). Keyword
        ``overrides`` (e.g. sweep parameters) win over both.
        """
        s = settings if settings is not None else RedisSettings()
        extra = dict(getattr(endpoint, "extra", {}) or {})
        kw: dict[str, Any] = {k: getattr(s, k) for k in SETTINGS if getattr(s, k) is not None}
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


class _ReplyError(Exception):
    """An error reply (``-ERR ...``) as hiredis hands it over."""


def _hiredis_reader() -> Any | None:
    try:
        import hiredis
    except ImportError:
        return None
    return hiredis.Reader(replyError=_ReplyError)


_OK, _NIL, _BULK, _ERROR, _ARRAY = range(5)
#: Requests whose command choices are computed at once; frames of at most this many keys are kept.
_BLOCK = 1024
_FRAME_CACHE = 200_000
_M64 = (1 << 64) - 1


class _RespConn(asyncio.Protocol):
    """One connection to Redis; parses RESP2 replies inside ``data_received`` and completes a request there.

    Why a protocol rather than ``redis.asyncio.Connection``: that class reads each reply with an awaited
    ``read_response`` (a task hop per reply, 16 chained awaits at pipeline 16) inside a ``wait_for`` per
    command, and a third of a pipeline-1 operation went into that machinery. Here the bytes are parsed as
    they arrive, the last reply's arrival is stamped by the first Python code that sees it (as ``http1``
    does for HTTP), and the request's one future is completed from the callback. A GET's value is never
    copied: the pure-Python reader only skips over its bytes (its length is what the metrics need);
    ``hiredis`` (optional) parses in C when installed.
    """

    def __init__(self, client: RedisLoadClient, use_hiredis: bool) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reader = _hiredis_reader() if use_hiredis else None
        self.buf = b""
        self.skip = 0  # bytes of a bulk value (and its CRLF) still to pass over
        self.skip_size = 0
        self.stack: list[int] = []  # elements left in each open array
        self.fut: asyncio.Future[None] | None = None
        self.gets: list[bool] = []
        self.i = 0
        self.started = 0
        self.end_ns = 0
        self.received = self.misses = 0
        self.failed: dict[str, int] | None = None
        self.first_error = ""
        self.lost: tuple[str, str] | None = None  # (error class, detail) when the request itself failed

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        why = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        self.fail(ErrorClass.CONNECTION, why)

    def eof_received(self) -> bool | None:
        return False

    def data_received(self, data: bytes) -> None:
        if self.fut is None or self.fut.done():  # bytes nobody asked for: not trustworthy any more
            self.abort()
            return
        try:
            if self.reader is not None:
                self._hiredis(data)
            else:
                self._parse(data)
        except Exception as exc:  # a protocol error (or a parser bug) must not escape into asyncio
            self.fail(ErrorClass.MALFORMED, f"bad reply from Redis: {type(exc).__name__}: {exc}")

    # -- request lifecycle
    def begin(self, bufs: list[bytes], gets: list[bool], fut: asyncio.Future[None]) -> None:
        self.fut, self.gets, self.i = fut, gets, 0
        self.received = self.misses = 0
        self.failed, self.first_error, self.lost = None, "", None
        self.started = _perf()
        assert self.transport is not None
        self.transport.writelines(bufs)

    def fail(self, error_class: str, detail: str) -> None:
        if self.fut is not None and not self.fut.done():
            self.lost = (error_class, detail)
            self.end_ns = _perf()
            self.fut.set_result(None)
        self.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self.closed = True

    def _reply(self, kind: int, size: int, text: str = "") -> None:
        i = self.i
        if i >= len(self.gets):
            raise ValueError("more replies than commands sent")
        is_get = self.gets[i]
        if kind == _ERROR:
            op = "get" if is_get else "set"
            if self.failed is None:
                self.failed = {}
            self.failed[op] = self.failed.get(op, 0) + 1
            self.first_error = self.first_error or text
        elif is_get:
            if kind == _BULK:
                self.received += size
            elif kind == _NIL:
                self.misses += 1
        self.i = i = i + 1
        if i == len(self.gets):
            self.end_ns = _perf()
            assert self.fut is not None
            self.fut.set_result(None)

    def _done(self, kind: int, size: int, text: str = "") -> None:
        stack = self.stack
        while stack:  # an element of an open array: the array is the reply once all its elements came
            stack[-1] -= 1
            if stack[-1] > 0:
                return
            stack.pop()
            kind, size = _ARRAY, 0
        self._reply(kind, size, text)

    def _hiredis(self, data: bytes) -> None:
        """Replies parsed by hiredis; the bookkeeping of :meth:`_reply` done in one loop with local variables
        (a method call per reply was a tenth of a pipeline's client CPU at depth 16)."""
        reader = self.reader
        assert reader is not None  # only called when a hiredis reader exists
        reader.feed(data)
        gets, i = self.gets, self.i
        n = len(gets)
        received = misses = 0
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                if i >= n:
                    raise ValueError("more replies than commands sent")
                if type(reply) is bytes:
                    if gets[i]:
                        received += len(reply)
                elif reply is None:
                    if gets[i]:
                        misses += 1
                elif isinstance(reply, _ReplyError):
                    op = "get" if gets[i] else "set"
                    if self.failed is None:
                        self.failed = {}
                    self.failed[op] = self.failed.get(op, 0) + 1
                    self.first_error = self.first_error or str(reply)
                i += 1
                if i == n:
                    self.end_ns = _perf()
                    self.i, self.received, self.misses = i, self.received + received, self.misses + misses
                    received = misses = 0
                    assert self.fut is not None
                    self.fut.set_result(None)
                    if reader.gets() is not False:  # the request has its replies; the connection is not trusted
                        raise ValueError("more replies than commands sent")
                    return
        finally:
            self.i = i
            self.received += received
            self.misses += misses

    def _parse(self, data: bytes) -> None:
        if self.skip:
            if len(data) < self.skip:
                self.skip -= len(data)
                return
            data = data[self.skip:]
            self.skip = 0
            self._done(_BULK, self.skip_size)
            if data and (self.fut is None or self.fut.done()):
                raise ValueError("more replies than commands sent")
        buf = self.buf + data if self.buf else data
        self.buf = b""
        pos, n = 0, len(buf)
        while pos < n:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                self.buf = buf[pos:]
                if len(self.buf) > 65536:
                    raise ValueError("reply line longer than 64 KiB")
                return
            c = buf[pos]
            if c == 36:  # $: bulk string
                size = int(buf[pos + 1:eol])
                if size < 0:
                    pos = eol + 2
                    self._done(_NIL, 0)
                    continue
                end = eol + 4 + size
                if end > n:  # the rest of the value arrives later: skip it without keeping it
                    self.skip, self.skip_size = end - n, size
                    return
                pos = end
                self._done(_BULK, size)
            elif c == 43 or c == 58:  # +OK, :integer
                pos = eol + 2
                self._done(_OK, 0)
            elif c == 45:  # -ERR ...
                text = buf[pos + 1:eol].decode("utf-8", "replace")
                pos = eol + 2
                self._done(_ERROR, 0, text)
            elif c == 42:  # *: array
                count = int(buf[pos + 1:eol])
                pos = eol + 2
                if count <= 0:
                    self._done(_NIL if count < 0 else _ARRAY, 0)
                else:
                    self.stack.append(count)
            else:
                raise ValueError(f"unknown RESP type byte {bytes([c])!r}")
            if self.fut is None or self.fut.done():
                if pos < n:  # bytes beyond the replies we asked for
                    raise ValueError("more replies than commands sent")
                return


class RedisLoadClient:
    """Sends ``pipeline`` GET/SET commands per ``send(index)`` and returns their :class:`KVRecord`.

    Timeouts: one sweep per client, every ``timeout_s / 4`` (at least 10 ms, at most 250 ms) while requests
    are in flight, fails those older than ``timeout_s`` — no timer per request. A timeout therefore fires
    between ``timeout_s`` and 1.25 x ``timeout_s`` after the send.
    """

    def __init__(self, workload: RedisWorkload) -> None:
        self.w = workload
        self._free: list[_RespConn] = []
        self._all: set[_RespConn] = set()
        self._busy: set[_RespConn] = set()
        self._table = mix_table(workload.mix)
        self._value = workload.value()
        self._set_tail = b"\r\n"
        self._seed = workload.seed * 0x100000001B3
        self._get_table = np.array([op == "get" for op in self._table], dtype=bool)
        self._block_id = -1
        self._block_keys: list[int] = []
        self._block_gets: list[bool] = []
        self._get_frames: dict[int, bytes] = {}
        self._set_heads: dict[int, bytes] = {}
        parser = workload.parser
        self._use_hiredis = parser == "hiredis" or (parser == "auto" and _hiredis_reader() is not None)
        if parser == "hiredis" and _hiredis_reader() is None:
            raise HwbenchInputError("parser 'hiredis' asked for but hiredis is not installed",
                                    field=f"{workload.settings_field}.parser",
                                    fix="pip install hiredis, or use parser: auto")
        self._timeout_ns = int(workload.timeout_s * 1e9)
        self._sweep_s = min(0.25, max(0.01, workload.timeout_s / 4))
        self._sweeping = False
        self._handshake = self._handshake_frames()

    @property
    def parser(self) -> str:
        """Which RESP reader this client uses: ``hiredis`` or ``python``."""
        return "hiredis" if self._use_hiredis else "python"

    def _handshake_frames(self) -> list[bytes]:
        w = self.w
        frames = []
        if w.password is not None:
            args = [b"AUTH", *([w.username.encode()] if w.username else []), w.password.encode()]
            frames.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args))
        if w.db:
            db = str(w.db).encode()
            frames.append(b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%b\r\n" % (len(db), db))
        return frames

    def _plan(self, index: int) -> tuple[list[int], list[bool]]:
        """Key index and GET-or-not of each command of request ``index``.

        The same choices as hashing each command's number with ``mix64`` (so any process makes them the
        same way), but computed with numpy for a block of ``_BLOCK`` requests at a time: a Python hash per
        command was a large part of a pipeline's cost.
        """
        block, offset = divmod(index, _BLOCK)
        if block != self._block_id:
            depth = self.w.pipeline
            n = _BLOCK * depth
            with np.errstate(over="ignore"):
                z = np.arange(block * n, block * n + n, dtype=np.uint64) ^ np.uint64(self._seed & _M64)
                z = z + np.uint64(0x9E3779B97F4A7C15)
                z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
                z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
                z = z ^ (z >> np.uint64(31))
            self._block_keys = ((z >> np.uint64(16)) % np.uint64(self.w.keyspace)).tolist()
            self._block_gets = self._get_table[(z & np.uint64(1023)).astype(np.intp)].tolist()
            self._block_id = block
        depth = self.w.pipeline
        lo = offset * depth
        return self._block_keys[lo:lo + depth], self._block_gets[lo:lo + depth]

    def _frame(self, key_index: int, is_get: bool) -> bytes:
        """The RESP frame of one GET, or the head of one SET (the value and CRLF follow as their own buffers)."""
        cache = self._get_frames if is_get else self._set_heads
        frame = cache.get(key_index)
        if frame is None:
            key = self.w.key(key_index)
            if is_get:
                frame = b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)
            else:
                frame = b"*3\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n" % (len(key), key, len(self._value))
            if len(cache) < _FRAME_CACHE:
                cache[key_index] = frame
        return frame

    def _commands(self, index: int) -> tuple[list[bytes], list[bool], dict[str, int], int]:
        """RESP frames of request ``index``: (buffers, is_get per command, counts per op, bytes sent)."""
        keys, gets = self._plan(index)
        frame = self._frame
        n_get = sum(gets)
        n_set = len(gets) - n_get
        if n_set == 0:
            bufs = [frame(k, True) for k in keys]
        else:
            bufs = []
            for k, g in zip(keys, gets, strict=True):
                bufs.append(frame(k, g))
                if not g:
                    bufs.append(self._value)
                    bufs.append(self._set_tail)
        counts = {}
        if n_get:
            counts["get"] = n_get
        if n_set:
            counts["set"] = n_set
        key_size = self.w.key_size or 0
        return bufs, gets, counts, n_get * key_size + n_set * (key_size + len(self._value))

    async def _connect(self) -> _RespConn:
        """A new connection, authenticated and on the right database; raises on failure."""
        loop = asyncio.get_running_loop()
        w = self.w
        async with _timeout(w.connect_timeout_s):
            _, conn = await loop.create_connection(lambda: _RespConn(self, self._use_hiredis), w.host, w.port)
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.add(conn)
        if self._handshake:
            fut = loop.create_future()
            conn.begin(self._handshake, [False] * len(self._handshake), fut)
            try:
                async with _timeout(w.connect_timeout_s):
                    await fut
            except (asyncio.TimeoutError, TimeoutError):
                conn.abort()
                self._all.discard(conn)
                raise
            if conn.lost is not None or conn.failed:
                conn.abort()
                self._all.discard(conn)
                raise _HandshakeError(conn.first_error or (conn.lost[1] if conn.lost else "refused"))
            conn.fut = None
        return conn

    def _arm_sweep(self) -> None:
        if not self._sweeping:
            self._sweeping = True
            asyncio.get_running_loop().call_later(self._sweep_s, self._sweep)

    def _sweep(self) -> None:
        now = _perf()
        for conn in list(self._busy):
            if now - conn.started >= self._timeout_ns:
                conn.fail(ErrorClass.TIMEOUT, f"no reply within {self.w.timeout_s:g} s")
        self._sweeping = False
        if self._busy:
            self._arm_sweep()

    async def send(self, index: int) -> KVRecord:
        bufs, gets, counts, sent = self._commands(index)
        rec = KVRecord(index=index, op=next(iter(counts)) if len(counts) == 1 else "mixed", op_counts=counts)
        rec.send_wall_ns = time.time_ns()
        rec.send_ns = _perf()
        conn: _RespConn | None = None
        while self._free:
            candidate = self._free.pop()
            if not candidate.closed:
                conn = candidate
                break
            self._all.discard(candidate)
        if conn is None:
            try:
                conn = await self._connect()
            except (asyncio.TimeoutError, TimeoutError):
                return rec.fail_all(ErrorClass.TIMEOUT, f"connect timed out after {self.w.connect_timeout_s:g} s",
                                    _perf())
            except _HandshakeError as err:  # AUTH/SELECT refused on a reconnect
                return rec.fail_all(ErrorClass.SERVER, str(err), _perf())
            except OSError as err:
                rec.fail_all(ErrorClass.CONNECTION, f"{type(err).__name__}: {err}", _perf())
                if self.w.reconnect_backoff_s > 0:  # do not spin on a server that is down
                    await asyncio.sleep(self.w.reconnect_backoff_s)
                return rec
        fut = asyncio.get_running_loop().create_future()
        self._busy.add(conn)
        if not self._sweeping:
            self._arm_sweep()
        try:
            conn.begin(bufs, gets, fut)
            await fut
        except asyncio.CancelledError:  # cancelled mid-command: the connection's state is unknown
            conn.abort()
            self._all.discard(conn)
            raise
        finally:
            self._busy.discard(conn)
        conn.fut = None
        lost = conn.lost
        if lost is not None:
            rec.fail_all(lost[0], lost[1], conn.end_ns)
            self._all.discard(conn)
            conn.abort()
            if lost[0] == ErrorClass.CONNECTION and self.w.reconnect_backoff_s > 0:
                await asyncio.sleep(self.w.reconnect_backoff_s)
            return rec
        rec.end_ns = conn.end_ns
        rec.bytes_out = sent
        rec.bytes_in = conn.received
        rec.misses = conn.misses
        if conn.failed:
            rec.fail(ErrorClass.SERVER, conn.first_error)
            rec.op_failed = conn.failed
        self._free.append(conn)
        return rec

    async def aclose(self) -> None:
        for conn in list(self._all):
            conn.abort()
        self._all.clear()
        self._free.clear()
        await asyncio.sleep(0)


class _HandshakeError(Exception):
    """AUTH or SELECT refused when a connection was (re)opened."""


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
