"""HTTP plumbing shared by the protocol clients: session setup and error classification.

One place decides which exception is which ``ErrorClass`` so that every client classifies the same failure
the same way, and so the rules (and their reasons) are written down once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping

import aiohttp

from pytest_hwbench.workloads.records import ErrorClass, RequestRecord


class StreamFailure(Exception):
    """Raised inside a client's reader to end a request with a given error class (kept partial data)."""

    def __init__(self, error_class: str, detail: str) -> None:
        super().__init__(detail)
        self.error_class = error_class
        self.detail = detail


def make_session(*, timeout_s: float, connect_timeout_s: float, read_timeout_s: float | None,
                 max_connections: int, headers: Mapping[str, str]) -> aiohttp.ClientSession:
    """A session sized for load generation.

    ``max_connections=0`` means no pool limit: aiohttp's default pool of 100 connections would otherwise act
    as a hidden concurrency cap and queue requests inside the client, where neither the engine's schedule
    nor its ``queued_ns`` can see it.
    """
    connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=connect_timeout_s, sock_read=read_timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, headers=dict(headers),
                                 auto_decompress=True, raise_for_status=False)


def classify_exception(exc: BaseException, got_response: bool) -> tuple[str, str]:
    """``(error_class, detail)`` for an exception raised while sending or reading a request.

    ``got_response`` (headers received) separates a connection that failed before any answer
    (``connection``) from one that broke in the middle of a streamed answer (``stream_closed``).
    """
    name = type(exc).__name__
    text = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, StreamFailure):
        return exc.error_class, exc.detail
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        where = "while reading the answer" if got_response else "before the answer started"
        return ErrorClass.TIMEOUT, f"timed out {where} ({name})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorClass.STREAM_CLOSED, text
    if isinstance(exc, aiohttp.ClientResponseError):  # unparsable status line / headers
        return ErrorClass.MALFORMED, text
    if isinstance(exc, (aiohttp.ClientConnectionError, ConnectionError, OSError)):
        return (ErrorClass.STREAM_CLOSED if got_response else ErrorClass.CONNECTION), text
    if isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):
        return ErrorClass.MALFORMED, text
    return ErrorClass.CLIENT, text


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
    except (ValueError, UnicodeDecodeError):
        message = body[:200].decode("utf-8", "replace")
    hint = " (wrong model name?)" if status == 404 else ""
    return error_class, f"HTTP {status}{hint}: {message.strip()}"[:500]


def api_root(base_url: str, suffix: str) -> str:
    """``base_url`` normalised to end with ``suffix`` (e.g. ``/v1``) exactly once, no trailing slash."""
    url = base_url.rstrip("/")
    return url if url.endswith(suffix) else url + suffix


def keep_partial(rec: RequestRecord) -> None:
    """After a failure half-way through a stream, keep what was received (DESIGN: partial results kept):
    the first-token instant and a chunk count as an estimated ``tokens_out``."""
    if rec.chunk_ns and rec.first_token_ns is None:
        rec.first_token_ns = rec.chunk_ns[0]
    if rec.tokens_out is None and rec.chunk_ns:
        rec.tokens_out, rec.tokens_out_estimated = len(rec.chunk_ns), True


async def drain(resp: aiohttp.ClientResponse, timeout_s: float = 1.0) -> None:
    """Read what follows the end marker (the chunked-encoding terminator) so the connection goes back to
    the pool instead of being closed — a reconnect would add a TCP handshake to the next request's TTFT.
    Bounded, because a server that never closes after its end marker must not hold the request open; the
    request's ``end_ns`` is already stamped, so this wait is not measured."""
    content = resp.content
    if content.is_eof():
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(content.read(), timeout_s)
