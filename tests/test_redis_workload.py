"""The Redis workload (``workloads/redis_client.py``) and the shared data-service metrics (``kv_metrics``).

Pure metric tests on hand-made records; then the client against a real redis-server this module starts on
a free port (so a test may pause, reconfigure, kill and restart it); then the shipped benchmark run through
the plugin in a subprocess with ``recipes/redis.yaml``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchError, HwbenchInputError
from pytest_hwbench.workloads.engine import LoadSpec, run_load_sync
from pytest_hwbench.workloads.kv_metrics import (
    KVRecord,
    compute_kv_metrics,
    mix_table,
    parse_mix,
    parse_size,
)
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord
from pytest_hwbench.workloads.redis_client import RedisWorkload, metrics_of, run_redis
from tests.service_helpers import need_binary

REPO = Path(__file__).resolve().parents[1]


# -- shared metrics, no server --------------------------------------------------------------------------------
def rec(index: int, send: int, end: int, *, op: str = "get", n: int = 1, error: str | None = None,
        failed: int = 0, warmup: bool = False, **kw: Any) -> KVRecord:
    r = KVRecord(index=index, send_ns=send, end_ns=end, op=op, op_counts={op: n}, warmup=warmup, **kw)
    if error:
        r.fail(error, "boom")
        r.op_failed = {op: failed or n}
    return r


def test_metrics_count_operations_weight_pipelined_latency_and_skip_warmup() -> None:
    records = [
        rec(0, 0, 10_000, warmup=True),                                     # ignored
        rec(1, 1_000_000, 1_100_000, n=4, bytes_out=40, bytes_in=400),     # pipeline of 4 GETs, 100 us
        rec(2, 1_000_000, 1_300_000, op="set", n=1, bytes_out=74),          # 300 us
        rec(3, 1_500_000, 2_000_000, op="set", error=ErrorClass.TIMEOUT),   # failed: censored at 500 us
    ]
    m = compute_kv_metrics(records)
    assert m.window_s == pytest.approx(1e-3)  # first measured send (1.0 ms) -> last completion (2.0 ms)
    assert m.counts["attempted_ops"] == 6 and m.counts["succeeded_ops"] == 5 and m.counts["failed_ops"] == 1
    assert m.counts["warmup_requests"] == 1
    assert m.scalars["ops_s"] == pytest.approx(5 / 1e-3)
    assert m.scalars["error_rate"] == pytest.approx(1 / 6)
    assert m.scalars["bytes_s"] == pytest.approx((40 + 400 + 74) / 1e-3)
    assert sorted(m.samples["latency_us"].tolist()) == [100.0] * 4 + [300.0, 500.0]
    assert sorted(m.samples["latency_us_set"].tolist()) == [300.0, 500.0]
    assert m.samples["latency_us_get"].tolist() == [100.0] * 4
    assert m.per_op["set"]["attempted"] == 2 and m.per_op["set"]["failed"] == 1
    assert m.scalars["ops_s_get"] == pytest.approx(4 / 1e-3) and m.errors == {ErrorClass.TIMEOUT: 1}


def test_metrics_of_partly_failed_pipeline_and_engine_made_records() -> None:
    mixed = KVRecord(index=0, send_ns=0, end_ns=1000, op="mixed", op_counts={"get": 3, "set": 1},
                     op_failed={"set": 1}, bytes_out=10, bytes_in=30, error=ErrorClass.SERVER)
    crashed = RequestRecord(index=1, send_ns=0, end_ns=2000, error=ErrorClass.CLIENT)  # engine-made
    m = compute_kv_metrics([mixed, crashed])
    assert m.counts["attempted_ops"] == 5 and m.counts["failed_ops"] == 2 and m.counts["succeeded_ops"] == 3
    assert m.per_op["unknown"]["failed"] == 1 and m.counts["bytes"] == 40  # the 3 GETs did move bytes
    # failed operations stay in as censored values (time until their request failed)
    assert sorted(m.samples["latency_us"].tolist()) == [1.0, 2.0]


def test_sql_metrics_count_serialization_failures() -> None:
    ok = KVRecord(index=0, send_ns=0, end_ns=2_000_000, op="tpcb", op_counts={"tpcb": 1}, rows=5, statements=5)
    conflict = KVRecord(index=1, send_ns=0, end_ns=1_000_000, op="tpcb", op_counts={"tpcb": 1},
                        sqlstate="40001").fail_all(ErrorClass.SERVER, "40001 could not serialize")
    deadlock = KVRecord(index=2, send_ns=0, end_ns=1_000_000, op="tpcb", op_counts={"tpcb": 1},
                        sqlstate="40P01").fail_all(ErrorClass.SERVER, "40P01 deadlock detected")
    m = compute_kv_metrics([ok, conflict, deadlock], throughput="tps", sql=True, track_bytes=False)
    assert m.scalars["tps"] == pytest.approx(1 / 2e-3) and m.scalars["rows_s"] == pytest.approx(5 / 2e-3)
    assert m.scalars["qps"] == pytest.approx(5 / 2e-3) and m.scalars["serialization_failures"] == 2
    assert m.sqlstates == {"40001": 1, "40P01": 1} and "bytes_s" not in m.scalars


def test_record_into_the_fixture_object() -> None:
    from pytest_hwbench.measure.recorder import Recorder

    m = compute_kv_metrics([rec(0, 0, 1000, op="get"), rec(1, 0, 2000, op="set")])
    recorder = Recorder("t")
    m.record_into(recorder)
    assert {"ops_s", "latency_us", "error_rate", "bytes_s", "ops_s_get", "latency_us_set"} <= set(recorder.metrics)
    assert recorder.metrics["ops_s"].better == "higher" and recorder.metrics["latency_us"].better == "lower"
    with pytest.raises(HwbenchError, match="measured no operation"):
        compute_kv_metrics([rec(0, 0, 1000, warmup=True)]).record_into(recorder)


def test_mix_parsing_and_table() -> None:
    assert parse_mix("get:set=90:10", ("get", "set")) == {"get": 0.9, "set": 0.1}
    assert parse_mix("get=3, set=1", ("get", "set")) == {"get": 0.75, "set": 0.25}
    assert parse_mix("set", ("get", "set")) == {"set": 1.0}
    assert parse_mix({"get": 1, "set": 0}, ("get", "set")) == {"get": 1.0}
    for bad, text in (("get:del=1:1", "unknown operation 'del'"), ("get:set=1", "2 operations but 1"),
                      ("get=x", "not a number"), ("get=0", "no operation with a positive weight")):
        with pytest.raises(HwbenchInputError, match=text) as err:
            parse_mix(bad, ("get", "set"), field="settings.redis.mix")
        assert err.value.field == "settings.redis.mix"
    table = mix_table({"get": 0.9, "set": 0.1})
    assert len(table) == 1024 and table.count("set") == 102
    assert parse_size("4kb", field="f") == 4096 and parse_size("1mb", field="f") == 2**20
    assert parse_size(64, field="f") == 64
    with pytest.raises(HwbenchInputError, match="must be a size"):
        parse_size("lots", field="settings.value_size")


def test_workload_validation_names_the_setting() -> None:
    with pytest.raises(HwbenchInputError, match="key_size 5 cannot hold") as err:
        RedisWorkload(key_size=5)
    assert err.value.field == "settings.key_size"
    with pytest.raises(HwbenchInputError) as err:
        RedisWorkload(pipeline=0)
    assert err.value.field == "settings.pipeline"
    w = RedisWorkload(keyspace=1000, run="abc")
    assert w.key(7) == b"hwbench:abc:007" and len(w.key(999)) == w.key_size


# -- a real redis-server of this module's own ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProc:
    """A redis-server this test module owns: it can be killed and restarted on the same port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)

    def client(self) -> Any:
        """A synchronous redis-py client of this server (for set-up and checks)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProc]:
    binary = need_binary("redis-server", "apt-get install redis-server")
    proc = RedisProc(binary, tmp_path_factory.mktemp("redis"))
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def r(server: RedisProc) -> Iterator[Any]:
    """A clean database 0 for each test, and the server's limits put back afterwards."""
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    client = server.client()
    client.flushall()
    yield client
    client.config_set("proto-max-bulk-len", "512mb")
    client.config_set("requirepass", "")
    client.flushall()
    client.close()


def workload(server: RedisProc, **kw: Any) -> RedisWorkload:
    return RedisWorkload(host="127.0.0.1", port=server.port, **kw)


def commandstats(client: Any) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def test_known_workload_counts_match_the_server_and_cleanup_empties_it(server: RedisProc, r: Any) -> None:
    w = workload(server, mix="set", pipeline=4, keyspace=500, value_size=100)
    before = commandstats(r)
    run = run_redis(w, LoadSpec.closed(2, requests=50))
    after = commandstats(r)
    m = run.metrics
    assert run.prepared.seeded == 500 and run.prepared.dbsize_before == 0 and run.deleted == 500
    assert m.counts["requests"] == 50 and m.counts["attempted_ops"] == m.ops == 200 and m.scalars["error_rate"] == 0
    assert after["set"] - before.get("set", 0) == 200 + 500  # measured SETs + seeding
    assert m.counts["bytes"] == 200 * (w.key_size + 100)
    assert m.samples["latency_us"].size == 200 and m.scalars["ops_s"] > 0
    assert r.dbsize() == 0

    g = workload(server, mix="get", keyspace=300, value_size=10)
    run = run_redis(g, LoadSpec.closed(3, requests=120, warmup_requests=30))
    assert run.metrics.counts["succeeded_ops"] == 120 and run.metrics.counts["misses"] == 0
    assert run.metrics.counts["bytes"] == 120 * (g.key_size + 10)  # key sent, value received
    assert r.dbsize() == 0


def test_mix_shares_and_uniform_keys(server: RedisProc, r: Any) -> None:
    w = workload(server, mix="get:set=90:10", keyspace=100, pipeline=8)
    run = run_redis(w, LoadSpec.closed(2, requests=500))
    per = run.metrics.per_op
    share = per["set"]["attempted"] / (per["set"]["attempted"] + per["get"]["attempted"])
    assert 0.08 < share < 0.12
    keys = [w.key(i) for i in range(100)]
    client = RedisLoadClientProbe(w)
    hits = np.bincount([keys.index(k) for k in client.keys(4000)], minlength=100)
    assert hits.min() > 0 and hits.max() < 4 * hits.mean()  # every key used, none dominating


class RedisLoadClientProbe:
    """The client's key choice without a server (the RESP frames it would send)."""

    def __init__(self, w: RedisWorkload) -> None:
        from pytest_hwbench.workloads.redis_client import RedisLoadClient

        self.c = RedisLoadClient(w)

    def keys(self, n: int) -> list[bytes]:
        out = []
        for i in range(n // self.c.w.pipeline):
            bufs, _, _, _ = self.c._commands(i)
            out += [b.split(b"\r\n")[4] for b in bufs if b.startswith((b"*2\r\n$3\r\nGET", b"*3\r\n$3\r\nSET"))]
        return out


def test_refuses_a_database_with_keys_it_did_not_create(server: RedisProc, r: Any) -> None:
    r.set("customer:1", "precious")
    with pytest.raises(HwbenchInputError, match="already holds 1 key") as err:
        workload(server).prepare_sync()
    assert err.value.field == "settings.allow_existing_data"
    run = run_redis(workload(server, allow_existing_data=True, keyspace=50), LoadSpec.closed(1, requests=20))
    assert run.deleted == 50 and r.get("customer:1") == b"precious" and r.dbsize() == 1


def test_wrong_or_missing_password_is_a_setup_error_naming_the_setting(server: RedisProc, r: Any) -> None:
    r.config_set("requirepass", "s3cret")
    with pytest.raises(HwbenchInputError, match="rejected the credentials") as err:
        workload(server, password="wrong").prepare_sync()
    assert err.value.field == "settings.password" and "s3cret" not in str(err.value)
    with pytest.raises(HwbenchInputError, match="requires a password") as err:
        workload(server).prepare_sync()
    assert err.value.field == "settings.password"
    ok = run_redis(workload(server, password="s3cret", keyspace=10), LoadSpec.closed(1, requests=10))
    assert ok.metrics.ops == 10


def test_missing_database_index_names_db(server: RedisProc, r: Any) -> None:
    with pytest.raises(HwbenchInputError, match="has no database 99") as err:
        workload(server, db=99).prepare_sync()
    assert err.value.field == "settings.db"


def test_unreachable_server_is_a_clear_setup_error() -> None:
    with pytest.raises(HwbenchError, match=r"could not connect to Redis at 127\.0\.0\.1:\d+"):
        RedisWorkload(port=free_port(), connect_timeout_s=1).prepare_sync()


def test_value_larger_than_the_server_allows(server: RedisProc, r: Any) -> None:
    r.config_set("proto-max-bulk-len", "1mb")  # the server's minimum
    big = workload(server, value_size="2mb", keyspace=2, mix="set")
    with pytest.raises(HwbenchInputError, match="larger than the server allows") as err:
        big.prepare_sync()
    assert err.value.field == "settings.value_size" and "proto-max-bulk-len 1048576" in str(err.value)
    assert r.dbsize() == 0
    # Sent anyway (no prepare): every SET is a classified failure, the run does not crash.
    result = run_load_sync(LoadSpec.closed(1, requests=3), big.open)
    m = metrics_of(result)
    assert m.counts["failed_ops"] == 3 and m.scalars["error_rate"] == 1.0
    assert set(m.errors) <= {ErrorClass.SERVER, ErrorClass.CONNECTION}
    # The server drops the connection mid-write: depending on timing the client sees the protocol error,
    # a closed connection, a broken pipe or a reset.
    words = ("bulk", "protocol", "closed", "pipe", "reset", "connection")
    assert any(w in d.lower() for d in m.error_details for w in words), m.error_details


def test_timeouts_are_classified_and_the_run_recovers(server: RedisProc, r: Any) -> None:
    w = workload(server, keyspace=100, timeout_s=0.2)
    w.prepare_sync()
    try:
        def pause() -> None:  # once the run is under way
            admin = server.client()
            start = admin.info("stats")["total_commands_processed"]
            deadline = time.monotonic() + 20
            while admin.info("stats")["total_commands_processed"] < start + 200 and time.monotonic() < deadline:
                time.sleep(0.02)
            admin.execute_command("CLIENT", "PAUSE", "700", "ALL")

        t = threading.Thread(target=pause)
        t.start()
        result = run_load_sync(LoadSpec.closed(2, duration_s=1.6, drain_timeout_s=2), w.open)
        t.join()
    finally:
        w.cleanup_sync()
    m = metrics_of(result)
    assert m.errors.get(ErrorClass.TIMEOUT, 0) >= 2
    measured = [x for x in result.records if not x.warmup]
    last_timeout = max(x.end_ns for x in measured if x.error == ErrorClass.TIMEOUT)
    assert any(x.ok and x.send_ns > last_timeout for x in measured), "no success after the pause"
    assert 0 < m.scalars["error_rate"] < 1


def test_server_restart_mid_run_keeps_partial_results(server: RedisProc, r: Any) -> None:
    w = workload(server, mix="get:set=50:50", keyspace=200, reconnect_backoff_s=0.02)
    w.prepare_sync()
    marks: dict[str, int] = {}

    def restart() -> None:  # once the run is under way (the box may be slow to start it)
        admin = server.client()
        start = admin.info("stats")["total_commands_processed"]
        deadline = time.monotonic() + 20
        while admin.info("stats")["total_commands_processed"] < start + 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        marks["down"] = time.perf_counter_ns()
        server.kill()
        time.sleep(0.3)
        server.start()
        marks["up"] = time.perf_counter_ns()

    t = threading.Thread(target=restart)
    t.start()
    result = run_load_sync(LoadSpec.closed(2, duration_s=2.0, drain_timeout_s=3), w.open)
    t.join()
    deleted = w.cleanup_sync()
    m = metrics_of(result)
    measured = [x for x in result.records if not x.warmup]
    assert m.errors.get(ErrorClass.CONNECTION, 0) >= 2, m.errors
    assert any(x.ok and x.end_ns < marks["down"] for x in measured)
    assert any(x.ok and x.send_ns > marks["up"] for x in measured), "the run did not go on after the restart"
    assert m.counts["misses"] > 0  # the restarted server lost the seeded keys (no persistence)
    assert 0 < m.scalars["error_rate"] < 0.9 and deleted > 0 and server.client().dbsize() == 0


# -- the shipped benchmark through the plugin, in a subprocess ----------------------------------------------
def test_benchmark_recipe_runs_the_sweep_against_the_real_server(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    pytester.makepyfile(test_redis=(REPO / "benchmarks" / "test_redis.py").read_text())
    shutil.copy(REPO / "recipes" / "redis.yaml", pytester.path / "redis.yaml")
    res = pytester.runpytest_subprocess("--recipe", "redis.yaml", "--no-hwbench-mlflow", "--hwbench-repetitions",
                                        "2", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=3)
    run_dir = next(d for d in (pytester.path / "reports").iterdir() if d.is_dir())
    tests = json.loads((run_dir / "results.json").read_text())["tests"]
    assert sorted(t["params"]["clients"] for t in tests) == [1, 4, 16]
    for t in tests:
        metrics = t["metrics"]
        assert {"ops_s", "latency_us", "bytes_s", "error_rate", "ops_s_get", "ops_s_set"} <= set(metrics)
        assert metrics["ops_s"]["unit"] == "ops/s" and len(metrics["ops_s"]["trial_values"]) == 2
        # PASS, or a WARN that the self-check raised because the 2-core machine (or the client) was the
        # bottleneck: an invalid measurement is never a PASS, and this test is about the sweep, not the box.
        assert metrics["error_rate"]["summary"]["max"] == 0
        assert t["verdict"] == "PASS" or (t["verdict"] == "WARN" and t["invalid"]), (t["verdict"], t["warnings"])
        assert all(s["passed"] for s in t["slo"]) and len(t["slo"]) == 3
        trials = t["extra"]["trials"]
        assert len(trials) == 3 and trials[0]["warmup"] and trials[-1]["counts"]["succeeded_ops"] > 0
        assert t["extra"]["workload"]["mix"] == {"get": 0.9, "set": 0.1}


EXTERNAL = """version: 1
repetitions: 1
services:
  redis: {{kind: redis, backend: external, url: "redis://127.0.0.1:{port}"}}
settings:
  redis: {{duration_s: 0.2, keyspace: 100}}
"""


def test_benchmark_refuses_a_non_empty_database_through_the_plugin(pytester: pytest.Pytester, server: RedisProc,
                                                                   r: Any) -> None:
    r.set("customer:1", "precious")
    pytester.makepyfile(test_redis=(REPO / "benchmarks" / "test_redis.py").read_text())
    pytester.makefile(".yaml", extrecipe=EXTERNAL.format(port=server.port) + "sweep: {clients: [1]}\n")
    res = pytester.runpytest_subprocess("--recipe", "extrecipe.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*settings.allow_existing_data*already holds 1 key*"])
    assert r.get("customer:1") == b"precious"
    # allowed explicitly: it runs, and removes only its own keys
    pytester.makefile(".yaml", ext2=EXTERNAL.format(port=server.port).replace(
        "keyspace: 100", "keyspace: 100, allow_existing_data: true") + "sweep: {clients: [2]}\n")
    res = pytester.runpytest_subprocess("--recipe", "ext2.yaml", "--no-hwbench-mlflow", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1)
    assert r.dbsize() == 1



# -- the protocol-level client: both RESP readers ---------------------------------------------------------------
PARSERS = ["python", pytest.param("hiredis", marks=pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("hiredis") is None, reason="pip install hiredis"))]


@pytest.mark.parametrize("parser", PARSERS)
def test_resp_reader_handles_any_split_of_the_reply_bytes(parser: str) -> None:
    """Replies arrive in arbitrary pieces; each reader gives the same counts for every split."""
    import asyncio

    from pytest_hwbench.workloads.redis_client import RedisLoadClient, _RespConn

    value = b"v" * 300
    wire = (b"$300\r\n" + value + b"\r\n" + b"$-1\r\n" + b"+OK\r\n" + b"-ERR wrong type\r\n"
            + b":7\r\n" + b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n" + b"$0\r\n\r\n")
    gets = [True, True, False, True, False, False, True]

    async def feed(pieces: list[bytes]) -> _RespConn:
        client = RedisLoadClient(RedisWorkload(parser=parser))
        conn = _RespConn(client, parser == "hiredis")
        conn.transport = _NullTransport()  # type: ignore[assignment]
        fut = asyncio.get_running_loop().create_future()
        conn.begin([b"..."], gets, fut)
        for piece in pieces:
            conn.data_received(piece)
        assert fut.done() and conn.lost is None
        return conn

    for step in (1, 2, 3, 7, 64, len(wire)):
        conn = asyncio.run(feed([wire[i:i + step] for i in range(0, len(wire), step)]))
        assert conn.received == 300 and conn.misses == 1, step
        assert conn.failed == {"get": 1} and conn.first_error.endswith("wrong type")
        assert conn.end_ns > 0

    async def extra() -> _RespConn:
        client = RedisLoadClient(RedisWorkload(parser=parser))
        conn = _RespConn(client, parser == "hiredis")
        conn.transport = _NullTransport()  # type: ignore[assignment]
        fut = asyncio.get_running_loop().create_future()
        conn.begin([b"..."], [False], fut)
        conn.data_received(b"+OK\r\n+OK\r\n")  # a reply nobody asked for: the connection is not trusted
        return conn

    conn = asyncio.run(extra())
    assert conn.lost is None and conn.closed  # the request got its reply; the connection is not reused


class _NullTransport:
    def writelines(self, data: Any) -> None:
        pass

    def abort(self) -> None:
        pass


@pytest.mark.parametrize("parser", PARSERS)
def test_both_readers_against_the_server_with_auth_select_and_pipelines(server: RedisProc, r: Any,
                                                                        parser: str) -> None:
    r.config_set("requirepass", "pw")
    try:
        w = workload(server, mix="get:set=50:50", pipeline=16, keyspace=200, value_size="4kb", db=3,
                     password="pw", parser=parser)
        run = run_redis(w, LoadSpec.closed(4, requests=100))
        m = run.metrics
        assert m.counts["succeeded_ops"] == 1600 and m.scalars["error_rate"] == 0 and m.counts["misses"] == 0
        gets = m.per_op["get"]["attempted"]
        assert m.counts["bytes"] == 1600 * w.key_size + (1600 - gets) * 4096 + gets * 4096
        assert run.deleted == 200
        bad = workload(server, mix="get", keyspace=10, password="nope", parser=parser)
        result = run_load_sync(LoadSpec.closed(1, requests=3), bad.open)
        assert all(x.error == ErrorClass.SERVER for x in result.records)
        assert all("WRONGPASS" in (x.error_detail or "") or "invalid" in (x.error_detail or "").lower()
                   for x in result.records), [x.error_detail for x in result.records]
    finally:
        r.config_set("requirepass", "")


def test_block_planned_choices_equal_the_per_command_hash() -> None:
    """The numpy block computation makes exactly the choices of mix64 per command (any process agrees)."""
    from pytest_hwbench.workloads.kv_metrics import mix64
    from pytest_hwbench.workloads.redis_client import RedisLoadClient

    w = RedisWorkload(mix="get:set=70:30", pipeline=3, keyspace=977, seed=5)
    c = RedisLoadClient(w)
    table = mix_table(w.mix)
    for index in (0, 1, 1023, 1024, 5000, 123_456):
        keys, gets = c._plan(index)
        for j in range(3):
            h = mix64((index * 3 + j) ^ (5 * 0x100000001B3))
            assert keys[j] == (h >> 16) % 977 and gets[j] == (table[h & 1023] == "get")
