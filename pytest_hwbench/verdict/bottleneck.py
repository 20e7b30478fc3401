"""Bottleneck attribution: which resource most likely limited a measurement, with its evidence and a next step.

Why a hypothesis and not a verdict: resource figures show what was saturated, not what would have helped;
the attribution names the most likely cause, the numbers that support it, and what to try next. It never
changes a test's outcome, with one exception that the design requires: a **client-bound** measurement is
invalid (it measured the load generator), so the test's result lists it as invalid and it is never a PASS.

Rules, in order (the first that holds is the cause; the others that hold are listed as "also"):

============================  ==========================================================================
cause                         evidence that triggers it
============================  ==========================================================================
client-bound (invalid)        a load-generator thread demanded (median tick) >= 95 % of a core (on a CPU or waiting for
                              one) while a service was measured, or the load engine's self-check flagged
                              the client and no server resource below was saturated (if one was, the
                              client's lag is its side effect on a shared machine and is listed as
                              evidence). The measurement is then invalid: never a PASS (``verdict.decide``
                              makes it a WARN, and it is not saved as a baseline)
memory pressure               swapping (>= 1 MB/s in or out), memory PSI >= 10 %, an OOM kill in the
                              container, host memory >= 95 % used, or the service's RSS grew by
                              >= 64 MB and >= 20 % during the measured windows
storage-bound                 the busiest disk busy >= 80 % of the time or >= 4 requests in flight on average
                              (fast SSDs serve many at once, so "busy" alone says little), I/O PSI >= 30 %,
                              or iowait >= 20 %
GPU-bound                     the busiest GPU executing kernels >= 90 % of the time
server CPU-bound              a service thread demanded (median tick) >= 90 % of a core, the service used >= 90 % of the
                              cores it may use (CPU count or container quota), or its container was
                              throttled by its CPU quota >= 10 % of the time
queueing / overload           errors >= 1 % of requests, an open loop achieving < 95 % of its offered
                              rate, or (in a sweep, past the knee) throughput flat or falling (at most
                              10 % above the knee point's) while p99 rose >= 1.5x
no resource saturated         none of the above: the limit is in the server's configuration
============================  ==========================================================================

Thresholds are deliberately high: on a shared machine a resource at 70 % is busy, not the bottleneck, and an
attribution that names a resource which was not saturated sends the engineer the wrong way. Statistics are
over every measured tick of the test: ``mean`` for utilisations (a short spike is not a bottleneck), the
median tick for a thread's CPU demand (saturated in at least half of the ticks: a thread that waits now and
then for a starved peer on a shared machine is still the limit).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from pytest_hwbench.measure.fingerprint import logical_cpus

CLIENT_BOUND = "client-bound"
MEMORY = "memory pressure"
STORAGE = "storage-bound"
GPU = "GPU-bound"
SERVER_CPU = "server CPU-bound"
BENCH_CPU = "CPU-bound"
QUEUEING = "queueing/overload"
NONE = "no resource saturated"
NOT_SAMPLED = "not sampled"

THREAD_SATURATED_PCT = 90.0
CLIENT_THREAD_SATURATED_PCT = 95.0  # stricter: this one invalidates the measurement
CORES_SATURATED_FRACTION = 0.90
THROTTLED_PCT = 10.0
GPU_SATURATED_PCT = 90.0
DISK_BUSY_PCT = 80.0
DISK_QUEUE = 4.0
PSI_IO_PCT = 30.0
IOWAIT_PCT = 20.0
PSI_MEMORY_PCT = 10.0
SWAP_MB_S = 1.0
HOST_MEM_USED_PCT = 95.0
RSS_GROWTH_MB = 64.0
RSS_GROWTH_FRACTION = 0.20
ERROR_RATE = 0.01
ACHIEVED_RATIO = 0.95
P99_RISE = 1.5
FLAT_THROUGHPUT = 0.10

_NEXT: dict[str, str] = {
    CLIENT_BOUND: "the numbers measure the load generator, not the server: use more client worker processes "
                  "(settings.llm.client_workers), a lower load, or a less loaded client machine, then rerun",
    MEMORY: "look for a leak or an undersized cache/KV budget; give the service more memory or lower the load "
            "(and check the service log for OOM or eviction messages)",
    STORAGE: "the disk is the limit: move data to faster storage, enlarge the cache so reads stay in memory, "
             "or check the I/O scheduler and queue depth",
    GPU: "the GPU is the limit: compare with the expected throughput for this GPU and driver; a regression here "
         "points at the driver, firmware, clocks or the kernel path, not the host",
    SERVER_CPU: "the server needs more CPU: give it more cores or threads/workers, pin it away from other load, "
                "or profile its hottest thread",
    BENCH_CPU: "the benchmark itself is CPU-bound, as a CPU benchmark should be; compare clocks and the "
               "environment diff if it regressed",
    QUEUEING: "the server accepts more work than it completes: lower the offered load, or raise its concurrency "
              "/ batch / connection limits if resources allow",
    NONE: "no resource saturated: look at the server's configuration (concurrency, batch size, worker count, "
          "connection pool) and its log",
    NOT_SAMPLED: "enable resource sampling (recipe resources.enabled) to get an attribution",
}


@dataclass
class Attribution:
    """A bottleneck hypothesis: ``cause`` (one of the module's constants), the evidence lines, the next action,
    ``valid`` (False when the measurement itself is invalid), and other causes that also held."""

    cause: str
    evidence: list[str] = field(default_factory=list)
    next_action: str = ""
    valid: bool = True
    also: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line for the terminal."""
        text = f"bottleneck: {self.cause}"
        if not self.valid:
            text += " (measurement invalid)"
        if self.evidence:
            text += " — " + "; ".join(self.evidence)
        if self.also:
            text += f" (also: {', '.join(self.also)})"
        return text + f". Next: {self.next_action}"

    def to_dict(self) -> dict[str, Any]:
        # Spelled out rather than ``dataclasses.asdict`` (which deep-copies every field): asdict was a third
        # of a millisecond per measuring test. Same keys, same order, fresh lists.
        return {"cause": self.cause, "evidence": list(self.evidence), "next_action": self.next_action,
                "valid": self.valid, "also": list(self.also)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attribution:
        return cls(cause=str(data.get("cause", NONE)), evidence=list(data.get("evidence") or []),
                   next_action=str(data.get("next_action", "")), valid=bool(data.get("valid", True)),
                   also=list(data.get("also") or []))


@dataclass(frozen=True)
class TestFacts:
    __test__ = False  # not a pytest test class

    """What a test's own measurements say, besides resources (filled from its result by :func:`facts_of`)."""

    has_service: bool = False
    client_bound_reasons: tuple[str, ...] = ()
    error_rate: float | None = None
    offered_rps: float | None = None
    achieved_rps: float | None = None
    cpu_count: int = 0


def _stat(series: Mapping[str, Mapping[str, Any]], name: str, stat: str = "mean") -> float | None:
    value = (series.get(name) or {}).get(stat)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _ge(value: float | None, bound: float) -> TypeGuard[float]:
    return value is not None and value >= bound


def _client(series: Mapping[str, Mapping[str, Any]], facts: TestFacts) -> list[str]:
    ev = [f"load engine self-check: {r}" for r in facts.client_bound_reasons]
    hot = _stat(series, "loadgen_hot_thread_pct", "p50")
    if facts.has_service and _ge(hot, CLIENT_THREAD_SATURATED_PCT):
        oncpu = _stat(series, "loadgen_hot_thread_oncpu_pct", "p50")
        ev.append(f"load generator's busiest thread demanded {min(hot, 100.0):.0f}% of a core"
                  + (f" ({min(oncpu, hot, 100.0):.0f}% on a CPU, the rest waiting for one)" if oncpu is not None
                     else ""))
    return ev


def _memory(series: Mapping[str, Mapping[str, Any]]) -> list[str]:
    ev = []
    sin, sout = _stat(series, "host_swap_in_mb_s"), _stat(series, "host_swap_out_mb_s")
    if _ge(sin, SWAP_MB_S) or _ge(sout, SWAP_MB_S):
        ev.append(f"swapping {sin or 0:.1f} MB/s in, {sout or 0:.1f} MB/s out")
    psi = _stat(series, "psi_memory_pct")
    if _ge(psi, PSI_MEMORY_PCT):
        ev.append(f"tasks stalled on memory {psi:.0f}% of the time (PSI)")
    oom_first, oom_last = _stat(series, "container_oom_kills", "first"), _stat(series, "container_oom_kills", "last")
    if oom_first is not None and oom_last is not None and oom_last > oom_first:
        ev.append(f"{oom_last - oom_first:.0f} OOM kill(s) in the service's container")
    used = _stat(series, "host_mem_used_pct", "max")
    if _ge(used, HOST_MEM_USED_PCT):
        ev.append(f"host memory {used:.0f}% used")
    for name in sorted(series):
        if not (name.startswith("service") and name.endswith("_rss_mb")):
            continue
        first, last = _stat(series, name, "first"), _stat(series, name, "last")
        slope, span = _stat(series, name, "slope_per_s"), _stat(series, name, "span_s")
        if first is None or last is None or slope is None or span is None:
            continue
        growth = slope * span
        if growth >= RSS_GROWTH_MB and growth >= RSS_GROWTH_FRACTION * max(first, 1.0) and last > first:
            ev.append(f"{name.removesuffix('_rss_mb')} RSS grew {first:.0f} -> {last:.0f} MB "
                      f"({slope:.1f} MB/s over {span:.1f} s measured)")
    return ev


def _storage(series: Mapping[str, Mapping[str, Any]]) -> list[str]:
    ev = []
    busy, queue = _stat(series, "disk_busy_pct"), _stat(series, "disk_queue")
    if _ge(busy, DISK_BUSY_PCT) or _ge(queue, DISK_QUEUE):
        ev.append(f"busiest disk busy {busy or 0:.0f}% of the time"
                  + (f", {queue:.1f} requests in flight on average" if queue is not None else ""))
        read, write = _stat(series, "disk_read_mb_s"), _stat(series, "disk_write_mb_s")
        if read is not None and write is not None:
            ev.append(f"disk read {read:.0f} MB/s, write {write:.0f} MB/s")
    psi = _stat(series, "psi_io_pct")
    if _ge(psi, PSI_IO_PCT):
        ev.append(f"tasks stalled on I/O {psi:.0f}% of the time (PSI)")
    iowait = _stat(series, "host_iowait_pct")
    if _ge(iowait, IOWAIT_PCT):
        ev.append(f"CPU iowait {iowait:.0f}%")
    return ev


def _gpu(series: Mapping[str, Mapping[str, Any]]) -> list[str]:
    util = _stat(series, "gpu_util")
    if not _ge(util, GPU_SATURATED_PCT):
        return []
    ev = [f"busiest GPU executing kernels {util:.0f}% of the time"]
    mem = _stat(series, "gpu_mem_mb", "max")
    if mem is not None:
        ev.append(f"GPU memory up to {mem:.0f} MB")
    throttle = _stat(series, "gpu_throttle", "max")
    if throttle:
        from pytest_hwbench.measure.samplers.nvml import throttle_names

        ev.append("clocks held back: " + ", ".join(throttle_names(int(throttle))))
    return ev


def _cpu(series: Mapping[str, Mapping[str, Any]], facts: TestFacts) -> tuple[str, list[str]]:
    prefix = "service" if facts.has_service else "loadgen"
    ev = []
    hot = _stat(series, f"{prefix}_hot_thread_pct", "p50")
    if _ge(hot, THREAD_SATURATED_PCT):
        oncpu = _stat(series, f"{prefix}_hot_thread_oncpu_pct", "p50")
        who = "the server's busiest thread" if facts.has_service else "the benchmark's busiest thread"
        hot, oncpu = min(hot, 100.0), None if oncpu is None else min(oncpu, hot, 100.0)
        ev.append(f"{who} demanded {hot:.0f}% of a core"
                  + (f" ({oncpu:.0f}% on a CPU, {hot - oncpu:.0f}% waiting for one)" if oncpu is not None else ""))
    util = _stat(series, f"{prefix}_cpu_util")
    cores = _stat(series, "container_cpu_limit", "last") if facts.has_service else None
    cores = cores or float(facts.cpu_count or os.cpu_count() or 1)
    if _ge(util, 100.0 * cores * CORES_SATURATED_FRACTION):
        ev.append(f"{prefix} used {util:.0f}% CPU of {cores:g} usable core(s)")
    throttled = _stat(series, "container_cpu_throttled_pct")
    if facts.has_service and _ge(throttled, THROTTLED_PCT):
        ev.append(f"container throttled by its CPU quota {throttled:.0f}% of the time")
    if ev:
        host = _stat(series, "host_cpu_util")
        if host is not None:
            ev.append(f"host CPU {host:.0f}% busy")
    return (SERVER_CPU if facts.has_service else BENCH_CPU), ev


def _queueing(facts: TestFacts) -> list[str]:
    ev = []
    if _ge(facts.error_rate, ERROR_RATE):
        ev.append(f"{100 * (facts.error_rate or 0):.1f}% of requests failed")
    if facts.offered_rps and facts.achieved_rps is not None and facts.achieved_rps < ACHIEVED_RATIO * facts.offered_rps:
        ev.append(f"achieved {facts.achieved_rps:.1f} of {facts.offered_rps:.1f} req/s offered")
    return ev


def attribute(series: Mapping[str, Mapping[str, Any]] | None, facts: TestFacts,
              extra_queueing: Sequence[str] = ()) -> Attribution:
    """The attribution for one measurement from its per-series summary (``resources.series`` of a result)."""
    if not series:
        return Attribution(NOT_SAMPLED, next_action=_NEXT[NOT_SAMPLED])
    found: list[tuple[str, list[str]]] = []
    for cause, ev in ((MEMORY, _memory(series)), (STORAGE, _storage(series)), (GPU, _gpu(series))):
        if ev:
            found.append((cause, ev))
    cpu_cause, cpu_ev = _cpu(series, facts)
    if cpu_ev:
        found.append((cpu_cause, cpu_ev))
    client = _client(series, facts)
    own_thread_saturated = facts.has_service and _ge(_stat(series, "loadgen_hot_thread_pct", "p50"),
                                                     CLIENT_THREAD_SATURATED_PCT)
    if client and found and not own_thread_saturated:
        # The engine saw its loop lag, but its own thread was not saturated and a server resource was: the
        # lag is the side effect of that shortage (client and server share the machine), not the limit.
        found[0][1].append("client lag is a side effect: " + "; ".join(client))
    elif client:
        found.insert(0, (CLIENT_BOUND, client))
    queue_ev = _queueing(facts) + list(extra_queueing)
    if queue_ev:
        if found:  # queueing is then the symptom of the saturated resource: keep it as evidence
            found[0][1].extend(queue_ev)
        else:
            found.append((QUEUEING, queue_ev))
    if not found:
        return Attribution(NONE, evidence=_quiet_evidence(series, facts), next_action=_NEXT[NONE])
    cause, evidence = found[0]
    return Attribution(cause, evidence=evidence, next_action=_NEXT[cause], valid=cause != CLIENT_BOUND,
                       also=[c for c, _ in found[1:]])


def _quiet_evidence(series: Mapping[str, Mapping[str, Any]], facts: TestFacts) -> list[str]:
    """The highest readings, to show how far from saturation each resource stayed."""
    parts = []
    for name, label in (("service_hot_thread_pct", "server's busiest thread"), ("host_cpu_util", "host CPU"),
                        ("disk_busy_pct", "disk busy"), ("gpu_util", "GPU")):
        value = _stat(series, name)
        if value is not None and (facts.has_service or not name.startswith("service")):
            parts.append(f"{label} {value:.0f}%")
    return [", ".join(parts)] if parts else []


# -- reading a result (results.json entry / payload) -----------------------------------------------------------
#: The metrics :func:`facts_of` reads from a result: a caller building a result only for the attribution
#: needs to encode no others.
METRICS_READ: tuple[str, ...] = ("error_rate",)


def facts_of(result: Mapping[str, Any]) -> TestFacts:
    """The non-resource facts of one test result: whether it measured a service, the load engine's
    self-check (from ``extra``), the error rate and the open loop's offered vs achieved rate."""
    reasons: list[str] = []
    offered = achieved = None
    for note in (result.get("extra") or {}).values():
        if not isinstance(note, Mapping):
            continue
        for trial in note.get("trials") or []:
            check = (trial or {}).get("self_check") or {}
            if check.get("client_bound"):
                reasons.extend(r for r in check.get("reasons") or [] if r not in reasons)
            if check.get("offered_rate_rps") and check.get("achieved_rate_rps") is not None:
                offered, achieved = float(check["offered_rate_rps"]), float(check["achieved_rate_rps"])
    metrics = result.get("metrics") or {}
    err = ((metrics.get("error_rate") or {}).get("summary") or {}).get("mean")
    return TestFacts(has_service=bool((result.get("resources") or {}).get("services")),
                     client_bound_reasons=tuple(reasons),
                     error_rate=float(err) if isinstance(err, (int, float)) else None,
                     offered_rps=offered, achieved_rps=achieved, cpu_count=logical_cpus())


def attribute_result(result: Mapping[str, Any]) -> Attribution:
    """The attribution of one test result (payload or results.json entry)."""
    return attribute((result.get("resources") or {}).get("series"), facts_of(result))


def attribute_sweep(loads: Sequence[float], results: Sequence[Mapping[str, Any]], *, throughput: str,
                    latency: str | None, knee_load: float | None) -> list[dict[str, Any]]:
    """Per sweep point: its own attribution, plus the sweep's queueing evidence past the knee (throughput at
    most 10 % above the knee point's, i.e. flat or falling, while the latency p99 rose >= 1.5x)."""
    def stat(r: Mapping[str, Any], metric: str, key: str) -> float | None:
        value = (((r.get("metrics") or {}).get(metric) or {}).get("summary") or {}).get(key)
        return float(value) if isinstance(value, (int, float)) else None

    ref = None
    if knee_load is not None:
        at_or_below = [i for i, load in enumerate(loads) if load <= knee_load]
        ref = at_or_below[-1] if at_or_below else 0
    lat_metric, _, lat_stat = (latency or "").partition(".")
    out = []
    for load, r in zip(loads, results, strict=True):
        extra: list[str] = []
        past = ref is not None and load > loads[ref]
        if past and ref is not None:
            t_ref, t_here = stat(results[ref], throughput, "p50"), stat(r, throughput, "p50")
            l_ref = stat(results[ref], lat_metric, lat_stat or "p99") if latency else None
            l_here = stat(r, lat_metric, lat_stat or "p99") if latency else None
            if (t_ref and t_here is not None and t_here <= (1 + FLAT_THROUGHPUT) * t_ref and l_ref
                    and l_here is not None and l_here >= P99_RISE * l_ref):
                extra.append(f"past the knee: {throughput} flat ({t_here:.3g} vs {t_ref:.3g} at load "
                             f"{loads[ref]:g}) while {latency} rose {l_ref:.3g} -> {l_here:.3g}")
        att = attribute((r.get("resources") or {}).get("series"), facts_of(r), extra)
        out.append({"load": load, "past_knee": past, "test_id": r.get("test_id"), **att.to_dict()})
    return out
