"""Async load engine: closed loop (N users) and open loop (an arrival schedule), plus its own self-check.

The engine knows nothing about protocols. It calls ``send(index) -> RequestRecord`` — an async callable
supplied by a protocol client (``openai_client``, ``ollama_client``, or any future one) — at the right moments,
stamps what only the engine knows (warm-up or not, scheduled send, time queued under a cap, worker id) and
collects the records. Metrics are computed afterwards from the records (``llm_metrics``), never in the loop.

* **Closed loop** — ``users`` concurrent users, each sending its next request as soon as the previous one
  finished. Offered load depends on the server's speed, so it measures capacity at a given concurrency.
  Users may be started over ``ramp_up_s`` (user ``u`` starts at ``u * ramp_up_s / users``) so their requests
  are not in lock-step, which would otherwise make every token of every stream arrive in the same instant.
* **Open loop** — requests are sent at the instants of an arrival schedule (``schedule``) whatever the server
  does, so a slow server builds a backlog instead of silently slowing the client down (no coordinated
  omission). Each record keeps its scheduled instant (``intended_ns``) so ``latency_from_intended`` shows a
  server stall in the tail, as wrk2 and MLPerf LoadGen do. An optional ``max_concurrency`` cap bounds the
  requests in flight; requests over it wait in a FIFO queue and that wait (``queued_ns``) still counts in
  latency_from_intended.

Bounds: ``requests`` (measured requests) and/or ``duration_s`` (measured time, counted from the first
measured send). The first ``warmup_requests`` are sent and recorded but flagged ``warmup`` and left out of
every metric. After the last dispatch, in-flight requests get ``drain_timeout_s`` to finish; any still
running are cancelled and recorded as ``timeout`` (partial results are always kept, nothing is dropped).

Self-check (``SelfCheck``): a benchmark whose *client* is the bottleneck measures the client. The engine
samples its own event-loop lag all along, how late each open-loop send left relative to its schedule, and
achieved vs offered rate (the *symptoms*); and, to blame the right party, the client's CPU time, the time
its loop thread spent runnable but waiting for a CPU (Linux ``/proc/thread-self/schedstat`` run delay), the
machine's runnable tasks (``/proc/loadavg``) and CPU steal (``/proc/stat``). Symptoms with a client that
needed more than ``max_cpu_fraction`` of a core *whenever it could run* (CPU time / (wall - run delay))
set ``client_bound`` (fix: worker processes, ``multiproc``); symptoms with a client that had CPU to spare
but waited for one (run delay or steal over ``max_wait_fraction``) set ``contended`` instead — other
processes on the machine (often the server itself, on a small box) took the client's CPU, and more client
processes would not help. Either makes the run invalid (``limited``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, cast

import numpy as np

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.report import progress
from pytest_hwbench.workloads.loop import (
    EVENT_LOOPS,
    frozen_heap,
    have_uvloop,
    new_event_loop,
    precise_timers,
    refreeze,
    resolve_event_loop,
    sleep_until,
)
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord
from pytest_hwbench.workloads.schedule import ArrivalProcess, build_open_schedule

SendFn = Callable[[int], Awaitable[RequestRecord]]
Mode = Literal["closed", "open"]


class LoadClient(Protocol):
    """What the engine drives: one ``send`` per request, and a close at the end."""

    async def send(self, index: int) -> RequestRecord: ...

    async def aclose(self) -> None: ...


#: Opens a client inside the event loop that will use it. Must be picklable (a module-level function, or a
#: bound method of a picklable config such as ``OpenAIClientConfig.open``) for multi-process runs.
ClientFactory = Callable[[], Awaitable[LoadClient]]


@dataclass(frozen=True)
class SelfCheckLimits:
    """Thresholds above which the client, not the server, is deemed the bottleneck.

    Defaults leave head-room for a shared CI runner: 10 ms of loop lag or send lateness at p99 is far above
    what an idle Python loop shows (~0.1-0.5 ms) yet well below a typical TTFT, and 90 % of one core is where
    a single-threaded loop starts queueing work.
    """

    max_loop_lag_p99_ms: float = 10.0
    max_send_lag_p99_ms: float = 10.0
    max_cpu_fraction: float = 0.90
    min_rate_ratio: float = 0.95
    #: Share of the run the client's loop waited for a CPU (run delay, or steal) that marks a contended
    #: machine: 10 % is far above an idle box (< 1 %).
    max_wait_fraction: float = 0.10


@dataclass(frozen=True)
class LoadSpec:
    """What load to apply. Build with :meth:`closed` or :meth:`open` for readable call sites."""

    mode: Mode = "closed"
    users: int = 1
    arrival: ArrivalProcess | None = None
    max_concurrency: int | None = None
    requests: int | None = None
    duration_s: float | None = None
    warmup_requests: int = 0
    ramp_up_s: float = 0.0
    drain_timeout_s: float = 60.0
    seed: int = 0
    lag_interval_s: float = 0.005
    limits: SelfCheckLimits = field(default_factory=SelfCheckLimits)
    #: ``auto`` (uvloop for a closed loop when installed), ``asyncio`` or ``uvloop`` (see ``loop.py``).
    event_loop: str = "auto"

    def __post_init__(self) -> None:
        def bad(fld: str, problem: str, fix: str) -> HwbenchInputError:
            return HwbenchInputError(problem, field=f"load.{fld}", fix=fix)

        if self.mode not in ("closed", "open"):
            raise bad("mode", f"unknown mode {self.mode!r}", "use 'closed' or 'open'")
        if self.requests is None and self.duration_s is None:
            raise bad("requests", "a load needs a bound", "give requests=N and/or duration_s=T")
        if self.requests is not None and self.requests < 1:
            raise bad("requests", f"must be >= 1, got {self.requests}", "give a positive count")
        if self.duration_s is not None and not self.duration_s > 0:
            raise bad("duration_s", f"must be > 0, got {self.duration_s}", "give a positive duration")
        if self.warmup_requests < 0:
            raise bad("warmup_requests", "must be >= 0", "give 0 or more warm-up requests")
        if self.mode == "closed" and self.users < 1:
            raise bad("users", f"must be >= 1, got {self.users}", "give the number of concurrent users")
        if self.mode == "open" and self.arrival is None:
            raise bad("arrival", "an open loop needs an arrival process", "give arrival=ArrivalProcess(...)")
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise bad("max_concurrency", "must be >= 1", "give a positive cap or none")
        if self.event_loop not in EVENT_LOOPS:
            raise bad("event_loop", f"unknown event loop {self.event_loop!r}",
                      f"use one of {', '.join(EVENT_LOOPS)}")
        if self.event_loop == "uvloop" and not have_uvloop():
            raise bad("event_loop", "event_loop 'uvloop' asked for but uvloop is not installed",
                      "pip install 'pytest-hwbench[fast]' (uvloop), or use event_loop 'auto'")
        if self.ramp_up_s < 0 or self.drain_timeout_s < 0 or self.lag_interval_s <= 0:
            raise bad("ramp_up_s", "ramp_up_s and drain_timeout_s must be >= 0, lag_interval_s > 0",
                      "fix the sign")

    @classmethod
    def closed(cls, users: int, *, requests: int | None = None, duration_s: float | None = None,
               warmup_requests: int = 0, ramp_up_s: float = 0.0, **kw: Any) -> LoadSpec:
        """``users`` concurrent users, back to back."""
        return cls(mode="closed", users=users, requests=requests, duration_s=duration_s,
                   warmup_requests=warmup_requests, ramp_up_s=ramp_up_s, **kw)

    @classmethod
    def open(cls, rate: float, *, kind: str = "poisson", burstiness: float = 1.0,
             requests: int | None = None, duration_s: float | None = None, warmup_requests: int = 0,
             max_concurrency: int | None = None, seed: int = 0, **kw: Any) -> LoadSpec:
        """Requests at ``rate`` req/s following ``kind`` (constant, poisson, gamma)."""
        return cls(mode="open", arrival=ArrivalProcess(kind=kind, rate=rate, burstiness=burstiness),  # type: ignore[arg-type]
                   requests=requests, duration_s=duration_s, warmup_requests=warmup_requests,
                   max_concurrency=max_concurrency, seed=seed, **kw)


@dataclass
class WorkerPlan:
    """One worker's share of a run (the whole run when there is one worker). Plain data, picklable."""

    worker: int
    workers: int
    mode: Mode
    drain_timeout_s: float
    lag_interval_s: float
    # open loop
    offsets_ns: np.ndarray | None = None
    indices: np.ndarray | None = None
    warmup_below: int = 0  #: global indices below this are warm-up
    max_concurrency: int | None = None
    # closed loop
    users: int = 0
    user_start_s: list[float] = field(default_factory=list)
    warmup: int = 0
    requests: int | None = None
    duration_s: float | None = None
    event_loop: str = "asyncio"  #: the resolved implementation (``asyncio`` or ``uvloop``)


def _split(total: int, parts: int, k: int) -> int:
    """Share ``k`` of ``total`` split as evenly as possible into ``parts``."""
    return total // parts + (1 if k < total % parts else 0)


def make_plans(spec: LoadSpec, workers: int = 1) -> list[WorkerPlan]:
    """Deal a run out to ``workers`` workers.

    Open loop: the parent draws the one global schedule and deals arrivals round-robin, so the union of the
    workers' sends *is* the configured process (not K independent processes), and a cap is split across
    workers (a global cap would need a cross-process lock on every request; the split is exact in total
    and documented as per-worker). Closed loop: users, warm-up and request counts are split evenly; worker
    ``k`` uses global indices ``k, k+K, k+2K, ...`` so indices stay unique (and select distinct prompts).
    """
    workers = max(1, int(workers))
    if spec.mode == "open":
        assert spec.arrival is not None
        if spec.max_concurrency is not None:
            workers = min(workers, spec.max_concurrency)
        sched = build_open_schedule(spec.arrival, requests=spec.requests, duration_s=spec.duration_s,
                                    warmup_requests=spec.warmup_requests, seed=spec.seed)
        idx = np.arange(len(sched.offsets_ns), dtype=np.int64)
        return [WorkerPlan(worker=k, workers=workers, mode="open", drain_timeout_s=spec.drain_timeout_s,
                           event_loop=resolve_event_loop(spec.event_loop, "open"),
                           lag_interval_s=spec.lag_interval_s, offsets_ns=sched.offsets_ns[k::workers],
                           indices=idx[k::workers], warmup_below=sched.warmup,
                           max_concurrency=None if spec.max_concurrency is None
                           else _split(spec.max_concurrency, workers, k))
                for k in range(workers)]
    workers = min(workers, spec.users)
    plans = []
    for k in range(workers):
        users = _split(spec.users, workers, k)
        starts = [(u * workers + k) * spec.ramp_up_s / spec.users for u in range(users)]
        plans.append(WorkerPlan(
            worker=k, workers=workers, mode="closed", drain_timeout_s=spec.drain_timeout_s,
            lag_interval_s=spec.lag_interval_s, users=users, user_start_s=starts,
            warmup=_split(spec.warmup_requests, workers, k),
            event_loop=resolve_event_loop(spec.event_loop, "closed"),
            requests=None if spec.requests is None else _split(spec.requests, workers, k),
            duration_s=spec.duration_s))
    return plans


@dataclass
class WorkerOutcome:
    """Raw result of one worker: its records and its own self-check evidence."""

    worker: int
    records: list[RequestRecord]
    start_ns: int
    end_ns: int
    loop_lag_ns: np.ndarray
    cpu_s: float
    wait_s: float | None = None  #: run delay of the loop thread (None where the OS does not say)
    runnable: list[int] = field(default_factory=list)  #: machine's runnable tasks, sampled ~10/s


@dataclass
class MachineLoad:
    """How busy the machine was during a run: the evidence for "contended" rather than "client-bound"."""

    cpus: int
    runnable_mean: float | None  #: mean runnable tasks (``/proc/loadavg`` 4th field, including ours)
    steal_fraction: float | None  #: CPU time stolen by the hypervisor / all CPU time

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "runnable_mean": self.runnable_mean, "steal_fraction": self.steal_fraction}


def _run_delay_ns() -> int | None:
    """Time this thread has spent runnable but not running (Linux schedstat), or None."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _runnable() -> int | None:
    try:
        with open("/proc/loadavg", "rb") as f:
            return int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from ``/proc/stat``, or None."""
    try:
        with open("/proc/stat", "rb") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    return fields[7], sum(fields[:8])


def machine_load(runnable: Sequence[int], stat0: tuple[int, int] | None,
                 stat1: tuple[int, int] | None) -> MachineLoad:
    steal = None
    if stat0 is not None and stat1 is not None and stat1[1] > stat0[1]:
        steal = (stat1[0] - stat0[0]) / (stat1[1] - stat0[1])
    return MachineLoad(cpus=os.cpu_count() or 1, steal_fraction=steal,
                       runnable_mean=float(np.mean(runnable)) if len(runnable) else None)


@dataclass
class SelfCheck:
    """Is the load generator itself the bottleneck? Evidence and verdict."""

    mode: Mode
    workers: int
    offered_rate_rps: float | None
    achieved_rate_rps: float | None
    send_lag_ms: dict[str, float]
    loop_lag_ms: dict[str, float]
    client_cpu: list[float]
    queued_requests: int
    client_bound: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The client had CPU to spare but waited for one: other processes held the machine's CPUs.
    contended: bool = False
    #: Per worker: share of the run its loop waited for a CPU; its CPU share whenever it could run.
    client_wait: list[float] = field(default_factory=list)
    client_demand: list[float] = field(default_factory=list)
    machine: MachineLoad | None = None

    @property
    def limited(self) -> bool:
        """The load generator could not act on time (for either reason): the figures are not the server's."""
        return self.client_bound or self.contended

    def message(self) -> str:
        """One line for a failing test: who was the bottleneck, why, and what to do about it."""
        if self.client_bound:
            return ("the load generator, not the server, was the bottleneck: " + "; ".join(self.reasons)
                    + " (fix: use more worker processes or a lower load)")
        if self.contended:
            return ("the machine was contended, not the client saturated: " + "; ".join(self.reasons)
                    + " (fix: run on a quieter machine, or give the client its own cores, e.g. taskset; "
                    "more worker processes would not help)")
        return "load generator kept up"

    def to_dict(self) -> dict[str, Any]:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {"mode": self.mode, "workers": self.workers, "offered_rate_rps": num(self.offered_rate_rps),
                "achieved_rate_rps": num(self.achieved_rate_rps),
                "send_lag_ms": {k: num(v) for k, v in self.send_lag_ms.items()},
                "loop_lag_ms": {k: num(v) for k, v in self.loop_lag_ms.items()},
                "client_cpu": [num(c) for c in self.client_cpu], "queued_requests": self.queued_requests,
                "client_bound": self.client_bound, "contended": self.contended,
                "client_wait": [num(c) for c in self.client_wait],
                "client_demand": [num(c) for c in self.client_demand],
                "machine": self.machine.to_dict() if self.machine else None,
                "reasons": list(self.reasons), "notes": list(self.notes)}


@dataclass
class RunResult:
    """Everything a run produced. ``records`` include warm-up and failed requests (filter as needed)."""

    spec: LoadSpec
    records: list[RequestRecord]
    start_ns: int
    end_ns: int
    start_wall_ns: int
    self_check: SelfCheck
    workers: int = 1
    #: Multi-process runs: per worker, its start instant minus the parent's in the parent's perf domain
    #: (~0 where processes share the counter; see ``multiproc`` on clock alignment).
    clock_offsets_ns: list[int] = field(default_factory=list)

    def measured(self) -> list[RequestRecord]:
        """Records inside the measurement window (warm-up excluded), failed ones included."""
        return [r for r in self.records if not r.warmup]

    def to_dict(self, *, records: bool = False) -> dict[str, Any]:
        """Plain JSON for results files: the spec, the self-check, and (optionally) every raw record."""
        out: dict[str, Any] = {
            "spec": asdict(self.spec), "workers": self.workers, "start_wall_ns": self.start_wall_ns,
            "duration_s": (self.end_ns - self.start_ns) / 1e9, "self_check": self.self_check.to_dict(),
            "clock_offsets_ns": list(self.clock_offsets_ns)}
        if records:
            out["records"] = [r.to_dict() for r in self.records]
        return out


def _pct(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(values.max())}


def build_self_check(mode: Mode, records: Sequence[RequestRecord], loop_lag_ns: Sequence[np.ndarray],
                     cpu_fraction: Sequence[float], limits: SelfCheckLimits, workers: int, *,
                     wait_fraction: Sequence[float | None] = (), machine: MachineLoad | None = None) -> SelfCheck:
    """Judge the client from the evidence of all workers (pooled lag samples, per-worker CPU and wait)."""
    measured = [r for r in records if not r.warmup]
    lag = np.concatenate([np.asarray(a, dtype=np.float64) for a in loop_lag_ns]) / 1e6 if loop_lag_ns \
        else np.zeros(0)
    loop_lag = _pct(lag)
    symptoms: list[str] = []
    notes: list[str] = []
    offered = achieved = None
    send_lag = _pct(np.zeros(0))
    queued = sum(1 for r in measured if r.queued_ns > 0)
    if mode == "open":
        sched = [r for r in measured if r.intended_ns is not None]
        if len(sched) >= 2:
            intended = np.array([r.intended_ns for r in sched], dtype=np.float64)
            sends = np.array([r.send_ns for r in sched], dtype=np.float64)
            span_i = (intended.max() - intended.min()) / 1e9
            span_s = (sends.max() - sends.min()) / 1e9
            offered = (len(sched) - 1) / span_i if span_i > 0 else math.inf
            achieved = (len(sched) - 1) / span_s if span_s > 0 else math.inf
            on_time = np.array([r.send_ns - cast(int, r.intended_ns) for r in sched if r.queued_ns == 0],
                               dtype=np.float64) / 1e6
            send_lag = _pct(on_time)
            if on_time.size and send_lag["p99"] > limits.max_send_lag_p99_ms:
                symptoms.append(f"sends left late: p99 {send_lag['p99']:.1f} ms after their scheduled time "
                                f"(limit {limits.max_send_lag_p99_ms:g} ms)")
            if math.isfinite(offered) and achieved < offered * limits.min_rate_ratio:
                if queued:
                    notes.append(f"achieved {achieved:.1f} req/s of {offered:.1f} offered because {queued} "
                                 "requests waited for the max-concurrency cap: the server limited the rate")
                else:
                    symptoms.append(f"achieved rate {achieved:.1f} req/s is below the offered {offered:.1f} "
                                    f"req/s (limit {limits.min_rate_ratio:.0%})")
    if lag.size and loop_lag["p99"] > limits.max_loop_lag_p99_ms:
        symptoms.append(f"event-loop lag p99 {loop_lag['p99']:.1f} ms (limit {limits.max_loop_lag_p99_ms:g} ms)"
                        ": the client's loop could not act on time")
    waits = [w for w in wait_fraction if w is not None]
    wait_list = [float(w) if w is not None else math.nan for w in wait_fraction]
    # CPU share whenever the client could run: what it would use of a core of its own.
    demand = [c / max(1e-9, 1.0 - w) if w is not None and w < 1.0 else c
              for c, w in zip(cpu_fraction, list(wait_fraction) or [None] * len(cpu_fraction), strict=True)]
    busiest = max(demand, default=0.0)
    most_wait = max(waits, default=0.0)
    steal = machine.steal_fraction if machine is not None and machine.steal_fraction is not None else 0.0
    saturated = busiest > limits.max_cpu_fraction
    busy_machine = most_wait > limits.max_wait_fraction or steal > limits.max_wait_fraction
    reasons = list(symptoms)
    contention = []
    if most_wait > limits.max_wait_fraction:
        contention.append(f"the client's loop waited for a CPU {most_wait:.0%} of the run")
    if steal > limits.max_wait_fraction:
        contention.append(f"the hypervisor stole {steal:.0%} of the CPU time")
    if machine is not None and machine.runnable_mean is not None:
        contention.append(f"{machine.runnable_mean:.1f} runnable tasks on {machine.cpus} CPUs on average")
    client_cpu = max(cpu_fraction, default=0.0)
    if saturated:
        reasons.append(f"a client process needed {busiest:.0%} of a CPU core whenever it could run "
                       f"(limit {limits.max_cpu_fraction:.0%}; it got {client_cpu:.0%} of the wall time)")
        if busy_machine:
            notes.append("the machine was contended too: " + ", ".join(contention))
        client_bound, contended = True, False
    elif symptoms and busy_machine:
        reasons.append(f"the client used only {client_cpu:.0%} of a core ({busiest:.0%} whenever it could "
                       "run), but " + ", ".join(contention))
        client_bound, contended = False, True
    else:
        client_bound, contended = bool(symptoms), False
        if busy_machine:
            notes.append("the machine was busy (" + ", ".join(contention) + ") but the client kept up")
    return SelfCheck(mode=mode, workers=workers, offered_rate_rps=offered, achieved_rate_rps=achieved,
                     send_lag_ms=send_lag, loop_lag_ms=loop_lag, client_cpu=list(cpu_fraction),
                     queued_requests=queued, client_bound=client_bound, reasons=reasons, notes=notes,
                     contended=contended, client_wait=wait_list, client_demand=demand, machine=machine)


def _expected_requests(plan: WorkerPlan) -> int | None:
    """Requests this plan will send, warm-up included, when known in advance (not for duration-bound runs)."""
    if plan.mode == "open":
        return None if plan.offsets_ns is None else len(plan.offsets_ns)
    return plan.requests + plan.warmup if plan.requests else None


class _Runner:
    """Executes one WorkerPlan in the running loop."""

    def __init__(self, plan: WorkerPlan, send: SendFn) -> None:
        self.plan = plan
        self.send = send
        self.records: list[RequestRecord] = []
        self.loop = asyncio.get_running_loop()
        # loop.time() and perf_counter may be different clocks: convert through a fixed offset
        self._loop_minus_perf = self.loop.time() - time.perf_counter_ns() / 1e9
        self._progress = progress.request_counter(_expected_requests(plan))  # None unless a live line shows

    def loop_time(self, perf_ns: int) -> float:
        return perf_ns / 1e9 + self._loop_minus_perf

    async def one(self, index: int, warmup: bool, intended: int | None, queued: int) -> None:
        t = time.perf_counter_ns()
        try:
            rec = await self.send(index)
        except asyncio.CancelledError:
            self._keep(self._cancelled(index, t), index, warmup, intended, queued)
            raise
        except Exception as exc:  # a client bug must not end the run
            rec = self._crashed(index, t, exc)
        self._keep(rec, index, warmup, intended, queued)

    @staticmethod
    def _cancelled(index: int, t: int) -> RequestRecord:
        rec = RequestRecord(index=index, send_ns=t, end_ns=time.perf_counter_ns())
        rec.fail(ErrorClass.TIMEOUT, "still in flight when the run's drain timeout expired")
        return rec

    @staticmethod
    def _crashed(index: int, t: int, exc: Exception) -> RequestRecord:
        rec = RequestRecord(index=index, send_ns=t, end_ns=time.perf_counter_ns())
        rec.fail(ErrorClass.CLIENT, f"{type(exc).__name__}: {exc}")
        return rec

    def _keep(self, rec: RequestRecord, index: int, warmup: bool, intended: int | None, queued: int) -> None:
        rec.index = index
        rec.warmup = warmup
        rec.worker = self.plan.worker
        rec.intended_ns = intended
        rec.queued_ns = queued
        if rec.send_ns == 0:
            rec.send_ns = time.perf_counter_ns()
        if rec.end_ns == 0:
            rec.end_ns = time.perf_counter_ns()
        self.records.append(rec)
        if self._progress is not None:
            self._progress(len(self.records))

    async def _drain(self, tasks: set[asyncio.Task[None]], timeout_s: float | None) -> None:
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def run_open(self, t0: int) -> None:
        plan = self.plan
        assert plan.offsets_ns is not None and plan.indices is not None
        cap = plan.max_concurrency
        sem = asyncio.Semaphore(cap) if cap else None
        tasks: set[asyncio.Task[None]] = set()
        blocked_until = -1  # perf instant until which the dispatcher was held up by the cap

        async def guarded(index: int, warmup: bool, intended: int, queued: int) -> None:
            try:
                await self.one(index, warmup, intended, queued)
            finally:
                if sem is not None:
                    sem.release()

        for off, index in zip(plan.offsets_ns.tolist(), plan.indices.tolist(), strict=True):
            intended = t0 + off
            await sleep_until(self.loop_time(intended), self.loop)
            queued = 0
            if sem is not None:
                if sem.locked():
                    await sem.acquire()
                    blocked_until = time.perf_counter_ns()
                    queued = max(1, blocked_until - intended)
                else:
                    await sem.acquire()
                    if intended <= blocked_until:  # its turn came while we were stuck on the cap
                        queued = max(1, time.perf_counter_ns() - intended)
                coro = guarded(index, index < plan.warmup_below, intended, queued)
            else:
                coro = self.one(index, index < plan.warmup_below, intended, 0)
            task = self.loop.create_task(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await self._drain(set(tasks), plan.drain_timeout_s)

    async def run_closed(self, t0: int) -> None:
        plan = self.plan
        counter = 0
        deadline: int | None = None
        limit = None if plan.requests is None else plan.warmup + plan.requests
        send, keep, perf = self.send, self._keep, time.perf_counter_ns

        async def user(start_s: float) -> None:
            nonlocal counter, deadline
            await sleep_until(self.loop_time(t0 + int(start_s * 1e9)), self.loop)
            while True:
                j = counter
                counter += 1
                if limit is not None and j >= limit:
                    return
                warm = j < plan.warmup
                if not warm and plan.duration_s is not None:
                    now = time.perf_counter_ns()
                    if deadline is None:
                        deadline = now + int(plan.duration_s * 1e9)
                    elif now >= deadline:
                        return
                # what ``one`` does, inlined: a closed loop against a fast server runs this once per request
                index = j * plan.workers + plan.worker
                t = perf()
                try:
                    rec = await send(index)
                except asyncio.CancelledError:
                    keep(self._cancelled(index, t), index, warm, None, 0)
                    raise
                except Exception as exc:  # a client bug must not end the run
                    rec = self._crashed(index, t, exc)
                keep(rec, index, warm, None, 0)

        pending: set[asyncio.Task[None]] = {self.loop.create_task(user(s)) for s in plan.user_start_s}
        drain_ns = int(plan.drain_timeout_s * 1e9)
        while pending:
            timeout = 0.1
            if deadline is not None:
                timeout = max(0.0, (deadline + drain_ns - time.perf_counter_ns()) / 1e9)
            _, pending = await asyncio.wait(pending, timeout=timeout)
            if pending and deadline is not None and time.perf_counter_ns() >= deadline + drain_ns:
                await self._drain(pending, 0)
                break


async def _sample_lag(interval_s: float, out: array, runnable: list[int]) -> None:
    """Record how late each periodic wake-up is: a busy loop wakes late, and so do its requests.

    About ten times a second it also notes the machine's runnable tasks (evidence of contention)."""
    loop = asyncio.get_running_loop()
    every = max(1, round(0.1 / interval_s))
    step_ns = int(interval_s * 1e9)
    n = 0
    while True:
        # Lateness is read on perf_counter, not loop.time(): uvloop's loop.time() is libuv's cached,
        # millisecond-resolution clock, which would read most lags as exactly 0.
        target_ns = time.perf_counter_ns() + step_ns
        await sleep_until(loop.time() + interval_s, loop)
        out.append(max(0, time.perf_counter_ns() - target_ns))
        n += 1
        if n % every == 0:
            refreeze()  # the records kept so far: out of the collector's rescans (loop.refreeze)
            r = _runnable()
            if r is not None:
                runnable.append(r)


async def run_plan(plan: WorkerPlan, send: SendFn, *, start_ns: int | None = None) -> WorkerOutcome:
    """Run one worker's plan in the running loop, starting at perf instant ``start_ns`` (default: now)."""
    runner = _Runner(plan, send)
    lag = array("q")
    if start_ns is not None:
        await sleep_until(runner.loop_time(start_ns), runner.loop)
    t0 = time.perf_counter_ns() if start_ns is None else start_ns
    cpu0 = time.process_time()
    wait0 = _run_delay_ns()
    runnable: list[int] = []
    sampler = runner.loop.create_task(_sample_lag(plan.lag_interval_s, lag, runnable))
    try:
        if plan.mode == "open":
            await runner.run_open(t0)
        else:
            await runner.run_closed(t0)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    end = time.perf_counter_ns()
    wait1 = _run_delay_ns()
    runner.records.sort(key=lambda r: r.index)
    return WorkerOutcome(worker=plan.worker, records=runner.records, start_ns=t0, end_ns=end,
                         loop_lag_ns=np.frombuffer(lag, dtype=np.int64).copy() if len(lag) else
                         np.zeros(0, np.int64),
                         cpu_s=time.process_time() - cpu0,
                         wait_s=None if wait0 is None or wait1 is None else (wait1 - wait0) / 1e9,
                         runnable=runnable)


async def run_load(spec: LoadSpec, send: SendFn) -> RunResult:
    """Run ``spec`` in the running event loop, calling ``send(index)`` for each request.

    Use this when the caller already has a loop and a client; :func:`run_load_sync` does the whole thing
    (loop, client lifetime, optional worker processes) from synchronous code.
    """
    wall = time.time_ns()
    (plan,) = make_plans(spec, 1)
    stat0 = cpu_times()
    out = await run_plan(plan, send)
    wall_s = max((out.end_ns - out.start_ns) / 1e9, 1e-9)
    check = build_self_check(spec.mode, out.records, [out.loop_lag_ns], [out.cpu_s / wall_s],
                             spec.limits, 1,
                             wait_fraction=[None if out.wait_s is None else out.wait_s / wall_s],
                             machine=machine_load(out.runnable, stat0, cpu_times()))
    return _mark_measured(RunResult(spec=spec, records=out.records, start_ns=out.start_ns, end_ns=out.end_ns,
                                    start_wall_ns=wall, self_check=check, workers=1))


def _mark_measured(result: RunResult) -> RunResult:
    """Tell the resource sampler of the current trial (if any) which span was measured: first measured send
    to last answer, so warm-up requests and seeding around the run stay out of the resource figures."""
    from pytest_hwbench.measure.samplers.monitor import mark_active

    sent = [r for r in result.records if not r.warmup and r.send_ns]
    if sent:
        mark_active(min(r.send_ns for r in sent), max(max(r.end_ns, r.send_ns) for r in sent))
    return result


async def run_with_client(spec: LoadSpec, client_factory: ClientFactory) -> RunResult:
    """Open a client, run ``spec`` through it, close it (even on error)."""
    client = await client_factory()
    try:
        return await run_load(spec, client.send)
    finally:
        await client.aclose()


def run_load_sync(spec: LoadSpec, client_factory: ClientFactory, *, workers: int = 1,
                  precise: bool = True, start_timeout_s: float = 120.0) -> RunResult:
    """Run ``spec`` from synchronous code (what the pytest plugin calls).

    ``workers == 1`` runs in this process on a fresh event loop (with µs timers when ``precise``);
    ``workers > 1`` spreads the run over that many processes (see ``multiproc``), for when one Python core
    cannot generate the load — ``client_factory`` must then be picklable.
    """
    if workers > 1:
        from pytest_hwbench.workloads.multiproc import run_multiprocess

        return _mark_measured(run_multiprocess(spec, client_factory, workers=workers, precise=precise,
                                               start_timeout_s=start_timeout_s))
    loop = new_event_loop(precise, resolve_event_loop(spec.event_loop, spec.mode))
    try:
        with precise_timers() if precise else contextlib.nullcontext(), frozen_heap():
            return loop.run_until_complete(run_with_client(spec, client_factory))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
