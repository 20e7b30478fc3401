"""Live progress of a long benchmark in pytest's terminal: trial, requests done, elapsed, estimate of the rest.

A 4-minute serving benchmark otherwise prints nothing until its verdict. The plugin tells this module when a
trial begins (``begin_trial``) and the load engine, in the same thread, when a request completes
(``request_counter``); the line is redrawn at most every ``TTY_INTERVAL_S``.

How it stays out of the way:
- only in the process that owns the terminal and runs the tests: not on xdist workers (no terminal) and not on
  the xdist controller (it runs no test); quiet with ``-q``;
- on a terminal the text is appended to pytest's current line and erased with backspaces before pytest writes
  the outcome, so the dots and ``PASSED`` columns stay as they were; nothing appears for a test shorter than
  ``SHOW_AFTER_S``;
- when output is not a terminal (CI logs), one plain line per ``LOG_INTERVAL_S`` for long tests only;
- it writes with capture suspended exactly like pytest's live logging does, from the main thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTY_INTERVAL_S = 0.5
LOG_INTERVAL_S = 30.0
SHOW_AFTER_S = 2.0

_active: LiveProgress | None = None
_config: Any = None


def _duration(seconds: float) -> str:
    secs = max(0, round(seconds))
    if secs < 60:
        return f"{secs}s"
    minutes, s = divmod(secs, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    h, m = divmod(minutes, 60)
    return f"{h}h{m:02d}m"


class LiveProgress:
    """The progress line of the test that is running now."""

    def __init__(self, reporter: Any, capman: Any, *, tty: bool, clock: Callable[[], float] = time.monotonic,
                 tty_interval_s: float = TTY_INTERVAL_S, log_interval_s: float = LOG_INTERVAL_S,
                 show_after_s: float = SHOW_AFTER_S) -> None:
        self.reporter, self.capman, self.tty, self.clock = reporter, capman, tty, clock
        self.tty_interval_s, self.log_interval_s, self.show_after_s = tty_interval_s, log_interval_s, show_after_s
        self.test = ""
        self.trial = 0
        self.trials = 0
        self.warmup = False
        self.requests = 0
        self.expected: int | None = None
        self.started = 0.0
        self.trial_started = 0.0
        self._shown = 0       # characters of the tty line now on screen
        self._last_draw = 0.0
        self.lines: list[str] = []  # what was written (for tests)

    # -- events ------------------------------------------------------------------------------------
    def begin_test(self, test: str) -> None:
        self.clear()
        self.test, self.started, self.requests, self.expected = test, self.clock(), 0, None
        self._last_draw = self.started

    def begin_trial(self, index: int, total: int, warmup: bool) -> None:
        self.trial, self.trials, self.warmup = index, total, warmup
        self.requests, self.expected = 0, None
        self.trial_started = self.clock()
        self.maybe_draw()

    def requests_done(self, done: int, expected: int | None) -> None:
        self.requests, self.expected = done, expected
        self.maybe_draw()

    def end_test(self) -> None:
        self.clear()
        self.test = ""

    # -- drawing -----------------------------------------------------------------------------------
    def text(self) -> str:
        now = self.clock()
        elapsed = now - self.started
        if self.warmup:
            trial = f"warm-up {self.trial + 1}"
        else:
            trial = f"trial {self.trial + 1}/{self.trials}" if self.trials else "trial"
        parts = [trial]
        if self.requests:
            parts.append(f"{self.requests}/{self.expected} req" if self.expected else f"{self.requests} req")
        parts.append(f"{_duration(elapsed)} elapsed")
        fraction = self.fraction()
        if fraction and fraction > 0.02:
            parts.append(f"~{_duration(elapsed * (1 - fraction) / fraction)} left")
        return " · ".join(parts)

    def fraction(self) -> float | None:
        """Share of the test's measured work done: finished trials plus the running trial's request share."""
        if not self.trials or self.warmup:
            return None
        within = min(self.requests / self.expected, 1.0) if self.expected else 0.0
        return min((self.trial + within) / self.trials, 1.0)

    def maybe_draw(self) -> None:
        if not self.test:
            return
        now = self.clock()
        if now - self.started < self.show_after_s:
            return
        interval = self.tty_interval_s if self.tty else self.log_interval_s
        if now - self._last_draw < interval and (self._shown or not self.tty):
            return
        self._last_draw = now
        if self.tty:
            self._write_tty(f" [{self.text()}]")
        else:
            self._write_line(f"hwbench: {self.test}: {self.text()}")

    def clear(self) -> None:
        if self._shown and self.tty:
            n = self._shown
            self._emit("\b" * n + " " * n + "\b" * n)
        self._shown = 0

    def _write_tty(self, text: str) -> None:
        n = self._shown
        erase = ("\b" * n + " " * n + "\b" * n) if n else ""
        self._emit(erase + text)
        self._shown = len(text)

    def _write_line(self, text: str) -> None:
        self.lines.append(text)
        self._with_capture_off(lambda: self.reporter.write_line(text))

    def _emit(self, raw: str) -> None:
        self.lines.append(raw)
        self._with_capture_off(lambda: (self.reporter.write(raw), self.reporter.flush()))

    def _with_capture_off(self, fn: Callable[[], Any]) -> None:
        if self.capman is None:
            fn()
            return
        with self.capman.global_and_fixture_disabled():
            fn()


# ------------------------------------------------------------------------------ the hooks' entry points

def install(config: Any) -> None:
    """Remember the session's config; the line is set up at the first test, once pytest's terminal reporter
    exists (it registers in its own ``pytest_configure``, which may run after ours)."""
    global _config, _active
    _config, _active = config, None


def _setup(config: Any) -> LiveProgress | None:
    """A live line when this process runs tests and owns a terminal reporter."""
    if hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return None
    if getattr(config.option, "numprocesses", None) not in (None, 0, "0"):
        return None  # xdist controller: it runs no test itself
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is None:
        return None
    capman = config.pluginmanager.getplugin("capturemanager")
    return LiveProgress(reporter, capman, tty=bool(getattr(reporter, "isatty", False)))


def uninstall() -> None:
    global _active, _config
    _active = _config = None


def begin_test(test: str) -> None:
    global _active, _config
    if _config is not None:  # first test of the session
        _active, _config = _setup(_config), None
    if _active is not None:
        _active.begin_test(test)


def begin_trial(index: int, total: int, warmup: bool = False) -> None:
    if _active is not None:
        _active.begin_trial(index, total, warmup)


def end_test() -> None:
    if _active is not None:
        _active.end_test()


def request_counter(expected: int | None) -> Callable[[int], None] | None:
    """For the load engine: a callable taking "requests done so far" in this trial, or None when no progress
    line is active (xdist, ``-q``, a worker process), so the engine's per-request cost is one ``is None``."""
    live = _active
    if live is None or not live.test:
        return None

    def note(done: int) -> None:
        live.requests_done(done, expected)

    return note
