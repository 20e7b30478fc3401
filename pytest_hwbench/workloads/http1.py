"""A minimal HTTP/1.1 client built on ``asyncio.Protocol``, for timing streamed answers precisely.

Why not aiohttp for the load clients (the reference server does use aiohttp): measured against the reference
server at 64 concurrent streams on a 2-core VM, aiohttp's client added ~6 ms (median) between "send" and the
server seeing the request, and 0.4 ms median / 17 ms p99 between the server writing a chunk and the client
stamping it, because each request crosses several event-loop iterations (connector, a separate body-writer
task) and each received chunk is handed from the protocol to a reader task before user code can stamp it;
on a busy loop every iteration is long. This client

* writes the whole request (head + body, pre-serialised) with one ``transport.write`` inside ``send`` —
  no loop iteration between the ``send_ns`` stamp and the bytes reaching the socket (reused connection);
* stamps arrival time inside ``data_received``, the first Python code that sees the bytes, and feeds the
  body parser synchronously there — no task hop;
* keeps one connection per in-flight request (keep-alive pool, no limit by default, so no hidden cap).

Same server, same box, this client: send → server 0.07 ms median at 1-16 streams (0.4-0.6 ms at 64, where
the server's own loop is the busier side), server write → client stamp 0.05-0.1 ms median. It supports what
LLM servers speak: HTTP/1.1 with ``Content-Length``, chunked transfer encoding or read-until-close bodies,
keep-alive, TLS (``https://``). Not supported (documented gaps): proxies, redirects, compressed bodies (we
never send ``Accept-Encoding``), HTTP/2, pipelining.

A reused keep-alive connection that the server had already closed fails before any byte arrives; such a
request is retried once on a fresh connection (it never reached the server). Every other failure is returned
as ``(error_class, detail)`` — this module raises nothing at its caller for network trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as ssl_module
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads._http import StreamFailure
from pytest_hwbench.workloads.records import ErrorClass

_perf = time.perf_counter_ns

_MAX_HEAD = 64 * 1024
_IDLE, _HEAD, _CHUNKED, _LENGTH, _UNTIL_CLOSE, _DONE = range(6)


class BodySink(Protocol):
    """Receives one response, synchronously, from inside the protocol callbacks."""

    def on_head(self, status: int, headers: Mapping[str, str], t: int) -> None: ...

    def feed(self, data: bytes, t: int) -> None:
        """Decoded body bytes that arrived at perf instant ``t``; may raise :class:`StreamFailure`."""

    def on_end(self, t: int) -> None:
        """The response is complete (its last byte arrived at ``t``)."""


class CollectSink:
    """Keeps status, headers and (up to ``limit`` bytes of) body: for small requests and error bodies."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self.body = bytearray()
        self.limit = limit
        self.end_ns = 0

    def on_head(self, status: int, headers: Mapping[str, str], t: int) -> None:
        self.status, self.headers = status, headers

    def feed(self, data: bytes, t: int) -> None:
        if len(self.body) < self.limit:
            self.body += data[: self.limit - len(self.body)]

    def on_end(self, t: int) -> None:
        self.end_ns = t


#: ``(error_class, detail)`` of a failed request.
Failure = tuple[str, str]
_Outcome = tuple[str, str, bool]  # (error_class, detail, retry on a fresh connection)


@dataclass(frozen=True)
class Target:
    """Where requests go: scheme, host, port, the Host header and a path prefix."""

    scheme: str
    host: str
    port: int
    host_header: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HwbenchInputError(f"not an http(s) URL: {url!r}", field="base_url",
                                    fix="write http://HOST:PORT or https://HOST")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.netloc.rpartition("@")[2],
                   parts.path.rstrip("/"))


def build_request(target: Target, method: str, path: str, body: bytes | None,
                  headers: Mapping[str, str]) -> bytes:
    """Serialise one request (done once per prompt, not per send)."""
    lines = [f"{method} {target.prefix}{path} HTTP/1.1", f"Host: {target.host_header}",
             "User-Agent: pytest-hwbench", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def _framing(low: str, key: str) -> str:
    """The value after ``key`` (CRLF, a lower-case header name and its colon) in a lower-cased head that
    starts with CRLF, "" when absent: the few headers the framing needs, found without splitting the head
    into lines."""
    at = low.find(key)
    if at < 0:
        return ""
    at += len(key)
    end = low.find("\r\n", at)
    return (low[at:] if end < 0 else low[at:end]).strip()


class ResponseHeaders(Mapping[str, str]):
    """A response's headers (lower-case names, a repeated header's values joined with ", "), split into a
    dict only when first read.

    Why lazy: the framing needs three headers, found in the raw head (:func:`_framing`); splitting every line
    in Python cost ~0.7 µs a request with two headers (more with a real server's five or six), a tenth of the
    engine's own time per request against a fast server, for sinks that never look (docs/performance.md). A
    header line without a colon fails the request (malformed) when the headers are read.
    """

    __slots__ = ("_block", "_dict")

    def __init__(self, block: str) -> None:
        self._block = block
        self._dict: dict[str, str] | None = None

    def _parsed(self) -> dict[str, str]:
        if self._dict is None:
            headers: dict[str, str] = {}
            for line in self._block.split("\r\n") if self._block else ():
                name, sep, value = line.partition(":")
                if not sep:
                    raise StreamFailure(ErrorClass.MALFORMED, f"bad header line: {line[:80]!r}")
                key = name.strip().lower()
                headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
            self._dict = headers
        return self._dict

    def __getitem__(self, key: str) -> str:
        return self._parsed()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._parsed().get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __repr__(self) -> str:
        return f"ResponseHeaders({self._parsed()!r})"


class _Head(NamedTuple):
    """A parsed final response head: what the framing and the sink need from it."""

    raw: bytes  # the head's bytes (status line and headers, without the blank line)
    status: int
    keep_alive: bool
    framing: int  # _LENGTH, _CHUNKED, _UNTIL_CLOSE, or _DONE for an answer without a body
    length: int  # the Content-Length, for _LENGTH
    headers: ResponseHeaders


def _parse_head(raw: bytes) -> _Head | None:
    """Parse a response head (None for an interim 1xx answer); raises ``StreamFailure`` when malformed.

    Its result depends on the bytes alone, so the pool keeps the last one and a connection whose answer
    carries the very same head skips this (``HTTP1Pool.last_head``): against a server answering the same
    request again and again, parsing was ~1.5 µs of the ~16 µs a request costs (docs/performance.md)."""
    head = raw.decode("latin-1")
    status_line, _, block = head.partition("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise StreamFailure(ErrorClass.MALFORMED, f"not an HTTP/1.x status line: {status_line[:80]!r}")
    status = int(parts[1])
    if 100 <= status < 200:
        return None
    keep_alive = True
    low = "\r\n" + block.lower()
    if "\r\nconnection:" in low:
        connection = _framing(low, "\r\nconnection:")
        if "close" in connection or (parts[0] == "HTTP/1.0" and "keep-alive" not in connection):
            keep_alive = False
    elif parts[0] == "HTTP/1.0":
        keep_alive = False
    length = 0
    if status in (204, 304):
        framing = _DONE
    elif "\r\ntransfer-encoding:" in low and "chunked" in _framing(low, "\r\ntransfer-encoding:"):
        framing = _CHUNKED
    elif "\r\ncontent-length:" in low:
        try:
            length = int(_framing(low, "\r\ncontent-length:"))
        except ValueError:
            raise StreamFailure(ErrorClass.MALFORMED, "bad Content-Length") from None
        if length < 0:
            raise StreamFailure(ErrorClass.MALFORMED, "bad Content-Length")
        framing = _LENGTH
    else:
        framing = _UNTIL_CLOSE
    return _Head(raw, status, keep_alive, framing, length, ResponseHeaders(block))


class _Conn(asyncio.Protocol):
    """One TCP connection; parses one response at a time into a sink."""

    def __init__(self, pool: HTTP1Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.state = _IDLE
        self.buf = b""
        self.sink: BodySink | None = None
        self.fut: asyncio.Future[_Outcome | None] | None = None
        self.keep_alive = True
        self.closed = False
        self.got_bytes = False
        self.reused = False
        self.status = 0
        self.left = 0  # bytes left in the current chunk / of the Content-Length body
        self.crlf = False  # a chunk's data ended: its CRLF is expected next
        self.trailers = False  # after the last chunk: trailer lines until an empty one
        self.last_activity = 0
        self.deadline = 0.0  # loop time by which the request in flight must be complete

    # -- asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        t = _perf()
        self.last_activity = t
        if self.state in (_IDLE, _DONE):  # bytes nobody asked for: the connection is not trustworthy
            self.keep_alive = False
            if self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = True
        try:
            self._consume(data, t)
        except StreamFailure as exc:
            self.fail(exc.error_class, exc.detail)
        except Exception as exc:  # a parser bug must not escape into asyncio's transport machinery
            self.fail(ErrorClass.CLIENT, f"{type(exc).__name__}: {exc}")

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        if self.state == _UNTIL_CLOSE:
            self._complete(_perf())
        elif self.state in (_HEAD, _CHUNKED, _LENGTH):
            why = f" ({type(exc).__name__}: {exc})" if exc else ""
            if self.state == _HEAD and not self.got_bytes:
                self.fail(ErrorClass.CONNECTION, f"connection closed before any answer{why}",
                          retry=self.reused)
            else:
                self.fail(ErrorClass.STREAM_CLOSED, f"connection closed in the middle of the answer{why}")

    # -- request lifecycle
    def begin(self, raw: bytes, sink: BodySink, fut: asyncio.Future[_Outcome | None]) -> None:
        self.sink, self.fut = sink, fut
        self.state, self.buf, self.got_bytes = _HEAD, b"", False
        self.left, self.crlf, self.trailers = 0, False, False
        self.last_activity = _perf()
        assert self.transport is not None
        self.transport.write(raw)

    def fail(self, error_class: str, detail: str, retry: bool = False) -> None:
        self.state = _DONE
        self.keep_alive = False
        if self.transport is not None and not self.closed:
            self.transport.abort()
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((error_class, detail, retry))

    def _complete(self, t: int) -> None:
        self.state = _DONE
        if self.buf:
            self.keep_alive = False  # bytes beyond the response: don't reuse this connection
        assert self.sink is not None
        try:
            self.sink.on_end(t)
        except StreamFailure as exc:
            self.fail(exc.error_class, exc.detail)
            return
        fut = self.fut
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- parsing
    def _consume(self, data: bytes, t: int) -> None:
        buf: bytes | None  # None when _head() needs more bytes for the response head
        buf = self.buf + data if self.buf else data
        self.buf = b""
        if self.state == _HEAD:
            buf = self._head(buf, t)
            if buf is None or self.state == _DONE:
                return
        sink = self.sink
        assert sink is not None
        state = self.state
        if state == _LENGTH:
            n, left = len(buf), self.left
            if n == left:  # the common case: the rest of the body, nothing more
                self.left = 0
                sink.feed(buf, t)
                self._complete(t)
                return
            take = min(left, n)
            if take:
                sink.feed(buf[:take] if take < n else buf, t)
            self.left = left - take
            if take < n:
                self.buf = buf[take:]
            if self.left == 0:
                self._complete(t)
        elif state == _CHUNKED:
            self._chunked(buf, t)
        elif self.state == _UNTIL_CLOSE and buf:
            sink.feed(buf, t)

    def _head(self, buf: bytes, t: int) -> bytes | None:
        pool = self.pool
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    raise StreamFailure(ErrorClass.MALFORMED, "response head larger than 64 KiB")
                self.buf = buf
                return None
            raw, buf = buf[:end], buf[end + 4:]
            head = pool.last_head
            if head is None or head.raw != raw:  # a server sends the same head again and again
                head = _parse_head(raw)
                if head is None:
                    continue  # interim answer (100 Continue): the real one follows
                pool.last_head = head
            break
        self.status = status = head.status
        if not head.keep_alive:
            self.keep_alive = False
        assert self.sink is not None
        self.sink.on_head(status, head.headers, t)
        framing = head.framing
        if framing == _LENGTH:
            self.left = head.length
            self.state = _LENGTH
            if head.length == 0:
                self._complete(t)
        elif framing == _CHUNKED:
            self.state = _CHUNKED
        elif framing == _DONE:  # 204, 304: no body
            self._complete(t)
        else:
            self.state = _UNTIL_CLOSE
            self.keep_alive = False
        return buf

    def _chunked(self, buf: bytes, t: int) -> None:
        out: list[bytes] = []
        pos, n = 0, len(buf)
        done = False
        while pos < n:
            if self.left:
                take = min(self.left, n - pos)
                out.append(buf[pos:pos + take])
                pos += take
                self.left -= take
                if self.left:
                    break
                self.crlf = True
            if self.crlf:
                if n - pos < 2:
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise StreamFailure(ErrorClass.MALFORMED, "chunk data not followed by CRLF")
                pos += 2
                self.crlf = False
                continue
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                if n - pos > 4096:
                    raise StreamFailure(ErrorClass.MALFORMED, "chunk size line too long")
                break
            line = buf[pos:eol]
            pos = eol + 2
            if self.trailers:
                if not line:
                    done = True
                    break
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise StreamFailure(ErrorClass.MALFORMED, f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                self.trailers = True
            else:
                self.left = size
        self.buf = buf[pos:]
        assert self.sink is not None
        if out:
            self.sink.feed(out[0] if len(out) == 1 else b"".join(out), t)
        if done and self.state == _CHUNKED:
            self._complete(t)


class HTTP1Pool:
    """Keep-alive connections to one server, and the request loop with timeouts and one stale-retry."""

    def __init__(self, base_url: str, *, timeout_s: float = 600.0, read_timeout_s: float | None = None,
                 connect_timeout_s: float = 10.0, max_connections: int = 0, verify_tls: bool = True) -> None:
        self.target = Target.parse(base_url)
        self.timeout_s = timeout_s
        self.read_timeout_s = read_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._idle: list[_Conn] = []
        self._all: set[_Conn] = set()
        self._inflight = 0  # requests between send and answer, for the timeout sweep
        self._sweeping = False
        # How often in-flight requests are checked against their timeouts: a tenth of the shortest one
        # (5 ms to 0.5 s), so a timeout fires at most ~10 % (or 0.5 s) late.
        shortest = min(timeout_s, read_timeout_s or timeout_s)
        self._sweep_s = min(0.5, max(0.005, shortest / 10))
        self._limit = asyncio.Semaphore(max_connections) if max_connections > 0 else None
        #: The last final response head parsed on any of this pool's connections (``_parse_head``).
        self.last_head: _Head | None = None
        self._ssl: ssl_module.SSLContext | None = None
        if self.target.scheme == "https":
            self._ssl = ssl_module.create_default_context()
            if not verify_tls:
                self._ssl.check_hostname = False
                self._ssl.verify_mode = ssl_module.CERT_NONE

    def request_bytes(self, method: str, path: str, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None) -> bytes:
        return build_request(self.target, method, path, body, headers or {})

    def _forget(self, conn: _Conn) -> None:
        self._all.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    async def _connect(self, timeout_s: float) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(lambda: _Conn(self), self.target.host, self.target.port, ssl=self._ssl,
                                   server_hostname=self.target.host if self._ssl else None),
            timeout_s)
        sock = conn.transport.get_extra_info("socket") if conn.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._all.add(conn)
        return conn

    async def request(self, raw: bytes, sink: BodySink) -> Failure | None:
        """Send ``raw`` and feed the answer to ``sink``; ``None`` on a complete answer, else the failure.

        ``timeout_s`` bounds the whole request (connect included), ``read_timeout_s`` the silence between
        two reads; both are checked by one periodic sweep per pool (every tenth of the shorter timeout,
        5 ms to 0.5 s), so they fire up to that much late. With ``max_connections`` > 0, at most that many
        requests are in flight through this pool (a client-side cap: the wait counts in the request's
        latency).

        One coroutine per request, no timer and no task of its own: against a fast server every µs here is
        a request per second less (docs/performance.md, load engine).
        """
        limit = self._limit
        if limit is not None:
            await limit.acquire()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        self._inflight += 1
        if not self._sweeping:
            self._arm_sweep(loop)
        try:
            for attempt in (0, 1):
                conn: _Conn | None = None
                reused = False
                idle = self._idle
                while idle:
                    candidate = idle.pop()
                    if not candidate.closed and not candidate.transport.is_closing():  # type: ignore[union-attr]
                        conn, reused = candidate, True
                        break
                if conn is None:
                    try:
                        conn = await self._connect(min(self.connect_timeout_s,
                                                       max(0.0, deadline - loop.time())))
                    except (asyncio.TimeoutError, TimeoutError):
                        return ErrorClass.TIMEOUT, f"connect timed out after {self.connect_timeout_s:g} s"
                    except OSError as exc:
                        return (ErrorClass.CONNECTION,
                                f"cannot connect to {self.target.host}:{self.target.port}: {exc}")
                conn.reused = reused
                fut: asyncio.Future[_Outcome | None] = loop.create_future()
                conn.deadline = deadline
                conn.begin(raw, sink, fut)
                try:
                    result = await fut
                except asyncio.CancelledError:
                    conn.fail(ErrorClass.TIMEOUT, "cancelled")
                    raise
                if result is None:
                    if conn.keep_alive and not conn.closed:
                        conn.state = _IDLE
                        conn.sink = conn.fut = None
                        idle.append(conn)
                    else:
                        self._drop(conn)
                    return None
                self._drop(conn)
                error_class, detail, retry = result
                if retry and attempt == 0 and loop.time() < deadline:
                    continue
                return error_class, detail
            raise AssertionError("unreachable")
        finally:
            self._inflight -= 1
            if limit is not None:
                limit.release()

    def _drop(self, conn: _Conn) -> None:
        if conn.transport is not None and not conn.closed:
            conn.transport.close()
        self._forget(conn)

    def _arm_sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeping = True
        loop.call_later(self._sweep_s, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the requests past their deadline or silent past the read timeout; re-arm while any run.

        One timer per pool instead of one per request: a ``call_at`` per request (armed and cancelled) cost
        about 6 µs, a fifth of the engine's time per request against a fast server.
        """
        self._sweeping = False
        now = loop.time()
        quiet_ns = int(self.read_timeout_s * 1e9) if self.read_timeout_s else 0
        perf_now = _perf()
        for conn in list(self._all):
            if conn.state in (_IDLE, _DONE) or conn.fut is None:
                continue
            if now >= conn.deadline:
                where = "no answer" if not conn.got_bytes else "answer not complete"
                conn.fail(ErrorClass.TIMEOUT, f"{where} within the {self.timeout_s:g} s request timeout")
            elif quiet_ns and perf_now - conn.last_activity >= quiet_ns:
                conn.fail(ErrorClass.TIMEOUT, f"nothing received for {self.read_timeout_s:g} s (read timeout)")
        if self._inflight:
            self._arm_sweep(loop)

    async def get(self, path: str, headers: Mapping[str, str] | None = None,
                  limit: int = 1 << 20) -> tuple[int, bytes]:
        """A small GET (model lists, health): ``(status, body)``; raises ``ConnectionError`` on failure."""
        sink = CollectSink(limit)
        failure = await self.request(self.request_bytes("GET", path, None, headers), sink)
        if failure is not None:
            raise ConnectionError(f"GET {path}: {failure[0]}: {failure[1]}")
        return sink.status, bytes(sink.body)

    async def close(self) -> None:
        for conn in list(self._all):
            if conn.transport is not None and not conn.closed:
                conn.transport.close()
        self._idle.clear()
        self._all.clear()
        await asyncio.sleep(0)
