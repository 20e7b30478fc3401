"""The process backend against real servers: redis-server and PostgreSQL (initdb + postgres).

Each test has its own state dir and run id, so nothing here can reap or collide with another run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest

from pytest_hwbench.services import ServiceDied, ServiceSet, ServiceStartError, reap_leftovers
from pytest_hwbench.services.state import PortRegistry
from tests.service_helpers import need_binary, need_postgres, our_processes, spec


@pytest.fixture
def redis_server() -> str:
    return need_binary("redis-server", "apt-get install redis-server")


@pytest.fixture
def services(tmp_path):
    run_id = f"t{os.getpid()}-{time.monotonic_ns() % 10**8}"
    with ServiceSet(log_dir=tmp_path / "logs", state_dir=tmp_path / "state", run_id=run_id,
                    source="recipes/test.yaml", handle_signals=False) as s:
        yield s
    assert our_processes(run_id) == [], "a service process outlived stop_all()"


def test_redis_process_start_use_stats_stop(redis_server, services, tmp_path):
    import redis

    svc = services.start(spec("redis", name="cache"))
    ep = svc.endpoint
    assert (ep.host, ep.kind, ep.name) == ("127.0.0.1", "redis", "cache")
    assert ep.url == f"redis://127.0.0.1:{ep.port}/0"
    client = redis.Redis.from_url(ep.url)
    assert client.set("k", "v") and client.get("k") == b"v"
    assert client.config_get("save") == {"save": ""} and client.config_get("appendonly") == {"appendonly": "no"}

    info = svc.info
    assert info["backend"] == "process" and info["binary"] == redis_server and info["pid"] == svc.proc.pid
    assert "Redis server" in info["binary_version"] and 0 < info["startup_s"] < 30
    json.dumps(info)  # the manifest must be plain JSON
    assert services.endpoints() == {"cache": ep.to_dict()}

    # Own process group (Ctrl-C at the terminal does not reach it), a pid record for the reaper.
    assert os.getpgid(svc.proc.pid) == svc.proc.pid != os.getpgrp()
    records = list((tmp_path / "state" / "procs").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["pid"] == svc.proc.pid
    assert str(ep.port) in json.loads((tmp_path / "state" / "ports.json").read_text())

    for _ in range(50):
        client.set("x", "y" * 1000)
    stats = svc.stats()
    assert stats["alive"] and stats["mem_bytes"] > 1_000_000 and stats["cpu_percent"] >= 0
    svc.check_alive()

    pid, work_dir = svc.proc.pid, svc._work_dir
    svc.stop()
    assert svc.proc.poll() is not None and not work_dir.exists()
    assert list((tmp_path / "state" / "procs").glob("*.json")) == []
    assert json.loads((tmp_path / "state" / "ports.json").read_text()) == {}
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    log = (tmp_path / "logs" / "cache.log").read_text()
    assert "[hwbench] starting cache (redis)" in log and "Ready to accept connections" in log


def test_service_that_dies_mid_run_is_reported(redis_server, services):
    svc = services.start(spec("redis", name="cache"))
    os.kill(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(timeout=10)
    with pytest.raises(ServiceDied) as exc:
        svc.check_alive()
    text = str(exc.value)
    assert "service 'cache': died during the run: killed by SIGKILL" in text
    assert "Ready to accept connections" in text  # the log tail


def test_service_that_stops_answering_is_reported(redis_server, services):
    svc = services.start(spec("redis", name="cache"))
    os.kill(svc.proc.pid, signal.SIGSTOP)  # alive but frozen: only the probe can tell
    try:
        with pytest.raises(ServiceDied, match="no longer passes its health check"):
            svc.check_alive()
    finally:
        os.kill(svc.proc.pid, signal.SIGCONT)


def test_fixed_port_already_taken(redis_server, services):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        with pytest.raises(ServiceStartError) as exc:
            services.start(spec("redis", name="cache", port=port))
    assert f"port {port} on 127.0.0.1 is already in use" in str(exc.value)
    assert "hint: the port is already in use" in str(exc.value)


def test_port_taken_after_reservation_is_retried(redis_server, services, monkeypatch, tmp_path):
    """The race bind-to-0 cannot close: another program grabs the port before the server binds it."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    taken = held.getsockname()[1]
    real = PortRegistry.reserve
    calls = []

    def reserve(self, purpose, host="127.0.0.1"):
        calls.append(purpose)
        return taken if len(calls) == 1 else real(self, purpose, host)

    monkeypatch.setattr(PortRegistry, "reserve", reserve)
    try:
        svc = services.start(spec("redis", name="cache"))
    finally:
        held.close()
    assert svc.endpoint.port != taken and len(calls) == 2
    log = (tmp_path / "logs" / "cache.log").read_text()
    assert "Address already in use" in log and "retrying on a new port" in log


def test_service_that_exits_during_start_shows_log_tail(redis_server, services):
    with pytest.raises(ServiceStartError) as exc:
        services.start(spec("redis", name="cache", args=["--no-such-directive", "1"]))
    text = str(exc.value)
    assert "exited during start-up (exit status 1)" in text
    assert "Bad directive or wrong number of arguments" in text and "log:" in text
    assert services.services == {}


def test_health_check_that_never_passes_is_bounded(redis_server, services, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(ServiceStartError) as exc:
        services.start(spec("redis", name="cache", health={"http": "/health"}, startup_timeout=1.5))
    assert time.monotonic() - t0 < 15
    text = str(exc.value)
    # An HTTP probe on a Redis port is a wrong-protocol answer: it fails at once (not after the timeout),
    # saying what answered, with the service log's tail.
    assert "health check failed: protocol: /health: not an HTTP answer" in text
    assert "Ready to accept connections" in text and "hint:" in text
    # Stopped even though setup failed: no pid record, no process (checked by the fixture too).
    assert list((tmp_path / "state" / "procs").glob("*.json")) == []


def test_reaper_stops_processes_of_dead_owners_only(redis_server, services, tmp_path):
    svc = services.start(spec("redis", name="cache"))
    state = tmp_path / "state"
    assert reap_leftovers(state, docker=False).count == 0  # the owner (this process) is alive
    record = next((state / "procs").glob("*.json"))
    data = json.loads(record.read_text())
    data["owner"] = data["owner"].rsplit(":", 1)[0] + ":1.00"  # same pid, other start time: a dead owner
    record.write_text(json.dumps(data))
    report = reap_leftovers(state, docker=False)
    assert report.count == 1 and "cache (redis)" in report.processes[0]
    svc.proc.wait(timeout=10)
    assert not record.exists() and not os.path.exists(data["work_dir"])


def test_postgres_process_backend(services, tmp_path):
    import psycopg

    need_postgres()
    svc = services.start(spec("postgres", name="db", database="bench", password="pw",
                              conf={"shared_buffers": "16MB"}))
    ep = svc.endpoint
    assert ep.extra["dsn"] == f"postgresql://postgres:pw@127.0.0.1:{ep.port}/bench"
    with psycopg.connect(ep.extra["dsn"]) as conn:
        assert conn.execute("show shared_buffers").fetchone() == ("16MB",)
        assert conn.execute("select current_database()").fetchone() == ("bench",)
        conn.execute("create table t (x int)")
        conn.execute("insert into t select generate_series(1, 1000)")
        assert conn.execute("select count(*) from t").fetchone() == (1000,)
    with pytest.raises(psycopg.OperationalError):  # the password is enforced over TCP
        psycopg.connect(f"postgresql://postgres:wrong@127.0.0.1:{ep.port}/bench", connect_timeout=5).close()
    if os.geteuid() == 0:
        assert svc.info["run_as"] in ("postgres", "nobody")
    assert "PostgreSQL" in svc.info["binary_version"]
    assert svc.stats()["processes"] >= 3  # postmaster + its background workers, one group
    data_dir = svc.info["data_dir"]
    svc.stop()
    assert not os.path.exists(data_dir)


def test_generic_kind_fills_in_placeholders(services):
    import sys
    import urllib.request

    svc = services.start(spec("generic", name="web", binary=sys.executable,
                              args=["-m", "http.server", "{port}", "--bind", "{host}", "--directory", "{work_dir}"],
                              health={"http": "/"}))
    with urllib.request.urlopen(svc.endpoint.url + "/", timeout=10) as resp:
        assert resp.status == 200
    assert svc.info["argv"][-5:-2] == [str(svc.endpoint.port), "--bind", "127.0.0.1"]


def test_mlflow_process_backend(services):
    """An HTTP kind through the process backend: MLflow's tracking server (a dependency of the plugin)."""
    import urllib.request

    need_binary("mlflow", "pip install mlflow")
    svc = services.start(spec("mlflow", name="track", startup_timeout=180))
    url = svc.endpoint.extra["tracking_uri"] + "/api/2.0/mlflow/experiments/search?max_results=5"
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert json.loads(resp.read())["experiments"][0]["name"] == "Default"
    assert "mlflow" in svc.info["binary_version"]


def test_start_all_stops_the_started_ones_when_one_fails(redis_server, services):
    ok = spec("redis", name="first")
    bad = spec("redis", name="second", args=["--no-such-directive", "1"])
    with pytest.raises(ServiceStartError, match="service 'second'"):
        services.start_all([ok, bad])
    assert services.services == {}
    assert our_processes(services.run_id) == []
