"""The docker backend against a real engine, with images built locally from this machine's binaries
(registries are not reachable in CI), and the leak tests: Ctrl-C and SIGKILL of a run that started a
process and a container leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from pytest_hwbench.errors import ServiceUnavailable
from pytest_hwbench.services import (
    ServiceDied,
    ServiceSet,
    ServiceStartError,
    leftover_containers,
    reap_leftovers,
)
from tests.service_helpers import need_binary, need_docker, need_redis_image, our_processes, run_child, spec


@pytest.fixture
def services(tmp_path):
    run_id = f"t{os.getpid()}-{time.monotonic_ns() % 10**8}"
    with ServiceSet(log_dir=tmp_path / "logs", state_dir=tmp_path / "state", run_id=run_id,
                    handle_signals=False) as s:
        yield s
    assert leftover_containers(run_id) == [], "a container outlived stop_all()"


def test_docker_redis_from_a_locally_built_image(services, tmp_path):
    import redis

    image = need_redis_image()
    svc = services.start(spec("redis", "docker", name="cache", image=image, pull="never"))
    ep = svc.endpoint
    assert ep.host == "127.0.0.1" and ep.port != 6379 and ep.url == f"redis://127.0.0.1:{ep.port}/0"
    client = redis.Redis.from_url(ep.url)
    assert client.set("k", "v") and client.get("k") == b"v"

    c = svc.container
    c.reload()
    bindings = c.attrs["NetworkSettings"]["Ports"]["6379/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"] and int(bindings[0]["HostPort"]) == ep.port
    assert c.labels["hwbench.run"] == services.run_id and c.labels["hwbench.service"] == "cache"
    assert c.labels["hwbench.owner"].split(":")[1] == str(os.getpid())

    info = svc.info
    assert info["image"] == image and info["image_id"].startswith("sha256:")
    assert info["image_digest"].startswith("sha256:") and info["container_id"] == c.id
    json.dumps(info)
    stats = svc.stats()
    assert stats["mem_bytes"] > 0 and stats["pids"] >= 1 and "cpu_percent" in stats
    svc.check_alive()
    assert "Ready to accept connections" in svc.log_tail()

    svc.stop()
    time.sleep(0.2)
    assert "Ready to accept connections" in (tmp_path / "logs" / "cache.log").read_text()
    assert leftover_containers(services.run_id) == []


def test_image_that_does_not_exist_locally(services):
    need_docker()
    with pytest.raises(ServiceUnavailable) as exc:
        services.start(spec("redis", "docker", name="cache", image="hwbench-test/no-such-image:1", pull="never"))
    assert "'hwbench-test/no-such-image:1' is not present locally" in str(exc.value)
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable) as exc:  # default policy tries a pull, which cannot succeed here
        services.start(spec("redis", "docker", name="cache", image="hwbench-test/no-such-image:1"))
    assert "could not be pulled" in str(exc.value) and "docker pull/load" in str(exc.value)
    assert time.monotonic() - t0 < 120


def test_container_that_exits_during_start(services):
    image = need_redis_image()
    with pytest.raises(ServiceStartError) as exc:
        services.start(spec("redis", "docker", name="cache", image=image, args=["--no-such-directive", "1"]))
    text = str(exc.value)
    assert "exited during start-up (container exited, exit code 1)" in text
    assert "Bad directive" in text


def test_gpu_request_without_gpu_gives_a_hint(services):
    image = need_redis_image()
    client = need_docker()
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime: the GPU request may succeed")
    with pytest.raises(ServiceStartError) as exc:
        services.start(spec("redis", "docker", name="cache", image=image, gpus="all"))
    assert "GPU unavailable" in str(exc.value)


def test_container_that_dies_mid_run(services):
    image = need_redis_image()
    svc = services.start(spec("redis", "docker", name="cache", image=image))
    svc.container.kill()
    with pytest.raises(ServiceDied, match=r"died during the run: container exited, exit code 137"):
        svc.check_alive()


LEAK_CHILD = """
import sys, time
from pytest_hwbench.services import ServiceSet
from pytest_hwbench.recipe.model import ServiceSpec
log_dir, state_dir, run_id, image = sys.argv[1:5]
with ServiceSet(log_dir=log_dir, state_dir=state_dir, run_id=run_id) as services:
    services.start(ServiceSpec("cache", "redis", "process", {}))
    services.start(ServiceSpec("box", "redis", "docker", {"image": image, "pull": "never"}))
    print("READY", flush=True)
    time.sleep(600)
"""


def _start_leak_child(tmp_path, run_id, request):
    image = need_redis_image()
    need_binary("redis-server", "apt-get install redis-server")
    child = run_child(LEAK_CHILD, str(tmp_path / "logs"), str(tmp_path / "state"), run_id, image)

    def cleanup():  # whatever the test's outcome, leave nothing behind for the next test
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        reap_leftovers(tmp_path / "state", run_id=run_id, include_live_owners=True)

    request.addfinalizer(cleanup)
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("READY"):
            break
    if not lines or not lines[-1].startswith("READY"):
        child.kill()
        pytest.fail("child did not start its services:\n" + "".join(lines) + child.stdout.read())
    assert len(our_processes(run_id)) == 1 and len(leftover_containers(run_id)) == 1
    return child


def test_sigint_during_a_run_leaves_nothing(tmp_path, request):
    run_id = f"leak-int-{os.getpid()}"
    child = _start_leak_child(tmp_path, run_id, request)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert "KeyboardInterrupt" in out  # it was interrupted, not finished
    assert our_processes(run_id) == []
    assert leftover_containers(run_id) == []
    assert list((tmp_path / "state" / "procs").glob("*.json")) == []


def test_sigkill_leftovers_are_reaped_by_the_next_run(tmp_path, request):
    run_id = f"leak-kill-{os.getpid()}"
    child = _start_leak_child(tmp_path, run_id, request)
    child.kill()  # no handler runs: the services outlive their owner
    child.wait(timeout=30)
    assert len(our_processes(run_id)) == 1 and len(leftover_containers(run_id)) == 1
    # The next run's ServiceSet reaps at start.
    report = ServiceSet(log_dir=tmp_path / "logs2", state_dir=tmp_path / "state", handle_signals=False).reaped
    assert report is not None
    assert len(report.processes) == 1 and len(report.containers) == 1, report.to_dict()
    assert our_processes(run_id) == [] and leftover_containers(run_id) == []
    assert reap_leftovers(tmp_path / "state").count == 0


def test_docker_env_volumes_and_args(services, tmp_path):
    import redis

    image = need_redis_image()
    data = tmp_path / "data"
    data.mkdir()
    svc = services.start(spec("redis", "docker", name="cache", image=image, env={"HWBENCH_X": "1"},
                              volumes={str(data): "/data"}, args=["--dir", "/data", "--dbfilename", "snap.rdb"]))
    assert "HWBENCH_X=1" in svc.container.attrs["Config"]["Env"]
    client = redis.Redis.from_url(svc.endpoint.url)
    client.set("k", "v")
    client.save()
    assert (data / "snap.rdb").stat().st_size > 0  # written inside the container, visible on the host
