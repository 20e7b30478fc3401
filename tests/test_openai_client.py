"""OpenAI-compatible client against the reference server (in this process) and against raw fake servers.

Each fault of issue #3 must end as a classified record — never an exception out of ``send`` — and keep what
arrived before the fault. The in-process reference server shares the test's event loop: fine for protocol
and error handling; timing accuracy is tested with a server in its own process (test_engine_accuracy.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.reference_server import FAULT_HEADER, ReferenceConfig, ReferenceServer
from pytest_hwbench.workloads.openai_client import OpenAIClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts
from pytest_hwbench.workloads.records import ErrorClass

PROMPTS = synthetic_prompts(4, 40, seed=0)
MODEL = "hwbench-reference"


def serve(config: ReferenceConfig, body: Callable[[str, ReferenceServer], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        server = ReferenceServer(config)
        url = await server.start()
        try:
            return await body(url, server)
        finally:
            await server.stop()
    return asyncio.run(main())


def one(config: ReferenceConfig, n: int = 1, **client: Any) -> list:
    async def body(url: str, _: ReferenceServer) -> list:
        cfg = OpenAIClientConfig(base_url=url, model=client.pop("model", MODEL), prompts=PROMPTS, **client)
        c = await cfg.open()
        try:
            return [await c.send(i) for i in range(n)]
        finally:
            await c.aclose()
    return serve(config, body)


FAST = ReferenceConfig(ttft_ms=15, itl_ms=4, output_tokens=6)


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_streamed_answer_is_timed_and_counted_from_usage(api):
    recs = one(FAST, n=3, api=api, max_tokens=None)
    for r in recs:
        assert r.ok, r.error_detail
        assert r.status == 200 and r.tokens_out == 6 and not r.tokens_out_estimated
        assert r.tokens_in == PROMPTS[r.index].tokens and not r.tokens_in_estimated
        assert len(r.chunk_ns) == 6 and r.first_token_ns == r.chunk_ns[0]
        assert r.send_ns < r.first_byte_ns <= r.first_token_ns < r.end_ns
        ttft_ms = (r.first_token_ns - r.send_ns) / 1e6
        assert 15 <= ttft_ms < 15 + 30  # never early; the bound only catches gross errors on a busy box
        assert np.median(np.diff(r.chunk_ns)) / 1e6 == pytest.approx(4, abs=2)
        assert set(r.server_timing) == {"arrival_ns", "first_token_ns", "last_token_ns"}


def test_role_only_chunk_does_not_count_as_the_first_token():
    # the chat stream opens with {"delta": {"role": "assistant", "content": ""}} right away, 15 ms before
    # any content: a client stamping TTFT on it would report ~0 ms
    (r,) = one(FAST, api="chat")
    assert (r.first_token_ns - r.send_ns) / 1e6 >= 15
    assert (r.first_token_ns - r.first_byte_ns) / 1e6 >= 10


def test_without_usage_the_chunk_count_is_used_and_marked_estimated():
    (r,) = one(FAST, include_usage=False)
    assert r.ok and r.tokens_out == 6 and r.tokens_out_estimated and r.tokens_in_estimated


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_non_streamed_answer(api):
    (r,) = one(FAST, api=api, stream=False)
    assert r.ok and r.tokens_out == 6 and not r.tokens_out_estimated
    assert r.first_token_ns == r.end_ns and r.chunk_ns == [r.end_ns]
    assert (r.end_ns - r.send_ns) / 1e6 >= 15 + 5 * 4


def test_max_tokens_and_ignore_eos_reach_the_server():
    (r,) = one(ReferenceConfig(ttft_ms=1, itl_ms=1, output_tokens=50), max_tokens=7)
    assert r.tokens_out == 7
    (r,) = one(ReferenceConfig(ttft_ms=1, itl_ms=1, output_tokens=3), max_tokens=9, ignore_eos=True)
    assert r.tokens_out == 9


@pytest.mark.parametrize("fault, error_class, partial", [
    ("error", ErrorClass.HTTP_5XX, False),
    ("close", ErrorClass.STREAM_CLOSED, True),
    ("malformed", ErrorClass.MALFORMED, True),
    ("inband_error", ErrorClass.SERVER, True),
    ("empty", ErrorClass.EMPTY, False),
])
def test_each_fault_becomes_a_classified_record_keeping_partial_results(fault, error_class, partial):
    (r,) = one(ReferenceConfig(ttft_ms=2, itl_ms=1, output_tokens=10), headers={FAULT_HEADER: fault})
    assert r.error == error_class, r.error_detail
    assert r.error_detail
    assert r.end_ns >= r.send_ns > 0
    if partial:  # the fault strikes half-way: the first 5 tokens arrived and stay recorded
        assert len(r.chunk_ns) == 5 and r.first_token_ns == r.chunk_ns[0]
        assert r.tokens_out == 5 and r.tokens_out_estimated


def test_http_4xx_and_wrong_model_name():
    (r,) = one(ReferenceConfig(error_rate=1.0, error_status=429))
    assert r.error == ErrorClass.HTTP_4XX and r.status == 429 and "429" in r.error_detail
    (r,) = one(FAST, model="no-such-model")
    assert r.error == ErrorClass.HTTP_4XX and r.status == 404
    assert "wrong model name" in r.error_detail and "no-such-model" in r.error_detail

    async def body(url: str, _: ReferenceServer) -> None:
        c = await OpenAIClientConfig(base_url=url + "/v1/", model="other", prompts=PROMPTS).open()
        try:
            assert await c.list_models() == [MODEL]
            with pytest.raises(HwbenchInputError, match=MODEL):
                await c.check_model()
        finally:
            await c.aclose()
    serve(FAST, body)


def test_a_server_that_never_answers_is_a_timeout():
    (r,) = one(FAST, headers={FAULT_HEADER: "hang"}, timeout_s=0.3)
    assert r.error == ErrorClass.TIMEOUT and r.status is None
    assert 0.25 <= (r.end_ns - r.send_ns) / 1e9 < 2
    # a read timeout fires on silence in the middle of a stream, long before the total timeout
    (r,) = one(ReferenceConfig(ttft_ms=1, itl_ms=400, output_tokens=3), read_timeout_s=0.1, timeout_s=30)
    assert r.error == ErrorClass.TIMEOUT and len(r.chunk_ns) == 1 and "read timeout" in r.error_detail


def test_connection_refused_is_a_connection_error():
    async def body() -> Any:
        c = await OpenAIClientConfig(base_url="http://127.0.0.1:9", model=MODEL, prompts=PROMPTS).open()
        try:
            return await c.send(0)
        finally:
            await c.aclose()
    r = asyncio.run(body())
    assert r.error == ErrorClass.CONNECTION and "connect" in r.error_detail


def test_connections_are_kept_alive_between_requests():
    async def body(url: str, _: ReferenceServer) -> None:
        c = await OpenAIClientConfig(base_url=url, model=MODEL, prompts=PROMPTS).open()
        try:
            recs = [await c.send(i) for i in range(5)]
            assert all(r.ok for r in recs)
            assert len(c.http._all) == 1 and len(c.http._idle) == 1
            many = await asyncio.gather(*(c.send(i) for i in range(4)))
            assert all(r.ok for r in many) and len(c.http._all) == 4
        finally:
            await c.aclose()
    serve(ReferenceConfig(ttft_ms=1, itl_ms=1, output_tokens=3), body)


# ---------------------------------------------------------------------------------------------- raw servers
def raw_server(answers: list[bytes | None], *, requests: list[bytes] | None = None,
               close_after: bool = False) -> Callable[[Callable[[str], Awaitable[Any]]], Any]:
    """A TCP server that answers the k-th request it reads with ``answers[k]`` (None: close silently)."""
    def run(body: Callable[[str], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            count = 0

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                nonlocal count
                try:
                    while True:
                        head = await reader.readuntil(b"\r\n\r\n")
                        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                           if line.lower().startswith(b"content-length")), b"0"))
                        req = head + await reader.readexactly(length)
                        if requests is not None:
                            requests.append(req)
                        answer = answers[min(count, len(answers) - 1)]
                        count += 1
                        if answer is None:
                            break
                        writer.write(answer)
                        await writer.drain()
                        if close_after:
                            break
                except (asyncio.IncompleteReadError, ConnectionError):
                    pass
                writer.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                return await body(f"http://127.0.0.1:{port}")
            finally:
                server.close()
                await server.wait_closed()
        return asyncio.run(main())
    return run


def sse_response(events: list[str], *, chunked: bool = True, crlf: bool = False) -> bytes:
    sep = "\r\n" if crlf else "\n"
    payload = "".join(f"{e}{sep}{sep}" for e in events).encode()
    if chunked:
        body = b"".join(f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n"
                        for part in (payload[:7], payload[7:]) if part) + b"0\r\nX-Trailer: 1\r\n\r\n"
        return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
            + str(len(payload)).encode() + b"\r\n\r\n" + payload)


def chunk(text: str, finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})


def send_once(url: str, **client: Any) -> Any:
    async def go() -> Any:
        c = await OpenAIClientConfig(base_url=url, model=MODEL, prompts=PROMPTS, **client).open()
        try:
            return await c.send(0)
        finally:
            await c.aclose()
    return go()


def test_sse_variants_crlf_comments_multiline_and_trailers_parse():
    events = [": keep-alive comment", chunk("Hel"), "event: message\ndata: " + json.dumps(
        {"choices": [{"delta": {"reasoning_content": "hmm"}}]}), chunk("lo", "stop"),
              'data: {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3}}', "data: [DONE]"]
    requests: list[bytes] = []
    for crlf in (False, True):
        r = raw_server([sse_response(events, crlf=crlf)], requests=requests)(send_once)
        assert r.ok, r.error_detail
        assert len(r.chunk_ns) == 3 and r.tokens_out == 3 and r.tokens_in == 3
    head, _, body = requests[0].partition(b"\r\n\r\n")
    sent = json.loads(body)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == MODEL and sent["messages"][0]["role"] == "user"
    assert b"POST /v1/chat/completions HTTP/1.1" in head


@pytest.mark.parametrize("answer, error_class", [
    (b"SPDY/9 200 OK\r\n\r\n", ErrorClass.MALFORMED),
    (sse_response([chunk("a"), chunk("b")], chunked=False), ErrorClass.STREAM_CLOSED),  # no [DONE]
    (sse_response([chunk("a"), "data: {oops"]), ErrorClass.MALFORMED),
    (sse_response(['data: {"choices": 5}']), ErrorClass.MALFORMED),
    (sse_response(['data: {"error": {"message": "overloaded"}}']), ErrorClass.SERVER),
    (sse_response([chunk(""), "data: [DONE]"]), ErrorClass.EMPTY),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
     ErrorClass.MALFORMED),
    (b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", ErrorClass.HTTP_5XX),
    (None, ErrorClass.CONNECTION),  # accepted, then closed without a word
])
def test_broken_answers_are_classified(answer, error_class):
    r = raw_server([answer])(lambda url: send_once(url, timeout_s=5))
    assert r.error == error_class, r.error_detail


def test_plain_json_answers_and_their_failures():
    ok = json.dumps({"choices": [{"message": {"content": "hello there"}}]}).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(ok), ok)
    r = raw_server([answer])(lambda url: send_once(url, stream=False))
    assert r.ok and r.tokens_out == 3 and r.tokens_out_estimated  # no usage: ~4 chars/token estimate
    bad = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    assert raw_server([bad])(lambda url: send_once(url, stream=False)).error == ErrorClass.MALFORMED


def test_a_stale_keep_alive_connection_is_retried_once_on_a_fresh_one():
    good = sse_response([chunk("a", "stop"), "data: [DONE]"])
    # request 1 answered on connection A; request 2 reaches A, which the server closes without answering
    # (it had timed the idle connection out); the client must retry on connection B and succeed
    answers: list[bytes | None] = [good, None, good]

    async def body(url: str) -> list:
        c = await OpenAIClientConfig(base_url=url, model=MODEL, prompts=PROMPTS).open()
        try:
            return [await c.send(0), await c.send(1)]
        finally:
            await c.aclose()
    first, second = raw_server(answers)(body)
    assert first.ok and second.ok, second.error_detail


def test_a_run_through_faults_never_crashes_and_error_rate_counts_every_class():
    from pytest_hwbench.workloads.engine import LoadSpec, run_load
    from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics

    cfg = ReferenceConfig(ttft_ms=1, itl_ms=0.5, output_tokens=6, seed=2, error_rate=0.1,
                          faults=(("close", 0.05), ("malformed", 0.05), ("empty", 0.05), ("inband_error", 0.05),
                                  ("hang", 0.02)))

    async def body(url: str, _: ReferenceServer) -> Any:
        c = await OpenAIClientConfig(base_url=url, model=MODEL, prompts=PROMPTS, timeout_s=0.4).open()
        try:
            return await run_load(LoadSpec.closed(8, requests=200), c.send)
        finally:
            await c.aclose()
    res = serve(cfg, body)
    m = compute_llm_metrics(res.records)
    assert m.counts["attempted"] == 200
    assert set(m.errors) == {ErrorClass.HTTP_5XX, ErrorClass.STREAM_CLOSED, ErrorClass.MALFORMED,
                             ErrorClass.EMPTY, ErrorClass.SERVER, ErrorClass.TIMEOUT}
    assert m.scalars["error_rate"] == pytest.approx(sum(m.errors.values()) / 200)
    assert 0.2 < m.scalars["error_rate"] < 0.45  # 32 % injected
    assert m.counts["succeeded"] > 100  # the good ones are still measured, and the failures stay in the tail
    assert m.samples["e2el_ms"].size == m.counts["attempted"]
