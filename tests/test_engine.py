"""Load engine without a network: schedules, closed/open loops, warm-up, caps, drain, self-check.

A fake ``send`` stands in for a protocol client so each property of the engine is tested on its own and
fast. Timing tolerances are generous multiples of what a quiet machine shows (sub-millisecond) because
these tests share a 2-core CI box with other work; they check the engine's logic, not the OS scheduler.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import time

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads.engine import LoadSpec, SelfCheckLimits, make_plans, run_load, run_load_sync
from pytest_hwbench.workloads.loop import AdaptiveSelector, new_event_loop, sleep_until
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord
from pytest_hwbench.workloads.schedule import ArrivalProcess, build_open_schedule


class FakeClient:
    """Answers after ``service_s``; tracks how many requests are in flight at once."""

    def __init__(self, service_s: float = 0.005, fail_every: int = 0, hang_from: int | None = None) -> None:
        self.service_s = service_s
        self.fail_every = fail_every
        self.hang_from = hang_from
        self.inflight = 0
        self.max_inflight = 0
        self.sent: list[int] = []

    async def send(self, index: int) -> RequestRecord:
        rec = RequestRecord(index=index, send_ns=time.perf_counter_ns())
        self.sent.append(index)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.hang_from is not None and index >= self.hang_from:
                await asyncio.sleep(3600)
            await asyncio.sleep(self.service_s)
            if self.fail_every and index % self.fail_every == 0:
                raise RuntimeError(f"boom {index}")
            rec.first_token_ns = rec.end_ns = time.perf_counter_ns()
            rec.chunk_ns.append(rec.end_ns)
            rec.tokens_out = 1
            return rec
        finally:
            self.inflight -= 1

    async def aclose(self) -> None:
        pass


def run(spec: LoadSpec, client: FakeClient):
    return asyncio.run(run_load(spec, client.send))


# ---------------------------------------------------------------------------------------------- schedules
def test_constant_schedule_is_exact_and_bounded_by_count_and_duration():
    proc = ArrivalProcess("constant", rate=100)
    assert proc.offsets_ns(count=5).tolist() == [0, 10_000_000, 20_000_000, 30_000_000, 40_000_000]
    by_time = proc.offsets_ns(duration_s=0.1)
    assert len(by_time) == 10 and by_time[-1] < 100_000_000
    assert len(proc.offsets_ns(count=3, duration_s=10)) == 3  # the tighter bound wins


def test_poisson_and_gamma_have_the_configured_rate_and_burstiness():
    # 20 000 gaps: the sample mean is within ~1.5 % (3 sigma of 1/sqrt(n)) of 1/rate
    for proc, cv in ((ArrivalProcess("poisson", 200), 1.0), (ArrivalProcess("gamma", 200, burstiness=0.25), 2.0),
                     (ArrivalProcess("gamma", 200, burstiness=4.0), 0.5)):
        gaps = np.diff(proc.offsets_ns(count=20_001, seed=3)) / 1e9
        assert gaps.mean() == pytest.approx(1 / 200, rel=0.03)
        assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.08)


def test_schedules_are_seeded_and_warmup_precedes_the_measured_part():
    proc = ArrivalProcess("poisson", 50)
    a = build_open_schedule(proc, requests=20, duration_s=None, warmup_requests=5, seed=7)
    b = build_open_schedule(proc, requests=20, duration_s=None, warmup_requests=5, seed=7)
    c = build_open_schedule(proc, requests=20, duration_s=None, warmup_requests=5, seed=8)
    assert a.warmup == 5 and a.measured == 20
    assert np.array_equal(a.offsets_ns, b.offsets_ns) and not np.array_equal(a.offsets_ns, c.offsets_ns)
    assert np.all(np.diff(a.offsets_ns) >= 0)
    # the measured duration is counted from the first measured arrival, so warm-up does not eat into it
    d = build_open_schedule(ArrivalProcess("constant", 10), requests=None, duration_s=1.0, warmup_requests=3)
    assert d.measured == 10 and d.offsets_ns[3] == 300_000_000


@pytest.mark.parametrize("kwargs", [dict(kind="uniform"), dict(rate=0), dict(rate=-1), dict(burstiness=0)])
def test_bad_arrival_processes_are_clear_input_errors(kwargs):
    with pytest.raises(HwbenchInputError, match="arrival"):
        ArrivalProcess(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    (dict(mode="closed", users=2), "requests"),
    (dict(mode="closed", users=0, requests=1), "users"),
    (dict(mode="open", requests=1), "arrival"),
    (dict(mode="closed", users=1, requests=1, max_concurrency=0), "max_concurrency"),
])
def test_bad_load_specs_name_the_field(kwargs, field):
    with pytest.raises(HwbenchInputError, match=field):
        LoadSpec(**kwargs)


# ---------------------------------------------------------------------------------------------- closed loop
def test_closed_loop_runs_exactly_n_users_and_counts_warmup_apart():
    client = FakeClient(service_s=0.004)
    res = run(LoadSpec.closed(8, requests=40, warmup_requests=8), client)
    assert client.max_inflight == 8
    assert len(res.records) == 48 and sorted(r.index for r in res.records) == list(range(48))
    assert sum(r.warmup for r in res.records) == 8
    assert all(r.warmup for r in res.records if r.index < 8)
    assert len(res.measured()) == 40
    assert all(r.intended_ns is None for r in res.records)  # a closed loop has no schedule
    assert res.self_check.mode == "closed" and res.self_check.offered_rate_rps is None


def test_closed_loop_duration_bound_and_ramp_up():
    client = FakeClient(service_s=0.05)
    t0 = time.perf_counter()
    res = run(LoadSpec.closed(4, duration_s=0.3, ramp_up_s=0.03), client)
    elapsed = time.perf_counter() - t0
    assert 0.3 <= elapsed < 1.5  # stops sending after 0.3 s, then drains the last answers
    by_index = sorted(res.records, key=lambda r: r.index)
    # ramp-up: the 4 users' first requests (indices 0-3, nobody finishes within 50 ms) start 7.5 ms apart
    firsts = np.array([r.send_ns for r in by_index[:4]]) / 1e6
    # (each start can be late on a busy runner, never early: check the overall spread, not each gap)
    assert np.all(np.diff(firsts) > 0) and firsts[3] - firsts[0] >= 20
    assert 4 * 0.3 / 0.05 * 0.5 <= len(res.records) <= 4 * (0.3 / 0.05 + 2)


# ---------------------------------------------------------------------------------------------- open loop
def test_open_loop_sends_on_schedule_whatever_the_server_does():
    client = FakeClient(service_s=0.05)  # slow answers must not delay later sends (no coordinated omission)
    res = run(LoadSpec.open(200, kind="constant", requests=60, warmup_requests=10), client)
    recs = res.records
    assert len(recs) == 70 and all(r.intended_ns is not None for r in recs)
    intended = np.array([r.intended_ns for r in recs])
    assert np.all(np.diff(intended) == 5_000_000)
    lag_ms = np.array([r.send_ns - r.intended_ns for r in recs]) / 1e6
    # a quiet machine shows < 0.5 ms; 20 ms at p90 leaves room for a busy shared runner
    assert np.percentile(lag_ms, 90) < 20 and lag_ms.min() >= -0.01
    assert client.max_inflight >= 8  # ~10 in flight at 200 req/s x 50 ms
    assert res.self_check.offered_rate_rps == pytest.approx(200, rel=1e-6)


def test_open_loop_cap_queues_requests_and_the_queue_counts_in_latency_from_intended():
    client = FakeClient(service_s=0.03)
    res = run(LoadSpec.open(200, kind="constant", requests=40, max_concurrency=2), client)
    assert client.max_inflight == 2
    queued = [r for r in res.records if r.queued_ns > 0]
    assert len(queued) > 20  # 200 req/s offered, 2 x 33 req/s served: almost all wait
    for r in res.records:
        assert r.end_ns - r.intended_ns >= r.end_ns - r.send_ns
    assert res.self_check.queued_requests == len(queued)
    assert not res.self_check.client_bound  # the shortfall is the server's (cap), not the client's
    assert any("cap" in note for note in res.self_check.notes)


def test_drain_timeout_records_hanging_requests_as_timeouts_and_keeps_the_rest():
    client = FakeClient(service_s=0.001, hang_from=5)
    res = run(LoadSpec.open(500, kind="constant", requests=8, drain_timeout_s=0.1), client)
    assert len(res.records) == 8
    errors = [r.error for r in sorted(res.records, key=lambda r: r.index)]
    assert errors[:5] == [None] * 5 and errors[5:] == [ErrorClass.TIMEOUT] * 3


def test_exceptions_from_send_become_client_errors_never_a_crash():
    client = FakeClient(service_s=0.001, fail_every=3)
    res = run(LoadSpec.closed(2, requests=9), client)
    failed = [r for r in res.records if r.error]
    assert {r.index for r in failed} == {0, 3, 6}
    assert all(r.error == ErrorClass.CLIENT and "boom" in r.error_detail for r in failed)


# ---------------------------------------------------------------------------------------------- self-check
class BurningClient(FakeClient):
    """Blocks the event loop for ``burn_s`` per request: a client that cannot keep up."""

    def __init__(self, burn_s: float) -> None:
        super().__init__(service_s=0.001)
        self.burn_s = burn_s

    async def send(self, index: int) -> RequestRecord:
        end = time.perf_counter() + self.burn_s
        while time.perf_counter() < end:
            pass
        return await super().send(index)


def test_self_check_flags_a_client_that_cannot_keep_up():
    # 100 req/s offered, 20 ms of blocking work per request: the loop can do 50/s at most
    res = run(LoadSpec.open(100, kind="constant", requests=40), BurningClient(0.02))
    check = res.self_check
    assert check.client_bound
    assert check.achieved_rate_rps < 0.8 * check.offered_rate_rps
    text = " ".join(check.reasons)
    assert "late" in text and "lag" in text and "below the offered" in text
    # Its share of the wall time depends on what else runs on a shared runner; its share whenever it could
    # run (CPU / (wall - run delay)) does not: it always wanted the CPU.
    assert check.client_demand[0] > 0.9 or check.client_cpu[0] > 0.9
    assert not check.contended and check.limited
    assert "the load generator, not the server" in check.message()


def test_self_check_blames_the_machine_when_the_client_had_cpu_to_spare():
    """Same symptoms, different evidence: a client at 20 % CPU that waited for a CPU 40 % of the run is the
    victim of a contended machine (the issue seen on 2 cores, where the server preempts the client)."""
    from pytest_hwbench.workloads.engine import MachineLoad, build_self_check

    lag = [np.full(100, 30e6)]  # 30 ms event-loop lag: a symptom
    machine = MachineLoad(cpus=2, runnable_mean=5.5, steal_fraction=0.0)
    victim = build_self_check("closed", [], lag, [0.2], SelfCheckLimits(), 1, wait_fraction=[0.4],
                              machine=machine)
    assert victim.contended and not victim.client_bound and victim.limited
    assert "contended" in victim.message() and "waited for a CPU 40%" in victim.message()
    assert "5.5 runnable tasks on 2 CPUs" in victim.message()
    # the same wall-clock CPU share, but runnable the whole time: the client itself is saturated
    hog = build_self_check("closed", [], lag, [0.5], SelfCheckLimits(), 1, wait_fraction=[0.5],
                           machine=machine)
    assert hog.client_bound and not hog.contended and hog.client_demand == [pytest.approx(1.0)]
    assert any("contended too" in n for n in hog.notes)
    # no symptoms: a busy machine is only a note
    calm = build_self_check("closed", [], [np.full(100, 1e5)], [0.2], SelfCheckLimits(), 1,
                            wait_fraction=[0.4], machine=machine)
    assert not calm.limited and calm.notes
    # no schedstat (another OS): the old rule, CPU share of the wall time
    old = build_self_check("closed", [], lag, [0.95], SelfCheckLimits(), 1, wait_fraction=[None])
    assert old.client_bound and old.to_dict()["client_wait"] == [None]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/thread-self/schedstat"),
                    reason="needs Linux CPU affinity and schedstat")
def test_self_check_sees_real_contention_on_a_shared_core():
    """Six CPU hogs pinned to the client's core: the light client's loop waits, and the check says so."""
    import subprocess
    import sys

    before = os.sched_getaffinity(0)
    core = min(before)
    hog = f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(6)]
    try:
        os.sched_setaffinity(0, {core})
        time.sleep(0.2)
        res = run(LoadSpec.open(1000, kind="constant", requests=2000,
                                limits=SelfCheckLimits(max_loop_lag_p99_ms=5, max_send_lag_p99_ms=5)),
                  FakeClient(service_s=0.001))
    finally:
        os.sched_setaffinity(0, before)
        for h in hogs:
            h.kill()
            h.wait()
    check = res.self_check
    assert check.client_wait[0] > 0.15, check.to_dict()  # the "contended" threshold is 0.10
    # The light client is never blamed. Whether the hogs also made it late (symptoms: "contended") depends on
    # the scheduler's slices on this machine; either way the check says the machine was busy.
    assert not check.client_bound, check.to_dict()
    if check.reasons:
        assert check.contended, check.to_dict()
    else:
        assert any("busy" in n for n in check.notes), check.to_dict()


def test_self_check_passes_a_client_that_keeps_up():
    res = run(LoadSpec.open(100, kind="constant", requests=30,
                            limits=SelfCheckLimits(max_loop_lag_p99_ms=50, max_send_lag_p99_ms=50)),
              FakeClient(service_s=0.01))
    assert not res.self_check.client_bound, res.self_check.reasons
    assert res.self_check.client_cpu[0] < 0.9
    assert res.self_check.loop_lag_ms["p50"] < 5
    assert res.self_check.to_dict()["client_bound"] is False


# ---------------------------------------------------------------------------------------------- plans, loops
def test_plans_deal_one_global_schedule_and_keep_indices_unique():
    spec = LoadSpec.open(100, requests=103, warmup_requests=7, seed=5, max_concurrency=9)
    plans = make_plans(spec, 3)
    (whole,) = make_plans(spec, 1)
    merged = sorted(zip(np.concatenate([p.indices for p in plans]).tolist(),
                        np.concatenate([p.offsets_ns for p in plans]).tolist(), strict=True))
    assert merged == list(zip(whole.indices.tolist(), whole.offsets_ns.tolist(), strict=True))
    assert sum(p.max_concurrency for p in plans) == 9 and {p.warmup_below for p in plans} == {7}
    closed = make_plans(LoadSpec.closed(5, requests=11, warmup_requests=3, ramp_up_s=0.5), 2)
    assert [p.users for p in closed] == [3, 2] and sum(p.requests for p in closed) == 11
    assert sum(p.warmup for p in closed) == 3
    starts = sorted(s for p in closed for s in p.user_start_s)
    assert starts == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert len(make_plans(LoadSpec.closed(2, requests=4), 8)) == 2  # never more workers than users


def test_run_load_sync_opens_and_closes_the_client():
    client = FakeClient(service_s=0.001)
    closed = []

    async def factory():
        client.aclose = lambda: asyncio.sleep(0, closed.append(True))  # type: ignore[method-assign]
        return client

    res = run_load_sync(LoadSpec.closed(2, requests=6), factory)
    assert len(res.records) == 6 and closed == [True]


def test_precise_loop_wakes_close_to_the_deadline_and_survives_many_descriptors():
    loop = new_event_loop(precise=True)
    assert isinstance(loop._selector, AdaptiveSelector)  # type: ignore[attr-defined]

    async def lateness() -> float:
        worst = []
        for _ in range(20):
            target = loop.time() + 0.0023
            await sleep_until(target)
            worst.append(loop.time() - target)
        return float(np.median(worst))

    try:
        # select() has µs timeouts; epoll would round every wait up to the next ms (~0.5 ms late on average)
        assert loop.run_until_complete(lateness()) < 0.002
    finally:
        loop.close()
    selector = AdaptiveSelector()
    low, high = socket.socketpair()
    big = -1
    try:
        selector.register(low, 1)
        assert not selector.switched
        try:  # the lowest free descriptor >= 1000: one select() cannot watch
            big = fcntl.fcntl(high.fileno(), fcntl.F_DUPFD, 1000)
        except OSError:
            pytest.skip("the descriptor limit is below 1000 here")
        selector.register(big, 1)
        assert selector.switched and len(selector.get_map()) == 2
        selector.select(0)
    finally:
        selector.close()
        if big >= 0:
            os.close(big)
        low.close()
        high.close()


def test_run_result_is_plain_json_with_or_without_records():
    import json

    res = run(LoadSpec.open(200, requests=5, warmup_requests=1), FakeClient(service_s=0.001))
    data = json.loads(json.dumps(res.to_dict(records=True)))
    assert data["spec"]["arrival"]["kind"] == "poisson" and len(data["records"]) == 6
    assert "records" not in res.to_dict() and data["self_check"]["mode"] == "open"
