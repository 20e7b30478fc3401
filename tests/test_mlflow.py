"""MLflow logging against a real ``mlflow server`` and against a server-less sqlite store.

A real server is started (not mocked) because what breaks in practice is the HTTP path: key validation,
batch limits, artifact proxying, and what happens when the server is not there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_hwbench.report.mlflow_log import MlflowOutcome, log_session, sanitize_key
from tests.conftest import unavailable

SECRET = "sk-live-7f3a9c1d2e"
SERVER_START_TIMEOUT_S = 90.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _summary(mean: float) -> dict:
    return {"count": 200, "mean": mean, "stdev": 1.0, "cv": 1.0 / mean, "min": mean - 2, "max": mean + 5,
            "p50": mean, "p90": mean + 1, "p95": mean + 2, "p99": mean + 3, "p99.9": None,
            "ci": {"mean": [mean - 0.1, mean + 0.1], "p99": [mean + 2.5, mean + 3.5]}, "confidence": 0.95}


def _result(i: int, verdict: str = "PASS", **extra: object) -> dict:
    result = {
        "test_id": f"benchmarks/test_llm.py::test_chat[c{i}]",
        "name": f"test_chat[c{i}]",
        "params": {"concurrency": i, "model": "llama-3-8b", "prompt": {"tokens": 128}},
        "outcome": "failed" if verdict == "FAIL" else "passed",
        "verdict": verdict,
        "duration_s": 12.5,
        "metrics": {
            "ttft_ms": {"unit": "ms", "better": "lower", "summary": _summary(40.0 + i),
                        "trial_values": [40.0, 41.0, 39.5]},
            "output_tok_s": {"unit": "tok/s", "better": "higher", "summary": _summary(900.0),
                             "trial_values": [901.0, 899.0, 900.5]},
        },
        "slo": [{"expr": "ttft_ms.p99 < 500", "passed": verdict != "FAIL"}],
        "baseline": {"status": "PASS"} if verdict == "PASS" else None,
    }
    result.update(extra)
    return result


def _manifest(run_id: str) -> dict:
    return {"run_id": run_id, "testbed": "amd-epyc-7b13-2c-24g",
            "recipe": {"name": "vllm", "path": "recipes/vllm.yaml", "sha256": "ab" * 32},
            "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
            "started_at": "2026-01-02T03:04:05Z",
            "fingerprint": {"hostname": "box-07", "kernel": "6.8.0-31-generic",
                            "gpu": {"driver_version": "550.54.15"}, "dmi": {"bios_version": "2.1.3"}}}


def _report_files(folder: Path, run_id: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps({"run_id": run_id, "note": f"token={SECRET}"}))
    (folder / "run.json").write_text(json.dumps({"run_id": run_id}))
    return [folder / "results.json", folder / "run.json"]


# -------------------------------------------------------------------------------- server fixture

@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tracking server (sqlite backend, proxied artifacts), killed with its children afterwards."""
    exe = shutil.which("mlflow")
    if exe is None:
        unavailable("the `mlflow` executable is not on PATH (pip install mlflow)")
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log_path = tmp / "server.log"
    cmd = [exe, "server", "--backend-store-uri", f"sqlite:///{tmp}/db.sqlite",
           "--artifacts-destination", str(tmp / "art"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    # mlflow 3 also starts a job runner with ~7 huey consumer processes; tests need none of them.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=tmp, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"

    def tail() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])

    t0 = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}; log tail:\n{tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t0 > SERVER_START_TIMEOUT_S:
                pytest.fail(f"mlflow server not healthy after {SERVER_START_TIMEOUT_S:.0f} s; log tail:\n"
                            f"{tail()}", pytrace=False)
            time.sleep(0.25)
        sys.stderr.write(f"[test_mlflow] mlflow server healthy after {time.monotonic() - t0:.1f} s\n")
        yield uri
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture(scope="module")
def logged(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowOutcome, object, str]:
    """One session logged to the server: 3 tests, a secret in params, names, keys and an artifact."""
    from mlflow.tracking import MlflowClient

    run_id = "20260102-030405-abcd"
    files = _report_files(tmp_path_factory.mktemp("reports") / run_id, run_id)
    results = [
        _result(1),
        _result(2, "FAIL"),
        _result(3, "NO_BASELINE", name=f"test_secret[{SECRET}]",
                params={"api_key": f"Bearer {SECRET}", SECRET: "as a key", "bad key:{x}": 1}),
    ]
    results[1]["bottleneck"] = {"cause": "server CPU-bound", "evidence": ["the server's busiest thread demanded "
                                "99% of a core"], "next_action": "give it more cores", "valid": True, "also": []}
    results[2]["metrics"][f"lat_{SECRET}"] = {"unit": "ms", "better": "lower", "summary": _summary(5.0),
                                              "trial_values": []}
    outcome = log_session(mlflow_server, "hwbench-test", _manifest(run_id), results, files,
                          frozenset({SECRET}))
    assert outcome.ok, outcome.warning
    return outcome, MlflowClient(tracking_uri=mlflow_server), run_id


# -------------------------------------------------------------------------------------- the tests

def test_parent_run(logged) -> None:
    outcome, client, run_id = logged
    run = client.get_run(outcome.parent_run_id)
    assert run.info.run_name == run_id
    assert run.info.status == "FINISHED"
    assert run.data.params["recipe.name"] == "vllm"
    assert run.data.params["recipe.sha256"] == "ab" * 32
    assert run.data.params["testbed"] == "amd-epyc-7b13-2c-24g"
    assert run.data.params["git.commit"].startswith("0123456789")
    tags = run.data.tags
    assert tags["testbed"] == "amd-epyc-7b13-2c-24g"
    assert tags["git.commit"].startswith("0123456789") and tags["git.dirty"] == "True"
    assert tags["hwbench.verdict"] == "FAIL"  # worst of PASS, FAIL, NO_BASELINE
    assert "mlflow.parentRunId" not in tags
    assert tags["host"] == "box-07" and tags["env.gpu_driver"] == "550.54.15"
    assert tags["env.kernel"] == "6.8.0-31-generic" and tags["env.bios_version"] == "2.1.3"
    assert run.data.metrics["tests.total"] == 3 and run.data.metrics["tests.fail"] == 1
    assert outcome.parent_run_url and outcome.parent_run_url.endswith(outcome.parent_run_id)


def test_child_runs(logged) -> None:
    outcome, client, _ = logged
    assert len(outcome.child_run_ids) == 3
    exp = client.get_experiment_by_name("hwbench-test")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{outcome.parent_run_id}'")
    assert sorted(r.info.run_id for r in children) == sorted(outcome.child_run_ids)

    first = client.get_run(outcome.child_run_ids[0])
    assert first.info.run_name == "test_chat[c1]" and first.info.status == "FINISHED"
    assert first.data.params == {"concurrency": "1", "model": "llama-3-8b", "prompt": '{"tokens": 128}'}
    m = first.data.metrics
    assert m["ttft_ms.p99"] == pytest.approx(44.0) and m["ttft_ms.mean"] == pytest.approx(41.0)
    assert m["output_tok_s.count"] == 200 and m["duration_s"] == pytest.approx(12.5)
    assert m["ttft_ms.p99.ci_low"] == pytest.approx(43.5)
    assert "ttft_ms.p99.9" not in m  # null stats are not logged
    assert "ttft_ms.confidence" not in m
    trials = client.get_metric_history(first.info.run_id, "ttft_ms.trial")
    assert [(t.step, t.value) for t in sorted(trials, key=lambda t: t.step)] == [(0, 40.0), (1, 41.0), (2, 39.5)]
    t = first.data.tags
    assert t["hwbench.verdict"] == "PASS" and t["hwbench.slo"] == "PASS" and t["hwbench.baseline"] == "PASS"
    assert t["testbed"] == "amd-epyc-7b13-2c-24g" and t["host"] == "box-07"
    assert t["test_id"] == "benchmarks/test_llm.py::test_chat[c1]"

    second = client.get_run(outcome.child_run_ids[1]).data.tags
    assert second["hwbench.verdict"] == "FAIL" and second["hwbench.slo"] == "FAIL"
    assert second["hwbench.baseline"] == "NONE"
    assert second["hwbench.bottleneck"] == "server CPU-bound"  # the attribution, filterable across sessions
    assert json.loads(second["hwbench.bottleneck.detail"])["evidence"][0].endswith("99% of a core")

    # searchable by test id across sessions: the point of one child run per test
    hits = client.search_runs([exp.experiment_id],
                              filter_string="tags.test_id = 'benchmarks/test_llm.py::test_chat[c2]'")
    assert [r.info.run_id for r in hits] == [outcome.child_run_ids[1]]


def test_artifacts_listed(logged) -> None:
    outcome, client, _ = logged
    names = {f.path for f in client.list_artifacts(outcome.parent_run_id)}
    assert {"results.json", "run.json"} <= names


def test_secrets_redacted(logged, tmp_path: Path) -> None:
    outcome, client, _ = logged
    runs = [client.get_run(i) for i in [outcome.parent_run_id, *outcome.child_run_ids]]
    for run in runs:
        blob = json.dumps({"name": run.info.run_name, "params": run.data.params, "tags": run.data.tags,
                           "metrics": sorted(run.data.metrics)})
        assert SECRET not in blob
    third = runs[3]
    assert third.info.run_name == "test_secret[***]"
    assert third.data.params["api_key"] == "Bearer ***"
    assert third.data.params["REDACTED"] == "as a key"  # '*' is not a legal key character
    assert third.data.params["bad key__x_"] == "1"  # illegal key characters sanitised
    assert "lat_REDACTED.p99" in third.data.metrics
    local = Path(client.download_artifacts(outcome.parent_run_id, "results.json", str(tmp_path)))
    text = local.read_text()
    assert SECRET not in text and "token=***" in text


def test_unreachable_server_fails_fast(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    uri = f"http://127.0.0.1:{port}"
    files = _report_files(tmp_path / "reports" / "r1", "r1")
    t0 = time.monotonic()
    outcome = log_session(uri, "hwbench-test", _manifest("r1"), [_result(1), _result(2)], files)
    elapsed = time.monotonic() - t0
    assert elapsed < 10
    assert outcome.ok is False and outcome.parent_run_id is None and outcome.child_run_ids == []
    assert outcome.warning == (f"MLflow at {uri} unreachable (connection refused): run r1 with 2 test results "
                               f"was not logged; files are in {tmp_path / 'reports' / 'r1'}/")


def test_credentials_not_in_warning(tmp_path: Path) -> None:
    port = _free_port()
    outcome = log_session(f"http://alice:hunter2pw@127.0.0.1:{port}", "e", _manifest("r2"), [], [],
                          report_dir=tmp_path)
    assert not outcome.ok and outcome.warning
    assert "hunter2pw" not in outcome.warning and "alice" not in outcome.warning


def test_env_restored(monkeypatch: pytest.MonkeyPatch, sqlite_store: tuple[Path, str]) -> None:
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "77")
    assert log_session(sqlite_store[1], "env", _manifest("r3"), [], []).ok
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "77"


# ---------------------------------------------------------------------------------- sqlite, no server

@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One sqlite file for the module: creating one runs mlflow's schema migrations (~2 s each)."""
    root = tmp_path_factory.mktemp("sqlite-store")
    db = root / "reports" / "mlflow.db"
    db.parent.mkdir()
    return root, f"sqlite:///{db}"


def test_sqlite_without_server(sqlite_store: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    root, uri = sqlite_store
    monkeypatch.chdir(root)  # artifacts must not land in ./mlruns of the working directory
    files = _report_files(root / "reports" / "r4", "r4")
    outcome = log_session(uri, "local", _manifest("r4"), [_result(1), _result(2, "FAIL")], files)
    assert outcome.ok, outcome.warning
    assert outcome.warning is None and outcome.parent_run_url is None
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("local")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 3
    assert {f.path for f in client.list_artifacts(outcome.parent_run_id)} == {"results.json", "run.json"}
    assert (root / "reports" / "mlartifacts").is_dir()
    assert not (root / "mlruns").exists() and not (root / "mlartifacts").exists()

    again = log_session(uri, "local", _manifest("r5"), [_result(1)], [])  # existing db and experiment
    assert again.ok and len(client.search_runs([exp.experiment_id])) == 5


def test_batch_limits(sqlite_store: tuple[Path, str]) -> None:
    """More than 100 params and 1000 metrics in one test: split into several log_batch calls."""
    from mlflow.tracking import MlflowClient

    uri = sqlite_store[1]
    result = _result(1, params={f"p{i}": i for i in range(150)})
    result["metrics"] = {f"m{i}": {"summary": _summary(float(i + 10)), "trial_values": []} for i in range(80)}
    outcome = log_session(uri, "limits", _manifest("r6"), [result], [])
    assert outcome.ok, outcome.warning
    run = MlflowClient(tracking_uri=uri).get_run(outcome.child_run_ids[0])
    assert len(run.data.params) == 150
    assert len([k for k in run.data.metrics if k.startswith("m")]) == 80 * 14  # 10 stats + 2 CIs x 2 bounds


def test_store_failure_is_a_warning_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    outcome = log_session(f"sqlite:///{blocker}/m.db", "e", _manifest("r7"), [_result(1)], [],
                          report_dir=tmp_path)
    assert outcome.ok is False and outcome.warning
    assert "run r7 with 1 test results was not logged" in outcome.warning
    assert f"files are in {tmp_path}/" in outcome.warning


def test_missing_artifact_is_noted(sqlite_store: tuple[Path, str], tmp_path: Path) -> None:
    outcome = log_session(sqlite_store[1], "missing", _manifest("r8"), [], [tmp_path / "nope.json"])
    assert outcome.ok and outcome.warning and "nope.json does not exist" in outcome.warning


@pytest.mark.parametrize(("raw", "clean"), [
    ("ttft_ms.p99.9", "ttft_ms.p99.9"),
    ("a:b{c}", "a_b_c_"),
    ("//lead/../x//", "lead/_/x"),
    (".", "_"),
    ("", "_"),
    ("k" * 300, "k" * 250),
    ("with space/and-dash", "with space/and-dash"),
])
def test_sanitize_key(raw: str, clean: str) -> None:
    assert sanitize_key(raw) == clean
