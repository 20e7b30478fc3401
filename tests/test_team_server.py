"""The team setup for real: PostgreSQL + ``mlflow server`` + an S3 store, several machines logging into it.

``deploy/team-server.sh`` (the no-Docker deployment) starts PostgreSQL and the MLflow server as processes; the
S3 store is moto's server, the project's stand-in for MinIO. Then, like a team would:

* three pytest sessions run at the same time, posing as two machines of testbed ``tb-a`` (``a2`` slowed on
  purpose by 15 %) and one of ``tb-b`` (``--hwbench-host``, ``--hwbench-testbed``);
* a fourth session finds the server down, says so, and is logged later with ``hwbench mlflow upload``;
* older sessions of the same machines (run directories, one with a kernel change) are uploaded as history;
* every parent run, child run and artifact is checked on the server and in the bucket; ``hwbench fleet
  --mlflow`` names the slowed machine; the dashboard shows it all in headless Chromium (screenshots saved).

The benchmark the sessions run records values drawn around a known mean (a fake whose numbers are known, so
"which machine is slower" has a right answer); everything else is the real path.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_hwbench.services import ServiceSet
from tests.conftest import unavailable
from tests.fleet_helpers import fleet_dirs
from tests.service_helpers import need_binary, need_postgres, spec

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "team"
BENCH = "test_fleet_bench.py"
S3_KEY, S3_SECRET = "hwbench-team", "team-secret-key"

BENCH_SOURCE = '''
"""Numbers drawn around a known mean: FLEET_SPEED scales this machine (a fake whose answer is known)."""
import os
import zlib

import numpy as np
import pytest

SPEED = float(os.environ["FLEET_SPEED"])
RNG = np.random.default_rng(zlib.crc32(os.environ["HWBENCH_HOST"].encode()))
SIZES = {"tiny-1b": 0.7, "small-3b": 2.0, "mid-8b": 4.9}


def test_copy(hwbench):
    hwbench.record("copy_gb_s", RNG.normal(20.0 * SPEED, 0.05, 5), unit="GB/s")


def test_latency(hwbench):
    hwbench.record("lat_ms", RNG.normal(50.0 / SPEED, 0.2, 5), unit="ms")


@pytest.mark.parametrize("model", sorted(SIZES))
def test_generate(hwbench, model):
    hwbench.extra["model"] = model
    hwbench.extra["model_size_gb"] = SIZES[model]
    hwbench.record("output_tok_s", RNG.normal(60.0 * SPEED / SIZES[model], 0.5, 5), unit="tok/s")
'''

RECIPE = """\
version: 1
name: fleet
repetitions: 4
slo:
  "test_fleet_bench.py::test_copy":
    - copy_gb_s.median >= 18
mlflow:
  experiment: team
  probe_timeout_s: {timeout}
  probe_retries: {retries}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TeamServer:
    uri: str
    s3_endpoint: str
    dir: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def team_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    need_postgres()
    need_binary("moto_server", "pip install 'moto[server]'")
    if shutil.which("mlflow") is None:
        unavailable("the `mlflow` executable is not on PATH (pip install mlflow)")
    root = tmp_path_factory.mktemp("team")
    # the postgres user must reach the data directory; pytest's own temp root is private to root
    data = Path(tempfile.mkdtemp(prefix="hwbench-team-"))
    data.chmod(0o755)
    with ServiceSet(log_dir=root / "logs", state_dir=root / "state", run_id=f"team{uuid.uuid4().hex[:8]}",
                    source="tests/test_team_server.py", handle_signals=False) as services:
        s3 = services.start(spec("s3", binary="moto_server")).endpoint
        port = _free_port()
        env = {**os.environ, "HWBENCH_SERVER_DIR": str(data / "srv"), "MLFLOW_HOST": "127.0.0.1",
               "MLFLOW_PORT": str(port), "PG_PORT": str(_free_port()), "S3_ENDPOINT": s3.url,
               "S3_ACCESS_KEY": S3_KEY, "S3_SECRET_KEY": S3_SECRET, "MLFLOW_WORKERS": "2",
               "PYTHON": sys.executable}
        script = str(REPO / "deploy" / "team-server.sh")
        try:
            t0 = time.monotonic()
            started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=400)
            assert started.returncode == 0, f"team-server.sh start failed:\n{started.stdout}\n{started.stderr}"
            sys.stderr.write(f"[team] server up in {time.monotonic() - t0:.1f} s\n")
            assert "MLflow on http://127.0.0.1" in started.stdout
            yield TeamServer(uri=f"http://127.0.0.1:{port}", s3_endpoint=s3.url, dir=data / "srv", env=env)
        finally:
            stopped = subprocess.run([script, "stop"], env=env, capture_output=True, text=True, timeout=120)
            status = subprocess.run([script, "status"], env=env, capture_output=True, text=True, timeout=60)
            shutil.rmtree(data, ignore_errors=True)
            assert stopped.returncode == 0, stopped.stderr
            assert "running" not in status.stdout.replace("PostgreSQL stopped", ""), status.stdout


def _session(work: Path, host: str, testbed: str, speed: float, uri: str, *, timeout: float = 30,
             retries: int = 3) -> subprocess.Popen[str]:
    recipe = work / f"recipe-{host}-{retries}.yaml"
    recipe.write_text(RECIPE.format(timeout=timeout, retries=retries))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLEET_SPEED": str(speed), "HWBENCH_HOST": host,
           "HWBENCH_STATE_DIR": str(work / "state")}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "pytest", BENCH, "--recipe", str(recipe), "--hwbench-mlflow", uri,
           "--hwbench-testbed", testbed, "--hwbench-report-dir", f"reports-{host}", "-p", "no:cacheprovider",
           "-p", "no:randomly", "-q"]
    return subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@dataclass
class Seeded:
    server: TeamServer
    work: Path
    outputs: dict[str, str]
    offline_run: Path
    upload_out: str
    upload_again_out: str
    history: list[Path]


@pytest.fixture(scope="module")
def seeded(team_server: TeamServer, tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    work = tmp_path_factory.mktemp("machines")
    (work / BENCH).write_text(BENCH_SOURCE)
    # history: four earlier sessions per machine, a kernel upgrade on a1 half-way, uploaded like a backlog
    hist = work / "history"
    history = fleet_dirs(hist / "a", {"a1": 20.0, "a2": 17.0}, sessions=2, trials=4, cv=0.003, testbed="tb-a",
                         module=BENCH, t0=time.time() - 4 * 86400)
    history += fleet_dirs(hist / "a-new", {"a1": 20.0, "a2": 17.0}, sessions=2, trials=4, cv=0.003,
                          testbed="tb-a", module=BENCH, t0=time.time() - 2 * 86400, seed=8,
                          env={"a1": {"kernel": "6.1.0-21-amd64"}, "a2": {"kernel": "6.1.0-21-amd64"}})
    history += fleet_dirs(hist / "b", {"b1": 31.0}, sessions=3, trials=4, cv=0.003, testbed="tb-b", module=BENCH,
                          t0=time.time() - 3 * 86400, drift=-0.02)

    uri = team_server.uri
    procs = {"a1": _session(work, "a1", "tb-a", 1.0, uri), "a2": _session(work, "a2", "tb-a", 0.85, uri),
             "b1": _session(work, "b1", "tb-b", 1.55, uri)}
    outputs = {}
    for host, proc in procs.items():
        out, _ = proc.communicate(timeout=400)
        outputs[host] = out
        assert proc.returncode in (0, 1), f"session {host} crashed:\n{out}"
    # a session whose server is down: it says so and how to upload later
    dead = f"http://127.0.0.1:{_free_port()}"
    proc = _session(work, "a1", "tb-a", 1.0, dead, timeout=0.5, retries=1)
    outputs["offline"], _ = proc.communicate(timeout=400)
    (offline_run,) = [p for p in (work / "reports-a1").iterdir() if (p / "run.json").is_file()
                      and json.loads((p / "run.json").read_text())["started_at"] ==
                      max(json.loads((q / "run.json").read_text())["started_at"]
                          for q in (work / "reports-a1").iterdir() if (q / "run.json").is_file())]

    def upload(*paths: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "pytest_hwbench.cli", "mlflow", "upload", *map(str, paths),
                               "--mlflow", uri, "--experiment", EXPERIMENT], cwd=work, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    upload_out = upload(offline_run, hist / "a", hist / "a-new", hist / "b")
    upload_again = upload(offline_run)
    return Seeded(team_server, work, outputs, offline_run, upload_out, upload_again, history)


# ---------------------------------------------------------------------------------------------- tests

def test_every_run_child_and_artifact_is_on_the_server(seeded: Seeded) -> None:
    import boto3
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=seeded.server.uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    old = {json.loads((d / "run.json").read_text())["run_id"] for d in seeded.history}
    live = [p for p in parents if p.data.tags["hwbench.run_id"] not in old]
    # 3 live sessions + the offline one uploaded later + 4 + 4 + 3 history sessions
    assert len(parents) == 4 + len(seeded.history), sorted(p.data.tags.get("host", "?") for p in parents)
    assert sorted(p.data.tags["host"] for p in live) == ["a1", "a1", "a2", "b1"]
    assert {p.data.tags["testbed"] for p in live} == {"tb-a", "tb-b"}
    for p in parents:
        assert p.info.status == "FINISHED"
        kids = [c for c in children if c.data.tags["mlflow.parentRunId"] == p.info.run_id]
        assert len(kids) == int(p.data.metrics["tests.total"]) > 0
        assert {f.path for f in client.list_artifacts(p.info.run_id)} == {"results.json", "run.json"}
    for p in live:
        kids = {c.data.tags["test_id"]: c for c in children if c.data.tags["mlflow.parentRunId"] == p.info.run_id}
        assert set(kids) == {f"{BENCH}::test_copy", f"{BENCH}::test_latency",
                             *(f"{BENCH}::test_generate[{m}]" for m in ("mid-8b", "small-3b", "tiny-1b"))}
        copy = kids[f"{BENCH}::test_copy"]
        assert copy.data.tags["host"] == p.data.tags["host"] and "copy_gb_s.p50" in copy.data.metrics
    slow = next(p for p in live if p.data.tags["host"] == "a2")
    assert slow.data.tags["hwbench.verdict"] == "FAIL"  # its SLO (copy >= 18 GB/s) failed

    # the artifacts are in the S3 store (proxied by the server: the sessions had no S3 credentials)
    s3 = boto3.client("s3", endpoint_url=seeded.server.s3_endpoint, aws_access_key_id=S3_KEY,
                      aws_secret_access_key=S3_SECRET, region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
            for o in page.get("Contents", [])]
    for p in parents:
        assert any(k.endswith(f"{p.info.run_id}/artifacts/results.json") for k in keys), p.info.run_id


def test_run_that_could_not_be_logged_is_uploaded_later(seeded: Seeded) -> None:
    out = seeded.outputs["offline"]
    assert "unreachable (connection refused)" in out
    assert f"hwbench mlflow upload {seeded.offline_run.name}" in out.replace(str(seeded.work) + "/", "") or \
        "hwbench mlflow upload" in out
    run_id = json.loads((seeded.offline_run / "run.json").read_text())["run_id"]
    assert f"run {run_id} logged with 5 tests" in seeded.upload_out
    assert f"run {run_id} is already logged" in seeded.upload_again_out


def test_fleet_names_the_slowed_machine(seeded: Seeded) -> None:
    done = subprocess.run([sys.executable, "-m", "pytest_hwbench.cli", "fleet", "--mlflow", seeded.server.uri,
                           "--experiment", EXPERIMENT, "--testbed", "tb-a", "--format", "json"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO),
                                                                           "HWBENCH_CACHE": str(seeded.work / "c")})
    assert done.returncode == 0, done.stderr
    comps = {(c["test_id"], c["metric"]): c for c in json.loads(done.stdout)["comparisons"]}
    copy = comps[(f"{BENCH}::test_copy", "copy_gb_s")]
    assert copy["outlier"]["host"] == "a2" and copy["outlier"]["direction"] == "slower"
    assert copy["outlier"]["ratio"] == pytest.approx(0.85, abs=0.02)
    assert [m["host"] for m in copy["machines"]] == ["a1", "a2"]
    assert copy["machines"][0]["sessions"] == 6 and copy["replicate"] == "session"
    lat = comps[(f"{BENCH}::test_latency", "lat_ms")]
    assert lat["outlier"]["host"] == "a2" and lat["better"] == "lower"
    gen = comps[(f"{BENCH}::test_generate[tiny-1b]", "output_tok_s")]
    assert gen["outlier"]["host"] == "a2"


def test_dashboard_shows_it_all_in_chromium(seeded: Seeded) -> None:
    from urllib.parse import urlencode

    from selenium.webdriver.common.by import By

    from tests.browser_helpers import chromium, dashboard_process, screenshot_dir, wait_for_figures

    shots = screenshot_dir()
    copy = f"{BENCH}::test_copy"
    pages = [  # (name, path, query, figures, heading, texts the page must show)
        ("systems", "/", {}, 1, "Systems at a glance", ["a1", "a2", "b1", "tb-a", "tb-b", "FAIL", "failing"]),
        ("compare", "/compare", {"test": copy, "metric": "copy_gb_s"}, 1, "Cross-system comparison",
         ["a2 is slower", "higher is better", "tb-a", "tb-b"]),
        ("models", "/models", {"host": "b1"}, 2, "Model performance on b1",
         ["tiny-1b", "mid-8b", "model size [GB]", "tokens/s × model GB"]),
        ("trends", "/trends", {"test": copy, "metric": "copy_gb_s", "testbed": "tb-a"}, 1, "Trends",
         ["a1", "a2", "env: a1: kernel", "higher is better", "regression / failed"]),
        ("trends-latency", "/trends", {"test": f"{BENCH}::test_latency", "metric": "lat_ms"}, 1, "Trends",
         ["lower is better", "b1"]),
    ]
    env = {"HWBENCH_CACHE": str(seeded.work / "dash-cache")}
    with dashboard_process(seeded.server.uri, EXPERIMENT, _free_port(), env=env) as url, chromium() as driver:
        for name, path, query, n_figs, heading, texts in pages:
            driver.get(url + path + ("?" + urlencode(query) if query else ""))
            figs = wait_for_figures(driver, n_figs, heading)
            text = driver.find_element(By.ID, "page").text
            svg_text = " ".join(f.get_attribute("textContent") or "" for f in figs)
            for t in texts:
                assert t in text or t in svg_text, f"{name}: {t!r} not shown"
            # every figure has the modebar button that downloads it as PNG
            for f in figs:
                titles = [(b.get_attribute("data-title") or "").lower()
                          for b in f.find_elements(By.CSS_SELECTOR, ".modebar-btn")]
                assert "download plot as a png" in titles, f"{name}: no PNG button in {titles}"
            assert driver.save_screenshot(str(shots / f"dashboard-{name}.png"))
        # filters: the host dropdown narrows the systems page to one machine
        driver.get(url + "/?" + urlencode({"host": "a2"}))
        wait_for_figures(driver, 1, "Systems at a glance")
        rows = driver.find_elements(By.CSS_SELECTOR, "tr.system-row")
        assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == ["a2"]
    for name, *_ in pages:
        assert (shots / f"dashboard-{name}.png").stat().st_size > 10_000
