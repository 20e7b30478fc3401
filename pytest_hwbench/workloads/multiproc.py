"""Split one run across K worker processes, each with its own event loop, and merge their records.

Why: one Python event loop runs on one core. Parsing a few thousand SSE events per second already costs a
sizeable share of it, and a busy loop timestamps late and sends late — the client becomes the thing being
measured. K processes give K cores; the engine's self-check says when more are needed.

How the run is split: see ``engine.make_plans`` (one global open-loop schedule dealt round-robin; closed-loop
users and counts split evenly; global request indices stay unique).

Clock alignment: every process measures intervals with its own ``time.perf_counter_ns()``, and Python does
not promise that two processes read the same counter (on Linux, macOS and Windows they in fact do — it is
CLOCK_MONOTONIC / mach_absolute_time / QPC — but we do not rely on it). So the parent fixes a **shared start
instant on the wall clock**, ``start_wall_ns`` (now + ``start_lead_s``, after every worker reported ready).
Each process converts it to its own perf-counter domain from a tightly bracketed (perf, wall, perf) reading:
``start_perf = perf_mid + (start_wall_ns − wall)``. A worker starts its schedule at its ``start_perf`` and
ships its records *relative to it*; the parent adds its own ``start_perf``. The merged records therefore live
in the parent's perf-counter domain, like a single-process run. Error of the alignment: the bracket width
(a few µs) plus any wall-clock slew between the two conversions, which happen within ``start_lead_s`` of
each other (NTP slews at most 0.5 ms/s → ≤ 0.1 ms over the default 0.2 s); a wall-clock *step* in that window
would break it, which is why the window is short. ``RunResult.clock_offsets_ns`` reports, per worker, the
difference between its start_perf and the parent's — ~0 where the counters are shared, a direct check.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from pytest_hwbench.errors import HwbenchError
from pytest_hwbench.workloads.engine import (
    ClientFactory,
    LoadSpec,
    RunResult,
    WorkerPlan,
    build_self_check,
    cpu_times,
    machine_load,
    make_plans,
    run_plan,
)
from pytest_hwbench.workloads.loop import frozen_heap, new_event_loop, precise_timers
from pytest_hwbench.workloads.records import RequestRecord


def perf_at_wall(wall_ns: int, tries: int = 5) -> int:
    """The ``perf_counter_ns`` value of this process at wall-clock instant ``wall_ns``.

    Takes the (perf, wall, perf) bracket with the smallest width out of ``tries`` to keep a preemption
    between the reads from skewing the conversion.
    """
    best: tuple[int, int, int] | None = None
    for _ in range(tries):
        p1 = time.perf_counter_ns()
        w = time.time_ns()
        p2 = time.perf_counter_ns()
        if best is None or p2 - p1 < best[0]:
            best = (p2 - p1, (p1 + p2) // 2, w)
    assert best is not None
    return best[1] + (wall_ns - best[2])


@dataclass
class _WorkerResult:
    worker: int
    records: list[RequestRecord]  # instants relative to the worker's start_perf
    end_rel_ns: int
    loop_lag_ns: np.ndarray
    cpu_s: float
    start_perf_ns: int  # the worker's own start_perf (raw), for the clock-offset check
    wait_s: float | None = None
    runnable: list[int] | None = None


def _worker_main(conn: Connection, plan: WorkerPlan, factory: ClientFactory, precise: bool) -> None:
    """Entry point of a worker process: open the client, report ready, wait for the start, run, ship."""
    from pytest_hwbench.services.base import restore_default_signals

    restore_default_signals(python=True)  # a parent started in the background ignores SIGINT
    loop = None
    try:
        loop = new_event_loop(precise, plan.event_loop)
        asyncio.set_event_loop(loop)
        with precise_timers() if precise else contextlib.nullcontext():
            client = loop.run_until_complete(factory())
            try:
                conn.send(("ready", None))
                kind, start_wall_ns = conn.recv()
                if kind != "start":
                    return
                start_perf = perf_at_wall(start_wall_ns)
                with frozen_heap():
                    out = loop.run_until_complete(run_plan(plan, client.send, start_ns=start_perf))
            finally:
                loop.run_until_complete(client.aclose())
        for rec in out.records:
            rec.shift(-start_perf)
        conn.send(("result", _WorkerResult(worker=plan.worker, records=out.records,
                                           end_rel_ns=out.end_ns - start_perf, loop_lag_ns=out.loop_lag_ns,
                                           cpu_s=out.cpu_s, start_perf_ns=start_perf,
                                           wait_s=out.wait_s, runnable=out.runnable)))
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()))
    finally:
        if loop is not None:
            loop.close()
        conn.close()


def _recv(conn: Connection, proc: Any, deadline: float | None, what: str) -> Any:
    while True:
        if conn.poll(0.05):
            try:
                kind, payload = conn.recv()
            except EOFError:
                raise HwbenchError(f"load worker {what}: it exited without a word "
                                   f"(exit code {proc.exitcode})") from None
            if kind == "error":
                raise HwbenchError(f"load worker failed {what}:\n{payload}")
            return payload
        if not proc.is_alive() and not conn.poll(0):
            raise HwbenchError(f"load worker died {what} (exit code {proc.exitcode})")
        if deadline is not None and time.monotonic() > deadline:
            raise HwbenchError(f"load worker did not answer {what} in time")


def run_multiprocess(spec: LoadSpec, client_factory: ClientFactory, *, workers: int, precise: bool = True,
                     start_timeout_s: float = 120.0, start_lead_s: float = 0.2,
                     mp_context: str = "spawn") -> RunResult:
    """Run ``spec`` over ``workers`` processes and return one merged :class:`RunResult`.

    ``client_factory`` is pickled to each worker (e.g. ``OpenAIClientConfig(...).open``). ``spawn`` is the
    default start method because forking a process that holds threads or a running loop (pytest, the
    plugin) is unsafe; it costs each worker an interpreter start (~0.5 s), outside the measured run. As with
    any spawned multiprocessing, a calling *script* must guard its entry point with
    ``if __name__ == "__main__":`` (pytest test modules need nothing). Workers plus the server should not
    outnumber the cores: on a 2-core box two workers beside a local server measured worse than one.
    """
    plans = make_plans(spec, workers)
    ctx: Any = mp.get_context(mp_context)  # typeshed's BaseContext lacks Process; every real context has it
    procs: list[Any] = []
    conns: list[Connection] = []
    try:
        for plan in plans:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child_end, plan, client_factory, precise),
                               name=f"hwbench-load-{plan.worker}", daemon=True)
            proc.start()
            child_end.close()
            procs.append(proc)
            conns.append(parent_end)
        ready_by = time.monotonic() + start_timeout_s
        for k, (conn, proc) in enumerate(zip(conns, procs, strict=True)):
            _recv(conn, proc, ready_by, f"{k} while starting")
        start_wall_ns = time.time_ns() + int(start_lead_s * 1e9)
        stat0 = cpu_times()
        for conn in conns:
            conn.send(("start", start_wall_ns))
        start_perf = perf_at_wall(start_wall_ns)
        results: list[_WorkerResult] = [
            _recv(conn, proc, None, f"{k} during the run")
            for k, (conn, proc) in enumerate(zip(conns, procs, strict=True))]
    finally:
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    records: list[RequestRecord] = []
    for res in results:
        for rec in res.records:
            rec.shift(start_perf)
        records.extend(res.records)
    records.sort(key=lambda r: r.index)
    end = start_perf + max(r.end_rel_ns for r in results)
    wall_s = max((end - start_perf) / 1e9, 1e-9)
    check = build_self_check(spec.mode, records, [r.loop_lag_ns for r in results],
                             [r.cpu_s / wall_s for r in results], spec.limits, len(results),
                             wait_fraction=[None if r.wait_s is None else r.wait_s / wall_s for r in results],
                             machine=machine_load([n for r in results for n in (r.runnable or [])], stat0,
                                                  cpu_times()))
    return RunResult(spec=spec, records=records, start_ns=start_perf, end_ns=end, start_wall_ns=start_wall_ns,
                     self_check=check, workers=len(results),
                     clock_offsets_ns=[r.start_perf_ns - start_perf for r in results])
