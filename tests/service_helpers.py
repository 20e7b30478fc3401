"""Helpers for the service tests: find the real pieces (binaries, Docker, llama.cpp build) or call
``unavailable`` with the exact reason, so CI (HWBENCH_FAIL_ON_UNAVAILABLE=1) turns a missing piece red."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from pytest_hwbench.errors import ServiceUnavailable
from pytest_hwbench.recipe.model import ServiceSpec
from pytest_hwbench.services.base import restore_default_signals
from tests.conftest import unavailable

REPO = Path(__file__).resolve().parent.parent
REDIS_IMAGE = "hwbench/redis-server:local"


def spec(kind: str, backend: str = "process", name: str | None = None, **settings: Any) -> ServiceSpec:
    return ServiceSpec(name=name or kind, kind=kind, backend=backend, settings=settings)  # type: ignore[arg-type]


def need_binary(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({hint}; .ci/install-services.sh installs it)")
    return str(path)


def need_postgres() -> str:
    from pytest_hwbench.services import get_kind

    found = get_kind("postgres").find_binary(None)
    if found is None:
        unavailable("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    return str(found)


def need_docker() -> Any:
    from pytest_hwbench.services.docker_backend import docker_client

    try:
        return docker_client()
    except ServiceUnavailable as err:
        unavailable(f"{err} (.ci/install-services.sh starts dockerd)")


def need_redis_image() -> str:
    """A FROM-scratch image holding this machine's redis-server (Docker Hub is not reachable in CI)."""
    binary = need_binary("redis-server", "apt-get install redis-server")
    client = need_docker()
    from pytest_hwbench.services.local_images import build_binary_image

    build_binary_image(binary, REDIS_IMAGE, client=client)
    return REDIS_IMAGE


def llama_bin_dir() -> Path:
    """The cached llama.cpp build (scripts/build_llama_cpp.sh); never built from a test (takes minutes)."""
    cache = os.environ.get("HWBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hwbench")
    for d in sorted(glob.glob(os.path.join(cache, "llama.cpp", "*", "bin")), reverse=True):
        if os.access(os.path.join(d, "llama-server"), os.X_OK) and os.access(os.path.join(d, "llama-bench"),
                                                                            os.X_OK):
            return Path(d)
    unavailable(f"llama.cpp is not built in {cache}/llama.cpp (run scripts/build_llama_cpp.sh)")
    raise AssertionError("unreachable")


def our_processes(run_id: str) -> list[int]:
    """Pids of live processes the process backend started for ``run_id``: found by the run id in their
    environment or by their working directory (the per-service work dir is named after the run), because
    servers such as redis rewrite their process title and the environment block with it."""
    import psutil

    from pytest_hwbench.services.process import ENV_RUN_ID

    pids = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
                continue
            if f"hwbench-{run_id}-" in p.cwd() or p.environ().get(ENV_RUN_ID) == run_id:
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def child_script(body: str) -> str:
    """A Python program for a child process, with the repo importable."""
    return f"import sys\nsys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(body)


def run_child(body: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", child_script(body), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=restore_default_signals)  # we may run as a background job
