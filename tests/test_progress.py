"""The live progress line: what it says, when it shows, and that it leaves pytest's own output intact."""

from __future__ import annotations

import pytest

from pytest_hwbench.report import progress
from pytest_hwbench.report.progress import LiveProgress


class FakeReporter:
    def __init__(self) -> None:
        self.out = ""

    def write(self, text: str) -> None:
        self.out += text

    def write_line(self, text: str) -> None:
        self.out += text + "\n"

    def flush(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _screen(raw: str) -> str:
    """What a terminal shows after backspaces."""
    out: list[str] = []
    pos = 0
    for ch in raw:
        if ch == "\b":
            pos = max(pos - 1, 0)
        elif pos < len(out):
            out[pos] = ch
            pos += 1
        else:
            out.append(ch)
            pos += 1
    return "".join(out).rstrip()


def test_tty_line_shows_trial_requests_elapsed_estimate_then_erases_itself() -> None:
    rep, clock = FakeReporter(), Clock()
    live = LiveProgress(rep, None, tty=True, clock=clock)
    rep.write("bench.py .")
    live.begin_test("bench.py::test_x")
    live.begin_trial(0, 4, warmup=False)
    clock.t += 1.0
    live.requests_done(10, 100)
    assert rep.out == "bench.py ."  # nothing for the first seconds
    clock.t += 9.0
    live.begin_trial(1, 4, warmup=False)
    assert _screen(rep.out) == "bench.py . [trial 2/4 · 10s elapsed · ~30s left]"
    clock.t += 1.0
    live.requests_done(50, 100)
    assert _screen(rep.out) == "bench.py . [trial 2/4 · 50/100 req · 11s elapsed · ~18s left]"
    clock.t += 0.1
    live.requests_done(60, 100)  # throttled: not redrawn within the interval
    assert "60/100" not in rep.out
    live.end_test()
    assert _screen(rep.out) == "bench.py ."


def test_non_tty_writes_plain_lines_rarely() -> None:
    rep, clock = FakeReporter(), Clock()
    live = LiveProgress(rep, None, tty=False, clock=clock)
    live.begin_test("t::x")
    live.begin_trial(0, 2, warmup=True)
    for _ in range(100):
        clock.t += 1.0
        live.requests_done(5, None)
    lines = rep.out.splitlines()
    assert 2 <= len(lines) <= 4 and "\b" not in rep.out
    assert lines[0].startswith("hwbench: t::x: warm-up 1 · 5 req · ")


def test_estimate_and_durations() -> None:
    live = LiveProgress(FakeReporter(), None, tty=True, clock=Clock())
    live.begin_test("t")
    live.begin_trial(2, 4, warmup=False)
    live.requests_done(50, 200)
    assert live.fraction() == pytest.approx((2 + 0.25) / 4)
    assert progress._duration(59.6) == "1m00s" and progress._duration(3725) == "1h02m"


def test_request_counter_is_none_without_a_live_line() -> None:
    progress.uninstall()
    assert progress.request_counter(10) is None


@pytest.mark.parametrize(("args", "shows"), [((), True), (("-q",), False), (("-p", "xdist", "-n", "2"), False)])
def test_progress_in_a_real_session(pytester: pytest.Pytester, args: tuple[str, ...], shows: bool) -> None:
    """Not a terminal here: only a plain line for long tests, so make the test long on a fake clock."""
    pytester.makeconftest("""
from pytest_hwbench.report import progress
progress.LOG_INTERVAL_S = 0.0
progress.SHOW_AFTER_S = 0.0
_orig = progress.LiveProgress.__init__
def _init(self, *a, **kw):
    kw.update(log_interval_s=0.0, show_after_s=0.0)
    _orig(self, *a, **kw)
progress.LiveProgress.__init__ = _init
""")
    pytester.makepyfile(test_p="""
def test_x(hwbench):
    hwbench.record("v", 1.0, unit="ms")
""")
    res = pytester.runpytest_subprocess("--no-hwbench-mlflow", "--no-hwbench-report", "-p", "no:cacheprovider", *args)
    assert res.ret == 0, res.stdout.str()
    lines = [x for x in res.stdout.lines if x.startswith("hwbench: ") and "trial" in x]
    assert bool(lines) is shows, res.stdout.str()
    if shows:
        assert "test_p.py::test_x: trial 1/3" in lines[0]
