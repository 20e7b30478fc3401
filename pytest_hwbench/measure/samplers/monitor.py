"""The sampling thread, and the per-test monitor that runs it during each measured trial.

Why a thread (one per process, shared by every test): the load engine's event loop must not pay for
sampling (a 2 ms psutil walk inside the loop is 2 ms of lag on every request in flight), and the engine may
run in several processes. A plain thread that sleeps between ticks costs the loop only the GIL hand-offs
of each tick; its own CPU time is measured (series
``sampler_cpu_util``) and documented in ``docs/performance.md``.

When it samples: only in measured trials (the plugin starts it at a trial's start and stops it at its end;
warm-up trials are not sampled). Inside a trial a benchmark narrows the window to its measured phase with
``with hwbench.measured_window():`` or, after the fact, ``hwbench.mark_measured(start_ns, end_ns)`` (the load
engine's first measured send to its last answer); then only ticks whose interval midpoint lies in a marked
window are kept, so seeding, warm-up requests and teardown inside the body never reach the figures. Entering
and leaving ``measured_window()`` forces a tick, so ticks line up with the window's edges.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pytest_hwbench.measure.samplers.base import Source, Timeline, now_ns
from pytest_hwbench.measure.samplers.proc import read_schedstat

_ACTIVE: list[ResourceMonitor] = []  # the monitor sampling the current trial in this process, if any


def mark_active(start_ns: int, end_ns: int) -> None:
    """Mark a measured span on whichever monitor is sampling now (the load engine calls this with its first
    measured send and last answer, so every engine-driven workload narrows the window without knowing the
    ``hwbench`` fixture)."""
    if _ACTIVE:
        _ACTIVE[-1].mark(start_ns, end_ns)


@dataclass(frozen=True)
class Target:
    """A service process tree to sample: ``pid`` of its root; ``container`` adds its cgroup's figures."""

    name: str
    pid: int
    container: bool = False


class _SelfCost:
    """The sampling thread's own CPU time (series ``sampler_cpu_util``, % of one core)."""

    name = "sampler"

    def __init__(self) -> None:
        self.tid = 0
        self._prev: tuple[int, int] | None = None

    def prime(self) -> None:
        st = read_schedstat(os.getpid(), self.tid)
        self._prev = (now_ns(), st[0]) if st else None

    def sample(self) -> dict[str, float]:
        st = read_schedstat(os.getpid(), self.tid)
        if st is None or self._prev is None:
            return {}
        t = now_ns()
        t0, run0 = self._prev
        self._prev = (t, st[0])
        return {"sampler_cpu_util": 100.0 * (st[0] - run0) / max(t - t0, 1)}

    def close(self) -> None:
        pass


class SamplingJob:
    """One trial's sampling: its sources, interval and timeline. Ticked by the process's sampling thread;
    its last reading is taken by whoever ends it (so ending a trial never waits for a thread wake-up)."""

    def __init__(self, sources: list[Source] | Callable[[], list[Source]], interval_s: float) -> None:
        # A callable is called at priming, on the sampling thread: a trial that ends before its first
        # reading (a trivial test) then never builds its sources (~0.1 ms of /sys and /proc look-ups).
        self._make_sources = sources if callable(sources) else None
        self.sources: list[Source] = [] if callable(sources) else sources
        self.interval_s = interval_s
        self.timeline = Timeline(interval_s)
        self.errors: list[str] = []
        self.primed = False
        self.poked = False
        self.last = 0
        # The first reading waits a fifth of a tick: a trial shorter than that (a trivial test) costs no
        # reading at all, and a longer one loses at most that much of its start.
        self.deadline = now_ns() + int(interval_s * 2e8)

    def prime(self) -> None:
        if self._make_sources is not None:
            try:
                self.sources = list(self._make_sources())
            except Exception as err:  # never kill the sampling thread: no sources, the reason kept
                self.errors.append(f"sources: {err}")
            self._make_sources = None
        for src in list(self.sources):
            try:
                src.prime()
            except Exception as err:  # a source that cannot read is dropped, with the reason kept
                self.errors.append(f"{src.name}: {err}")
                self.sources.remove(src)
        self.primed = True
        self.last = now_ns()
        self.deadline = self.last + int(self.interval_s * 1e9)

    def tick(self) -> None:
        values: dict[str, float] = {}
        for src in self.sources:
            try:
                values.update(src.sample())
            except Exception as err:
                if len(self.errors) < 20:
                    self.errors.append(f"{src.name}: {err}")
        t = now_ns()
        self.timeline.add(t, t - self.last, values)
        self.last = t
        self.deadline = max(self.deadline + int(self.interval_s * 1e9), t + int(self.interval_s * 5e8))

    def worth_a_tick(self) -> bool:
        """An interval shorter than a fifth of a tick measures nothing but jitter."""
        return self.primed and now_ns() - self.last >= self.interval_s * 2e8


class _SamplingThread:
    """The one sampling thread of this process (started on first use, a daemon): sleeps until the next
    deadline of any running job, primes new jobs, ticks due ones. Begin and end of a trial only take a lock
    and set an event, so they add no thread start, join or wake-up wait to the trial."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.jobs: list[SamplingJob] = []
        self.native_id = 0
        self.closed = False  # set (under ``lock``) when the thread exits after idling
        # When the thread next wakes by itself (ns, under ``lock``): ``add`` sets ``wake`` only for a job due
        # before then. Waking a sleeping thread per trial cost a thread switch (~0.3 ms) per trivial test.
        self.sleep_until = 0
        self._last_job_ns = 0  # when the thread last saw a job (it lingers on a short beat after that)
        self._beat_ns = 0  # the shortest first-reading delay of the jobs it saw: its beat while lingering
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hwbench-sampler", daemon=True)
        self._thread.start()
        self._started.wait(5.0)

    def add(self, job: SamplingJob) -> bool:
        """Queue ``job``; False when this thread has already exited (idle), so the caller needs a new one."""
        with self.lock:
            if self.closed:
                return False
            self.jobs.append(job)
            # Registered here, not only when the thread sees the job: under the GIL a trivial test's job is
            # often added and finished before the thread runs at all, and a thread that never saw a job
            # would sleep "until woken" and need a wake-up (a thread switch) for every trial.
            self._last_job_ns = now_ns()
            beat = int(job.interval_s * 2e8)
            self._beat_ns = min(self._beat_ns, beat) if self._beat_ns > 0 else beat
            due_early = job.deadline < self.sleep_until
        if due_early:
            self.wake.set()
        return True

    def finish(self, job: SamplingJob) -> Timeline:
        """Remove ``job`` and close its last interval here (when it has one worth measuring)."""
        with self.lock:
            if job in self.jobs:
                self.jobs.remove(job)
            if job.worth_a_tick():
                job.tick()
        return job.timeline

    def poke(self, job: SamplingJob) -> None:
        job.poked = True
        self.wake.set()

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        self._started.set()
        while True:
            with self.lock:
                now = now_ns()
                for job in self.jobs:
                    if not job.primed:
                        if now >= job.deadline:
                            job.prime()
                    elif (job.poked or now >= job.deadline) and job.worth_a_tick():
                        job.tick()
                    job.poked = False
                timeout = self._next_sleep(now)
            if not self.wake.wait(_IDLE_EXIT_S if timeout is None else max(timeout, 0.0)) and timeout is None:
                with self.lock:
                    if not self.jobs:  # idle for a while: exit, so no thread outlives its use
                        self.closed = True
                        return
            self.wake.clear()

    def _next_sleep(self, now: int) -> float | None:
        """Seconds until the thread must wake by itself (None: idle, until ``add`` wakes it); sets
        ``sleep_until``. With no job but one seen within ``_LINGER_S``, it wakes on a beat of the first-reading
        delay: a job added meanwhile is due no earlier than the next beat, so ``add`` need not wake it (a run
        of trivial tests adds one job per test, each finished before its first reading)."""
        if self.jobs:
            self._last_job_ns = now
            self._beat_ns = min(int(j.interval_s * 2e8) for j in self.jobs)
            wake_at: int | None = min(j.deadline for j in self.jobs)
        elif now - self._last_job_ns < _LINGER_S * 1e9 and self._beat_ns > 0:
            wake_at = now + self._beat_ns
        else:
            wake_at = None
        self.sleep_until = wake_at if wake_at is not None else 2**63
        return None if wake_at is None else (wake_at - now_ns()) / 1e9


_IDLE_EXIT_S = 30.0
_LINGER_S = 2.0
_THREAD: list[_SamplingThread] = []
_THREAD_LOCK = threading.Lock()


def sampling_thread(renew: bool = False) -> _SamplingThread:
    """The process's sampling thread, started on first use (and again after it exited while idle)."""
    with _THREAD_LOCK:
        if renew or not _THREAD or _THREAD[0].closed or not _THREAD[0]._thread.is_alive():
            _THREAD[:] = [_SamplingThread()]
        return _THREAD[0]


class ResourceMonitor:
    """Per-test resource sampling: one :class:`SamplingJob` per measured trial, a trimmed timeline each.

    ``targets`` is called at the first measured trial (services start lazily, after the fixture exists).
    """

    def __init__(self, *, interval_s: float = 0.2, targets: Callable[[], list[Target]] | None = None,
                 gpu: bool = True, loadgen: bool = True) -> None:
        self.interval_s = interval_s
        self._targets_fn = targets or (lambda: [])
        self.gpu, self.loadgen = gpu, loadgen
        self.timelines: list[Timeline] = []
        self.notes: list[str] = []
        self.targets: list[Target] | None = None
        self._sources: list[Source] | None = None
        self._job: SamplingJob | None = None
        self._thread: _SamplingThread | None = None
        self._self_cost = _SelfCost()
        self._windows: list[tuple[int, int]] = []
        self._open: int | None = None

    # -- sources (built once per test, at the first reading, on the sampling thread) ---------------------
    def _resolve_targets(self) -> list[Target]:
        """The service processes to sample, asked for on the test's thread (the service hub may ask Docker,
        which must not happen under the sampling thread's lock)."""
        try:
            return list(self._targets_fn())
        except Exception as err:
            self.notes.append(f"service processes not sampled: {err}")
            return []

    def _job_sources(self) -> list[Source]:
        if self._sources is None:
            self._sources = self._build_sources()
        return list(self._sources)

    def _build_sources(self) -> list[Source]:
        from pytest_hwbench.measure.samplers.container import CgroupSource
        from pytest_hwbench.measure.samplers.host import HostSource
        from pytest_hwbench.measure.samplers.proc import ProcessTreeSource

        targets = self.targets or []
        sources: list[Source] = [HostSource(), self._self_cost]
        service_pids = {t.pid for t in targets}
        for i, t in enumerate(targets):
            prefix = "service" if i == 0 else f"service_{t.name}"
            sources.append(ProcessTreeSource(t.pid, prefix))
            if t.container:
                cg = CgroupSource(t.pid)
                if cg.available:
                    sources.append(cg)
                else:
                    self.notes.append(f"container of service {t.name!r}: cgroup files not readable")
        if self.loadgen:
            sources.append(ProcessTreeSource(os.getpid(), "loadgen", exclude_pids=lambda: service_pids,
                                             exclude_tids=lambda: {self._self_cost.tid}))
        if self.gpu:
            from pytest_hwbench.measure.samplers.nvml import nvml_source

            gpu, why = nvml_source()
            if gpu is not None:
                sources.append(gpu)
            else:
                self.notes.append(f"GPU not sampled: {why}")
        return sources

    # -- trials (called through the recorder by the plugin's trial loop) ---------------------------------
    def begin_trial(self) -> None:
        """Start sampling a measured trial (returns at once: the first reading is taken on the thread)."""
        if self._job is not None:
            self.end_trial()
        if self.targets is None:
            self.targets = self._resolve_targets()
        self._windows, self._open = [], None
        self._job = SamplingJob(self._job_sources, self.interval_s)
        thread = sampling_thread()
        if not thread.add(self._job):  # it exited (idle) between the check and the add
            thread = sampling_thread(renew=True)
            thread.add(self._job)
        self._thread = thread
        self._self_cost.tid = thread.native_id
        _ACTIVE.append(self)

    def end_trial(self) -> Timeline | None:
        """Stop sampling; the trial's timeline, trimmed to its marked windows (if any). None when idle."""
        job, self._job = self._job, None
        if job is None:
            return None
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._open is not None:
            self._windows.append((self._open, now_ns()))
            self._open = None
        timeline = self._thread.finish(job) if self._thread is not None else job.timeline
        for err in job.errors:
            if err not in self.notes:
                self.notes.append(err)
        if self._windows:
            timeline = timeline.within(self._windows)
        self.timelines.append(timeline)
        return timeline

    @property
    def running(self) -> bool:
        return self._job is not None

    # -- measured windows (called by benchmarks and workloads) -------------------------------------------
    @contextlib.contextmanager
    def window(self) -> Iterator[None]:
        """Mark the block as the measured phase of this trial (see the module doc)."""
        job = self._job
        if job is None:
            yield
            return
        thread = self._thread
        assert thread is not None
        thread.poke(job)
        start = now_ns()
        try:
            yield
        finally:
            self._windows.append((start, now_ns()))
            thread.poke(job)

    def mark(self, start_ns: int, end_ns: int) -> None:
        """Mark ``[start_ns, end_ns]`` (``perf_counter_ns`` instants) as measured, after the fact."""
        if self._job is not None and end_ns > start_ns:
            self._windows.append((int(start_ns), int(end_ns)))

    def close(self) -> None:
        """End any trial still sampling and release the sources (the fixture's teardown)."""
        with contextlib.suppress(Exception):
            self.end_trial()
        for src in self._sources or []:
            with contextlib.suppress(Exception):
                src.close()
        self._sources = None


def monitor_for(settings: Any, service_pids: Callable[[], dict[str, dict[str, Any]]]) -> ResourceMonitor | None:
    """The monitor for one test from the recipe's ``resources`` settings; ``service_pids`` gives
    ``{name: {"pid", "container"}}`` of the test's services (``ServiceHub.sampling_pids``)."""
    if not getattr(settings, "enabled", True):
        return None

    def targets() -> list[Target]:
        return [Target(name, int(t["pid"]), bool(t.get("container"))) for name, t in service_pids().items()]

    return ResourceMonitor(interval_s=getattr(settings, "interval_ms", 200) / 1000.0, targets=targets,
                           gpu=getattr(settings, "gpu", True))
