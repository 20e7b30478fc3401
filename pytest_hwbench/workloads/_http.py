"""Helpers shared by the protocol clients: error classification and partial-result bookkeeping.

One place decides which failure is which ``ErrorClass`` so that every client classifies the same failure
the same way, and so the rules (and their reasons) are written down once.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

from pytest_hwbench.workloads.records import ErrorClass, RequestRecord

_perf = time.perf_counter_ns


class StreamFailure(Exception):
    """Raised by a body parser to end its request with a given error class (partial data stays recorded)."""

    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(detail)
        self.error_class = error_class
        self.detail = detail


def http_error(status: int, body: bytes) -> tuple[str, str]:
    """``(error_class, detail)`` for an HTTP error status, with the server's own message when it gave one."""
    error_class = ErrorClass.HTTP_5XX if status >= 500 else ErrorClass.HTTP_4XX
    message = ""
    try:
        obj = json.loads(body)
        if isinstance(obj, dict):
            err = obj.get("error", obj.get("message", obj.get("detail")))
            if isinstance(err, dict):
                err = err.get("message", err)
            message = str(err) if err is not None else ""
        else:
            message = str(obj)
    except (ValueError, UnicodeDecodeError):
        message = body[:200].decode("utf-8", "replace")
    hint = " (wrong model name?)" if status == 404 else ""
    return error_class, f"HTTP {status}{hint}: {message.strip()}"[:500]


def keep_partial(rec: RequestRecord) -> None:
    """After a failure half-way through a stream, keep what was received (partial results are kept):
    the first-token instant and the chunk count as an estimated ``tokens_out``."""
    if rec.chunk_ns and rec.first_token_ns is None:
        rec.first_token_ns = rec.chunk_ns[0]
    if rec.tokens_out is None and rec.chunk_ns:
        rec.tokens_out, rec.tokens_out_estimated = len(rec.chunk_ns), True


def api_root(base_url: str, suffix: str) -> str:
    """``base_url`` normalised to end with ``suffix`` (e.g. ``/v1``) exactly once, no trailing slash."""
    url = base_url.rstrip("/")
    return url if url.endswith(suffix) else url + suffix


async def transmit(http: Any, request: bytes, sink: Any, rec: RequestRecord) -> bool:
    """Stamp the send instants, send ``request`` through ``http`` into ``sink`` and, on a transport failure,
    record it (keeping the partial stream). Returns True when an answer arrived (its status and body are in
    ``rec``/``sink`` for the caller to judge).

    Shared by the OpenAI and Ollama clients so that both time the same instant as "send" and classify a
    transport failure the same way; any unexpected exception becomes a ``client`` error record, never the
    end of the run.
    """
    rec.send_wall_ns = time.time_ns()
    rec.send_ns = _perf()
    failure: tuple[str, str] | None  # (error class, detail), as http1.Failure
    try:
        failure = cast("tuple[str, str] | None", await http.request(request, sink))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug here must become a record, not end the run
        failure = (ErrorClass.CLIENT, f"{type(exc).__name__}: {exc}")
    if failure is not None:
        rec.fail(*failure, end_ns=_perf())
        keep_partial(rec)
        return False
    return True
