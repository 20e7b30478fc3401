"""Reference server (a fake whose timing is known, used as ground truth): its API, its distributions,
capacity queue, stall, fault injection, command line and subprocess wrapper.

If the reference is wrong, every accuracy claim built on it is wrong, so its own behaviour is pinned here
with a plain aiohttp client (independent of the load clients under test).
"""

from __future__ import annotations

import asyncio
import json
import math
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.reference_server import (
    FAULT_HEADER,
    Dist,
    ReferenceConfig,
    ReferenceServer,
    ReferenceServerProcess,
    build_parser,
    config_from_args,
    main,
)

MODEL = "hwbench-reference"


def serve(config: ReferenceConfig, body: Callable[[aiohttp.ClientSession, str, ReferenceServer], Awaitable[Any]]):
    async def run() -> Any:
        server = ReferenceServer(config)
        url = await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                return await body(session, url, server)
        finally:
            await server.stop()
    return asyncio.run(run())


async def sse_events(session: aiohttp.ClientSession, url: str, payload: dict, **kw: Any) -> list:
    """(arrival seconds, event) pairs of one streamed answer."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    out = []
    async with session.post(url, json=payload, **kw) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        async for line in resp.content:
            if line.startswith(b"data: "):
                data = line[6:].strip()
                out.append((loop.time() - t0, data if data == b"[DONE]" else json.loads(data)))
    return out


# ---------------------------------------------------------------------------------------------- distributions
def test_distribution_specs_parse_round_trip_and_reject_nonsense():
    for spec in ("50", "constant:50", "uniform:40,60", "normal:50,5", "lognormal:50,10"):
        d = Dist.parse(spec)
        assert Dist.parse(str(d)) == d
    assert Dist.parse(12.5) == Dist("constant", 12.5)
    for bad in ("gauss:1,2", "uniform:5", "uniform:9,1", "lognormal:0,1", "normal:-1,2", "x"):
        with pytest.raises(HwbenchInputError, match="distribution"):
            Dist.parse(bad)


def test_distributions_have_the_configured_moments_and_are_never_negative():
    rng = np.random.default_rng(0)
    n = 40_000
    u = Dist.parse("uniform:40,60").sample(rng, n)
    assert u.min() >= 40 and u.max() <= 60 and u.mean() == pytest.approx(50, rel=0.01)
    ln = Dist.parse("lognormal:50,10").sample(rng, n)
    assert ln.mean() == pytest.approx(50, rel=0.02) and ln.std() == pytest.approx(10, rel=0.05)
    no = Dist.parse("normal:1,5").sample(rng, n)
    assert no.min() >= 0  # clipped: a negative delay is meaningless
    assert Dist.parse("7").sample(rng) == 7.0 and Dist.parse("7").mean == 7.0


def test_config_validation_and_command_line_round_trip():
    for kwargs, field in ((dict(faults=(("explode", 0.1),)), "faults"), (dict(error_rate=0.7, faults=(("close", 0.5),)),
                          "faults"), (dict(capacity=0), "capacity"), (dict(error_status=200), "error_status")):
        with pytest.raises(HwbenchInputError, match=field):
            ReferenceConfig(**kwargs)
    cfg = ReferenceConfig(model="m", ttft_ms="lognormal:80,20", itl_ms="uniform:5,7", output_tokens="normal:100,10",
                          capacity=3, error_rate=0.1, faults=(("close", 0.05),), stall_at_s=1.5, stall_s=0.5, seed=9)
    again = config_from_args(build_parser().parse_args(cfg.to_argv()))
    # error_rate travels as the equivalent fault "error:0.1": same behaviour, one spelling
    assert again.fault_table() == cfg.fault_table()
    assert replace(again, error_rate=0, faults=()) == replace(cfg, error_rate=0, faults=())
    assert cfg.fault_table() == [("error", 0.1), ("close", 0.05)]
    assert json.dumps(cfg.to_dict())  # plain JSON for reports


# ---------------------------------------------------------------------------------------------- endpoints
def test_small_endpoints_and_bad_requests():
    async def body(s: aiohttp.ClientSession, url: str, server: ReferenceServer) -> None:
        assert await (await s.get(url + "/health")).json() == {"status": "ok"}
        models = await (await s.get(url + "/v1/models")).json()
        assert [m["id"] for m in models["data"]] == [MODEL]
        assert (await (await s.get(url + "/api/tags")).json())["models"][0]["name"] == MODEL
        assert (await s.get(url + "/api/version")).status == 200
        r = await s.post(url + "/v1/completions", data=b"{nope")
        assert r.status == 400 and "JSON" in (await r.json())["error"]["message"]
        r = await s.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": []})
        assert r.status == 400
        r = await s.post(url + "/v1/completions", json={"model": "gpt-9", "prompt": "x"})
        assert r.status == 404 and "gpt-9" in (await r.json())["error"]["message"]
        r = await s.post(url + "/api/generate", json={"model": "gpt-9", "prompt": "x"})
        assert r.status == 404 and "gpt-9" in (await r.json())["error"]
        stats = await (await s.get(url + "/hwbench/stats")).json()
        assert stats["requests"] == 4 and stats["config"]["model"] == MODEL
        assert (await s.post(url + "/hwbench/reset")).status == 200
        assert (await (await s.get(url + "/hwbench/stats")).json())["requests"] == 0
    serve(ReferenceConfig(), body)


def test_chat_stream_has_the_openai_shape_and_the_configured_timing():
    cfg = ReferenceConfig(ttft_ms=30, itl_ms=10, output_tokens=5)

    async def body(s: aiohttp.ClientSession, url: str, server: ReferenceServer) -> list:
        return await sse_events(s, url + "/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "user", "content": "x" * 40}], "stream": True,
            "stream_options": {"include_usage": True}})
    events = serve(cfg, body)
    assert events[-1][1] == b"[DONE]"
    role, *content, usage, _ = events
    assert role[1]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(content) == 5 and all(e["object"] == "chat.completion.chunk" for _, e in content)
    assert [e["choices"][0]["finish_reason"] for _, e in content] == [None] * 4 + ["stop"]
    assert usage[1]["choices"] == [] and usage[1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5,
                                                               "total_tokens": 15}
    times = np.array([t for t, _ in content])
    # Absolute deadlines: token k is never sent before ttft + k * itl (a server that sent early or all at
    # once fails here); lateness only adds, and on a loaded machine it can add tens of milliseconds, so the
    # upper bound is loose and the pacing is checked by the lower one.
    assert np.all(times >= 0.030 + 0.010 * np.arange(5) - 0.001), times
    assert times[-1] < 0.070 + 2.0, times
    assert role[0] <= times[0]  # the role chunk leads, before the first token's deadline
    timing = usage[1]["hwbench_timing"]
    assert timing["arrival_ns"] < timing["first_token_ns"] < timing["last_token_ns"]


def test_output_length_honours_max_tokens_and_seeded_draws_repeat():
    cfg = ReferenceConfig(ttft_ms=0, itl_ms=0, output_tokens="uniform:1,40", seed=11)

    async def lengths(s: aiohttp.ClientSession, url: str, server: ReferenceServer) -> list[int]:
        out = []
        for max_tokens in (None, None, None, 3, None):
            payload = {"model": MODEL, "prompt": "hi"} | ({"max_tokens": max_tokens} if max_tokens else {})
            data = await (await s.post(url + "/v1/completions", json=payload)).json()
            out.append(data["usage"]["completion_tokens"])
        return out
    a = serve(cfg, lengths)
    assert a == serve(cfg, lengths) and a != serve(ReferenceConfig(output_tokens="uniform:1,40", seed=12,
                                                                   ttft_ms=0, itl_ms=0), lengths)
    assert a[3] <= 3 and len(set(a)) > 1


def test_capacity_limit_queues_the_excess_in_fifo_order():
    cfg = ReferenceConfig(ttft_ms=40, itl_ms=1, output_tokens=1, capacity=2)

    async def body(s: aiohttp.ClientSession, url: str, server: ReferenceServer) -> tuple:
        loop = asyncio.get_running_loop()

        async def one() -> float:
            t0 = loop.time()
            await (await s.post(url + "/v1/completions", json={"model": MODEL, "prompt": "x"})).read()
            return loop.time() - t0
        times = sorted(await asyncio.gather(*(one() for _ in range(6))))
        return times, await (await s.get(url + "/hwbench/stats")).json()
    times, stats = serve(cfg, body)
    assert stats["max_inflight"] == 2 and stats["max_queued"] == 4
    # three waves of two: ~40, ~80, ~120 ms. Lower bounds are exact (the server is never early); that the
    # first wave did not queue is max_queued == 4 above (no upper time bound: a loaded runner adds lateness)
    assert times[0] >= 0.039 and times[2] >= 0.078 and times[4] >= 0.118
    assert stats["queue_wait_ms"]["max"] >= 78


def test_stall_freezes_every_stream_for_its_duration():
    cfg = ReferenceConfig(ttft_ms=10, itl_ms=50, output_tokens=6, stall_at_s=0.1, stall_s=0.4)

    async def body(s: aiohttp.ClientSession, url: str, server: ReferenceServer) -> list:
        return await sse_events(s, url + "/v1/completions", {"model": MODEL, "prompt": "x", "stream": True})
    times = np.array([t for t, e in serve(cfg, body) if isinstance(e, dict)])
    # deadlines 10, 60, [110 falls in the 100-500 ms stall -> 500], 550, 600, 650 ms
    # Each token no earlier than its deadline (the stall holds the third until 500 ms, and the later ones keep
    # their absolute deadlines); lateness on a loaded machine only adds, so the upper bound is loose.
    assert np.all(times >= np.array([0.010, 0.060, 0.500, 0.550, 0.600, 0.650]) - 0.001), times
    assert times[-1] < 0.65 + 1.0, times


def test_fault_probabilities_and_the_forcing_header():
    cfg = ReferenceConfig(ttft_ms=0, itl_ms=0, output_tokens=1, error_rate=0.3, seed=5)

    async def body(s: aiohttp.ClientSession, url: str, server: ReferenceServer) -> tuple:
        statuses = []
        for _ in range(300):
            r = await s.post(url + "/v1/completions", json={"model": MODEL, "prompt": "x"})
            statuses.append(r.status)
            await r.read()
        forced = await s.post(url + "/v1/completions", json={"model": MODEL, "prompt": "x"},
                              headers={FAULT_HEADER: "empty"})
        return statuses, await forced.json(), server.stats.faults
    statuses, forced, faults = serve(cfg, body)
    share = statuses.count(500) / 300
    assert abs(share - 0.3) < 3 * math.sqrt(0.3 * 0.7 / 300)
    assert forced["usage"]["completion_tokens"] == 0 and forced["choices"][0]["text"] == ""
    assert faults["error"] == statuses.count(500) and faults["empty"] == 1


# ---------------------------------------------------------------------------------------------- command line
def test_main_help_and_bad_arguments(capsys):
    assert main(["--help"]) == 0
    assert "reference server" in capsys.readouterr().out.lower()
    assert main(["--ttft-ms", "gauss:1"]) == 2
    assert "distribution" in capsys.readouterr().err
    assert main(["--port", "not-a-port"]) == 2


def test_subprocess_server_starts_answers_and_stops():
    with ReferenceServerProcess(ReferenceConfig(ttft_ms=5, output_tokens=2)) as proc:
        assert proc.base_url and proc.base_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(proc.base_url + "/health", timeout=5) as resp:
            assert json.load(resp) == {"status": "ok"}
        pid = proc._proc.pid  # type: ignore[union-attr]
        assert pid > 0
    assert proc._proc is None  # stopped (SIGTERM, waited for)
