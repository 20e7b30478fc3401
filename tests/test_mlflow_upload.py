"""MLflow for a team: the configurable server probe, ``hwbench mlflow upload`` and reading sessions back.

The full path against PostgreSQL-backed ``mlflow server`` is tests/test_team_server.py; here the store is
an sqlite file (no server) and the probe is aimed at sockets whose behaviour the test controls.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hwbench.cli import main
from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.loader import load_recipe_text
from pytest_hwbench.report.fleet_data import load_mlflow
from pytest_hwbench.report.mlflow_log import log_session
from tests.fleet_helpers import fleet_dirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a tracking server too busy (or too cold) to reply."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def test_probe_timeout_and_retries_are_configurable(silent_server: int) -> None:
    t0 = time.monotonic()
    out = log_session(f"http://127.0.0.1:{silent_server}", "e", {"run_id": "r1"}, [], [],
                      probe_timeout_s=0.4, probe_retries=1)
    elapsed = time.monotonic() - t0
    assert not out.ok and "no answer within 0.4 s" in out.warning
    assert 0.8 + 1.0 <= elapsed < 10  # two probes of 0.4 s and one backoff of 1 s


def test_probe_retries_wait_for_a_server_that_comes_up_late() -> None:
    port = _free_port()

    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # any HTTP answer means "reachable"
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server: list[http.server.HTTPServer] = []

    def start_late() -> None:
        time.sleep(1.2)
        server.append(http.server.HTTPServer(("127.0.0.1", port), NotMlflow))
        server[0].serve_forever()

    threading.Thread(target=start_late, daemon=True).start()
    try:
        late = log_session(f"http://127.0.0.1:{port}", "e", {"run_id": "r2"}, [], [], probe_timeout_s=0.5,
                           probe_retries=3)
        assert late.warning and "unreachable" not in late.warning  # got past the probe; the fake is no MLflow
        without = log_session(f"http://127.0.0.1:{_free_port()}", "e", {"run_id": "r3"}, [], [])
        assert "unreachable (connection refused)" in without.warning
    finally:
        if server:
            server[0].shutdown()


def test_recipe_probe_settings_are_validated() -> None:
    base = "version: 1\nname: x\nmlflow:\n  probe_timeout_s: {t}\n  probe_retries: {r}\n"
    recipe = load_recipe_text(base.format(t=20, r=4), "x.yaml")
    assert recipe.mlflow.probe_timeout_s == 20.0 and recipe.mlflow.probe_retries == 4
    assert load_recipe_text("version: 1\nname: x\n", "x.yaml").mlflow.probe_timeout_s == 3.0
    with pytest.raises(HwbenchInputError, match=r"mlflow\.probe_timeout_s"):
        load_recipe_text(base.format(t=0, r=1), "x.yaml")
    with pytest.raises(HwbenchInputError, match=r"mlflow\.probe_retries"):
        load_recipe_text(base.format(t=1, r=-1), "x.yaml")


def test_upload_is_idempotent_and_sessions_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWBENCH_CACHE", str(tmp_path / "cache"))
    dirs = fleet_dirs(tmp_path / "reports", {"a": 20.0, "b": 18.0}, sessions=1, testbed="tb")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["mlflow", "upload", str(tmp_path / "reports"), "--mlflow", uri, "--experiment", "up"]) == 0
    out = capsys.readouterr().out
    assert out.count("logged with 2 tests") == 2
    assert main(["mlflow", "upload", str(dirs[0]), "--mlflow", uri, "--experiment", "up"]) == 0
    assert "is already logged" in capsys.readouterr().out
    assert main(["mlflow", "upload", str(dirs[0]), "--mlflow", uri, "--experiment", "up", "--force"]) == 0
    assert "logged with 2 tests" in capsys.readouterr().out

    sessions = load_mlflow(uri, "up")
    assert sorted(s.host for s in sessions) == ["a", "a", "b"]
    s = next(s for s in sessions if s.host == "b")
    assert s.testbed == "tb" and s.source.startswith("mlflow:") and s.fingerprint["kernel"] == "6.1.0-18-amd64"
    assert len(s.tests[0].metrics["copy_gb_s"].trial_values) == 5
    assert [x.host for x in load_mlflow(uri, "up", host="b")] == ["b"]
    with pytest.raises(HwbenchInputError, match="no experiment named 'nope'"):
        load_mlflow(uri, "nope")


def test_upload_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["mlflow", "upload", str(tmp_path)]) == 2
    assert "needs --mlflow URI" in capsys.readouterr().err
    assert main(["mlflow", "upload", str(tmp_path), "--mlflow", "sqlite:///x.db"]) == 2
    assert "no run directory" in capsys.readouterr().err
    fleet_dirs(tmp_path / "r", {"a": 1.0}, sessions=1)
    assert main(["mlflow", "upload", str(tmp_path / "r"), "--mlflow", f"http://127.0.0.1:{_free_port()}",
                 "--probe-timeout", "0.3", "--probe-retries", "0"]) == 1
    assert "unreachable (connection refused)" in capsys.readouterr().out
