"""Benchmark: hwbench's Redis and PostgreSQL workloads next to redis-benchmark and pgbench, as ratios.

Why: a load generator in Python pays per request what a C tool does not; this script says how much, on the
same server, so a reader knows when an hwbench figure measures the server and when it measures the client.

In one run it starts redis-server and PostgreSQL through ``pytest_hwbench.services`` (process backend, free
ports, no persistence for Redis), then, in interleaved pairs (``--runs``, hwbench and the tool alternating,
each ratio reported as min / median / max next to its target; ``_bench_common.py`` for the load guard),
on the same server:

* Redis — for each pipeline depth: ``redis-benchmark -t set,get -c C -d SIZE -r KEYSPACE -P P`` against
  database 1, and hwbench's workload with mix ``set`` then ``get`` (same clients, value size, key space and
  pipeline depth) against database 0 (the tools' keys would otherwise trip hwbench's refusal of a
  non-empty database). Both report requests/s per command; both count a pipelined command's latency as
  its pipeline's.
* PostgreSQL — for each client count: ``pgbench -i -s SCALE`` in database ``pgbench`` then ``pgbench -c C
  -j 1 -T D -M prepared`` (built-in TPC-B-like script; and the same script between ``\\startpipeline`` /
  ``\\endpipeline`` against hwbench's ``pipeline: true``), and hwbench's ``tpcb`` mix with ``connections``
  = C, the same scale and 100 000 accounts per branch in database ``postgres``. ``-j 1``: one client
  thread, like hwbench's one load process (``--workers`` gives hwbench more). ``-M prepared``: psycopg
  prepares a statement after its 5th execution, so both run prepared statements.

Besides the rates, each side's client CPU microseconds per operation (``getrusage`` of the tool, the
engine's own CPU time) is printed: on a busy machine it is the steadier figure.

Run: ``python3 scripts/bench_data_services.py [--clients 8] [--pipeline 1 16] [--pg-clients 1 4]
[--duration 2] [--workers 1] [--runs 3] [--json out.json]``. Needs redis-server, redis-benchmark, PostgreSQL
server binaries and pgbench.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench_common import LoadGuard, add_load_args, fmt_mmm, interleaved, machine_line, ratio_line

from pytest_hwbench.recipe.model import ServiceSpec
from pytest_hwbench.services import ServiceSet
from pytest_hwbench.workloads.engine import LoadSpec
from pytest_hwbench.workloads.loop import resolve_event_loop
from pytest_hwbench.workloads.postgres_client import PostgresWorkload, run_postgres
from pytest_hwbench.workloads.redis_client import RedisLoadClient, RedisWorkload, run_redis


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        sys.exit(f"{tool} is not installed (apt-get install redis-server / postgresql-client)")
    return path


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def redis_benchmark(host: str, port: int, *, test: str, clients: int, pipeline: int, value_size: int,
                    keyspace: int, requests: int) -> dict[str, float]:
    """``redis-benchmark -t TEST --csv`` → {"rps": .., "p50_latency_ms": .., "cpu_us_per_op": ..}."""
    cmd = [need("redis-benchmark"), "-h", host, "-p", str(port), "--dbnum", "1", "-t", test.lower(),
           "-c", str(clients), "-P", str(pipeline), "-d", str(value_size), "-r", str(keyspace),
           "-n", str(requests), "--csv"]
    cpu0 = _children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    cpu = _children_cpu() - cpu0
    rows = list(csv.DictReader(io.StringIO(out)))
    got = {k: float(v) for k, v in rows[0].items() if k != "test"}
    return {"rps": got["rps"], "p50_latency_ms": got["p50_latency_ms"], "cpu_us_per_op": 1e6 * cpu / requests}


def _cpu_us_per_op(run: Any, ops: float) -> float:
    """Client CPU microseconds per operation (all load processes), from the engine's self-check."""
    res = run.result
    wall = (res.end_ns - res.start_ns) / 1e9
    return 1e6 * sum(res.self_check.client_cpu) * wall / ops if ops else float("nan")


def hwbench_redis(host: str, port: int, *, mix: str, clients: int, pipeline: int, value_size: int,
                  keyspace: int, duration_s: float, workers: int, parser: str) -> dict[str, Any]:
    workload = RedisWorkload(host=host, port=port, db=0, mix=mix, pipeline=pipeline, value_size=value_size,
                             keyspace=keyspace, parser=parser)
    run = run_redis(workload, LoadSpec.closed(clients, duration_s=duration_s, warmup_requests=200,
                                              drain_timeout_s=10), workers=workers)
    m = run.metrics
    lat = m.samples["latency_us"]
    return {"ops_s": m.scalars["ops_s"], "p50_latency_ms": float(_median(lat)) / 1e3,
            "error_rate": m.scalars["error_rate"], "client_bound": run.result.self_check.client_bound,
            "contended": run.result.self_check.contended,
            "cpu_us_per_op": _cpu_us_per_op(run, m.counts["succeeded_ops"])}


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else float("nan")


def pgbench(dsn_parts: dict[str, Any], *, clients: int, scale: int, duration_s: float,
            script: Path | None = None) -> dict[str, float]:
    """``pgbench -c C -j 1 -T D -M prepared [-f SCRIPT]`` on database ``pgbench`` → tps, latency, CPU/tx."""
    base = [need("pgbench"), "-h", dsn_parts["host"], "-p", str(dsn_parts["port"]), "-U", dsn_parts["user"]]
    extra = ["-f", str(script)] if script else []
    cpu0 = _children_cpu()
    out = subprocess.run([*base, "-c", str(clients), "-j", "1", "-T", str(max(1, round(duration_s))),
                          "-M", "prepared", *extra, "pgbench"], capture_output=True, text=True, check=True,
                         timeout=600).stdout
    cpu = _children_cpu() - cpu0
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    lat = re.search(r"latency average = ([\d.]+) ms", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    if tps is None:
        sys.exit(f"could not read pgbench's output:\n{out}")
    n = int(done.group(1)) if done else 0
    return {"tps": float(tps.group(1)), "latency_avg_ms": float(lat.group(1)) if lat else float("nan"),
            "cpu_us_per_op": 1e6 * cpu / n if n else float("nan")}


def pgbench_init(dsn: str, dsn_parts: dict[str, Any], scale: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS pgbench")
        conn.execute("CREATE DATABASE pgbench")
    subprocess.run([need("pgbench"), "-h", dsn_parts["host"], "-p", str(dsn_parts["port"]), "-U",
                    dsn_parts["user"], "-i", "-q", "-s", str(scale), "pgbench"], capture_output=True,
                   check=True, timeout=600)


def hwbench_postgres(dsn: str, *, clients: int, scale: int, duration_s: float, workers: int,
                     pipeline: bool = False) -> dict[str, Any]:
    workload = PostgresWorkload(dsn=dsn, mix="tpcb", scale=scale, connections=clients, pipeline=pipeline)
    run = run_postgres(workload, LoadSpec.closed(clients, duration_s=duration_s, warmup_requests=20,
                                                 drain_timeout_s=10), workers=workers)
    m = run.metrics
    lat = m.samples["latency_us"]
    mean = float(lat.mean()) / 1e3 if lat.size else float("nan")
    return {"tps": m.scalars["tps"], "latency_avg_ms": mean, "error_rate": m.scalars["error_rate"],
            "client_bound": run.result.self_check.client_bound, "contended": run.result.self_check.contended,
            "cpu_us_per_op": _cpu_us_per_op(run, m.counts["succeeded_ops"])}


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


REDIS_TARGET = 0.5  # hwbench ÷ redis-benchmark at pipeline 1 and 16 (issue #14)
PG_TARGET = 0.8  # hwbench ÷ pgbench, TPC-B-like

PIPELINED_TPCB = """\\set aid random(1, 100000 * :scale)
\\set bid random(1, 1 * :scale)
\\set tid random(1, 10 * :scale)
\\set delta random(-5000, 5000)
\\startpipeline
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
\\endpipeline
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8, help="Redis concurrent clients (-c)")
    ap.add_argument("--pipeline", type=int, nargs="+", default=[1, 16], help="Redis pipeline depths (-P)")
    ap.add_argument("--value-size", type=int, default=64, help="Redis value bytes (-d)")
    ap.add_argument("--keyspace", type=int, default=10_000, help="Redis key space (-r)")
    ap.add_argument("--parser", default="auto", choices=["auto", "hiredis", "python"], help="hwbench RESP reader")
    ap.add_argument("--pg-clients", type=int, nargs="+", default=[1, 4], help="PostgreSQL clients (-c)")
    ap.add_argument("--scale", type=int, default=1, help="pgbench scale (-s)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per hwbench run and per tool run")
    ap.add_argument("--workers", type=int, default=1, help="hwbench load-generator processes")
    ap.add_argument("--skip-redis", action="store_true")
    ap.add_argument("--skip-postgres", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    add_load_args(ap)
    args = ap.parse_args()
    for tool in ("redis-benchmark", "pgbench"):
        need(tool)
    guard = LoadGuard.from_args(args)
    print(machine_line())
    guard.check("before")
    started = time.perf_counter()

    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hwbench-data-") as tmp:
        services = ServiceSet(log_dir=Path(tmp, "logs"), reap=False, handle_signals=True)
        try:
            redis = services.start(ServiceSpec(name="redis", kind="redis", backend="process", settings={}))
            pg = services.start(ServiceSpec(name="postgres", kind="postgres", backend="process", settings={}))
            rh, rp = redis.endpoint.host, redis.endpoint.port
            parser = RedisLoadClient(RedisWorkload(host=rh, port=rp, parser=args.parser)).parser
            print(f"redis-server {services.manifest()['redis'].get('binary_version', '')} on {rh}:{rp} "
                  f"(hwbench RESP reader: {parser}, event loop: {resolve_event_loop('auto', 'closed')}); "
                  f"PostgreSQL on {pg.endpoint.host}:{pg.endpoint.port}", flush=True)
            for depth in ([] if args.skip_redis else args.pipeline):
                # redis-benchmark runs about as long as hwbench: requests = its expected rate x duration
                requests = int(max(20_000, 40_000 * depth) * args.duration)
                for mix, test in (("set", "SET"), ("get", "GET")):
                    ours, ref = interleaved(
                        args.runs,
                        lambda mix=mix, depth=depth: hwbench_redis(
                            rh, rp, mix=mix, clients=args.clients, pipeline=depth, value_size=args.value_size,
                            keyspace=args.keyspace, duration_s=args.duration, workers=args.workers,
                            parser=args.parser),
                        lambda test=test, depth=depth, requests=requests: redis_benchmark(
                            rh, rp, test=test, clients=args.clients, pipeline=depth, value_size=args.value_size,
                            keyspace=args.keyspace, requests=requests), guard)
                    ratios = [o["ops_s"] / r["rps"] for o, r in zip(ours, ref, strict=True)]
                    rows.append({"service": "redis", "workload": f"{test} {args.value_size} B",
                                 "clients": args.clients, "pipeline": depth, "workers": args.workers,
                                 "hwbench": [o["ops_s"] for o in ours], "reference": [r["rps"] for r in ref],
                                 "hwbench_cpu_us_per_op": [o["cpu_us_per_op"] for o in ours],
                                 "reference_cpu_us_per_op": [r["cpu_us_per_op"] for r in ref],
                                 "ratios": ratios, "target": REDIS_TARGET, "tool": "redis-benchmark",
                                 "client_bound": any(o["client_bound"] for o in ours),
                                 "contended": any(o["contended"] for o in ours)})
                    lines.append(ratio_line(f"redis {test} P={depth} hwbench ÷ redis-benchmark", ratios,
                                            REDIS_TARGET, busy=guard.busy))
                    print(f"  {lines[-1]}", flush=True)
            if not args.skip_postgres:
                dsn = pg.endpoint.extra["dsn"]
                parts = {"host": pg.endpoint.host, "port": pg.endpoint.port, "user": pg.endpoint.extra["user"]}
                pgbench_init(dsn, parts, args.scale)
                script = Path(tmp, "tpcb_pipelined.sql")
                script.write_text(PIPELINED_TPCB)
                for clients in args.pg_clients:
                    for pipelined in (False, True):
                        ours, ref = interleaved(
                            args.runs,
                            lambda clients=clients, pipelined=pipelined: hwbench_postgres(
                                dsn, clients=clients, scale=args.scale, duration_s=args.duration,
                                workers=args.workers, pipeline=pipelined),
                            lambda clients=clients, pipelined=pipelined: pgbench(
                                parts, clients=clients, scale=args.scale, duration_s=args.duration,
                                script=script if pipelined else None), guard)
                        ratios = [o["tps"] / r["tps"] for o, r in zip(ours, ref, strict=True)]
                        how = "pipelined" if pipelined else "round trips"
                        rows.append({"service": "postgres", "workload": f"TPC-B-like s={args.scale}, {how}",
                                     "clients": clients, "pipeline": int(pipelined), "workers": args.workers,
                                     "hwbench": [o["tps"] for o in ours], "reference": [r["tps"] for r in ref],
                                     "hwbench_cpu_us_per_op": [o["cpu_us_per_op"] for o in ours],
                                     "reference_cpu_us_per_op": [r["cpu_us_per_op"] for r in ref],
                                     "ratios": ratios, "target": PG_TARGET, "tool": "pgbench",
                                     "client_bound": any(o["client_bound"] for o in ours),
                                     "contended": any(o["contended"] for o in ours)})
                        lines.append(ratio_line(f"postgres c={clients} {how} hwbench ÷ pgbench", ratios,
                                                PG_TARGET, busy=guard.busy))
                        print(f"  {lines[-1]}", flush=True)
        finally:
            services.stop_all()
    guard.check("after")

    print()
    busy = "  [BUSY]" if guard.busy else ""
    head = (f"{'service':9} {'workload':30} {'c':>2} {'P':>2} {'hwbench min/med/max':>26} "
            f"{'tool min/med/max':>30} {'CPU us/op ours':>14} {'tool':>6}  self-check{busy}")
    print(head)
    print("-" * len(head))
    for r in rows:
        check = "client-bound" if r["client_bound"] else "contended" if r["contended"] else "ok"
        print(f"{r['service']:9} {r['workload']:30} {r['clients']:>2} {r['pipeline']:>2} "
              f"{fmt_mmm(r['hwbench'], ',.0f'):>26} {fmt_mmm(r['reference'], ',.0f'):>30} "
              f"{statistics.median(r['hwbench_cpu_us_per_op']):14.1f} "
              f"{statistics.median(r['reference_cpu_us_per_op']):6.1f}  {check}")
    print()
    for line in lines:
        print(line)
    print(f"\n{guard.summary()}\ntotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
