"""The HTTP/1.1 response parser under arbitrary packet boundaries.

TCP may cut a response anywhere — inside the status line, a chunk-size line, a CRLF, an SSE event or a
UTF-8 sequence. Whatever the cuts, the parser must deliver the same body bytes, complete the response at
its end, and the SSE layer on top must find the same events.
"""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_hwbench.workloads.http1 import HTTP1Pool, Target, _Conn, build_request
from pytest_hwbench.workloads.openai_client import _SSESink
from pytest_hwbench.workloads.records import RequestRecord


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class FakeFuture:
    def __init__(self) -> None:
        self.result = "pending"

    def done(self) -> bool:
        return self.result != "pending"

    def set_result(self, value) -> None:
        self.result = value


class Collect:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.ended = False

    def on_head(self, status, headers, t) -> None:
        self.status = status

    def feed(self, data, t) -> None:
        assert not self.ended
        self.body += data

    def on_end(self, t) -> None:
        self.ended = True


def feed_in_pieces(response: bytes, cuts: list[int], sink) -> tuple[_Conn, FakeFuture]:
    conn = _Conn(HTTP1Pool("http://127.0.0.1:1"))
    conn.connection_made(FakeTransport())  # type: ignore[arg-type]
    fut = FakeFuture()
    conn.begin(b"GET / HTTP/1.1\r\n\r\n", sink, fut)  # type: ignore[arg-type]
    points = sorted({c % (len(response) + 1) for c in cuts} | {0, len(response)})
    for a, b in itertools.pairwise(points):
        conn.data_received(response[a:b])
    return conn, fut


BODY = "".join(f"data: {json.dumps({'choices': [{'text': f' tök{i}', 'finish_reason': None}]})}\n\n"
               for i in range(6)).encode() + b"data: [DONE]\n\n"
CHUNKED = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n"
           + b"".join(f"{len(p):X}\r\n".encode() + p + b"\r\n" for p in (BODY[:50], BODY[50:51], BODY[51:]))
           + b"0\r\n\r\n")
LENGTH = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
          + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=25))
def test_any_split_gives_the_same_body_and_completes_once(cuts):
    for response in (CHUNKED, LENGTH):
        sink = Collect()
        conn, fut = feed_in_pieces(response, cuts, sink)
        assert sink.status == 200 and sink.body == BODY and sink.ended
        assert fut.result is None and conn.keep_alive and not conn.buf


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=25))
def test_sse_events_are_found_whatever_the_split(cuts):
    rec = RequestRecord(index=0)
    sink = _SSESink(rec, chat=False)
    _, fut = feed_in_pieces(CHUNKED, cuts, sink)
    assert fut.result is None
    assert sink.n_content == 6 and len(rec.chunk_ns) == 6 and sink.done


def test_malformed_chunking_fails_the_request_and_drops_the_connection():
    bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"
    conn, fut = feed_in_pieces(bad, [], Collect())
    assert fut.result[0] == "malformed" and conn.transport.aborted and not conn.keep_alive  # type: ignore[union-attr]


def test_connection_close_and_http10_are_not_reused_and_requests_are_serialised_once():
    for head in (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                 b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"):
        conn, fut = feed_in_pieces(head, [], Collect())
        assert fut.result is None and not conn.keep_alive
    target = Target.parse("https://user@example.com/prefix/")
    assert (target.scheme, target.host, target.port, target.host_header, target.prefix) == \
        ("https", "example.com", 443, "example.com", "/prefix")
    raw = build_request(target, "POST", "/v1/x", b"{}", {"A": "b"})
    assert raw.startswith(b"POST /prefix/v1/x HTTP/1.1\r\nHost: example.com\r\n")
    assert raw.endswith(b"A: b\r\nContent-Length: 2\r\n\r\n{}")


class KeepHeaders(Collect):
    def on_head(self, status, headers, t) -> None:
        self.status, self.headers = status, headers


def test_framing_read_from_the_raw_head_and_headers_parsed_when_read():
    """Framing headers are found in any case and position; the headers mapping is the same as a full parse
    (lower-case names, repeated values joined), and a header line without a colon fails the request when
    a sink reads the headers."""
    head = (b"HTTP/1.1 200 OK\r\nX-Id: A1\r\ncOnTeNt-LeNgTh:  2 \r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
            b"CONNECTION: Close\r\n\r\nok")
    sink = KeepHeaders()
    conn, fut = feed_in_pieces(head, [5, 40], sink)
    assert fut.result is None and sink.body == b"ok" and not conn.keep_alive
    assert dict(sink.headers) == {"x-id": "A1", "content-length": "2", "set-cookie": "a=1, b=2",
                                  "connection": "Close"}
    assert sink.headers.get("missing") is None and len(sink.headers) == 4

    conn, fut = feed_in_pieces(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", [], Collect())
    assert fut.result is None and conn.keep_alive  # HTTP/1.1 without Connection: keep-alive by default

    class ReadsHeaders(Collect):
        def on_head(self, status, headers, t) -> None:
            headers.get("content-type")

    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nno colon here\r\n\r\nok"
    conn, fut = feed_in_pieces(bad, [], ReadsHeaders())
    assert fut.result[0] == "malformed" and "bad header line" in fut.result[1]  # type: ignore[index]


def test_a_repeated_head_is_parsed_once_per_pool_and_answers_the_same():
    """The pool keeps the last parsed head: the same bytes again skip the parse and frame the answer the
    same way; another head (or an interim 100) is parsed as usual, and each connection keeps its own state."""
    import pytest_hwbench.workloads.http1 as http1

    pool = HTTP1Pool("http://127.0.0.1:1")
    parsed: list[bytes] = []
    real = http1._parse_head

    def counting(raw: bytes):
        parsed.append(raw)
        return real(raw)

    def answer(response: bytes, cuts: list[int]) -> tuple[_Conn, FakeFuture, KeepHeaders]:
        conn = _Conn(pool)
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        fut, sink = FakeFuture(), KeepHeaders()
        conn.begin(b"GET / HTTP/1.1\r\n\r\n", sink, fut)  # type: ignore[arg-type]
        points = sorted({c % (len(response) + 1) for c in cuts} | {0, len(response)})
        for a, b in itertools.pairwise(points):
            conn.data_received(response[a:b])
        return conn, fut, sink

    http1._parse_head = counting
    try:
        first = answer(LENGTH, [7])
        again = answer(LENGTH, [30, 31])
        for conn, fut, sink in (first, again):
            assert fut.result is None and sink.body == BODY and sink.ended and conn.keep_alive
        assert len(parsed) == 1 and again[2].headers["content-type"] == "text/event-stream"
        closing = answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", [])
        assert closing[1].result is None and not closing[0].keep_alive and len(parsed) == 2
        chunked = answer(CHUNKED, [3])
        assert chunked[2].body == BODY and len(parsed) == 4  # the 100 Continue and the final head
        assert answer(CHUNKED, [])[2].body == BODY and len(parsed) == 5  # the 100 is never kept
        bad = answer(b"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\nok", [])
        assert bad[1].result[0] == "malformed"  # type: ignore[index]
    finally:
        http1._parse_head = real
