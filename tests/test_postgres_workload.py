"""The PostgreSQL workload (``workloads/postgres_client.py``) against a real server.

This module runs its own PostgreSQL (initdb into a temporary directory, password auth on 127.0.0.1) so a
test may lock tables, restart the server or provoke serialization failures; each test gets a database of
its own. The last test runs the shipped benchmark through the plugin with ``recipes/postgres.yaml``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.recipe.loader import load_recipe_text
from pytest_hwbench.recipe.workload_settings import PostgresSettings
from pytest_hwbench.services.base import Endpoint
from pytest_hwbench.workloads.engine import LoadSpec, run_load_sync
from pytest_hwbench.workloads.postgres_client import PostgresWorkload, classify, metrics_of, run_postgres
from pytest_hwbench.workloads.records import ErrorClass
from tests.service_helpers import need_postgres

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgProc:
    """A PostgreSQL server this module owns: stop (fast shutdown) and start again on the same data."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary, self.root, self.port = binary, root, free_port()
        self.data, self.sock = root / "data", root / "sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user_kw: dict[str, Any] = {}
        if os.geteuid() == 0:  # the postmaster refuses to run as root
            pw = pwd.getpwnam("postgres" if _has_user("postgres") else "nobody")
            self.user_kw = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(root, pw.pw_uid, pw.pw_gid)

    def initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD)
        if self.user_kw:
            os.chown(pwfile, self.user_kw["user"], self.user_kw["group"])
        initdb = str(Path(self.binary).resolve().parent / "initdb")
        subprocess.run([initdb, "-D", str(self.data), "-U", "postgres", "--auth-host=scram-sha-256",
                        "--auth-local=trust", f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, cwd=self.root, timeout=120, **self.user_kw)
        self.sock.mkdir()
        if self.user_kw:
            os.chown(self.sock, self.user_kw["user"], self.user_kw["group"])

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-D", str(self.data), "-p", str(self.port), "-k", str(self.sock),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.root, **self.user_kw)
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: backends get 57P01
            self.proc.wait(30)

    def dsn(self, database: str = "postgres", password: str = PASSWORD) -> str:
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def pg() -> Iterator[PgProc]:
    binary = need_postgres()
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as another user.
    root = Path(tempfile.mkdtemp(prefix="hwbench-pgtest-"))
    server = PgProc(binary, root)
    try:
        server.initdb()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_names = itertools.count()


@pytest.fixture
def db(pg: PgProc) -> Iterator[str]:
    """A fresh database for one test; returns its DSN."""
    import psycopg

    if pg.proc is None or pg.proc.poll() is not None:
        pg.start()
    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield pg.dsn(name)
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sql(dsn: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def small(dsn: str, **kw: Any) -> PostgresWorkload:
    kw.setdefault("accounts_per_branch", 1000)
    return PostgresWorkload(dsn=dsn, **kw)


@pytest.mark.parametrize("pipeline", [False, True], ids=["round-trips", "pipeline"])
def test_known_workload_counts_rows_and_keeps_tpcb_consistent(db: str, pipeline: bool) -> None:
    w = small(db, mix="insert", connections=2)
    run = run_postgres(w, LoadSpec.closed(2, requests=150), cleanup=False)
    try:
        assert sql(db, f"SELECT count(*) FROM {w.schema}.history") == [(150,)]
        m = run.metrics
        assert m.throughput == "ops_s" and m.ops == 150 and m.counts["rows"] == 150 and m.scalars["error_rate"] == 0
        assert m.samples["latency_us"].size == 150 and m.scalars["rows_s"] == pytest.approx(m.scalars["ops_s"])
    finally:
        assert w.cleanup_sync() is True
    assert not asyncio.run(w.schema_exists())

    t = small(db, mix="tpcb", scale=2, connections=3, pipeline=pipeline)
    run = run_postgres(t, LoadSpec.closed(3, requests=200, warmup_requests=10), cleanup=False)
    try:
        s = t.schema
        ((a, b, c, h, n),) = sql(db, f"SELECT (SELECT sum(abalance) FROM {s}.accounts), "
                                     f"(SELECT sum(bbalance) FROM {s}.branches), "
                                     f"(SELECT sum(tbalance) FROM {s}.tellers), "
                                     f"(SELECT sum(delta) FROM {s}.history), (SELECT count(*) FROM {s}.history)")
        assert a == b == c == h and n == 210  # TPC-B's consistency condition; warm-up transactions ran too
        m = run.metrics
        assert m.throughput == "tps" and "tps" in m.scalars and m.ops == 200
        assert m.counts["statements"] == 5 * 200 and m.counts["rows"] == 5 * 200
        assert m.scalars["qps"] == pytest.approx(5 * m.scalars["tps"]) and m.scalars["serialization_failures"] == 0
    finally:
        t.cleanup_sync()
    assert sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'hwbench%'") == [(0,)]


def test_mix_of_reads_and_writes(db: str) -> None:
    w = small(db, mix="point_select:range_scan:update=2:1:1", range_rows=10, connections=2)
    run = run_postgres(w, LoadSpec.closed(2, requests=400))
    m = run.metrics
    per = m.per_op
    assert set(per) == {"point_select", "range_scan", "update"} and m.ops == 400
    assert 150 < per["point_select"]["attempted"] < 250
    rows = per["point_select"]["attempted"] + 10 * per["range_scan"]["attempted"] + per["update"]["attempted"]
    assert m.counts["rows"] == rows and "ops_s_range_scan" in m.scalars
    assert run.dropped and not asyncio.run(w.schema_exists())


def test_refuses_a_database_with_schemas_it_did_not_create(db: str) -> None:
    sql(db, "CREATE SCHEMA app; CREATE TABLE app.orders (id int)")
    with pytest.raises(HwbenchInputError, match=r"schemas: app\)") as err:
        small(db).prepare_sync()
    assert err.value.field == "settings.allow_existing_data"
    sql(db, "DROP SCHEMA app CASCADE; CREATE TABLE public.t (id int)")
    with pytest.raises(HwbenchInputError, match="public \\(holds relations\\)"):
        small(db).prepare_sync()
    run = run_postgres(small(db, allow_existing_data=True), LoadSpec.closed(1, requests=20))
    assert run.metrics.ops == 20 and sql(db, "SELECT count(*) FROM public.t") == [(0,)]
    assert sql(db, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'hwbench%'") == [(0,)]


def test_wrong_credentials_name_the_setting(pg: PgProc, db: str) -> None:
    endpoint = Endpoint(host="127.0.0.1", port=pg.port, url="", name="pgmain",
                        extra={"dsn": db.replace(PASSWORD, "wrong")})
    w = PostgresWorkload.from_endpoint(endpoint, None)
    with pytest.raises(HwbenchInputError, match="rejected the credentials of user 'postgres'") as err:
        w.prepare_sync()
    assert err.value.field == "services.pgmain.password" and "wrong" not in str(err.value)
    w = PostgresWorkload.from_endpoint(endpoint, PostgresSettings(dsn=db.replace(PASSWORD, "nope")))
    with pytest.raises(HwbenchInputError) as err:
        w.prepare_sync()
    assert err.value.field == "settings.dsn"


def test_missing_database_names_the_setting(pg: PgProc) -> None:
    with pytest.raises(HwbenchInputError, match="has no database 'nosuchdb'") as err:
        small(pg.dsn("nosuchdb")).prepare_sync()
    assert err.value.field == "services.postgres.database"


def test_unreachable_server_is_a_clear_setup_error() -> None:
    with pytest.raises(HwbenchError, match=r"could not connect to PostgreSQL at 127\.0\.0\.1:\d+"):
        small(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", connect_timeout_s=2).prepare_sync()


def test_statement_timeouts_are_classified_and_the_run_recovers(db: str) -> None:
    import psycopg

    w = small(db, mix="update", statement_timeout_s=0.2, connections=2)
    w.prepare_sync()
    locked = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(db) as conn:  # a transaction holding an exclusive lock
            conn.execute(f"LOCK TABLE {w.schema}.accounts IN ACCESS EXCLUSIVE MODE")
            locked.set()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not sql(
                    db, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")[0][0]:
                time.sleep(0.02)
            time.sleep(0.6)  # the run's updates wait on it, and time out every 0.2 s

    try:
        t = threading.Thread(target=hold_lock)
        t.start()
        locked.wait(10)
        result = run_load_sync(LoadSpec.closed(2, duration_s=1.5, drain_timeout_s=3), w.open)
        t.join()
    finally:
        w.cleanup_sync()
    m = metrics_of(result, w)
    assert m.errors.get(ErrorClass.TIMEOUT, 0) >= 2 and m.sqlstates.get("57014", 0) >= 2
    measured = [r for r in result.records if not r.warmup]
    last = max(r.end_ns for r in measured if r.error)
    assert any(r.ok and r.send_ns > last for r in measured), "no success after the lock was released"


def test_serialization_failures_are_counted_not_crashes(db: str) -> None:
    w = small(db, mix="tpcb", isolation="repeatable_read", connections=4)  # one branch row: contention
    run = run_postgres(w, LoadSpec.closed(4, duration_s=1.0))
    m = run.metrics
    assert m.scalars["serialization_failures"] > 0 and m.sqlstates.get("40001", 0) > 0
    assert m.errors.get(ErrorClass.SERVER, 0) == m.counts["serialization_failures"]  # 40001 + 40P01, nothing else
    assert m.ops > 0 and 0 < m.scalars["error_rate"] < 1
    assert any("could not serialize" in d for d in m.error_details)


def test_server_restart_mid_run_keeps_partial_results(pg: PgProc, db: str) -> None:
    w = small(db, mix="point_select:update:tpcb=1:1:1", connections=2, pool_timeout_s=10)
    w.prepare_sync()
    marks: dict[str, int] = {}

    def restart() -> None:  # once the run is under way (the box may be slow to start it)
        deadline = time.monotonic() + 20
        query = f"SELECT count(*) FROM {w.schema}.accounts WHERE abalance <> 0"
        while sql(db, query)[0][0] < 30 and time.monotonic() < deadline:
            time.sleep(0.02)
        marks["down"] = time.perf_counter_ns()
        pg.stop()
        pg.start()
        marks["up"] = time.perf_counter_ns()

    try:
        t = threading.Thread(target=restart)
        t.start()
        result = run_load_sync(LoadSpec.closed(2, duration_s=4.0, drain_timeout_s=12), w.open)
        t.join()
    finally:
        w.cleanup_sync()
    m = metrics_of(result, w)
    measured = [r for r in result.records if not r.warmup]
    assert m.errors.get(ErrorClass.CONNECTION, 0) >= 1, m.errors
    assert any(r.ok and r.end_ns < marks["down"] for r in measured)
    assert any(r.ok and r.send_ns > marks["up"] for r in measured), "the run did not go on after the restart"
    assert 0 < m.scalars["error_rate"] < 0.5 and m.ops > 0


def test_classify_maps_sqlstates() -> None:
    import psycopg
    from psycopg_pool import PoolTimeout

    assert classify(PoolTimeout("no connection"))[0] == ErrorClass.TIMEOUT
    assert classify(psycopg.errors.QueryCanceled("x")) == (ErrorClass.TIMEOUT, "57014")
    assert classify(psycopg.errors.SerializationFailure("x")) == (ErrorClass.SERVER, "40001")
    assert classify(psycopg.errors.DeadlockDetected("x")) == (ErrorClass.SERVER, "40P01")
    assert classify(psycopg.errors.AdminShutdown("x")) == (ErrorClass.CONNECTION, "57P01")
    assert classify(psycopg.OperationalError("server closed the connection unexpectedly"))[0] == \
        ErrorClass.CONNECTION
    assert classify(psycopg.errors.UndefinedTable("x")) == (ErrorClass.SERVER, "42P01")


def test_settings_are_validated_with_their_field() -> None:
    with pytest.raises(HwbenchInputError) as err:
        PostgresWorkload(dsn="postgresql://x@h/db", mix="tpcb:scan=1:1")
    assert err.value.field == "settings.mix"
    with pytest.raises(HwbenchInputError) as err:
        PostgresWorkload(dsn="postgresql://x@h/db", isolation="snapshot")
    assert err.value.field == "settings.isolation"
    # the recipe's typed record (top-level keys apply to both data services, a section wins) is what it takes
    recipe = load_recipe_text("version: 1\nsettings: {mix: set, postgres: {mix: insert, scale: 3}, "
                              "redis: {keyspace: 9}}\n", "r.yaml")
    w = PostgresWorkload.from_endpoint(Endpoint(host="h", port=1, url="", extra={"dsn": "postgresql://x@h/db"}),
                                       recipe.workloads.postgres)
    assert w.mix == {"insert": 1.0} and w.scale == 3 and w.throughput == "ops_s" and w.schema.startswith("hwbench_")
    assert recipe.workloads.redis.mix == {"set": 1.0} and recipe.workloads.redis.keyspace == 9


def test_benchmark_recipe_runs_the_sweep_against_the_real_server(pytester: pytest.Pytester) -> None:
    need_postgres()
    pytester.makepyfile(test_postgres=(REPO / "benchmarks" / "test_postgres.py").read_text())
    shutil.copy(REPO / "recipes" / "postgres.yaml", pytester.path / "postgres.yaml")
    res = pytester.runpytest_subprocess("--recipe", "postgres.yaml", "--no-hwbench-mlflow", "--hwbench-repetitions",
                                        "1", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=3)
    run_dir = next(d for d in (pytester.path / "reports").iterdir() if d.is_dir())
    tests = json.loads((run_dir / "results.json").read_text())["tests"]
    assert sorted(t["params"]["connections"] for t in tests) == [1, 4, 8]
    for t in tests:
        metrics = t["metrics"]
        assert {"tps", "latency_us", "rows_s", "qps", "error_rate", "serialization_failures"} <= set(metrics)
        assert metrics["tps"]["unit"] == "tx/s" and metrics["tps"]["summary"]["min"] > 0
        assert t["verdict"] == "PASS" and all(s["passed"] for s in t["slo"]) and len(t["slo"]) == 3
        assert t["extra"]["workload"]["mix"] == {"tpcb": 1.0} and t["extra"]["trials"][-1]["counts"]["rows"] > 0


EXTERNAL = """version: 1
repetitions: 1
services:
  postgres: {{kind: postgres, backend: external, url: "postgresql://127.0.0.1:{port}", user: postgres,
             password: "{password}", database: "{database}"}}
sweep: {{connections: [1]}}
settings:
  postgres: {{duration_s: 0.2, accounts_per_branch: 1000{more}}}
"""


def test_setup_failures_through_the_plugin_name_the_setting(pytester: pytest.Pytester, pg: PgProc, db: str) -> None:
    database = db.rsplit("/", 1)[1]
    pytester.makepyfile(test_postgres=(REPO / "benchmarks" / "test_postgres.py").read_text())
    wrong_dsn = db.replace(PASSWORD, "wrong")
    pytester.makefile(".yaml", creds=EXTERNAL.format(port=pg.port, password=PASSWORD, database=database,
                                                      more=f', dsn: "{wrong_dsn}"'))
    res = pytester.runpytest_subprocess("--recipe", "creds.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["settings.dsn: PostgreSQL at 127.0.0.1:* rejected the credentials of user 'postgres'*"])
    assert "wrong" not in res.stdout.str().split("ERRORS")[1].split("short test summary")[0]

    sql(db, "CREATE SCHEMA app")
    pytester.makefile(".yaml", foreign=EXTERNAL.format(port=pg.port, password=PASSWORD, database=database, more=""))
    res = pytester.runpytest_subprocess("--recipe", "foreign.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["settings.allow_existing_data: *did not create (schemas: app)*"])
