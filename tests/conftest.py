"""Shared fixtures for the plugin's own tests."""

from __future__ import annotations

# Imported here, once, in the outer process: pytester's in-process runs restore sys.modules afterwards,
# and numpy's C extensions refuse to be imported a second time in one process.
# The same holds for client libraries that tests use both inside and outside pytester runs: a module
# first imported during a pytester test is dropped from sys.modules at its teardown, and a later re-import
# of `requests` (under the docker SDK) then mixes classes of two module generations ("You can only merge
# into CookieJar").
import contextlib
import os

import numpy  # noqa: F401
import pytest
import scipy.special  # noqa: F401

with contextlib.suppress(ImportError):
    import boto3  # noqa: F401
    import docker  # noqa: F401
    import psycopg  # noqa: F401
    import redis  # noqa: F401
    import requests  # noqa: F401

with contextlib.suppress(ImportError):  # the report written at the end of a pytester run draws plots
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import prometheus_client  # noqa: F401

pytest_plugins = ["pytester"]


def unavailable(reason: str) -> None:
    """Skip because a service/binary is not available here, or fail when CI forbids such skips.

    CI sets ``HWBENCH_FAIL_ON_UNAVAILABLE=1`` so that a missing redis-server, Docker engine or MLflow
    install is a red run, not a quietly skipped test.
    """
    if os.environ.get("HWBENCH_FAIL_ON_UNAVAILABLE") == "1":
        pytest.fail(f"required for this test but not available: {reason}", pytrace=False)
    pytest.skip(reason)


# ------------------------------------------------------------------------------------------------- markers
# Assigned here, by file and fixture, not in each test file: ``-m unit`` is the fast part (under a minute),
# ``-m service`` starts real services (redis-server, PostgreSQL, Docker, MLflow, llama.cpp), ``-m slow``
# runs whole pytest sessions (pytester, shipped recipes) or long measurements.

#: Files whose tests start real services.
SERVICE_FILES = frozenset({
    "test_services_process.py", "test_services_docker.py", "test_services_llama.py", "test_plugin_services.py",
    "test_redis_workload.py", "test_postgres_workload.py", "test_s3_workload.py", "test_vector_workload.py",
    "test_mlflow.py", "test_secrets.py", "test_outcomes.py", "test_reference_server.py", "test_llm_benchmarks.py",
    "test_team_server.py", "test_deploy.py", "test_mlflow_upload.py", "test_resources.py", "test_bottleneck.py",
    "test_server_timing.py",
})
#: Files that are slow as a whole (long measurements, whole benchmark runs).
SLOW_FILES = frozenset({"test_shipped_recipes.py", "test_engine_accuracy.py", "test_engine_multiproc.py",
                        "test_readme.py", "test_knee_sweep.py", "test_verdict_e2e.py"})
#: Single tests that take seconds (several processes, long waits).
SLOW_TESTS = frozenset({"test_port_registry_never_hands_out_a_port_twice_across_processes"})
#: Fixtures that run a whole pytest session (in process or as a subprocess suite with its services): a test
#: that uses one is slow whatever its own body does.
SLOW_FIXTURES = frozenset({"pytester", "runs"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        name = item.path.name
        if name in SLOW_FILES or item.name in SLOW_TESTS or item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.slow)
        elif name in SERVICE_FILES or item.get_closest_marker("service") is not None:
            item.add_marker(pytest.mark.service)
        elif SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)  # a whole pytest session per test (or per module, shared)
        else:
            item.add_marker(pytest.mark.unit)
