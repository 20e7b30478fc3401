"""The S3 workload against a real S3 server: moto's server mode (``moto_server``), started by the process
backend as the documented stand-in for MinIO — it measures the client path, not storage.

Covers PUT / GET / mixed metrics, the bucket lifecycle (own bucket created and deleted, foreign data
refused), and the faults: wrong credentials (moto with IAM enforcement on), bucket missing mid-run, server
restarted mid-run, timeouts (a socket that never answers), an unreachable endpoint, and the recipe run
through the plugin writing results.json.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_hwbench.services import ServiceSet
from pytest_hwbench.services.base import Endpoint
from pytest_hwbench.workloads.engine import LoadSpec, run_load
from pytest_hwbench.workloads.records import ErrorClass
from pytest_hwbench.workloads.s3_client import (
    BucketGuard,
    S3Config,
    S3LoadClient,
    S3SetupError,
    S3Workload,
    bucket_name,
    classify,
    compute_s3_metrics,
    run_s3,
)
from tests.service_helpers import need_binary, our_processes, spec

REPO = Path(__file__).resolve().parents[1]
MOTO_HINT = "pip install 'moto[server]'"


def _config(ep: Endpoint, **kw: Any) -> S3Config:
    return S3Config(endpoint_url=ep.extra["endpoint_url"], access_key=ep.extra["access_key"],
                    secret_key=ep.extra["secret_key"], region=ep.extra["region"], **kw)


def _bucket() -> str:
    return bucket_name(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceSet]:
    need_binary("moto_server", MOTO_HINT)
    root = tmp_path_factory.mktemp("s3svc")
    with ServiceSet(log_dir=root / "logs", state_dir=root / "state", run_id=f"s3t{uuid.uuid4().hex[:8]}",
                    source="tests/test_s3_workload.py", handle_signals=False) as s:
        yield s


@pytest.fixture(scope="module")
def moto(services: ServiceSet) -> Endpoint:
    return services.start(spec("s3", binary="moto_server")).endpoint


def test_catalog_runs_moto_as_the_minio_stand_in(services: ServiceSet, moto: Endpoint, tmp_path: Path) -> None:
    info = services.services["s3"].info
    assert info["server"] == "moto" and info["server_version"] and "stand-in for MinIO" in info["server_note"]
    assert info["argv"][1:] == ["-H", "127.0.0.1", "-p", str(moto.port)]
    assert moto.extra["server"] == "moto" and moto.extra["endpoint_url"] == f"http://127.0.0.1:{moto.port}"
    assert "bucket" not in moto.extra  # the workload makes its own hwbench-<run> bucket

    # MinIO (the default binary), docker and external keep their own command lines and probes
    from pytest_hwbench.services import get_kind
    from pytest_hwbench.services.base import StartContext

    kind = get_kind("s3")

    def ctx(backend: str, **settings: Any) -> StartContext:
        return StartContext(name="s3", kind=kind, backend=backend, settings=kind.validate("s3", backend, settings),
                            host="127.0.0.1", port=9000, ports={"console": 9001}, work_dir=tmp_path,
                            log_dir=tmp_path, run_id="r")

    c = ctx("process")
    assert kind.process_args(c, "/usr/local/bin/minio")[:1] == ["server"] and c.info["server"] == "minio"
    assert kind.probe(ctx("docker")).description == "HTTP GET /minio/health/live → 200"
    ext = ctx("external", url="https://s3.example.com/", bucket="mine")
    assert kind.probe(ext).description == "HTTP GET / → 200/403"
    ep = kind.endpoint(ext, "s3.example.com", 443, {})
    assert ep.extra["endpoint_url"] == "https://s3.example.com" and ep.extra["bucket"] == "mine"


def test_put_get_mixed_metrics(moto: Endpoint) -> None:
    cfg = _config(moto)
    guard = BucketGuard(cfg, _bucket())
    guard.prepare()
    try:
        size = 20000
        put = run_s3(cfg, guard, S3Workload(op="put", object_size=size, object_count=8),
                     LoadSpec.closed(2, requests=24, warmup_requests=2))
        m = put.metrics
        assert (m.attempted, m.succeeded, m.error_rate, m.errors) == (24, 24, 0.0, {})
        assert m.get_mb_s is None and m.put_latency_ms.size == 24 and m.get_ttfb_ms.size == 0
        assert m.put_mb_s == pytest.approx(24 * size / 1e6 / m.window_s)
        assert m.ops_s == pytest.approx(24 / m.window_s)

        get = run_s3(cfg, guard, S3Workload(op="get", object_size=size, object_count=8, key_prefix="g/"),
                     LoadSpec.closed(2, requests=16))
        g = get.metrics
        assert g.succeeded == 16 and g.put_mb_s is None and g.get_mb_s == pytest.approx(16 * size / 1e6 / g.window_s)
        for r in get.result.measured():
            assert r.nbytes == size and r.send_ns < r.first_byte_ns <= r.first_token_ns <= r.end_ns
        assert (g.get_ttfb_ms <= g.get_latency_ms).all()
        assert {k for k in guard.written if k.startswith("g/")} == {f"g/{i:08d}" for i in range(8)}

        wl = S3Workload(op="mixed", object_size=size, object_count=8, read_fraction=0.25, key_prefix="m/")
        mixed = run_s3(cfg, guard, wl, LoadSpec.closed(1, requests=40))
        ops = [r.op for r in mixed.result.measured()]
        assert ops == [wl.op_for(i) for i in range(40)]  # the seeded mix is reproducible
        assert 0 < ops.count("get") < ops.count("put")
        assert mixed.metrics.put_mb_s and mixed.metrics.get_mb_s and mixed.metrics.error_rate == 0
    finally:
        report = guard.cleanup()
    assert report["bucket_deleted"] and report["problems"] == [] and report["deleted_objects"] == 24
    with pytest.raises(Exception, match=r"404|NoSuchBucket|Not Found"):
        cfg.client().head_bucket(Bucket=guard.bucket)


def test_foreign_data_in_an_existing_bucket_is_refused_unless_allowed(moto: Endpoint) -> None:
    cfg = _config(moto)
    s3 = cfg.client()
    name = _bucket()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="someone-elses.txt", Body=b"keep me")
    with pytest.raises(S3SetupError, match=r"already exists and holds objects.*allow_existing_data: true"):
        BucketGuard(cfg, name).prepare()

    guard = BucketGuard(cfg, name, allow_existing_data=True)
    guard.prepare()
    out = run_s3(cfg, guard, S3Workload(op="put", object_size=100, object_count=3), LoadSpec.closed(1, requests=6))
    assert out.metrics.succeeded == 6
    report = guard.cleanup()
    assert report == {"bucket": name, "deleted_objects": 3, "bucket_deleted": False, "problems": []}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]
    assert keys == ["someone-elses.txt"], "cleanup touched data it did not write"

    empty = _bucket()
    s3.create_bucket(Bucket=empty)  # an existing *empty* bucket is fine, and is kept afterwards
    guard = BucketGuard(cfg, empty)
    guard.prepare()
    assert guard.existed and not guard.created and guard.cleanup()["bucket_deleted"] is False
    s3.delete_bucket(Bucket=empty)
    s3.delete_object(Bucket=name, Key="someone-elses.txt")
    s3.delete_bucket(Bucket=name)


def _reset_auth(url: str, count: str) -> None:
    req = urllib.request.Request(url + "/moto-api/reset-auth", data=count.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


@pytest.fixture(scope="module")
def moto_auth(services: ServiceSet) -> Iterator[tuple[Endpoint, str, str]]:
    """A second moto with IAM enforcement on: only a key made through its IAM API is accepted."""
    import boto3

    ep = services.start(spec("s3", name="s3auth", binary="moto_server")).endpoint
    iam = boto3.client("iam", endpoint_url=ep.extra["endpoint_url"], region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="bench")
    iam.put_user_policy(UserName="bench", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="bench")["AccessKey"]
    _reset_auth(ep.extra["endpoint_url"], "0")
    yield ep, key["AccessKeyId"], key["SecretAccessKey"]


def test_wrong_credentials_fail_setup_naming_the_setting(moto_auth: tuple[Endpoint, str, str]) -> None:
    ep, key_id, secret = moto_auth
    where = "settings.s3_access_key / settings.s3_secret_key"
    for kid, sec, code in ((key_id, "wrong-secret-value", "SignatureDoesNotMatch"),
                           ("AKIAWRONGWRONGWRONG1", "another-wrong-secret", "InvalidAccessKeyId")):
        cfg = S3Config(endpoint_url=ep.extra["endpoint_url"], access_key=kid, secret_key=sec, credentials_field=where)
        with pytest.raises(S3SetupError) as info:
            BucketGuard(cfg, _bucket()).prepare()
        text = str(info.value)
        assert "rejected the credentials" in text and code in text and where in text
        assert sec not in text and kid not in text and sec not in repr(cfg)
    good = S3Config(endpoint_url=ep.extra["endpoint_url"], access_key=key_id, secret_key=secret)
    guard = BucketGuard(good, _bucket())
    guard.prepare()
    assert guard.created and guard.cleanup()["bucket_deleted"]


BENCH = (REPO / "benchmarks" / "test_s3.py").read_text()


def test_wrong_credentials_through_the_recipe_fail_the_benchmark_in_setup(
        moto_auth: tuple[Endpoint, str, str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    ep, key_id, _secret = moto_auth
    # health: tcp because moto with IAM enforcement answers an anonymous GET / with a 500, not an S3 403
    pytester.makepyfile(test_s3=BENCH)
    pytester.makefile(".yaml", badkeys=f"""
version: 1
repetitions: 1
sweep: {{object_size: [1024], object_count: [2], concurrency: [1]}}
services:
  s3: {{kind: s3, backend: external, url: "{ep.extra['endpoint_url']}", health: tcp}}
settings:
  s3_access_key: ${{HWB_TEST_KEY}}
  s3_secret_key: ${{HWB_TEST_SECRET}}
  s3_requests: 2
""")
    monkeypatch.setenv("HWB_TEST_KEY", key_id)
    monkeypatch.setenv("HWB_TEST_SECRET", "Zz-wrong-secret-9f3a")
    res = pytester.runpytest_subprocess("--recipe", "badkeys.yaml", "--no-hwbench-mlflow", "-k", "put",
                                        "-p", "no:cacheprovider")
    res.assert_outcomes(failed=1)
    out = res.stdout.str()
    assert "S3 set-up failed" in out and "SignatureDoesNotMatch" in out
    assert "settings.s3_access_key / settings.s3_secret_key" in out
    assert "Zz-wrong-secret-9f3a" not in out
    for f in (pytester.path / "reports").rglob("*.json*"):
        assert "Zz-wrong-secret-9f3a" not in f.read_text(), f


def test_bucket_deleted_mid_run_is_classified_and_cleanup_survives(moto: Endpoint) -> None:
    cfg = _config(moto)
    guard = BucketGuard(cfg, _bucket())
    guard.prepare()
    admin = cfg.client()
    wl = S3Workload(op="put", object_size=500, object_count=4)
    client = S3LoadClient(cfg, guard.bucket, wl, 1)

    async def main() -> Any:
        async def send(i: int) -> Any:
            if i == 10:  # someone removes the bucket under the running benchmark
                for o in admin.list_objects_v2(Bucket=guard.bucket).get("Contents", []):
                    admin.delete_object(Bucket=guard.bucket, Key=o["Key"])
                admin.delete_bucket(Bucket=guard.bucket)
            return await client.send(i)

        try:
            return await run_load(LoadSpec.closed(1, requests=20), send)
        finally:
            await client.aclose()

    result = asyncio.run(main())
    recs = result.measured()
    assert [r.ok for r in recs] == [True] * 10 + [False] * 10, "partial results must be kept, in order"
    assert {r.error for r in recs[10:]} == {ErrorClass.HTTP_4XX}
    assert all(r.status == 404 and r.error_detail.startswith("NoSuchBucket") for r in recs[10:])
    m = compute_s3_metrics(recs)
    assert m.error_rate == 0.5 and m.errors == {"http_4xx": 10} and m.put_latency_ms.size == 20  # censored
    report = guard.cleanup()  # never raises
    assert not report["bucket_deleted"] and any("NoSuchBucket" in p for p in report["problems"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_restarted_mid_run_keeps_partial_results(tmp_path: Path) -> None:
    need_binary("moto_server", MOTO_HINT)
    from pytest_hwbench.services.manager import start_service

    port = _free_port()
    kw: dict[str, Any] = {"run_id": f"s3r{uuid.uuid4().hex[:8]}", "log_dir": tmp_path / "logs",
                          "state_dir": tmp_path / "state"}
    first = start_service(spec("s3", name="s3a", binary="moto_server", port=port), **kw)
    later: list[Any] = []
    try:
        cfg = _config(first.endpoint, connect_timeout_s=2)
        guard = BucketGuard(cfg, _bucket())
        guard.prepare()
        client = S3LoadClient(cfg, guard.bucket, S3Workload(op="put", object_size=1000, object_count=4), 1)

        async def main() -> Any:
            async def send(i: int) -> Any:
                if i == 8:  # crash: no goodbye to connections in flight or in the pool
                    first.proc.kill()
                    first.proc.wait(10)
                if i == 16:  # back on the same port, empty (moto keeps data in memory)
                    later.append(start_service(spec("s3", name="s3b", binary="moto_server", port=port), **kw))
                return await client.send(i)

            try:
                return await run_load(LoadSpec.closed(1, requests=24), send)
            finally:
                await client.aclose()

        recs = asyncio.run(main()).measured()
        assert len(recs) == 24 and all(r.ok for r in recs[:8])
        assert {r.error for r in recs[8:16]} == {ErrorClass.CONNECTION}
        assert {r.error for r in recs[16:]} == {ErrorClass.HTTP_4XX}  # NoSuchBucket on the fresh server
        m = compute_s3_metrics(recs)
        assert m.succeeded == 8 and m.put_latency_ms.size == 24 and m.errors == {"http_4xx": 8, "connection": 8}
        assert guard.cleanup()["problems"]
    finally:
        first.stop()
        for svc in later:
            svc.stop()
    assert our_processes(kw["run_id"]) == [], "a restarted server outlived the test"


class BlackHole:
    """A TCP server that accepts and reads but never answers: every request must end in a timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.conns.append(conn)
            except OSError:
                continue

    def close(self) -> None:
        self._stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_timeouts_are_classified_and_unreachable_setup_is_clear() -> None:
    hole = BlackHole()
    try:
        cfg = S3Config(endpoint_url=f"http://127.0.0.1:{hole.port}", access_key="a", secret_key="b",
                       connect_timeout_s=1, read_timeout_s=0.3)
        with pytest.raises(S3SetupError, match=r"cannot reach S3 endpoint .*timeout"):
            BucketGuard(cfg, "hwbench-x").prepare()
        guard = BucketGuard(cfg, "hwbench-x")
        t0 = time.perf_counter()
        client_out = run_s3(cfg, guard, S3Workload(op="put", object_size=10, object_count=2),
                            LoadSpec.closed(2, requests=4))
        assert time.perf_counter() - t0 < 10
        recs = client_out.result.measured()
        assert [r.error for r in recs] == [ErrorClass.TIMEOUT] * 4
        assert client_out.metrics.error_rate == 1.0 and client_out.metrics.ops_s == 0.0
    finally:
        hole.close()
    closed = S3Config(endpoint_url=f"http://127.0.0.1:{_free_port()}", access_key="a", secret_key="b",
                      connect_timeout_s=1)
    with pytest.raises(S3SetupError, match=r"cannot reach S3 endpoint .*connection"):
        BucketGuard(closed, "hwbench-x").prepare()


def test_error_classification_and_names() -> None:
    from botocore import exceptions as bx

    def client_error(status: int, code: str) -> Exception:
        return bx.ClientError({"Error": {"Code": code, "Message": "m"},
                               "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert classify(client_error(404, "NoSuchBucket"))[:2] == (ErrorClass.HTTP_4XX, "NoSuchBucket: m")
    assert classify(client_error(503, "SlowDown"))[0] == ErrorClass.HTTP_5XX
    assert classify(bx.ReadTimeoutError(endpoint_url="u"))[0] == ErrorClass.TIMEOUT
    assert classify(bx.ConnectTimeoutError(endpoint_url="u"))[0] == ErrorClass.TIMEOUT
    assert classify(bx.EndpointConnectionError(endpoint_url="u"))[0] == ErrorClass.CONNECTION
    assert classify(bx.ConnectionClosedError(endpoint_url="u"))[0] == ErrorClass.CONNECTION
    assert classify(bx.IncompleteReadError(actual_bytes=1, expected_bytes=2))[0] == ErrorClass.STREAM_CLOSED
    assert classify(RuntimeError("bug"))[0] == ErrorClass.CLIENT

    assert bucket_name("20261123-025000-ABCdef") == "hwbench-20261123-025000-abcdef"
    assert bucket_name("x" * 100, "gw1") == ("hwbench-" + "x" * 100)[:63]
    assert bucket_name("a_b.c", "gw0") == "hwbench-a-b-c-gw0"
    wl = S3Workload(op="mixed", read_fraction=0.3, seed=7)
    share = sum(wl.op_for(i) == "get" for i in range(10000)) / 10000
    assert abs(share - 0.3) < 0.02 and [wl.op_for(i) for i in range(50)] == [wl.op_for(i) for i in range(50)]
    assert len(S3Workload(object_size=1234).payload()) == 1234
    from pytest_hwbench.errors import HwbenchInputError

    with pytest.raises(HwbenchInputError, match="put, get or mixed"):
        S3Workload(op="delete")  # type: ignore[arg-type]


def test_recipe_runs_the_sweep_and_writes_results(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    need_binary("moto_server", MOTO_HINT)
    pytester.makepyfile(test_s3=BENCH)
    shutil.copy(REPO / "recipes" / "s3.yaml", pytester.path / "s3.yaml")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "Sekr3t-never-in-reports")
    res = pytester.runpytest_subprocess("--recipe", "s3.yaml", "--no-hwbench-mlflow", "--hwbench-repetitions", "1",
                                        "-p", "no:cacheprovider")
    res.assert_outcomes(passed=6)
    (run_dir,) = [d for d in (pytester.path / "reports").iterdir() if d.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["complete"] and len(results["tests"]) == 6
    by_name = {t["name"]: t for t in results["tests"]}
    get = by_name["test_s3_get[object_size=65536-object_count=32-concurrency=4]"]
    assert {"ops_s", "get_mb_s", "get_latency_ms", "get_ttfb_ms", "error_rate"} <= set(get["metrics"])
    assert get["metrics"]["get_latency_ms"]["summary"]["count"] == 40
    mixed = by_name["test_s3_mixed[object_size=65536-object_count=32-concurrency=1]"]
    assert {"put_mb_s", "get_mb_s", "put_latency_ms", "get_ttfb_ms"} <= set(mixed["metrics"])
    assert {t["params"]["concurrency"] for t in results["tests"]} == {1, 4}
    assert get["extra"]["server"] == "moto" and get["extra"]["bucket"].startswith("hwbench-")
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["services"]["s3"]["server"] == "moto"
    for f in run_dir.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".xml"):
            assert "Sekr3t-never-in-reports" not in f.read_text(), f
    log = next((run_dir / "services").glob("s3*.log")).read_text()
    bucket = get["extra"]["bucket"]
    assert f'"DELETE /{bucket} HTTP/1.1" 204' in log, "the run's bucket was not deleted at the end"
