"""Ollama native client against the reference server's /api endpoints and a raw fake server.

Besides the client's own timings, each record must carry the server's accounting (eval_count,
eval_duration, prompt_eval_duration, ...) so that the two can be compared: the test checks that they agree
with each other and with the configured timing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from pytest_hwbench.reference_server import FAULT_HEADER, ReferenceConfig, ReferenceServer
from pytest_hwbench.workloads.ollama_client import SERVER_TIMING_FIELDS, OllamaClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts
from pytest_hwbench.workloads.records import ErrorClass

PROMPTS = synthetic_prompts(3, 30, seed=4)
MODEL = "hwbench-reference"


def run(config: ReferenceConfig, n: int = 1, **client: Any) -> list:
    async def main() -> list:
        server = ReferenceServer(config)
        url = await server.start()
        try:
            c = await OllamaClientConfig(base_url=url, model=client.pop("model", MODEL), prompts=PROMPTS,
                                         **client).open()
            try:
                return [await c.send(i) for i in range(n)]
            finally:
                await c.aclose()
        finally:
            await server.stop()
    return asyncio.run(main())


@pytest.mark.parametrize("api", ["generate", "chat"])
def test_stream_is_timed_and_server_accounting_is_kept(api):
    recs = run(ReferenceConfig(ttft_ms=20, itl_ms=5, output_tokens=100), n=2, api=api, max_tokens=8)
    for r in recs:
        assert r.ok, r.error_detail
        assert r.tokens_out == 8 and not r.tokens_out_estimated  # num_predict reached the server
        assert r.tokens_in == PROMPTS[r.index].tokens and not r.tokens_in_estimated
        assert len(r.chunk_ns) == 8 and r.first_token_ns == r.chunk_ns[0]
        st = r.server_timing
        assert set(st) == set(SERVER_TIMING_FIELDS) and st["eval_count"] == 8
        # the server's view agrees with the configuration (it sleeps to deadlines: never early)
        assert st["prompt_eval_duration"] / 1e6 >= 20
        assert st["eval_duration"] / 1e6 / (st["eval_count"] - 1) == pytest.approx(5, abs=1.5)
        # ... and with the client's: the client's TTFT includes the server's and the transport's
        client_ttft = r.first_token_ns - r.send_ns
        assert client_ttft >= st["prompt_eval_duration"]
        client_span = r.chunk_ns[-1] - r.chunk_ns[0]
        assert abs(client_span - st["eval_duration"]) / 1e6 < 10
        assert np.median(np.diff(r.chunk_ns)) / 1e6 == pytest.approx(5, abs=2)


@pytest.mark.parametrize("fault, error_class, partial", [
    ("error", ErrorClass.HTTP_5XX, False),
    ("close", ErrorClass.STREAM_CLOSED, True),
    ("malformed", ErrorClass.MALFORMED, True),
    ("inband_error", ErrorClass.SERVER, True),
    ("empty", ErrorClass.EMPTY, False),
])
def test_faults_are_classified_and_partial_results_kept(fault, error_class, partial):
    (r,) = run(ReferenceConfig(ttft_ms=2, itl_ms=1, output_tokens=10), headers={FAULT_HEADER: fault},
               max_tokens=10)
    assert r.error == error_class, r.error_detail
    if partial:
        assert len(r.chunk_ns) == 5 and r.first_token_ns == r.chunk_ns[0] and r.tokens_out == 5


def test_wrong_model_timeout_and_model_list():
    (r,) = run(ReferenceConfig(), model="llama9:70b")
    assert r.error == ErrorClass.HTTP_4XX and r.status == 404 and "llama9:70b" in r.error_detail
    (r,) = run(ReferenceConfig(), headers={FAULT_HEADER: "hang"}, timeout_s=0.3)
    assert r.error == ErrorClass.TIMEOUT

    async def models() -> list[str]:
        server = ReferenceServer()
        url = await server.start()
        try:
            c = await OllamaClientConfig(base_url=url + "/api", model=MODEL, prompts=PROMPTS).open()
            try:
                return await c.list_models()
            finally:
                await c.aclose()
        finally:
            await server.stop()
    assert asyncio.run(models()) == [MODEL]


def test_a_stream_without_done_line_is_stream_closed():
    lines = [{"model": MODEL, "response": "a", "done": False}, {"model": MODEL, "response": "b", "done": False}]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: "
              + str(len(body)).encode() + b"\r\n\r\n" + body)

    async def main() -> Any:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            c = await OllamaClientConfig(base_url=f"http://127.0.0.1:{port}", model=MODEL, prompts=PROMPTS).open()
            try:
                return await c.send(0)
            finally:
                await c.aclose()
        finally:
            server.close()
    r = asyncio.run(main())
    assert r.error == ErrorClass.STREAM_CLOSED and len(r.chunk_ns) == 2 and r.tokens_out_estimated
