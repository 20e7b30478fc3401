"""Secrets stay secret at every sink (issue #9, item 6).

A recipe carries three secrets — a ``${ENV}`` password passed to redis-server as ``--requirepass``, a literal
token in a service's ``env`` and a literal ``api_token`` in ``settings`` — and the run pushes them at every
sink: a test prints one and fails with another in its message. Afterwards no byte of any secret may be in
the terminal output, the JUnit XML, the report files, the service logs, the state directory (checked while
the service runs) or MLflow's store and artifacts.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from tests.conftest import unavailable

TEST_FILE = """
import os, socket, time
from pathlib import Path
import pytest

def _ask(ep, *commands):
    with socket.create_connection((ep.host, ep.port), timeout=5) as sock:
        for cmd in commands:
            sock.sendall(cmd)
        return sock.recv(4096)

@pytest.mark.hwbench(service="redis")
def test_auth_and_ping(hwbench, hwbench_endpoint):
    password = os.environ["HWB_SECRET_PW"]
    t0 = time.perf_counter()
    reply = _ask(hwbench_endpoint, f"AUTH {password}\\r\\n".encode(), b"PING\\r\\n")
    hwbench.record("ping_ms", (time.perf_counter() - t0) * 1000)
    assert b"+OK" in reply and b"PONG" in reply, reply
    assert b"NOAUTH" in _ask(hwbench_endpoint, b"PING\\r\\n")  # the password really is in force
    state = Path(os.environ["HWBENCH_STATE_DIR"])
    for path in state.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for s in (password, os.environ["HWB_SECRET_ENV"], os.environ["HWB_SECRET_LIT"]):
                assert s.encode() not in data, f"secret in the state directory: {path.name}"
    print("the password is", password)  # captured output is a sink too
    hwbench.extra["connect"] = f"redis://default:{password}@{hwbench_endpoint.host}:{hwbench_endpoint.port}"

@pytest.mark.hwbench(service="redis")
def test_fails_quoting_secrets(hwbench, hwbench_endpoint):
    hwbench.record("x", 1.0)
    hwbench.extra["token"] = os.environ["HWB_SECRET_LIT"]
    raise AssertionError("leaked: " + os.environ["HWB_SECRET_PW"] + " and " + os.environ["HWB_SECRET_LIT"]
                         + " and " + os.environ["HWB_SECRET_ENV"])
"""


def test_a_secret_reaches_no_sink(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install redis-server)")
    password, env_secret, literal = (f"{tag}-{secrets.token_hex(8)}" for tag in ("pw", "envtok", "littok"))
    state = tmp_path / "state"
    monkeypatch.setenv("HWBENCH_STATE_DIR", str(state))
    monkeypatch.setenv("HWB_REDIS_PASSWORD", password)
    for name, value in (("HWB_SECRET_PW", password), ("HWB_SECRET_ENV", env_secret), ("HWB_SECRET_LIT", literal)):
        monkeypatch.setenv(name, value)
    pytester.makefile(".yaml", r=f"""\
version: 1
name: secrets
repetitions: 1
services:
  redis:
    kind: redis
    backend: process
    args: ["--requirepass", "${{HWB_REDIS_PASSWORD}}"]
    env: {{EXTRA_TOKEN: "{env_secret}"}}
settings:
  api_token: "{literal}"
  redis: {{password: "${{HWB_REDIS_PASSWORD}}"}}
""")
    pytester.makepyfile(test_s=TEST_FILE)
    junit = pytester.path / "junit.xml"
    res = pytester.runpytest_subprocess("--recipe", "r.yaml", f"--junitxml={junit}", "-rA",  # MLflow: own process
                             f"--hwbench-mlflow=sqlite:///{pytester.path / 'mlflow.db'}")
    res.assert_outcomes(passed=1, failed=1)
    terminal = res.stdout.str() + res.stderr.str()
    assert "leaked: ***" in terminal  # the failure shows, masked
    found = []
    for value in (password, env_secret, literal):
        if value in terminal:
            found.append(f"terminal: {value}")
        for root in (pytester.path, state):
            for path in root.rglob("*"):
                if path.is_file() and path.name != "r.yaml" and value.encode() in path.read_bytes():
                    found.append(f"{path.relative_to(root)}: {value}")
    assert not found, found
    logs = list((pytester.path / "reports").rglob("services/redis.log"))
    assert logs and "--requirepass ***" in logs[0].read_text()  # the argv is logged, masked
    assert list(pytester.path.rglob("mlflow.db"))  # MLflow did log (and was searched)
