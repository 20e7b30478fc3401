"""Benchmark: hwbench's Redis and PostgreSQL workloads next to redis-benchmark and pgbench, as ratios.

Why: a load generator in Python pays per request what a C tool does not; this script says how much, on the
same server, so a reader knows when an hwbench figure measures the server and when it measures the client.

In one run it starts redis-server and PostgreSQL through ``pytest_hwbench.services`` (process backend, free
ports, no persistence for Redis), then, alternating tool and hwbench on the same server:

* Redis — for each pipeline depth: ``redis-benchmark -t set,get -c C -d SIZE -r KEYSPACE -P P`` against
  database 1, and hwbench's workload with mix ``set`` then ``get`` (same clients, value size, key space and
  pipeline depth) against database 0 (the tools' keys would otherwise trip hwbench's refusal of a
  non-empty database). Both report requests/s per command; both count a pipelined command's latency as
  its pipeline's.
* PostgreSQL — for each client count: ``pgbench -i -s SCALE`` in database ``pgbench`` then ``pgbench -c C
  -j 1 -T D -M prepared`` (built-in TPC-B-like script), and hwbench's ``tpcb`` mix with ``connections``
  = C, the same scale and 100 000 accounts per branch in database ``postgres``. ``-j 1``: one client
  thread, like hwbench's one load process (``--workers`` gives hwbench more). ``-M prepared``: psycopg
  prepares a statement after its 5th execution, so both run prepared statements.

Run: ``python3 scripts/bench_data_services.py [--clients 8] [--pipeline 1 16] [--pg-clients 1 4]
[--duration 3] [--workers 1] [--json out.json]``. Needs redis-server, redis-benchmark, PostgreSQL
server binaries and pgbench.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pytest_hwbench.recipe.model import ServiceSpec
from pytest_hwbench.services import ServiceSet
from pytest_hwbench.workloads.engine import LoadSpec
from pytest_hwbench.workloads.postgres_client import PostgresWorkload, run_postgres
from pytest_hwbench.workloads.redis_client import RedisWorkload, run_redis


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is not installed (apt-get install redis-server / postgresql-client)")
    return path


def redis_benchmark(host: str, port: int, *, clients: int, pipeline: int, value_size: int, keyspace: int,
                    requests: int) -> dict[str, dict[str, float]]:
    """``redis-benchmark -t set,get --csv`` → {"SET": {"rps": .., "p50_latency_ms": ..}, "GET": {...}}."""
    cmd = [need("redis-benchmark"), "-h", host, "-p", str(port), "--dbnum", "1", "-t", "set,get",
           "-c", str(clients), "-P", str(pipeline), "-d", str(value_size), "-r", str(keyspace),
           "-n", str(requests), "--csv"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    return {row["test"]: {k: float(v) for k, v in row.items() if k != "test"} for row in rows}


def hwbench_redis(host: str, port: int, *, mix: str, clients: int, pipeline: int, value_size: int,
                  keyspace: int, duration_s: float, workers: int) -> dict[str, float]:
    workload = RedisWorkload(host=host, port=port, db=0, mix=mix, pipeline=pipeline, value_size=value_size,
                             keyspace=keyspace)
    run = run_redis(workload, LoadSpec.closed(clients, duration_s=duration_s, warmup_requests=200,
                                              drain_timeout_s=10), workers=workers)
    m = run.metrics
    lat = m.samples["latency_us"]
    return {"ops_s": m.scalars["ops_s"], "p50_latency_ms": float(_median(lat)) / 1e3,
            "error_rate": m.scalars["error_rate"], "client_bound": float(run.result.self_check.client_bound)}


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else float("nan")


def pgbench(dsn_parts: dict[str, Any], *, clients: int, scale: int, duration_s: float) -> dict[str, float]:
    """``pgbench -c C -j 1 -T D -M prepared`` on database ``pgbench`` → tps and average latency (ms)."""
    base = [need("pgbench"), "-h", dsn_parts["host"], "-p", str(dsn_parts["port"]), "-U", dsn_parts["user"]]
    out = subprocess.run([*base, "-c", str(clients), "-j", "1", "-T", str(max(1, round(duration_s))),
                          "-M", "prepared", "pgbench"], capture_output=True, text=True, check=True,
                         timeout=600).stdout
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    if tps is None:
        sys.exit(f"could not read pgbench's output:\n{out}")
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(lat.group(1)) if lat else float("nan")}


def pgbench_init(dsn: str, dsn_parts: dict[str, Any], scale: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgbench")
        conn.execute("CREATE DATABASE pgbench")
    subprocess.run([need("pgbench"), "-h", dsn_parts["host"], "-p", str(dsn_parts["port"]), "-U",
                    dsn_parts["user"], "-i", "-q", "-s", str(scale), "pgbench"], capture_output=True,
                   check=True, timeout=600)


def hwbench_postgres(dsn: str, *, clients: int, scale: int, duration_s: float, workers: int) -> dict[str, float]:
    workload = PostgresWorkload(dsn=dsn, mix="tpcb", scale=scale, connections=clients)
    run = run_postgres(workload, LoadSpec.closed(clients, duration_s=duration_s, warmup_requests=20,
                                                 drain_timeout_s=10), workers=workers)
    m = run.metrics
    lat = m.samples["latency_us"]
    mean = float(lat.mean()) / 1e3 if lat.size else float("nan")
    return {"tps": m.scalars["tps"], "latency_avg_ms": mean, "error_rate": m.scalars["error_rate"],
            "client_bound": float(run.result.self_check.client_bound)}


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8, help="Redis concurrent clients (-c)")
    ap.add_argument("--pipeline", type=int, nargs="+", default=[1, 16], help="Redis pipeline depths (-P)")
    ap.add_argument("--value-size", type=int, default=64, help="Redis value bytes (-d)")
    ap.add_argument("--keyspace", type=int, default=10_000, help="Redis key space (-r)")
    ap.add_argument("--rb-requests", type=int, default=100_000,
                    help="redis-benchmark requests per test at pipeline 1 (scaled by the depth)")
    ap.add_argument("--pg-clients", type=int, nargs="+", default=[1, 4], help="PostgreSQL clients (-c)")
    ap.add_argument("--scale", type=int, default=1, help="pgbench scale (-s)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per hwbench run and per pgbench run")
    ap.add_argument("--workers", type=int, default=1, help="hwbench load-generator processes")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    for tool in ("redis-benchmark", "pgbench"):
        need(tool)

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hwbench-data-") as tmp:
        services = ServiceSet(log_dir=Path(tmp, "logs"), reap=False, handle_signals=True)
        try:
            redis = services.start(ServiceSpec(name="redis", kind="redis", backend="process", settings={}))
            pg = services.start(ServiceSpec(name="postgres", kind="postgres", backend="process", settings={}))
            rh, rp = redis.endpoint.host, redis.endpoint.port
            print(f"redis-server {services.manifest()['redis'].get('binary_version', '')} on {rh}:{rp}; "
                  f"PostgreSQL on {pg.endpoint.host}:{pg.endpoint.port}; {os.cpu_count()} CPUs", flush=True)
            for depth in args.pipeline:
                ref = redis_benchmark(rh, rp, clients=args.clients, pipeline=depth, value_size=args.value_size,
                                      keyspace=args.keyspace, requests=args.rb_requests * depth)
                for mix, test in (("set", "SET"), ("get", "GET")):
                    ours = hwbench_redis(rh, rp, mix=mix, clients=args.clients, pipeline=depth,
                                         value_size=args.value_size, keyspace=args.keyspace,
                                         duration_s=args.duration, workers=args.workers)
                    rows.append({"service": "redis", "workload": f"{test} {args.value_size} B",
                                 "clients": args.clients, "pipeline": depth, "workers": args.workers,
                                 "hwbench": ours["ops_s"], "reference": ref[test]["rps"],
                                 "unit": "ops/s", "tool": "redis-benchmark",
                                 "hwbench_p50_ms": ours["p50_latency_ms"],
                                 "reference_p50_ms": ref[test]["p50_latency_ms"],
                                 "hwbench_error_rate": ours["error_rate"],
                                 "client_bound": bool(ours["client_bound"])})
                    print(f"  redis {test} P={depth}: hwbench {fmt(ours['ops_s'])} vs {fmt(ref[test]['rps'])}",
                          flush=True)
            dsn = pg.endpoint.extra["dsn"]
            parts = {"host": pg.endpoint.host, "port": pg.endpoint.port, "user": pg.endpoint.extra["user"]}
            pgbench_init(dsn, parts, args.scale)
            for clients in args.pg_clients:
                ref_pg = pgbench(parts, clients=clients, scale=args.scale, duration_s=args.duration)
                ours_pg = hwbench_postgres(dsn, clients=clients, scale=args.scale, duration_s=args.duration,
                                           workers=args.workers)
                rows.append({"service": "postgres", "workload": f"TPC-B-like s={args.scale}",
                             "clients": clients, "pipeline": 1, "workers": args.workers,
                             "hwbench": ours_pg["tps"], "reference": ref_pg["tps"], "unit": "tps",
                             "tool": "pgbench", "hwbench_latency_avg_ms": ours_pg["latency_avg_ms"],
                             "reference_latency_avg_ms": ref_pg["latency_avg_ms"],
                             "hwbench_error_rate": ours_pg["error_rate"],
                             "client_bound": bool(ours_pg["client_bound"])})
                print(f"  postgres c={clients}: hwbench {fmt(ours_pg['tps'])} vs {fmt(ref_pg['tps'])}", flush=True)
        finally:
            services.stop_all()

    print()
    head = f"{'service':9} {'workload':18} {'clients':>7} {'pipe':>4} {'hwbench':>12} {'reference':>12} " \
           f"{'tool':15} {'ratio':>6}  latency hwbench / tool"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r["service"] == "redis":
            lat = f"p50 {r['hwbench_p50_ms']:.3f} / {r['reference_p50_ms']:.3f} ms"
        else:
            lat = f"avg {r['hwbench_latency_avg_ms']:.2f} / {r['reference_latency_avg_ms']:.2f} ms"
        flag = "  (client-bound)" if r["client_bound"] else ""
        print(f"{r['service']:9} {r['workload']:18} {r['clients']:>7} {r['pipeline']:>4} "
              f"{fmt(r['hwbench']):>8} {r['unit'] if r['unit'] == 'tps' else 'op/s':>3} "
              f"{fmt(r['reference']):>12} {r['tool']:15} {r['hwbench'] / r['reference']:>6.2f}  {lat}{flag}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
