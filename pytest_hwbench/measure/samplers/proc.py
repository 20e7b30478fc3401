"""A process and its descendants: a service's server process tree, or the load generator (this process).

Why per-thread scheduler statistics: most servers that saturate do so on one thread (an event loop, a
Python interpreter under the GIL, Redis's main thread) long before the process reaches "N cores busy", and on
a shared machine a saturated thread may get only part of a core. ``/proc/<pid>/task/<tid>/schedstat`` gives,
per thread, nanoseconds on a CPU *and* nanoseconds runnable but waiting for one; their sum over wall time is
the thread's demand for CPU. A thread whose demand is ~100 % is CPU-bound whether or not other work on the
machine stole part of its core — the evidence that tells "the server needs more CPU" from "it is waiting".
Where schedstat is missing (non-Linux, kernels without it) CPU time comes from psutil and demand equals
on-CPU time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import psutil

from pytest_hwbench.measure.samplers.base import now_ns, rate

_MB = 1024 * 1024
_REFRESH_TICKS = 5  # re-list the tree's members every this many ticks (listing children walks /proc)


def read_schedstat(pid: int, tid: int) -> tuple[int, int] | None:
    """(ns on CPU, ns waiting on a run queue) of one thread, or None when unavailable."""
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
            parts = f.read().split()
        return int(parts[0]), int(parts[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int] | None:
    """Every descendant pid of ``pid``, from ``/proc/<pid>/task/<tid>/children`` (a few small reads);
    None when the kernel does not provide those files (then psutil's walk of all of /proc is used)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        tids = thread_ids(p)
        if not tids:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{p}/task/{tid}/children", "rb") as f:
                    kids = [int(k) for k in f.read().split()]
            except FileNotFoundError:
                if p == pid and tid == tids[0]:
                    return None
                continue
            except (OSError, ValueError):
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def thread_ids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return []


class ProcessTreeSource:
    """CPU, memory, I/O and hottest-thread demand of ``pid`` and its descendants.

    Series (``<prefix>`` is ``service`` or ``loadgen``): ``<prefix>_cpu_util`` (% of one core, summed over
    the tree), ``<prefix>_rss_mb``, ``<prefix>_hot_thread_pct`` (demand of the busiest thread: on CPU +
    waiting for a CPU, % of wall time; a tick may read a little over 100, see ``sample``),
    ``<prefix>_hot_thread_oncpu_pct``, ``<prefix>_runq_wait_pct`` (summed run-queue wait, % of one core: CPU
    starvation), ``<prefix>_threads``, ``<prefix>_io_read_mb_s``,
    ``<prefix>_io_write_mb_s``, ``<prefix>_alive`` (1 while the root process lives).

    ``exclude_pids`` (called at each re-listing) removes other trees nested in this one: the load generator
    is this pytest process, which is also the parent of the services it started. ``exclude_tids`` removes
    threads, e.g. the sampler's own thread, whose cost is reported apart as ``sampler_cpu_util``.
    """

    def __init__(self, pid: int, prefix: str, *, exclude_pids: Callable[[], set[int]] | None = None,
                 exclude_tids: Callable[[], set[int]] | None = None) -> None:
        self.pid, self.prefix, self.name = pid, prefix, f"{prefix}:{pid}"
        self._exclude_pids = exclude_pids or (lambda: set())
        self._exclude_tids = exclude_tids or (lambda: set())
        self._procs: list[psutil.Process] = []
        self._ticks = 0
        self._prev: tuple[int, dict[tuple[int, int], tuple[int, int]], float, tuple[int, int]] | None = None
        self._tracked_tids: set[int] = set()

    def _members(self) -> list[psutil.Process]:
        if self._ticks % _REFRESH_TICKS == 0 or not self._procs:
            excluded = self._exclude_pids()
            known = {p.pid: p for p in self._procs}  # keep Process objects: psutil caches per object
            pids = descendants(self.pid)
            try:
                if pids is None:
                    root = psutil.Process(self.pid)
                    pids = [c.pid for c in root.children(recursive=True)]
                skip = set(excluded)
                for ex in excluded:
                    skip.update(descendants(ex) or [])
                procs = []
                for pid in [self.pid, *pids]:
                    if pid not in skip:
                        with contextlib.suppress(psutil.Error):
                            procs.append(known.get(pid) or psutil.Process(pid))
            except psutil.Error:
                procs = []
            self._procs = procs
        self._ticks += 1
        return self._procs

    def _read(self) -> tuple[int, dict[tuple[int, int], tuple[int, int]], float, tuple[int, int], int, int]:
        """(instant, per-thread schedstat, CPU seconds from psutil, io bytes, rss, threads)."""
        t = now_ns()
        threads: dict[tuple[int, int], tuple[int, int]] = {}
        cpu_s, rss, n_threads, io_r, io_w = 0.0, 0, 0, 0, 0
        skip_tids = self._exclude_tids()
        for p in self._members():
            try:
                with p.oneshot():
                    times = p.cpu_times()
                    cpu_s += times.user + times.system
                    rss += p.memory_info().rss
                    with contextlib.suppress(psutil.Error, AttributeError):
                        io = p.io_counters()
                        io_r, io_w = io_r + io.read_bytes, io_w + io.write_bytes
            except psutil.Error:
                continue
            for tid in thread_ids(p.pid):
                if tid in skip_tids:
                    continue
                n_threads += 1
                st = read_schedstat(p.pid, tid)
                if st is not None:
                    threads[(p.pid, tid)] = st
        return t, threads, cpu_s, (io_r, io_w), rss, n_threads

    def prime(self) -> None:
        self._ticks = 0
        t, threads, cpu_s, io, _, _ = self._read()
        self._prev = (t, threads, cpu_s, io)

    def sample(self) -> dict[str, float]:
        t, threads, cpu_s, io, rss, n_threads = self._read()
        assert self._prev is not None, "prime() first"
        t0, threads0, cpu_s0, io0 = self._prev
        self._prev = (t, threads, cpu_s, io)
        dt = (t - t0) / 1e9
        p = self.prefix
        out: dict[str, float] = {f"{p}_rss_mb": rss / _MB, f"{p}_threads": float(n_threads),
                                 f"{p}_alive": 1.0 if psutil.pid_exists(self.pid) else 0.0,
                                 f"{p}_io_read_mb_s": rate(io[0], io0[0], dt) / _MB,
                                 f"{p}_io_write_mb_s": rate(io[1], io0[1], dt) / _MB}
        if threads and dt > 0:
            oncpu_total, wait_total, hot, hot_oncpu = 0.0, 0.0, 0.0, 0.0
            for key, (run1, wait1) in threads.items():
                run0, wait0 = threads0.get(key, (run1, wait1)) if key in threads0 else (run1, wait1)
                if key not in threads0:
                    continue  # a thread born in this interval: no baseline reading yet
                run, wait = max(run1 - run0, 0) / 1e9 / dt, max(wait1 - wait0, 0) / 1e9 / dt
                oncpu_total += run
                wait_total += wait
                if run + wait > hot:
                    hot, hot_oncpu = run + wait, run
            out[f"{p}_cpu_util"] = 100.0 * oncpu_total
            out[f"{p}_runq_wait_pct"] = 100.0 * wait_total
            # Not clipped at 100: the kernel accounts a wait when the thread next gets a CPU, so a tick may show
            # a little over 100 after one that showed under; clipping would bias every average low.
            out[f"{p}_hot_thread_pct"] = 100.0 * hot
            out[f"{p}_hot_thread_oncpu_pct"] = 100.0 * hot_oncpu
        else:
            out[f"{p}_cpu_util"] = 100.0 * rate(cpu_s, cpu_s0, dt)
        return out

    def close(self) -> None:
        self._procs = []
