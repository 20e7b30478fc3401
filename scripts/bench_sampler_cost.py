"""Cost of resource sampling (``pytest_hwbench.measure.samplers``), and its effect on a measurement.

Prints, for each sampling interval:

* the sampling thread's own CPU time as % of one core (its scheduler statistics, the same figure a test run
  records as ``sampler_cpu_util``) while it samples the host, a running reference server's process tree and
  the load generator — against the 2 % budget, and against the anchor: a bare psutil poll of the same kind of
  readings (``psutil.cpu_times(percpu=True)``, memory, swap, disk and network counters, and each process's
  ``cpu_times``/``memory_info``) — what a minimal psutil-based monitor such as Glances pays per tick;
* the effect on a measurement: a streamed closed-loop run against the reference server (16 streams, ITL 5 ms),
  alternating sampling off and on, comparing the client's ITL and TTFT medians and p99s.

Usage: ``python3 scripts/bench_sampler_cost.py [--seconds 10] [--rounds 3]``. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import psutil

from pytest_hwbench.measure.samplers import ResourceMonitor, Target
from pytest_hwbench.measure.samplers.proc import read_schedstat
from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
from pytest_hwbench.workloads.engine import LoadSpec, run_load_sync
from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics
from pytest_hwbench.workloads.openai_client import OpenAIClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts

BUDGET_PCT = 2.0


def sampler_cost(pid: int, interval_s: float, seconds: float) -> tuple[float, int]:
    """(% of one core used by the sampling thread, ticks) over ``seconds`` of sampling."""
    mon = ResourceMonitor(interval_s=interval_s, targets=lambda: [Target("reference", pid)], gpu=True)
    mon.begin_trial()
    time.sleep(seconds)
    tl = mon.end_trial()
    mon.close()
    assert tl is not None
    values = tl.values("sampler_cpu_util")
    return (statistics.fmean(values) if values else float("nan")), len(tl)


def psutil_anchor(pid: int, interval_s: float, seconds: float) -> float:
    """% of one core used by a thread doing a bare psutil poll of similar readings at the same interval."""
    out: list[float] = []

    def run() -> None:
        tid = threading.get_native_id()
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True), psutil.Process()]
        start = read_schedstat(os.getpid(), tid)
        t0 = time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            psutil.cpu_times(percpu=True)
            psutil.virtual_memory()
            psutil.swap_memory()
            psutil.disk_io_counters(perdisk=True)
            psutil.net_io_counters()
            for p in procs:
                p.cpu_times()
                p.memory_info()
            time.sleep(interval_s)
        stop = read_schedstat(os.getpid(), tid)
        if start and stop:
            out.append(100.0 * (stop[0] - start[0]) / 1e9 / (time.perf_counter() - t0))

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return out[0] if out else float("nan")


def measurement(url: str, sampled: bool) -> tuple[float, float, float, float]:
    """(ITL p50, ITL p99, TTFT p50, TTFT p99) in ms of one closed-loop run, sampled or not."""
    cfg = OpenAIClientConfig(base_url=url, model="hwbench-reference", prompts=synthetic_prompts(64, 64),
                             max_tokens=None)
    mon = ResourceMonitor(interval_s=0.2) if sampled else None
    if mon:
        mon.begin_trial()
    res = run_load_sync(LoadSpec.closed(16, requests=128, warmup_requests=16), cfg.open)
    if mon:
        mon.end_trial()
        mon.close()
    m = compute_llm_metrics(res.records)
    itl, ttft = m.samples["itl_ms"], m.samples["ttft_ms"]

    def pct(a: object, q: float) -> float:
        import numpy as np

        return float(np.percentile(a, q))

    return pct(itl, 50), pct(itl, 99), pct(ttft, 50), pct(ttft, 99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = ReferenceConfig(ttft_ms=20, itl_ms=5, output_tokens=32)
    with ReferenceServerProcess(cfg) as srv:
        pid = srv._proc.pid  # type: ignore[union-attr]
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        print("\n| interval | hwbench sampler (% of one core) | ticks | bare psutil poll, anchor (%) | ratio "
              "| budget 2 % |")
        print("|---|---|---|---|---|---|")
        for interval in (0.25, 0.2, 0.1):
            costs = [sampler_cost(pid, interval, args.seconds) for _ in range(args.rounds)]
            anchors = [psutil_anchor(pid, interval, args.seconds) for _ in range(args.rounds)]
            cost = statistics.median(c for c, _ in costs)
            anchor = statistics.median(anchors)
            print(f"| {interval * 1000:.0f} ms | {cost:.2f} | {costs[0][1]} | {anchor:.2f} | {cost / anchor:.2f}x "
                  f"| {'within' if cost < BUDGET_PCT else 'OVER'} |")
        print("\n| sampling | ITL p50 (ms) | ITL p99 (ms) | TTFT p50 (ms) | TTFT p99 (ms) |")
        print("|---|---|---|---|---|")
        runs: dict[bool, list[tuple[float, float, float, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for sampled in (False, True):
                runs[sampled].append(measurement(srv.base_url or "", sampled))
        for sampled in (False, True):
            cols = [statistics.median(r[i] for r in runs[sampled]) for i in range(4)]
            label = "on, 200 ms" if sampled else "off (anchor)"
            print(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cols) + " |")
        print("\n(configured: ITL 5 ms, TTFT 20 ms; medians of", args.rounds, "runs of 128 requests, 16 streams)")


if __name__ == "__main__":
    main()
