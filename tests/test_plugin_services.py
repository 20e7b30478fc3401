"""The plugin starting the recipe's real services: once per session, shared by xdist workers, never leaked."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pytest_hwbench.services.base import restore_default_signals
from tests.service_helpers import need_binary, need_postgres, need_redis_image, our_processes

REPO = Path(__file__).resolve().parents[1]
BENCH = (REPO / "benchmarks" / "test_services_roundtrip.py").read_text()


def setup_suite(pytester: pytest.Pytester, recipe: str) -> None:
    pytester.makepyfile(test_services_roundtrip=BENCH)
    shutil.copy(REPO / "recipes" / recipe, pytester.path / recipe)


def only_run_dir(pytester: pytest.Pytester) -> Path:
    dirs = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    assert len(dirs) == 1
    return dirs[0]


def redis_processes_on(port: int) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "redis-server" and (str(port) in " ".join(cmd) or f":{port}" in " ".join(cmd)):
            found.append(proc)
    return found


def redis_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"}


def test_redis_recipe_starts_the_real_server(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    setup_suite(pytester, "redis.yaml")
    res = pytester.runpytest_subprocess("--recipe", "redis.yaml", "--no-hwbench-mlflow")
    res.assert_outcomes(passed=1, skipped=1)
    rd = only_run_dir(pytester)
    manifest = json.loads((rd / "run.json").read_text())
    info = manifest["services"]["redis"]
    assert info["backend"] == "process" and info["startup_s"] > 0 and "redis" in info["binary_version"].lower()
    assert list((rd / "services").glob("*redis*")), "service log missing under reports/<run>/services/"
    port = json.loads((rd / "results.json").read_text())["tests"][0]["extra"]["endpoint_port"]
    assert not redis_processes_on(port), "redis-server still running after the session"


def test_postgres_recipe_starts_the_real_server(pytester: pytest.Pytester) -> None:
    need_postgres()
    setup_suite(pytester, "postgres.yaml")
    res = pytester.runpytest_subprocess("--recipe", "postgres.yaml", "--no-hwbench-mlflow")
    res.assert_outcomes(passed=1, skipped=1)
    results = json.loads((only_run_dir(pytester) / "results.json").read_text())["tests"]
    pg = next(t for t in results if t["name"] == "test_postgres_select1")
    assert pg["metrics"]["select1_us"]["summary"]["count"] == 5 * 200


def test_docker_variant_runs_redis_in_a_container(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_REDIS_IMAGE", need_redis_image())
    setup_suite(pytester, "redis-docker.yaml")
    res = pytester.runpytest_subprocess("--recipe", "redis-docker.yaml", "--no-hwbench-mlflow")
    res.assert_outcomes(passed=1, skipped=1)
    info = json.loads((only_run_dir(pytester) / "run.json").read_text())["services"]["redis"]
    assert info["backend"] == "docker" and info["image_digest"] and info["container_id"]
    from pytest_hwbench.services import leftover_containers

    assert not leftover_containers(None) or all(c.status != "running" for c in leftover_containers(None))


XDIST_SUITE = """
import time
import pytest
import redis

@pytest.mark.parametrize("i", range(4))
@pytest.mark.hwbench(service="redis", repetitions=1, warmup=0)
def test_shared(hwbench, hwbench_endpoint, i):
    r = redis.Redis(host=hwbench_endpoint.host, port=hwbench_endpoint.port)
    hwbench.record("incr", float(r.incr("hwbench-shared-counter")))
    hwbench.extra["port"] = hwbench_endpoint.port
    time.sleep(float(__import__("os").environ.get("HWB_SLEEP", "0")))
"""


def test_xdist_workers_share_one_server_started_by_the_controller(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    pytester.makepyfile(test_shared=XDIST_SUITE)
    shutil.copy(REPO / "recipes" / "redis.yaml", pytester.path / "redis.yaml")
    res = pytester.runpytest_subprocess("-n", "2", "--recipe", "redis.yaml", "--no-hwbench-mlflow")
    res.assert_outcomes(passed=4)
    tests = json.loads((only_run_dir(pytester) / "results.json").read_text())["tests"]
    assert {t["worker"] for t in tests} == {"gw0", "gw1"}
    assert len({t["extra"]["port"] for t in tests}) == 1, "workers got different servers"
    counters = sorted(t["metrics"]["incr"]["summary"]["max"] for t in tests)
    assert counters == [1.0, 2.0, 3.0, 4.0], "workers did not talk to one shared server"


def test_sigint_under_xdist_leaves_no_service_behind(pytester: pytest.Pytester) -> None:
    need_binary("redis-server", "apt-get install redis-server")
    pytester.makepyfile(test_shared=XDIST_SUITE)
    shutil.copy(REPO / "recipes" / "redis.yaml", pytester.path / "redis.yaml")
    env = {**os.environ, "HWB_SLEEP": "30"}
    before = redis_pids()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-n", "2", "--recipe", "redis.yaml",
                             "--no-hwbench-mlflow", "-p", "no:cacheprovider"], cwd=pytester.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=restore_default_signals)  # this process may ignore SIGINT (bg job)
    try:
        deadline = time.monotonic() + 60
        log_dir = None
        while time.monotonic() < deadline and log_dir is None:
            time.sleep(0.5)
            found = list((pytester.path / "reports").glob("*/services"))
            log_dir = found[0] if found and list(found[0].iterdir()) else None
        assert log_dir is not None, "service never started"
        time.sleep(3)  # tests are now sleeping inside the measurement
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    time.sleep(1)
    # only this run's processes (by run id): other suites on a shared machine start redis-servers too
    leftovers = (redis_pids() - before) & set(our_processes(log_dir.parent.name))
    assert not leftovers, f"redis-server left running after SIGINT: {leftovers}"


def test_service_that_cannot_start_skips_or_fails_with_the_reason(pytester: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_services_roundtrip=BENCH)
    pytester.makefile(".yaml", broken="version: 1\nservices:\n  redis: {kind: redis, backend: process, "
                                      "binary: /nonexistent/redis-server}\n")
    monkeypatch.setenv("HWBENCH_FAIL_ON_UNAVAILABLE", "0")
    res = pytester.runpytest_subprocess("--recipe", "broken.yaml", "--no-hwbench-mlflow", "-rs")
    res.assert_outcomes(skipped=2)
    res.stdout.fnmatch_lines(["*service 'redis'*/nonexistent/redis-server*"])
    monkeypatch.setenv("HWBENCH_FAIL_ON_UNAVAILABLE", "1")  # CI: not available is a failure
    res = pytester.runpytest_subprocess("--recipe", "broken.yaml", "--no-hwbench-mlflow")
    res.assert_outcomes(errors=1, skipped=1)  # the fixture fails, so pytest reports a setup error
    res.stdout.fnmatch_lines(["*HWBENCH_FAIL_ON_UNAVAILABLE=1*"])
    assert "/nonexistent/redis-server" in res.stdout.str()


def test_service_versions_are_part_of_the_baseline_environment(pytester: pytest.Pytester) -> None:
    """An upgrade gate is about what changed: a different redis-server version shows in the environment diff."""
    need_binary("redis-server", "apt-get install redis-server")
    setup_suite(pytester, "redis.yaml")
    args = ["--recipe", "redis.yaml", "--no-hwbench-mlflow", "--hwbench-testbed", "tb", "-k", "ping"]
    pytester.runpytest_subprocess(*args, "--hwbench-save-baseline").assert_outcomes(passed=1, deselected=1)
    path = next((pytester.path / "baselines" / "tb").glob("*.json"))
    doc = json.loads(path.read_text())
    (entry,) = doc["tests"].values()
    version = entry["sessions"][-1]["environment"]["services"]["redis"]["binary_version"]
    assert "redis" in version.lower() or version[0].isdigit()
    path.write_text(path.read_text().replace(json.dumps(version), json.dumps("0.0.1-old")))
    shutil.rmtree(only_run_dir(pytester))
    pytester.runpytest_subprocess(*args)
    (result,) = json.loads((only_run_dir(pytester) / "results.json").read_text())["tests"]
    changed = {c["key"]: c for c in result["baseline"]["env_diff"]}
    assert changed["services.redis.binary_version"]["baseline"] == "0.0.1-old"
