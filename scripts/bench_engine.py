"""Benchmark: the load engine's own capacity, next to the tools people would otherwise use.

Why: a load generator that is slower or noisier than the server it measures reports its own limits as the
server's. This script puts two numbers on the engine, each next to an anchor, on the machine it runs on:

(a) **Plain HTTP request rate** — the engine (closed loop, ``http1`` client) and ``wrk`` against the same
    loopback server (a tiny asyncio server in its own process answering every request with a 2-byte body),
    same URL, same connection count, same duration; req/s and client CPU microseconds per request of
    each. The server's CPU share is printed: where it is ~100 %, the server, not the client, capped the
    rate (both tools then see the same ceiling).
(b) **Streamed events/s with correct ITL** — the engine's OpenAI client and a plain aiohttp loop written
    the way vLLM's ``benchmarks/backend_request_func.py`` (``async_request_openai_completions``) does it —
    an ``aiohttp.ClientSession`` per request, ``async for`` over ``response.content`` lines, ``data:``
    prefix stripped, ``json.loads``, ``time.perf_counter()`` per chunk — against the reference server
    (64 streams, TTFT 10 ms, ITL from ``--itl``, ~1 s answers), same closed loop and ramp-up. Per client:
    achieved content events/s (and its ratio to the other), ITL p50/p99/mean minus the configured ITL, the
    client's CPU share and CPU microseconds per event, and the server's own emission lateness (when it
    grows, the *server* fell behind and sends bursts: then several events share one read, ITL p50 -> 0).
    "ok" marks a run whose ITL p50 is within 0.5 ms and mean within 5 % of the configured value.

Run: ``python scripts/bench_engine.py`` (~1 minute). Installs ``wrk`` with apt-get when it is missing and
can (says so). The two sides of each comparison alternate (interleaved pairs); each ratio is printed as
min / median / max over ``--runs`` pairs next to its target; the load average is printed and the script
refuses a busy machine unless ``--allow-busy`` (``_bench_common.py``). Nothing runs at raised priority.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from _bench_common import LoadGuard, add_load_args, fmt_mmm, interleaved, machine_line, ratio_line

from pytest_hwbench.reference_server import ReferenceConfig, ReferenceServerProcess
from pytest_hwbench.workloads.engine import LoadSpec, run_load_sync
from pytest_hwbench.workloads.http1 import CollectSink, HTTP1Pool
from pytest_hwbench.workloads.llm_metrics import compute_llm_metrics
from pytest_hwbench.workloads.loop import resolve_event_loop
from pytest_hwbench.workloads.openai_client import OpenAIClientConfig
from pytest_hwbench.workloads.prompts import synthetic_prompts
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord

MODEL = "hwbench-reference"
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- machine
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (from /proc: no need to wait for it)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def ensure_wrk() -> tuple[str | None, str]:
    """Path of wrk, installing it with apt-get when missing; and a note for the report."""
    path = shutil.which("wrk")
    if path:
        return path, ""
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("wrk not found: running apt-get install -y wrk ...", flush=True)
        proc = subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True, text=True,
                              check=False, env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"})
        path = shutil.which("wrk")
        if path:
            return path, "wrk was missing: installed with apt-get install -y wrk"
        return None, f"wrk missing and apt-get failed: {proc.stderr.strip()[-300:]}"
    return None, "wrk missing (install it: apt-get install -y wrk); wrk columns left empty"


# ---------------------------------------------------------------------------------------------- (a) HTTP
class _TinyHTTP(asyncio.Protocol):
    """Answers every request head with the same 2-byte response (GET only, no bodies, keep-alive)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = buf.count(b"\r\n\r\n")
        if n:
            self.transport.write(_RESPONSE * n)
            buf = buf[buf.rfind(b"\r\n\r\n") + 4:]
        self.buf = buf


async def _serve_http() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_TinyHTTP, "127.0.0.1", 0, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


@contextlib.contextmanager
def tiny_http_server() -> Iterator[tuple[str, int]]:
    """The tiny server in its own process (``--serve-http`` of this script); yields (url, pid)."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve-http"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(5)


@dataclass(frozen=True)
class GetClientConfig:
    """Engine client for one plain GET: the same ``http1`` pool the protocol clients use."""

    url: str

    async def open(self) -> GetClient:
        return GetClient(self.url)


class GetClient:
    def __init__(self, url: str) -> None:
        self.pool = HTTP1Pool(url, timeout_s=30.0)
        self.raw = self.pool.request_bytes("GET", "/", None, {})

    async def send(self, index: int) -> RequestRecord:
        rec = RequestRecord(index=index)
        sink = CollectSink(limit=64)
        rec.send_ns = time.perf_counter_ns()
        failure = await self.pool.request(self.raw, sink)
        rec.end_ns = sink.end_ns or time.perf_counter_ns()
        if failure is not None:
            rec.fail(*failure)
        elif sink.status != 200:
            rec.fail(ErrorClass.HTTP_5XX if sink.status >= 500 else ErrorClass.HTTP_4XX, f"HTTP {sink.status}")
        return rec

    async def aclose(self) -> None:
        await self.pool.close()


@dataclass
class RateResult:
    rps: float
    p50_ms: float
    p99_ms: float
    client_cpu: float
    server_cpu: float
    errors: int = 0

    @property
    def cpu_us_per_request(self) -> float:
        """Client CPU time per request: what the client costs, less sensitive to neighbours than req/s."""
        return 1e6 * self.client_cpu / self.rps if self.rps else float("nan")


def engine_rate(url: str, server_pid: int, connections: int, duration_s: float) -> RateResult:
    cpu0 = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    res = run_load_sync(LoadSpec.closed(connections, duration_s=duration_s, warmup_requests=20 * connections),
                        GetClientConfig(url).open)
    wall = time.perf_counter() - t0
    server_cpu = (cpu_seconds(server_pid) - cpu0) / wall
    ok = [r for r in res.measured() if r.ok]
    lat = np.array([r.end_ns - r.send_ns for r in ok], dtype=np.float64) / 1e6
    window = (max(r.end_ns for r in ok) - min(r.send_ns for r in ok)) / 1e9
    return RateResult(rps=len(ok) / window, p50_ms=float(np.percentile(lat, 50)),
                      p99_ms=float(np.percentile(lat, 99)), client_cpu=res.self_check.client_cpu[0],
                      server_cpu=server_cpu, errors=len(res.measured()) - len(ok))


def _wrk_ms(text: str, label: str) -> float:
    m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]


def wrk_rate(wrk: str, url: str, server_pid: int, connections: int, duration_s: float) -> RateResult:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu0 = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen([wrk, "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", url + "/"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    server_cpu = (cpu_seconds(server_pid) - cpu0) / wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    client_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall
    return RateResult(rps=float(m.group(1)), p50_ms=_wrk_ms(out, "50%"), p99_ms=_wrk_ms(out, "99%"),
                      client_cpu=client_cpu, server_cpu=server_cpu, errors=int(errors.group(1)) if errors else 0)


# ---------------------------------------------------------------------------------------------- (b) streams
AIOHTTP_TIMEOUT = aiohttp.ClientTimeout(total=6 * 60 * 60)


@dataclass
class VllmStyleOutput:
    """The fields of vLLM's ``RequestFuncOutput`` this comparison uses (seconds, as vLLM keeps them)."""

    success: bool = False
    latency: float = 0.0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    error: str = ""
    start: float = 0.0
    chunks: int = 0
    warmup: bool = False


async def vllm_style_completions(api_url: str, payload: dict[str, Any]) -> VllmStyleOutput:
    """``async_request_openai_completions`` of vLLM's backend_request_func.py, kept to its shape.

    Differences, none of which touch the timing path: no tqdm bar, no Authorization header, no
    ``trust_env`` (proxy variables must not reroute loopback traffic here), and ``start`` / ``chunks``
    kept for the throughput window.
    """
    output = VllmStyleOutput()
    async with aiohttp.ClientSession(timeout=AIOHTTP_TIMEOUT) as session:
        generated_text = ""
        st = time.perf_counter()
        output.start = st
        most_recent_timestamp = st
        try:
            async with session.post(url=api_url, json=payload) as response:
                if response.status == 200:
                    first_chunk_received = False
                    async for chunk_bytes in response.content:
                        chunk_bytes = chunk_bytes.strip()
                        if not chunk_bytes:
                            continue
                        chunk = chunk_bytes.decode("utf-8").removeprefix("data: ")
                        if chunk != "[DONE]":
                            data = json.loads(chunk)
                            if choices := data.get("choices"):
                                text = choices[0].get("text")
                                timestamp = time.perf_counter()
                                if not first_chunk_received:
                                    first_chunk_received = True
                                    output.ttft = time.perf_counter() - st
                                else:
                                    output.itl.append(timestamp - most_recent_timestamp)
                                most_recent_timestamp = timestamp
                                generated_text += text or ""
                                output.chunks += 1
                            if usage := data.get("usage"):
                                output.output_tokens = usage.get("completion_tokens")
                    output.success = first_chunk_received
                    output.latency = most_recent_timestamp - st
                else:
                    output.error = response.reason or ""
        except Exception:
            output.error = "".join(traceback.format_exception(*sys.exc_info()))
    return output


async def vllm_style_closed_loop(api_url: str, streams: int, duration_s: float, warmup: int, ramp_s: float,
                                 prompts: list[str]) -> list[VllmStyleOutput]:
    """``streams`` concurrent users back to back (vLLM's max_concurrency with an infinite request rate),
    the same warm-up count, duration rule and ramp-up as the engine's closed loop."""
    outs: list[VllmStyleOutput] = []
    counter = 0
    deadline: float | None = None

    async def user(u: int) -> None:
        nonlocal counter, deadline
        await asyncio.sleep(u * ramp_s / streams)
        while True:
            j = counter
            counter += 1
            warm = j < warmup
            if not warm:
                now = time.perf_counter()
                if deadline is None:
                    deadline = now + duration_s
                elif now >= deadline:
                    return
            payload = {"model": MODEL, "prompt": prompts[j % len(prompts)], "temperature": 0.0,
                       "repetition_penalty": 1.0, "max_tokens": None, "stream": True,
                       "stream_options": {"include_usage": True}}
            out = await vllm_style_completions(api_url, payload)
            out.warmup = warm
            outs.append(out)

    await asyncio.gather(*(user(u) for u in range(streams)))
    return outs


@dataclass
class StreamResult:
    events_s: float
    itl_p50: float
    itl_p99: float
    itl_mean: float
    ttft_p50: float
    client_cpu: float
    server_late_p99: float
    server_late_mean: float
    errors: int


def _server_lateness(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/hwbench/stats", timeout=10) as resp:
        return json.load(resp)["emission_lateness_ms"]


def _reset(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url + "/hwbench/reset", method="POST"), timeout=10).close()


def engine_stream(url: str, streams: int, duration_s: float, itl_ms: float) -> StreamResult:
    _reset(url)
    cfg = OpenAIClientConfig(base_url=url, model=MODEL, api="completions", prompts=synthetic_prompts(64, 32),
                             max_tokens=None)
    res = run_load_sync(LoadSpec.closed(streams, duration_s=duration_s, warmup_requests=streams,
                                        ramp_up_s=itl_ms / 1e3), cfg.open)
    late = _server_lateness(url)
    m = compute_llm_metrics(res.records)
    ok = [r for r in res.measured() if r.ok]
    itl, ttft = m.samples["itl_ms"], m.samples["ttft_ms"]
    return StreamResult(events_s=sum(len(r.chunk_ns) for r in ok) / m.window_s,
                        itl_p50=float(np.percentile(itl, 50)), itl_p99=float(np.percentile(itl, 99)),
                        itl_mean=float(itl.mean()), ttft_p50=float(np.percentile(ttft, 50)),
                        client_cpu=res.self_check.client_cpu[0], server_late_p99=late["p99"],
                        server_late_mean=late["mean"], errors=m.counts["failed"])


def vllm_style_stream(url: str, streams: int, duration_s: float, itl_ms: float) -> StreamResult:
    _reset(url)
    prompts = [p.text for p in synthetic_prompts(64, 32)]
    cpu0, t0 = time.process_time(), time.perf_counter()

    # asyncio.run: the default event loop, as vLLM's benchmark runs it
    outs = asyncio.run(vllm_style_closed_loop(url + "/v1/completions", streams, duration_s, streams,
                                              itl_ms / 1e3, prompts))
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0)
    late = _server_lateness(url)
    measured = [o for o in outs if not o.warmup]
    ok = [o for o in measured if o.success]
    window = max(o.start + o.latency for o in ok) - min(o.start for o in measured)
    itl = np.array([g for o in ok for g in o.itl]) * 1e3
    ttft = np.array([o.ttft for o in ok]) * 1e3
    return StreamResult(events_s=sum(o.chunks for o in ok) / window, itl_p50=float(np.percentile(itl, 50)),
                        itl_p99=float(np.percentile(itl, 99)), itl_mean=float(itl.mean()),
                        ttft_p50=float(np.percentile(ttft, 50)), client_cpu=cpu,
                        server_late_p99=late["p99"], server_late_mean=late["mean"],
                        errors=len(measured) - len(ok))


# ---------------------------------------------------------------------------------------------- main
HTTP_TARGET = 0.6  # engine ÷ wrk at 64 connections, one client core (issue #14)
STREAM_TARGET = 1.0  # engine ÷ the vLLM-style aiohttp loop: at least as many events/s with correct ITL


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=64, help="(a) connections for both tools (default 64)")
    ap.add_argument("--http-duration", type=float, default=3.0, help="(a) seconds per tool and run")
    ap.add_argument("--streams", type=int, default=64, help="(b) concurrent streams (default 64)")
    ap.add_argument("--itl", default="5", help="(b) configured ITLs in ms, comma-separated (default 5)")
    ap.add_argument("--stream-duration", type=float, default=4.0, help="(b) measured seconds per client and run")
    ap.add_argument("--skip-streams", action="store_true", help="only (a)")
    add_load_args(ap)
    ap.add_argument("--serve-http", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_http:
        asyncio.run(_serve_http())
        return 0

    started = time.perf_counter()
    guard = LoadGuard.from_args(args)
    print(machine_line() + f", aiohttp {aiohttp.__version__}, event loop for closed loops: "
          f"{resolve_event_loop('auto', 'closed')}")
    guard.check("before")
    wrk, note = ensure_wrk()
    if note:
        print(note)

    # (a) ------------------------------------------------------------------------------------------------
    c = args.connections
    busy = "  [BUSY]" if guard.busy else ""
    print(f"\n(a) plain HTTP GET, loopback tiny asyncio server (own process), {c} connections, "
          f"{args.http_duration:g} s per tool, {args.runs} interleaved pairs{busy}")
    with tiny_http_server() as (url, pid):
        if wrk:
            eng, ref = interleaved(args.runs, lambda: engine_rate(url, pid, c, args.http_duration),
                                   lambda: wrk_rate(wrk, url, pid, c, args.http_duration), guard)
        else:
            eng, ref = [engine_rate(url, pid, c, args.http_duration) for _ in range(args.runs)], []
    print(f"{'tool':24} {'req/s min/med/max':>26} {'p50 ms':>7} {'p99 ms':>7} {'client CPU':>10} "
          f"{'CPU us/req':>10} {'server CPU':>10} {'errors':>6}")
    for name, results in (("engine (http1, 1 loop)", eng), ("wrk -t1", ref)):
        if not results:
            continue
        med = sorted(results, key=lambda r: r.rps)[len(results) // 2]
        print(f"{name:24} {fmt_mmm([r.rps for r in results], ',.0f'):>26} {med.p50_ms:7.2f} {med.p99_ms:7.2f} "
              f"{med.client_cpu:10.0%} {med.cpu_us_per_request:10.1f} {med.server_cpu:10.0%} "
              f"{sum(r.errors for r in results):6d}")
    if ref:
        print(ratio_line("engine ÷ wrk, req/s", [e.rps / w.rps for e, w in zip(eng, ref, strict=True)],
                         HTTP_TARGET, busy=guard.busy))
        print(ratio_line("engine ÷ wrk, client CPU per request (lower is better)",
                         [e.cpu_us_per_request / w.cpu_us_per_request for e, w in zip(eng, ref, strict=True)],
                         None))

    # (b) ------------------------------------------------------------------------------------------------
    if not args.skip_streams:
        itls = [float(v) for v in args.itl.split(",") if v.strip()]
        s = args.streams
        print(f"\n(b) streamed completions from the reference server (own process), {s} streams, TTFT 10 ms, "
              f"~1 s answers, {args.stream_duration:g} s measured per client, {args.runs} interleaved pairs{busy}")
        print(f"{'ITL':>5} {'client':22} {'events/s min/med/max':>26} {'ITL p50-cfg':>11} {'p99-cfg':>8} "
              f"{'mean-cfg':>8} {'TTFT p50':>8} {'CPU':>5} {'us/ev':>6} {'srv late p99':>12} {'err':>4}")
        for itl_ms in itls:
            tokens = max(50, round(1000 / itl_ms))
            cfg = ReferenceConfig(ttft_ms=10, itl_ms=itl_ms, output_tokens=tokens)
            with ReferenceServerProcess(cfg) as srv:
                assert srv.base_url is not None
                url = srv.base_url
                ours, theirs = interleaved(
                    args.runs, lambda url=url, itl_ms=itl_ms: engine_stream(url, s, args.stream_duration, itl_ms),
                    lambda url=url, itl_ms=itl_ms: vllm_style_stream(url, s, args.stream_duration, itl_ms), guard)
            for name, results in (("engine (openai_client)", ours), ("aiohttp, vLLM-style", theirs)):
                r = sorted(results, key=lambda x: x.events_s)[len(results) // 2]
                ok = abs(r.itl_p50 - itl_ms) <= 0.5 and abs(r.itl_mean - itl_ms) <= 0.05 * itl_ms
                print(f"{itl_ms:5g} {name:22} {fmt_mmm([x.events_s for x in results], ',.0f'):>26} "
                      f"{r.itl_p50 - itl_ms:+11.3f} {r.itl_p99 - itl_ms:+8.3f} {r.itl_mean - itl_ms:+8.3f} "
                      f"{r.ttft_p50:8.2f} {r.client_cpu:5.0%} {1e6 * r.client_cpu / r.events_s:6.1f} "
                      f"{r.server_late_p99:12.2f} {sum(x.errors for x in results):4d} "
                      f"{'ok' if ok else 'ITL off'}")
            print(ratio_line(f"ITL {itl_ms:g} ms: engine ÷ aiohttp loop, events/s",
                             [a.events_s / b.events_s for a, b in zip(ours, theirs, strict=True)], STREAM_TARGET,
                             busy=guard.busy))
    guard.check("after")
    print(f"\n{machine_line()}\n{guard.summary()}\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
