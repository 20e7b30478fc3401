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
