r"""PostgreSQL workload for the load engine (psycopg 3 async + ``psycopg_pool.AsyncConnectionPool``).

Tables are pgbench's (``branches``, ``tellers``, ``accounts``, ``history``; ``scale`` branches, 10 tellers
and ``accounts_per_branch`` accounts per branch, 100 000 as in pgbench), created and filled in a schema of
its own, ``hwbench_<run>``, before the measured window and dropped after it. One ``send(index)`` runs one
operation of the ``mix``:

* ``point_select`` — ``SELECT abalance FROM accounts WHERE aid = ?`` (pgbench's select-only script);
* ``range_scan`` — ``range_rows`` consecutive accounts by primary key;
* ``insert`` — one ``history`` row;
* ``update`` — one account's balance;
* ``tpcb`` — pgbench's built-in TPC-B-like transaction: BEGIN; update account; select its balance; update
  teller; update branch; insert history; END (five statements). One round trip per statement, as
  pgbench's built-in script with ``-M prepared``; with ``pipeline: true`` all seven go in one round trip
  (libpq's pipeline mode; compare with pgbench running the same script between ``\startpipeline`` and
  ``\endpipeline``). This transaction runs as prepared statements straight through psycopg's libpq binding
  (``postgres_pq``): psycopg's cursor layer cost about four times pgbench's client CPU per transaction.

A mix of only ``tpcb`` reports its throughput as ``tps`` (transactions/s, comparable with pgbench);
any other mix as ``ops_s`` (every operation outside ``tpcb`` is its own autocommit transaction).

Errors never escape ``send``: SQLSTATE 40001/40P01 (serialization failure, deadlock) are ``server`` errors
with the SQLSTATE kept in the record and counted as ``serialization_failures``; 57014 (statement_timeout)
and a pool with no free connection within ``pool_timeout_s`` are ``timeout``; a lost connection, a server
shutting down or starting up (08xxx, 57P01-57P03) is ``connection`` — the pool drops the broken connection
and reconnects in the background, so the run goes on after a server restart. Operations are not retried:
a retry would hide exactly what a benchmark must show.

Safety: :meth:`PostgresWorkload.prepare` refuses a database holding schemas other than an empty ``public``
(data it did not create) unless ``allow_existing_data``, and touches nothing outside its own schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.recipe.specs import default_of
from pytest_hwbench.recipe.workload_settings import POSTGRES, POSTGRES_OPERATIONS, PostgresSettings
from pytest_hwbench.workloads.kv_metrics import (
    SERIALIZATION_SQLSTATES,
    KVMetrics,
    KVRecord,
    compute_kv_metrics,
    mix64,
    mix_table,
)
from pytest_hwbench.workloads.postgres_pq import PreparedSet, run_transaction
from pytest_hwbench.workloads.records import ErrorClass

_perf = time.perf_counter_ns
OPERATIONS = POSTGRES_OPERATIONS
ISOLATION_LEVELS = {"read committed": "read\\ committed", "read_committed": "read\\ committed",
                    "repeatable read": "repeatable\\ read", "repeatable_read": "repeatable\\ read",
                    "serializable": "serializable"}
TELLERS_PER_BRANCH = 10
#: The recipe settings (``PostgresSettings``) this workload object holds; the others size the trials.
SETTINGS = ("mix", "scale", "accounts_per_branch", "range_rows", "isolation", "statement_timeout_s",
            "pool_timeout_s", "connect_timeout_s", "allow_existing_data", "seed", "dsn", "pipeline")
#: SQLSTATEs (and classes) meaning the connection, not the statement, failed.
_CONNECTION_STATES = ("57P01", "57P02", "57P03", "53300")


def _pg() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as err:  # pragma: no cover - declared dependencies of the services extra
        raise HwbenchError("the PostgreSQL workload needs psycopg 3 and psycopg_pool "
                           "(pip install 'pytest-hwbench[services]')") from err
    return psycopg, psycopg_pool


def classify(err: BaseException) -> tuple[str, str | None]:
    """(error class, SQLSTATE) of a failed operation: what failed, for ``error_rate`` broken down."""
    psycopg, psycopg_pool = _pg()
    state = getattr(getattr(err, "diag", None), "sqlstate", None) or getattr(err, "sqlstate", None)
    if isinstance(err, (psycopg_pool.PoolTimeout, asyncio.TimeoutError, TimeoutError)):
        return ErrorClass.TIMEOUT, state
    if state == "57014":  # query_canceled: statement_timeout (or a cancel request)
        return ErrorClass.TIMEOUT, state
    if state in SERIALIZATION_SQLSTATES:
        return ErrorClass.SERVER, state
    if state and (state.startswith("08") or state in _CONNECTION_STATES):
        return ErrorClass.CONNECTION, state
    if state is None and isinstance(err, (psycopg.OperationalError, psycopg.InterfaceError,
                                          psycopg_pool.PoolClosed, OSError)):
        return ErrorClass.CONNECTION, None
    if isinstance(err, psycopg.Error):
        return ErrorClass.SERVER, state
    return ErrorClass.CLIENT, state


@dataclass(frozen=True)
class PrepareReport:
    """What :meth:`PostgresWorkload.prepare` did, outside the measured window."""

    schema: str
    accounts: int
    seed_s: float
    server_version: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PostgresWorkload:
    """One PostgreSQL workload: where (``dsn``), the mix, the data size. Picklable; ``open`` is a
    ``ClientFactory``. ``connections`` is the pool size: give it the engine's number of users. Values given
    in code are checked by the recipe's own declaration (``PostgresSettings``); its defaults are these."""

    dsn: str
    mix: Any = field(default_factory=lambda: default_of(PostgresSettings, "mix"))
    scale: int = default_of(PostgresSettings, "scale")
    accounts_per_branch: int = default_of(PostgresSettings, "accounts_per_branch")
    range_rows: int = default_of(PostgresSettings, "range_rows")
    connections: int = 1
    isolation: str = default_of(PostgresSettings, "isolation")
    statement_timeout_s: float = default_of(PostgresSettings, "statement_timeout_s")
    pool_timeout_s: float = default_of(PostgresSettings, "pool_timeout_s")
    connect_timeout_s: float = default_of(PostgresSettings, "connect_timeout_s")
    allow_existing_data: bool = default_of(PostgresSettings, "allow_existing_data")
    seed: int = default_of(PostgresSettings, "seed")
    pipeline: bool = default_of(PostgresSettings, "pipeline")
    run: str = field(default_factory=lambda: secrets.token_hex(4))
    settings_field: str = "settings"
    credentials_field: str = "services.postgres"

    def __post_init__(self) -> None:
        f = self.settings_field

        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        given = {k: getattr(self, k) for k in SETTINGS if k != "dsn" and getattr(self, k) is not None}
        for name, value in POSTGRES.coerce(given, f).items():
            put(name, value)
        if isinstance(self.connections, bool) or not isinstance(self.connections, int) or self.connections < 1:
            raise HwbenchInputError(f"must be an integer >= 1, got {self.connections!r}", field="connections",
                                    fix="give the engine's number of users")
        if not re.fullmatch(r"[a-z0-9]+", self.run):
            raise HwbenchInputError(f"run id {self.run!r} must be lower-case letters and digits", field="run",
                                    fix="leave run out (a random id is chosen)")
        if not str(self.dsn).strip():
            raise HwbenchInputError("no connection string", field=f"{f}.dsn",
                                    fix="use a recipe service of kind postgres, or set dsn: postgresql://...")

    # -- construction from a recipe ------------------------------------------------------------------------
    @classmethod
    def from_endpoint(cls, endpoint: Any, settings: PostgresSettings | None = None, **overrides: Any) \
            -> PostgresWorkload:
        """A workload against the recipe service ``endpoint`` (its ``extra['dsn']``) with the recipe's typed
        ``settings`` (``hwbench.workloads.postgres``, checked when the recipe loaded).

        A ``dsn`` setting replaces the endpoint's; credentials errors then name ``settings.dsn``.
        """
        s = settings if settings is not None else PostgresSettings()
        kw: dict[str, Any] = {k: getattr(s, k) for k in SETTINGS if getattr(s, k) is not None}
        name = getattr(endpoint, "name", "") or "postgres"
        cred = f"services.{name}"
        if "dsn" in kw:
            cred = "settings.dsn"
        else:
            kw["dsn"] = (getattr(endpoint, "extra", {}) or {}).get("dsn") or getattr(endpoint, "url", "")
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(credentials_field=cred, **kw)

    def with_run(self, run: str | None = None) -> PostgresWorkload:
        """The same workload in a new schema."""
        return replace(self, run=run or secrets.token_hex(4))

    @property
    def schema(self) -> str:
        """The schema holding every table this workload creates: ``hwbench_<run>``."""
        return f"hwbench_{self.run}"

    @property
    def throughput(self) -> str:
        """``tps`` for a transactions-only (``tpcb``) mix, ``ops_s`` otherwise."""
        return "tps" if set(self.mix) == {"tpcb"} else "ops_s"

    @property
    def accounts(self) -> int:
        return self.scale * self.accounts_per_branch

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg connection arguments: autocommit, timeouts and isolation as server options."""
        iso = ISOLATION_LEVELS[self.isolation]
        return {"autocommit": True, "connect_timeout": max(1, round(self.connect_timeout_s)),
                "options": f"-c statement_timeout={int(self.statement_timeout_s * 1000)} "
                           f"-c default_transaction_isolation={iso}"}

    def _where(self) -> str:
        psycopg, _ = _pg()
        try:
            info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        except psycopg.ProgrammingError:
            return "PostgreSQL"
        return f"PostgreSQL at {info.get('host', 'localhost')}:{info.get('port', 5432)}"

    def setup_error(self, err: BaseException) -> HwbenchError:
        """A connect-time failure as one clear message that names the setting to change."""
        psycopg, _ = _pg()
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        low = text.lower()
        where = self._where()
        cf = self.credentials_field
        user = database = "?"
        with contextlib.suppress(Exception):
            info = psycopg.conninfo.conninfo_to_dict(self.dsn)
            user, database = str(info.get("user", "?")), str(info.get("dbname", "?"))
        state = getattr(getattr(err, "diag", None), "sqlstate", None)
        if "password authentication failed" in low or state == "28P01" or "no password supplied" in low:
            return HwbenchInputError(f"{where} rejected the credentials of user {user!r} ({text})",
                                     field=f"{cf}.password" if cf != "settings.dsn" else cf,
                                     fix=f"set {cf}.user and {cf}.password to a role of the server "
                                         "(e.g. password: ${PGPASSWORD})")
        if ("role" in low and "does not exist" in low) or state == "28000":
            return HwbenchInputError(f"{where}: no such role {user!r} ({text})",
                                     field=f"{cf}.user" if cf != "settings.dsn" else cf,
                                     fix=f"set {cf}.user to an existing role")
        if ("database" in low and "does not exist" in low) or state == "3D000":
            return HwbenchInputError(f"{where} has no database {database!r} ({text})",
                                     field=f"{cf}.database" if cf != "settings.dsn" else cf,
                                     fix=f"create it (createdb {database}) or set {cf}.database to an existing "
                                         "database")
        if "permission denied" in low or state == "42501":
            return HwbenchInputError(f"{where}: user {user!r} may not create the benchmark schema ({text})",
                                     field=f"{cf}.user", fix="GRANT CREATE ON DATABASE to it, or use another role")
        if "timeout" in low:
            return HwbenchError(f"{where} did not answer within {self.connect_timeout_s:g} s ({text}); check "
                                f"that it runs, or raise {self.settings_field}.connect_timeout_s")
        if isinstance(err, (psycopg.OperationalError, OSError)):
            return HwbenchError(f"could not connect to {where}: {text}")
        return HwbenchError(f"{where}: {type(err).__name__}: {text}")

    async def _connect(self) -> Any:
        psycopg, _ = _pg()
        try:
            return await psycopg.AsyncConnection.connect(self.dsn, **self.connect_kwargs())
        except (psycopg.Error, OSError) as err:
            raise self.setup_error(err) from None

    # -- before and after the measured window --------------------------------------------------------------
    async def foreign_schemas(self, conn: Any) -> list[str]:
        """Schemas this benchmark did not create: anything but the system ones and an empty ``public``."""
        cur = await conn.execute(
            "SELECT n.nspname::text, (SELECT count(*) FROM pg_class c WHERE c.relnamespace = n.oid) "
            "FROM pg_namespace n WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' "
            "ORDER BY 1")
        out = []
        for name, rels in await cur.fetchall():
            name = name.decode() if isinstance(name, bytes) else str(name)  # SQL_ASCII databases give bytes
            if name != "public" or rels > 0:
                out.append(name if name != "public" else "public (holds relations)")
        return out

    async def prepare(self) -> PrepareReport:
        """Check the database, create the schema, load and index the tables, VACUUM ANALYZE (not measured)."""
        psycopg, _ = _pg()
        conn = await self._connect()
        created = False
        s = self.schema
        try:
            t0 = _perf()
            version = (await (await conn.execute("SHOW server_version")).fetchone())[0]
            version = version.decode() if isinstance(version, bytes) else str(version)
            foreign = await self.foreign_schemas(conn)
            if foreign and not self.allow_existing_data:
                f = self.settings_field
                raise HwbenchInputError(
                    f"{self._where()} database holds data this benchmark did not create (schemas: "
                    f"{', '.join(foreign)}); it refuses to run there", field=f"{f}.allow_existing_data",
                    fix=f"use an empty database, or set {f}.allow_existing_data: true (the benchmark then works "
                        f"only inside its own schema hwbench_<run>, dropped at the end)")
            await conn.execute("SET statement_timeout = 0")
            await conn.execute(f"CREATE SCHEMA {s}")
            created = True
            apb = self.accounts_per_branch
            for sql in (
                f"CREATE TABLE {s}.branches (bid int NOT NULL, bbalance int, filler char(88)) "
                "WITH (fillfactor=100)",
                f"CREATE TABLE {s}.tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) "
                "WITH (fillfactor=100)",
                f"CREATE TABLE {s}.accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) "
                "WITH (fillfactor=100)",
                f"CREATE TABLE {s}.history (tid int, bid int, aid int, delta int, mtime timestamp, "
                "filler char(22))",
                f"INSERT INTO {s}.branches SELECT g, 0, NULL FROM generate_series(1, {self.scale}) g",
                f"INSERT INTO {s}.tellers SELECT g, (g - 1) / {TELLERS_PER_BRANCH} + 1, 0, NULL "
                f"FROM generate_series(1, {self.scale * TELLERS_PER_BRANCH}) g",
                f"INSERT INTO {s}.accounts SELECT g, (g - 1) / {apb} + 1, 0, '' "
                f"FROM generate_series(1, {self.accounts}) g",
                f"ALTER TABLE {s}.branches ADD PRIMARY KEY (bid)",
                f"ALTER TABLE {s}.tellers ADD PRIMARY KEY (tid)",
                f"ALTER TABLE {s}.accounts ADD PRIMARY KEY (aid)",
                f"VACUUM ANALYZE {s}.branches, {s}.tellers, {s}.accounts, {s}.history",
            ):
                await conn.execute(sql)
            return PrepareReport(schema=s, accounts=self.accounts, seed_s=(_perf() - t0) / 1e9,
                                 server_version=version)
        except BaseException as err:
            if created:
                with contextlib.suppress(Exception):
                    await conn.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
            if isinstance(err, (psycopg.Error, OSError)):
                raise self.setup_error(err) from None
            raise
        finally:
            await conn.close()

    async def cleanup(self) -> bool:
        """Drop the benchmark's schema (and everything in it). Returns whether it existed."""
        conn = await self._connect()
        try:
            await conn.execute("SET statement_timeout = 0")
            cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
            existed = await cur.fetchone() is not None
            await conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            return existed
        finally:
            await conn.close()

    async def schema_exists(self) -> bool:
        """Whether the benchmark's schema is (still) there, for tests of the cleanup."""
        conn = await self._connect()
        try:
            cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
            return await cur.fetchone() is not None
        finally:
            await conn.close()

    def prepare_sync(self) -> PrepareReport:
        """:meth:`prepare` from synchronous code (a fixture)."""
        return asyncio.run(self.prepare())

    def cleanup_sync(self) -> bool:
        """:meth:`cleanup` from synchronous code (a fixture's teardown)."""
        return asyncio.run(self.cleanup())

    async def open(self) -> PostgresLoadClient:
        """Open the pool in the running loop (the engine's ``ClientFactory``)."""
        client = PostgresLoadClient(self)
        await client.start()
        return client


OpFn = Callable[[Any, int], Awaitable[tuple[int, int]]]


class PostgresLoadClient:
    """Runs one operation of the mix per ``send(index)`` on a pooled connection."""

    def __init__(self, workload: PostgresWorkload) -> None:
        _, psycopg_pool = _pg()
        self.w = workload
        s = workload.schema
        self._table = mix_table(workload.mix)
        self._n_accounts = workload.accounts
        self._n_tellers = workload.scale * TELLERS_PER_BRANCH
        self._seed = workload.seed * 0x100000001B3
        self._sql = {
            "select": f"SELECT abalance FROM {s}.accounts WHERE aid = %s",
            "range": f"SELECT aid, abalance FROM {s}.accounts WHERE aid BETWEEN %s AND %s",
            "insert": f"INSERT INTO {s}.history (tid, bid, aid, delta, mtime) VALUES (%s, %s, %s, %s, "
                      "CURRENT_TIMESTAMP)",
            "update_account": f"UPDATE {s}.accounts SET abalance = abalance + %s WHERE aid = %s",
            "update_teller": f"UPDATE {s}.tellers SET tbalance = tbalance + %s WHERE tid = %s",
            "update_branch": f"UPDATE {s}.branches SET bbalance = bbalance + %s WHERE bid = %s",
        }
        # The TPC-B-like transaction runs as prepared statements straight through libpq (``postgres_pq``):
        # psycopg's cursor layer cost ~4x pgbench's client CPU per transaction.
        self._tpcb_sql = PreparedSet(f"hwbench_{workload.run}", {
            "begin": "BEGIN",
            "update_account": f"UPDATE {s}.accounts SET abalance = abalance + $1 WHERE aid = $2",
            "select": f"SELECT abalance FROM {s}.accounts WHERE aid = $1",
            "update_teller": f"UPDATE {s}.tellers SET tbalance = tbalance + $1 WHERE tid = $2",
            "update_branch": f"UPDATE {s}.branches SET bbalance = bbalance + $1 WHERE bid = $2",
            "insert": f"INSERT INTO {s}.history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, "
                      "CURRENT_TIMESTAMP)",
            "end": "END",
        })
        self._ops: dict[str, OpFn] = {"point_select": self._point_select, "range_scan": self._range_scan,
                                      "insert": self._insert, "update": self._update, "tpcb": self._tpcb}
        # Connections that worked stay with the client between operations (a pool check-out and check-in
        # cost ~70 µs a transaction); one that failed goes back to the pool, which replaces a broken one.
        self._held: list[Any] = []
        self.pool = psycopg_pool.AsyncConnectionPool(
            workload.dsn, min_size=workload.connections, max_size=workload.connections,
            kwargs=workload.connect_kwargs(), timeout=workload.pool_timeout_s, open=False,
            name=f"hwbench-{workload.run}", reconnect_timeout=max(60.0, workload.pool_timeout_s))

    async def start(self) -> None:
        """Open every connection before the first request, so connecting is not measured."""
        psycopg, psycopg_pool = _pg()
        try:
            await self.pool.open(wait=True, timeout=self.w.connect_timeout_s + 5 * self.w.connections)
        except (psycopg_pool.PoolTimeout, psycopg.Error, OSError) as err:
            await self.pool.close()
            raise HwbenchError(f"{self.w._where()}: could not open {self.w.connections} connection(s) within "
                               f"{self.w.connect_timeout_s:g} s + 5 s each ({err}); check max_connections "
                               "and that the server runs") from None

    def _params(self, h: int) -> tuple[int, int, int, int]:
        """(aid, tid, bid, delta) for a request, pgbench-style: uniform in each table, delta in ±5000."""
        aid = h % self._n_accounts + 1
        h2 = mix64(h)
        tid = h2 % self._n_tellers + 1
        bid = (h2 >> 32) % self.w.scale + 1
        delta = (h >> 40) % 10001 - 5000
        return aid, tid, bid, delta

    async def _point_select(self, conn: Any, h: int) -> tuple[int, int]:
        cur = await conn.execute(self._sql["select"], (h % self._n_accounts + 1,))
        return len(await cur.fetchall()), 1

    async def _range_scan(self, conn: Any, h: int) -> tuple[int, int]:
        n = self.w.range_rows
        lo = h % max(1, self._n_accounts - n + 1) + 1
        cur = await conn.execute(self._sql["range"], (lo, lo + n - 1))
        return len(await cur.fetchall()), 1

    async def _insert(self, conn: Any, h: int) -> tuple[int, int]:
        aid, tid, bid, delta = self._params(h)
        cur = await conn.execute(self._sql["insert"], (tid, bid, aid, delta))
        return max(cur.rowcount, 0), 1

    async def _update(self, conn: Any, h: int) -> tuple[int, int]:
        aid, _, _, delta = self._params(h)
        cur = await conn.execute(self._sql["update_account"], (delta, aid))
        return max(cur.rowcount, 0), 1

    async def _tpcb(self, conn: Any, h: int) -> tuple[int, int]:
        """pgbench's TPC-B-like transaction: BEGIN, five statements, END; one round trip each, or all seven in
        one with ``pipeline`` (libpq pipeline mode)."""
        aid, tid, bid, delta = (str(v).encode() for v in self._params(h))
        prepared = self._tpcb_sql
        await prepared.ensure(conn)
        n = prepared.names
        results = await run_transaction(conn, (
            (n["begin"], ()),
            (n["update_account"], (delta, aid)),
            (n["select"], (aid,)),
            (n["update_teller"], (delta, tid)),
            (n["update_branch"], (delta, bid)),
            (n["insert"], (tid, bid, aid, delta)),
            (n["end"], ()),
        ), pipeline=self.w.pipeline)
        return sum(max(r.command_tuples or 0, 0) for r in results[1:6]), 5  # SELECT's tag counts its rows

    async def send(self, index: int) -> KVRecord:
        psycopg, psycopg_pool = _pg()
        h = mix64(index ^ self._seed)
        op = self._table[h & 1023]
        fn = self._ops[op]
        h >>= 10
        rec = KVRecord(index=index, op=op, op_counts={op: 1})
        rec.send_wall_ns = time.time_ns()
        rec.send_ns = _perf()
        try:
            conn = self._held.pop() if self._held else await self.pool.getconn()
            try:
                rows, statements = await fn(conn, h)
            except BaseException:
                await self.pool.putconn(conn)  # the pool checks it: a broken one is replaced
                raise
            self._held.append(conn)
            rec.end_ns = _perf()
            rec.rows = rows
            rec.statements = statements
        except (psycopg.Error, psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed, OSError,
                asyncio.TimeoutError) as err:
            end = _perf()
            cls, state = classify(err)
            rec.sqlstate = state
            text = (str(err).strip().splitlines() or [type(err).__name__])[0]
            rec.fail_all(cls, f"{state + ' ' if state else ''}{type(err).__name__}: {text}", end)
        return rec

    async def aclose(self) -> None:
        held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(Exception):
                await self.pool.putconn(conn)
        await self.pool.close(timeout=5.0)


@dataclass
class PostgresRun:
    """Result of :func:`run_postgres`: the engine's run, its metrics, and what setup and cleanup did."""

    result: Any
    metrics: KVMetrics
    prepared: PrepareReport
    dropped: bool


def metrics_of(result: Any, workload: PostgresWorkload) -> KVMetrics:
    """The PostgreSQL metrics of an engine run (``tps`` or ``ops_s``, ``latency_us``, ``rows_s``, ...)."""
    return compute_kv_metrics(result.records, throughput=workload.throughput, sql=True, track_bytes=False)


def run_postgres(workload: PostgresWorkload, spec: Any, *, workers: int = 1, cleanup: bool = True) \
        -> PostgresRun:
    """Create and load the schema, run ``spec`` through the engine, compute metrics, drop the schema
    (also when the run fails). ``workload.connections`` should equal ``spec.users``."""
    from pytest_hwbench.workloads.engine import run_load_sync

    if workers > 1:  # each worker process opens its own pool for its share of the users
        workload = replace(workload, connections=math.ceil(workload.connections / workers))
    prepared = workload.prepare_sync()
    dropped = False
    try:
        result = run_load_sync(spec, workload.open, workers=workers)
    finally:
        if cleanup:
            dropped = workload.cleanup_sync()
    return PostgresRun(result=result, metrics=metrics_of(result, workload), prepared=prepared, dropped=dropped)
