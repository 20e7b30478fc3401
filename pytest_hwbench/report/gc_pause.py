"""Pausing the cyclic garbage collector around the session-end reporting.

Why: at the end of a session the plugin decodes, summarises and renders every result (the run's
``results.json``, report, terminal table): some hundred thousand short-lived containers for 1000 tests, freed
by reference counting as soon as each step ends, with no reference cycles among them. Left running, the
collector counts those allocations and starts a *full* collection of the whole pytest process in the middle
of it: ~100 ms on a pytest process with numpy and a few plugins loaded, more than the reporting itself
(measured for issue #14 with ``gc.callbacks``). Pausing it for these bounded stretches loses nothing: what is
garbage is freed by reference counts, and any cycle left behind is found by the next collection after the
block. The collector is never paused around a test's own code.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Turn the cyclic collector off for the block (re-entrant; restored as found)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
