"""One record per request: the raw evidence every load metric is computed from.

Why a flat record with integer nanoseconds: the hot path of a load run must stay cheap (one
``time.perf_counter_ns()`` call and an ``int`` append per streamed chunk), and every metric in docs/metrics.md
(ttft, itl, tpot, latency, latency_from_intended, throughput window, goodput, error_rate) is a pure
function of these fields, so the metrics can be recomputed later from the raw records (reports, re-analysis)
without re-running anything.

Clocks (docs/architecture.md): intervals use ``time.perf_counter_ns()``, wall timestamps ``time.time_ns()``. All
``*_ns`` interval fields of one run share one ``perf_counter_ns`` domain — after a multi-process run the
records of every worker are rebased onto the parent's domain (see ``multiproc``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np


class ErrorClass:
    """Error classes of a failed request (plain strings so they travel as JSON without conversion).

    Every failure a client can meet maps to exactly one of these, so ``error_rate`` can be broken down and a
    report can say *what* failed rather than just "an exception".
    """

    HTTP_4XX = "http_4xx"          #: the server answered 4xx (bad request, wrong model name → 404, 429)
    HTTP_5XX = "http_5xx"          #: the server answered 5xx
    TIMEOUT = "timeout"            #: no (complete) answer within the client's timeout, or cancelled at drain
    CONNECTION = "connection"      #: could not connect, or the connection died before a response started
    STREAM_CLOSED = "stream_closed"  #: the response started but ended before its end marker
    MALFORMED = "malformed"        #: the answer could not be parsed (bad SSE, bad JSON, unexpected shape)
    EMPTY = "empty"                #: a well-formed answer that carried no generated content
    SERVER = "server"              #: the server reported an error in-band, inside a 200 stream
    CLIENT = "client"              #: a bug or unexpected exception on the client side (never a crash)


#: All error classes, for validation and for stable report ordering.
ERROR_CLASSES: tuple[str, ...] = (
    ErrorClass.HTTP_4XX, ErrorClass.HTTP_5XX, ErrorClass.TIMEOUT, ErrorClass.CONNECTION,
    ErrorClass.STREAM_CLOSED, ErrorClass.MALFORMED, ErrorClass.EMPTY, ErrorClass.SERVER, ErrorClass.CLIENT,
)

#: The fields holding ``perf_counter_ns`` instants (rebased together when clocks are aligned).
_INSTANT_FIELDS = ("intended_ns", "send_ns", "first_byte_ns", "first_token_ns", "end_ns")


@dataclass(slots=True)
class RequestRecord:
    """What happened to one request.

    The engine sets ``index``, ``warmup``, ``worker``, ``intended_ns`` and ``queued_ns``; the protocol client
    sets everything else. ``chunk_ns`` holds the arrival instant of every chunk that carried generated content
    (several chunks read in one socket read share that read's instant: that is what the wire delivered).
    """

    index: int
    warmup: bool = False
    worker: int = 0
    #: Scheduled send (open loop only), perf_counter_ns. ``None`` in a closed loop: there is no schedule.
    intended_ns: int | None = None
    #: Time spent waiting for a slot under an open-loop max-concurrency cap (0 when it never waited).
    queued_ns: int = 0
    #: Actual send: taken just before the request is handed to the HTTP stack.
    send_ns: int = 0
    #: Wall-clock timestamp of the send (``time.time_ns()``), for reports and cross-machine correlation.
    send_wall_ns: int = 0
    #: Response headers received.
    first_byte_ns: int | None = None
    #: First chunk carrying generated content (== ``chunk_ns[0]`` when there is one).
    first_token_ns: int | None = None
    #: Last byte of the answer (the end marker), or the moment the request failed.
    end_ns: int = 0
    status: int | None = None
    #: One of ``ERROR_CLASSES``, or ``None`` for a successful request.
    error: str | None = None
    error_detail: str = ""
    tokens_in: int | None = None
    tokens_in_estimated: bool = False
    tokens_out: int | None = None
    tokens_out_estimated: bool = False
    chunk_ns: list[int] = field(default_factory=list)
    #: Timings the server reports about itself (e.g. Ollama eval_count / eval_duration), beside ours.
    server_timing: dict[str, float] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def fail(self, error: str, detail: str = "", end_ns: int | None = None) -> RequestRecord:
        """Mark the request failed, keeping whatever partial timings were already recorded."""
        self.error = error
        self.error_detail = detail[:500]
        if end_ns is not None:
            self.end_ns = end_ns
        return self

    def shift(self, delta_ns: int) -> None:
        """Move every perf_counter instant by ``delta_ns`` (clock-domain change; intervals are unchanged)."""
        for name in _INSTANT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value + delta_ns)
        if self.chunk_ns:
            self.chunk_ns = [t + delta_ns for t in self.chunk_ns]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (raw-sample export, transport between processes or to the controller)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["chunk_ns"] = list(self.chunk_ns)
        if self.server_timing is not None:
            out["server_timing"] = dict(self.server_timing)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _send(r: RequestRecord) -> int | None:
    return r.send_ns


def _end(r: RequestRecord) -> int | None:
    return r.end_ns


def censored_ms(records: Sequence[RequestRecord], start: Callable[[RequestRecord], int | None] | None = None,
                stop: Callable[[RequestRecord], int | None] | None = None) -> np.ndarray:
    """Latency samples (ms) of ``records`` with failures kept as censored values — one definition for every
    workload (LLM, Redis, PostgreSQL, S3, vector).

    A successful request contributes ``stop(r) - start(r)`` (default: send → last byte). A failed or
    timed-out request has no true latency, but dropping it would hide exactly the stall that made it fail
    (a 1 s stall with a 0.5 s timeout would show a fast tail). It contributes a *censored* value: the time
    from ``start(r)`` until it failed (``end_ns``), but never less than the slowest successful sample, so a
    failure always ranks in the tail and can never make the percentiles look better (a connection refused
    in 0.1 ms is not a fast answer). ``stop`` returning None on a success (no first token) drops that
    record; a failure whose ``start`` is None is dropped.
    """
    start = start or _send
    stop = stop or _end
    last = _end
    ok_vals: list[int] = []
    failed: list[int] = []
    for r in records:
        s = start(r)
        if s is None:
            continue
        e = stop(r)
        if r.error is None:
            if e is not None:
                ok_vals.append(e - s)
        elif e is not None and stop is not last:  # e.g. the first token did arrive before the failure
            ok_vals.append(e - s)
        else:
            failed.append(max(r.end_ns, s) - s)
    ok_arr = np.asarray(ok_vals, dtype=np.float64)
    if failed:
        floor = float(ok_arr.max()) if ok_arr.size else 0.0
        ok_arr = np.concatenate([ok_arr, np.maximum(np.asarray(failed, dtype=np.float64), floor)])
    return ok_arr / 1e6
