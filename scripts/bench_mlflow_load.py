#!/usr/bin/env python
"""Measure what one session costs a shared MLflow tracking server, and extrapolate to a fleet.

A counting HTTP proxy (aiohttp) sits between the client and the server, so every request and byte the
client sends and receives is seen. One synthetic session of ``--tests`` tests with ``--metrics`` metrics each
(``--trials`` trials, the summary statistics and CIs the plugin logs) is logged twice through it:

* **hwbench** — ``log_session`` (what a pytest session does): batched ``log-batch`` requests, one parent run,
  one child run per test, two artifacts;
* **anchor** — the same content through MLflow's fluent API, one ``mlflow.log_metric``/``log_param``/
  ``set_tag`` call per value (what a hand-written integration does).

With ``--pg DSN`` (the server's PostgreSQL) the rows written and transactions committed during each session
are read from ``pg_stat_database``. The table is printed with the ratio to the anchor and a fleet projection
(``--machines`` × ``--sessions-per-day``). docs/scaling.md holds the latest figures.

Usage: ``python scripts/bench_mlflow_load.py --mlflow http://127.0.0.1:5000 [--pg postgresql://...]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import ClientSession, web

from pytest_hwbench.measure.stats import summarize
from pytest_hwbench.report.mlflow_log import log_session


@dataclass
class Counts:
    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    by_path: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.requests = self.bytes_up = self.bytes_down = 0
        self.by_path = {}


class CountingProxy:
    """A reverse proxy on 127.0.0.1 that forwards everything to ``target`` and counts it."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.counts = Counts()
        self.port = _free_port()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._client = ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._client.request(request.method, self.target + request.path_qs, data=body,
                                        headers=headers) as resp:
            payload = await resp.read()
            c = self.counts
            c.requests += 1
            c.bytes_up += len(body) + sum(len(k) + len(v) + 4 for k, v in request.headers.items())
            c.bytes_down += len(payload)
            key = f"{request.method} {request.path.split('/mlflow/')[-1].split('?')[0]}"
            if "/artifacts/" in request.path:
                key = f"{request.method} artifacts"
            c.by_path[key] = c.by_path.get(key, 0) + 1
            out = web.Response(status=resp.status, body=payload)
            for k, v in resp.headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding", "connection"):
                    out.headers[k] = v
            if "Content-Encoding" in resp.headers:
                out.headers["Content-Encoding"] = resp.headers["Content-Encoding"]
            return out

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self._client.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def synthetic_session(n_tests: int, n_metrics: int, trials: int, seed: int = 0) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    results = []
    for i in range(n_tests):
        metrics = {}
        for m in range(n_metrics):
            samples = rng.lognormal(3, 0.2, 200)
            metrics[f"metric_{m}_ms"] = {"unit": "ms", "better": "lower", "summary": summarize(samples).to_dict(),
                                         "trial_values": [float(np.median(samples[j::trials])) for j in range(trials)]}
        results.append({"test_id": f"benchmarks/test_x.py::test_{i}[c{i % 8}]", "name": f"test_{i}[c{i % 8}]",
                        "params": {"concurrency": i % 8, "size": 1024}, "verdict": "PASS", "outcome": "passed",
                        "duration_s": 5.0, "metrics": metrics, "slo": [{"expr": "metric_0_ms.p99 < 500",
                                                                         "passed": True}],
                        "baseline": {"status": "PASS"}})
    manifest = {"run_id": f"load-{time.time_ns()}", "testbed": "bench-testbed",
                "recipe": {"name": "load", "path": "recipes/load.yaml", "sha256": "0" * 64},
                "git": {"commit": "0" * 40, "dirty": False}, "started_at": time.time(),
                "fingerprint": {"hostname": "bench-host", "kernel": "6.1"}}
    return manifest, results


def _one_session(job: tuple[str, int, int, int, int]) -> float:
    uri, tests, metrics, trials, seed = job
    manifest, results = synthetic_session(tests, metrics, trials, seed)
    t0 = time.perf_counter()
    outcome = log_session(uri, "load-bench", manifest, results, [])
    assert outcome.ok, outcome.warning
    return time.perf_counter() - t0


def fluent_anchor(uri: str, experiment: str, manifest: dict, results: list[dict], files: list[Path]) -> None:
    """The same content, one fluent-API call per value: what a hand-written integration sends."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=manifest["run_id"]):
        mlflow.log_param("testbed", manifest["testbed"])
        mlflow.set_tag("host", manifest["fingerprint"]["hostname"])
        for r in results:
            with mlflow.start_run(run_name=r["name"], nested=True):
                for k, v in r["params"].items():
                    mlflow.log_param(k, v)
                mlflow.set_tag("test_id", r["test_id"])
                mlflow.set_tag("hwbench.verdict", r["verdict"])
                for name, m in r["metrics"].items():
                    for stat, value in m["summary"].items():
                        if isinstance(value, (int, float)) and value is not None:
                            mlflow.log_metric(f"{name}.{stat}", value)
                    for step, v in enumerate(m["trial_values"]):
                        mlflow.log_metric(f"{name}.trial", v, step=step)
        for f in files:
            mlflow.log_artifact(str(f))


def pg_stats(dsn: str | None) -> dict[str, int]:
    if not dsn:
        return {}
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("select xact_commit, tup_inserted, tup_updated, tup_deleted, tup_fetched "
                           "from pg_stat_database where datname = current_database()").fetchone()
        size = conn.execute("select pg_database_size(current_database())").fetchone()[0]
    return {"xact": row[0], "inserted": row[1], "updated": row[2], "deleted": row[3], "fetched": row[4],
            "db_bytes": size}


def measure(name: str, proxy: CountingProxy, dsn: str | None, fn: Any) -> dict[str, Any]:
    proxy.counts.reset()
    before = pg_stats(dsn)
    time.sleep(0.6)  # pg_stat_database is updated asynchronously (PGSTAT_MIN_INTERVAL 500 ms)
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    time.sleep(1.2)
    after = pg_stats(dsn)
    c = proxy.counts
    out = {"name": name, "seconds": elapsed, "requests": c.requests, "bytes_up": c.bytes_up,
           "bytes_down": c.bytes_down, "by_path": dict(sorted(c.by_path.items(), key=lambda kv: -kv[1]))}
    if before and after:
        out["pg"] = {k: after[k] - before[k] for k in before}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlflow", required=True, help="tracking server URI")
    ap.add_argument("--pg", help="the server's PostgreSQL DSN, for rows and transactions per session")
    ap.add_argument("--tests", type=int, default=50)
    ap.add_argument("--metrics", type=int, default=4)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--machines", type=int, default=300)
    ap.add_argument("--sessions-per-day", type=int, default=4)
    ap.add_argument("--concurrent", type=int, default=0,
                    help="also log this many sessions at once (separate processes) for the server's capacity")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    manifest, results = synthetic_session(args.tests, args.metrics, args.trials)
    with tempfile.TemporaryDirectory() as tmp, CountingProxy(args.mlflow) as proxy:
        run_dir = Path(tmp) / manifest["run_id"]
        run_dir.mkdir()
        (run_dir / "results.json").write_text(json.dumps({"tests": results}))
        (run_dir / "run.json").write_text(json.dumps(manifest))
        files = [run_dir / "results.json", run_dir / "run.json"]
        artifact_bytes = sum(f.stat().st_size for f in files)

        def ours() -> None:
            outcome = log_session(proxy.uri, "load-bench", manifest, results, files)
            assert outcome.ok, outcome.warning

        rows = [measure("hwbench log_session", proxy, args.pg, ours),
                measure("anchor: fluent API, one call per value", proxy, args.pg,
                        lambda: fluent_anchor(proxy.uri, "load-bench-anchor", manifest, results, files))]

    n_values = sum(len(m["summary"]) + len(m["trial_values"]) for r in results for m in r["metrics"].values())
    print(f"One session: {args.tests} tests x {args.metrics} metrics x {args.trials} trials "
          f"(~{n_values} metric values), artifacts {artifact_bytes / 1024:.1f} KiB\n")
    print("| client | requests | sent | received | seconds | PG transactions | PG rows written |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        pg = r.get("pg") or {}
        written = pg.get("inserted", 0) + pg.get("updated", 0) + pg.get("deleted", 0) if pg else None
        print(f"| {r['name']} | {r['requests']} | {r['bytes_up'] / 1024:.0f} KiB | {r['bytes_down'] / 1024:.0f} KiB "
              f"| {r['seconds']:.2f} | {pg.get('xact', '-')} | {written if written is not None else '-'} |")
    ours_r, anchor_r = rows
    print(f"\nratio anchor/hwbench: requests {anchor_r['requests'] / max(1, ours_r['requests']):.1f}x, "
          f"seconds {anchor_r['seconds'] / max(1e-9, ours_r['seconds']):.1f}x")
    print("hwbench requests by endpoint: " + ", ".join(f"{k} {v}" for k, v in ours_r["by_path"].items()))
    per_day = args.machines * args.sessions_per_day
    pg = ours_r.get("pg") or {}
    print(f"\nFleet: {args.machines} machines x {args.sessions_per_day} sessions/day = {per_day} sessions/day")
    print(f"  requests/day {per_day * ours_r['requests']:,}; upload/day "
          f"{per_day * ours_r['bytes_up'] / 1024 ** 2:,.0f} MiB; artifacts/day "
          f"{per_day * artifact_bytes / 1024 ** 2:,.0f} MiB")
    if pg:
        print(f"  PostgreSQL rows written/day {per_day * (pg['inserted'] + pg['updated']):,}; "
              f"database growth/day ~{per_day * pg['db_bytes'] / 1024 ** 2:,.0f} MiB")
    capacity = None
    if args.concurrent:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.concurrent) as pool:
            t0 = time.perf_counter()
            done = list(pool.map(_one_session, [(args.mlflow, args.tests, args.metrics, args.trials, i)
                                                for i in range(args.concurrent)]))
            wall = time.perf_counter() - t0
        capacity = args.concurrent / wall * 60
        print(f"\n{args.concurrent} sessions logged at once: {wall:.1f} s wall "
              f"(each {min(done):.1f}-{max(done):.1f} s)"
              f" -> about {capacity:.0f} sessions/minute on this server; the fleet needs "
              f"{per_day / (24 * 60):.2f}/minute on average")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "artifact_bytes": artifact_bytes,
                                               "n_values": n_values}, indent=2))


if __name__ == "__main__":
    main()
