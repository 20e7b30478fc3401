"""Event loops with sub-millisecond timers, for code that must act *at* a given instant.

Why this exists: asyncio's default selector on Linux is epoll, and ``epoll_wait`` takes its timeout in whole
milliseconds — CPython rounds every timer wait *up* to the next millisecond, so ``asyncio.sleep`` wakes on
average ~0.4-0.5 ms late (measured: 0.43 ms mean, 0.53 ms max). That is the whole error budget of a 1 ms TTFT
accuracy target, so the reference server (which emits tokens against deadlines) and the open-loop dispatcher
use ``select()``, whose timeout has microsecond resolution. On top of that Linux adds "timer slack" (50 µs by
default) to every sleep of a normal thread; :func:`precise_timers` lowers it for the current thread where the
platform allows. Measured on the development VM: mean timer lateness 0.43 ms (epoll) → 0.19 ms (select) →
0.07 ms (select + 1 ns slack).

``select()`` cannot watch file descriptors >= FD_SETSIZE (1024), so :class:`AdaptiveSelector` starts on
``select()`` and moves every registration to the platform default (epoll) the moment a descriptor that large
is registered: precise while a process has few sockets, never crashing when it has many (it then falls back
to millisecond timers, which is acceptable at that scale).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import selectors
import sys
from collections.abc import Iterator, Mapping
from typing import Any

#: Highest descriptor we let select() watch; a little below FD_SETSIZE (1024) as a margin.
SELECT_FD_LIMIT = 1000

_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30


class AdaptiveSelector(selectors.BaseSelector):
    """``select()`` while descriptors are small (µs timers), the default selector after that."""

    def __init__(self) -> None:
        self._impl: selectors.BaseSelector = selectors.SelectSelector()
        self.switched = False

    def _switch(self) -> None:
        new = selectors.DefaultSelector()
        for key in list(self._impl.get_map().values()):
            new.register(key.fileobj, key.events, key.data)
        self._impl.close()
        self._impl = new
        self.switched = True

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self._impl.register(fileobj, events, data)
        if not self.switched and key.fd >= SELECT_FD_LIMIT:
            self._switch()
            key = self._impl.get_key(fileobj)
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._impl.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._impl.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._impl.select(timeout)

    def close(self) -> None:
        self._impl.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._impl.get_map()


#: Event-loop implementations a load may ask for (``LoadSpec.event_loop``).
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_event_loop(kind: str, mode: str) -> str:
    """``auto`` → ``uvloop`` for a closed loop when uvloop is installed, else ``asyncio``.

    Why only closed loops: uvloop (libuv) runs timers at millisecond resolution, which is the error the
    open-loop dispatcher must not have (see the module docstring); a closed loop acts on replies, not on
    deadlines, and there uvloop's cheaper I/O path gives the client 10-20 % more requests per CPU second.
    """
    if kind == "auto":
        return "uvloop" if mode == "closed" and have_uvloop() else "asyncio"
    return kind


def new_event_loop(precise: bool = True, kind: str = "asyncio") -> asyncio.AbstractEventLoop:
    """A fresh event loop: ``uvloop`` when asked; else with ``precise`` (POSIX only) one on
    :class:`AdaptiveSelector`."""
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if precise and sys.platform != "win32":
        return asyncio.SelectorEventLoop(AdaptiveSelector())
    return asyncio.new_event_loop()


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def set_timer_slack_ns(slack_ns: int) -> int | None:
    """Set the calling thread's timer slack (Linux ``prctl``); returns the previous value, or None when
    the platform has no such knob (then nothing changes)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = _libc()
        if libc is None:
            return None
        previous = int(libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0))
        if previous < 0 or libc.prctl(_PR_SET_TIMERSLACK, int(slack_ns), 0, 0, 0) != 0:
            return None
        return previous
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def precise_timers(slack_ns: int = 1) -> Iterator[None]:
    """Lower this thread's timer slack for the duration of the block, then restore it."""
    previous = set_timer_slack_ns(slack_ns)
    try:
        yield
    finally:
        if previous is not None:
            set_timer_slack_ns(previous)


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects that exist now out of the garbage collector's scans for the duration of the block.

    Why: a full (generation 2) collection scans every tracked object; in a pytest process that is hundreds of
    thousands (pytest, numpy, the plugin), and a collection that lands in a run stalls the event loop for
    ~10-20 ms — a spike in every timestamp taken meanwhile. Objects alive before the run are not garbage the
    run can free, so freezing them is safe; they are unfrozen (and collectable again) afterwards. Inside the
    block :func:`refreeze` does the same for what the run keeps (its records).
    """
    global _frozen_depth
    gc.collect()
    gc.freeze()
    _frozen_depth += 1
    try:
        yield
    finally:
        _frozen_depth -= 1
        gc.unfreeze()


_frozen_depth = 0


def refreeze() -> None:
    """Inside :func:`frozen_heap`: move every object alive now out of the collector's scans too.

    Why: a run keeps one record per request, and the collector's older generations rescan all of them again
    and again as they grow — measured 1.3 µs per request in a closed loop of 200 000 trivial requests (4.2
    → 2.9 µs of engine time per request with the collector off). The load engine calls this about ten times a
    second; young garbage cycles are still collected between calls, and anything caught in a freeze is
    collectable again when the block ends. Outside a ``frozen_heap`` block it does nothing (the caller's
    heap is not ours to freeze).
    """
    if _frozen_depth:
        gc.freeze()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def sleep_until(deadline: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Sleep until ``loop.time() >= deadline`` (absolute, so lateness never accumulates across waits).

    Uses ``call_at`` on the absolute deadline rather than ``asyncio.sleep(deadline - now)``: no drift between
    our reading of the clock and the loop's.
    """
    loop = loop or asyncio.get_running_loop()
    if deadline <= loop.time():
        return
    fut = loop.create_future()
    handle = loop.call_at(deadline, _wake, fut)
    try:
        await fut
    finally:
        handle.cancel()
