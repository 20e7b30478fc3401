"""Reference server: a fake LLM server whose timing is known, used as ground truth.

It generates no text worth reading. It answers the OpenAI-compatible API (``/v1/completions``,
``/v1/chat/completions``, ``/v1/models``, ``/health``) and Ollama's native API (``/api/generate``,
``/api/chat``, ``/api/tags``), streaming or not, with a time to first token, inter-token latencies and output
lengths drawn from configured distributions. Because the truth is known, it is what the load engine and the
protocol clients are tested against (accuracy of ttft/itl, error classification), and what a sweep is checked
against (a capacity limit gives a knee at a known load).

Timing model, per request:

1. Arrival = the moment the server process read the request's last byte (stamped in the protocol's
   ``data_received``, not at handler entry: aiohttp needs a few loop iterations to reach the handler, which
   on a busy server is milliseconds that would otherwise be added on top of the configured TTFT).
2. Service starts at arrival or, when ``capacity`` requests are already being served, when the request gets
   a slot (FIFO queue; the wait is part of TTFT, as on a real server whose batch is full).
3. First token at ``start + ttft``, token ``k`` at ``deadline[k-1] + itl[k]`` — **absolute deadlines**, each
   computed from the previous *deadline*, never from when the previous write actually happened, so
   emission lateness never accumulates and the configured ITL is what the wire sees on average.
4. Stall (``stall_at_s``, ``stall_s``): the server produces nothing between ``origin + stall_at_s`` and
   ``origin + stall_at_s + stall_s``, where ``origin`` is the arrival of the first request since start (or
   since ``POST /hwbench/reset``). A deadline falling in the window moves to its end and the rest of that
   stream shifts with it: as if the process was frozen.

Timers: the server runs on a ``select()``-based loop with the thread's timer slack lowered (see
``workloads.loop``), because epoll's millisecond timeouts would make every token ~0.5 ms late on average;
its start-up heap is frozen out of the garbage collector's scans. It measures its own emission lateness
(actual wake-up - deadline) and reports it at ``GET /hwbench/stats`` (with queue waits and its own TTFT), so
a client's accuracy can be separated from the server's. With ``stream_options.include_usage`` the usage
chunk also carries ``hwbench_timing`` — the server's ``perf_counter_ns`` instants of arrival, first and last
token — an extension OpenAI clients ignore; on one Linux host all processes read the same CLOCK_MONOTONIC,
so a client can subtract them from its own instants to see exactly what transport and client add.

Distributions (``--ttft-ms``, ``--itl-ms``, ``--output-tokens``): ``50`` or ``constant:50``,
``uniform:LOW,HIGH``, ``normal:MEAN,STD`` (clipped at 0), ``lognormal:MEAN,STD`` (mean and standard
deviation of the value itself, not of its log). Output lengths are rounded and at least 1; a request's
``max_tokens`` caps the length (or sets it, with vLLM's ``ignore_eos: true``). All draws come from one
seeded generator, so a given seed and arrival order give the same timings.

Faults, each with a probability (``--fault KIND:P``, ``--error-rate P`` = ``error:P``), or forced per
request with the header ``X-Hwbench-Fault: KIND`` (a test hook): ``error`` (HTTP ``--error-status``, 500 by
default), ``close`` (connection dropped half-way through the stream), ``malformed`` (a corrupt event half-way),
``inband_error`` (an error object inside the 200 stream), ``empty`` (a well-formed answer without content),
``hang`` (accepts the request and never answers). The half-way faults (close, malformed, inband_error) apply
to streamed answers; a non-streamed one is answered normally. A request for another model than ``--model``
gets 404, as real servers do.

Ollama timings in the final ``done`` line are the server's own: ``prompt_eval_duration`` = slot → first
token, ``eval_duration`` = first → last token (so ``eval_duration / (eval_count - 1)`` is the mean ITL),
``total_duration`` = arrival → end, all in ns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from aiohttp import web

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.services.base import restore_default_signals
from pytest_hwbench.workloads.loop import new_event_loop, precise_timers, sleep_until

DEFAULT_MODEL = "hwbench-reference"
FAULT_KINDS = ("error", "close", "malformed", "inband_error", "empty", "hang")
FAULT_HEADER = "X-Hwbench-Fault"
_READY_PREFIX = "hwbench reference-server listening on "

DistKind = Literal["constant", "uniform", "normal", "lognormal"]
_DIST_KINDS = ("constant", "uniform", "normal", "lognormal")

_TOKEN_WORDS = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do",
                "eiusmod", "tempor", "incididunt", "ut", "labore", "et", "dolore", "magna", "aliqua", "enim")
_TOKENS_JSON = [json.dumps(" " + w).encode() for w in _TOKEN_WORDS]


@dataclass(frozen=True)
class Dist:
    """A distribution of non-negative values: ``constant`` (a), ``uniform`` (a..b), ``normal`` (mean a,
    std b), ``lognormal`` (mean a, std b of the value)."""

    kind: DistKind = "constant"
    a: float = 0.0
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _DIST_KINDS:
            raise HwbenchInputError(f"unknown distribution {self.kind!r}", field="distribution",
                                    fix=f"use one of {', '.join(_DIST_KINDS)}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)) or self.a < 0 or self.b < 0:
            raise HwbenchInputError(f"distribution parameters must be finite and >= 0, got {self}",
                                    field="distribution", fix="give non-negative numbers")
        if self.kind == "uniform" and self.b < self.a:
            raise HwbenchInputError(f"uniform needs LOW <= HIGH, got {self.a},{self.b}", field="distribution",
                                    fix="write uniform:LOW,HIGH")
        if self.kind == "lognormal" and self.a <= 0:
            raise HwbenchInputError("lognormal needs a mean > 0", field="distribution",
                                    fix="write lognormal:MEAN,STD with MEAN > 0")

    @classmethod
    def parse(cls, spec: str | float | Dist) -> Dist:
        """``"50"``, ``"constant:50"``, ``"uniform:40,60"``, ``"normal:50,5"``, ``"lognormal:50,10"``."""
        if isinstance(spec, Dist):
            return spec
        if isinstance(spec, (int, float)):
            return cls("constant", float(spec))
        text = str(spec).strip()
        kind, _, params = text.partition(":") if ":" in text else ("constant", "", text)
        try:
            values = [float(v) for v in params.split(",") if v.strip()]
        except ValueError:
            values = []
        need = 1 if kind == "constant" else 2
        if kind not in _DIST_KINDS or len(values) != need:
            raise HwbenchInputError(f"cannot read distribution {text!r}", field="distribution",
                                    fix="write 50, constant:50, uniform:LOW,HIGH, normal:MEAN,STD or "
                                        "lognormal:MEAN,STD")
        return cls(kind, values[0], values[1] if need == 2 else 0.0)  # type: ignore[arg-type]

    def __str__(self) -> str:
        if self.kind == "constant":
            return f"constant:{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"

    @property
    def mean(self) -> float:
        """Mean of the distribution before clipping at 0 (exact for all but a normal near 0)."""
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def sample(self, rng: np.random.Generator, size: int | None = None) -> Any:
        """Draw ``size`` values (a float when ``size`` is None); never negative."""
        if self.kind == "constant":
            return self.a if size is None else np.full(size, self.a)
        if self.kind == "uniform":
            out = rng.uniform(self.a, self.b, size)
        elif self.kind == "normal":
            out = rng.normal(self.a, self.b, size)
        else:
            sigma2 = math.log1p((self.b / self.a) ** 2)
            out = rng.lognormal(math.log(self.a) - sigma2 / 2, math.sqrt(sigma2), size)
        return np.maximum(out, 0.0) if size is not None else max(float(out), 0.0)


@dataclass(frozen=True)
class ReferenceConfig:
    """Everything that shapes the reference server's answers (see the module doc)."""

    model: str = DEFAULT_MODEL
    ttft_ms: Dist = field(default_factory=lambda: Dist("constant", 50.0))
    itl_ms: Dist = field(default_factory=lambda: Dist("constant", 10.0))
    output_tokens: Dist = field(default_factory=lambda: Dist("constant", 64.0))
    capacity: int | None = None
    error_rate: float = 0.0
    error_status: int = 500
    faults: tuple[tuple[str, float], ...] = ()
    stall_at_s: float | None = None
    stall_s: float = 0.0
    seed: int = 0
    hang_s: float = 3600.0
    cpu_ms_per_token: float = 0.0
    leak_kb_per_request: int = 0

    def __post_init__(self) -> None:
        for name in ("ttft_ms", "itl_ms", "output_tokens"):
            object.__setattr__(self, name, Dist.parse(getattr(self, name)))
        for kind, p in self.fault_table():
            if kind not in FAULT_KINDS:
                raise HwbenchInputError(f"unknown fault {kind!r}", field="faults",
                                        fix=f"use one of {', '.join(FAULT_KINDS)}")
            if not 0 <= p <= 1:
                raise HwbenchInputError(f"fault probability must be in [0, 1], got {kind}:{p}", field="faults",
                                        fix="give a probability between 0 and 1")
        if sum(p for _, p in self.fault_table()) > 1 + 1e-9:
            raise HwbenchInputError("fault probabilities add up to more than 1", field="faults",
                                    fix="lower them")
        if self.capacity is not None and self.capacity < 1:
            raise HwbenchInputError(f"capacity must be >= 1, got {self.capacity}", field="capacity",
                                    fix="give a positive number of concurrent requests, or none")
        if not 400 <= self.error_status <= 599:
            raise HwbenchInputError(f"error_status must be an HTTP error code, got {self.error_status}",
                                    field="error_status", fix="use 4xx or 5xx")
        if self.stall_s < 0 or (self.stall_at_s is not None and self.stall_at_s < 0):
            raise HwbenchInputError("stall times must be >= 0", field="stall_s", fix="fix the sign")
        if not math.isfinite(self.cpu_ms_per_token) or self.cpu_ms_per_token < 0 or self.leak_kb_per_request < 0:
            raise HwbenchInputError("cpu_ms_per_token and leak_kb_per_request must be >= 0",
                                    field="cpu_ms_per_token", fix="give 0 (off) or a positive number")

    def fault_table(self) -> list[tuple[str, float]]:
        table = [(k, float(p)) for k, p in self.faults if k != "error"]
        error = self.error_rate + sum(float(p) for k, p in self.faults if k == "error")
        return ([("error", error)] if error > 0 else []) + table

    def to_argv(self) -> list[str]:
        """Command-line arguments that recreate this config (for running it in a subprocess)."""
        argv = ["--model", self.model, "--ttft-ms", str(self.ttft_ms), "--itl-ms", str(self.itl_ms),
                "--output-tokens", str(self.output_tokens), "--error-status", str(self.error_status),
                "--seed", str(self.seed), "--hang-s", repr(self.hang_s)]
        if self.capacity is not None:
            argv += ["--capacity", str(self.capacity)]
        for kind, p in self.fault_table():
            argv += ["--fault", f"{kind}:{p!r}"]
        if self.stall_at_s is not None:
            argv += ["--stall-at-s", repr(self.stall_at_s), "--stall-s", repr(self.stall_s)]
        if self.cpu_ms_per_token:
            argv += ["--cpu-ms-per-token", repr(self.cpu_ms_per_token)]
        if self.leak_kb_per_request:
            argv += ["--leak-kb-per-request", str(self.leak_kb_per_request)]
        return argv

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("ttft_ms", "itl_ms", "output_tokens"):
            out[name] = str(getattr(self, name))
        out["faults"] = [[k, p] for k, p in self.fault_table()]
        return out


@dataclass
class _Plan:
    """What the server will do for one request, drawn when the request arrives."""

    fault: str | None
    ttft_s: float
    n: int
    itl_s: np.ndarray
    prompt_tokens: int
    finish: str


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.faults: dict[str, int] = {}
        self.inflight = 0
        self.max_inflight = 0
        self.queued = 0
        self.max_queued = 0
        self.lateness = array("d")
        self.queue_wait = array("d")
        self.ttft = array("d")

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "completed": self.completed, "faults": dict(self.faults),
                "inflight": self.inflight, "max_inflight": self.max_inflight, "queued": self.queued,
                "max_queued": self.max_queued, "emission_lateness_ms": _summary_ms(self.lateness),
                "queue_wait_ms": _summary_ms(self.queue_wait), "server_ttft_ms": _summary_ms(self.ttft)}


def _burn_cpu(seconds: float) -> None:
    """Keep this thread (the server's only one) busy for ``seconds``: work per token, as a real server spends
    on each decode step, so the server saturates one core at a known load (``--cpu-ms-per-token``)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _summary_ms(values: array) -> dict[str, float]:
    arr = np.frombuffer(values, dtype=np.float64) * 1e3 if len(values) else np.zeros(0)
    out: dict[str, float] = {"count": int(arr.size)}
    if arr.size:
        p50, p99 = np.percentile(arr, [50, 99])
        out |= {"mean": float(arr.mean()), "p50": float(p50), "p99": float(p99), "max": float(arr.max())}
    return out


def _prompt_tokens(text: str) -> int:
    # same ~4 chars/token approximation as workloads.prompts (the reference server has no tokenizer)
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _json_error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


class _ArrivalStamp(asyncio.Protocol):
    """Stands between a socket and aiohttp's protocol to note when each read arrived.

    Only public pieces are used (``AppRunner.server`` is aiohttp's protocol factory; handlers find their
    connection's stamp through ``request.transport``). Requests on one connection are answered one at a
    time (no pipelining from the load clients), so the connection's latest read is its request's last byte.
    """

    def __init__(self, inner: asyncio.Protocol, table: dict[Any, int]) -> None:
        self.inner = inner
        self.table = table
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.table[self.transport] = time.perf_counter_ns()
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.table.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class ReferenceServer:
    """The reference server in this process: ``await start()`` → base URL, ``await stop()``.

    Runs on the caller's event loop, so server and client share a core and a loop: fine for functional
    tests (faults, protocol), not for timing accuracy — use :class:`ReferenceServerProcess` for that.
    """

    def __init__(self, config: ReferenceConfig | None = None) -> None:
        self.config = config or ReferenceConfig()
        self.stats = _Stats()
        self._rng = np.random.default_rng(self.config.seed)
        self._origin: float | None = None
        self._stall: tuple[float, float] | None = None
        self._sem = asyncio.Semaphore(self.config.capacity) if self.config.capacity else None
        self._runner: web.AppRunner | None = None
        self._faults = self.config.fault_table()
        self._next_id = 0
        self._arrivals: dict[Any, int] = {}
        self._leaked: list[bytes] = []  # --leak-kb-per-request: memory that is never given back
        self._listener: asyncio.AbstractServer | None = None
        self.base_url: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/api/generate", self._ollama_generate)
        app.router.add_post("/api/chat", self._ollama_chat)
        app.router.add_get("/api/tags", self._ollama_tags)
        app.router.add_get("/api/version", self._ollama_version)
        app.router.add_get("/hwbench/stats", self._stats)
        app.router.add_post("/hwbench/reset", self._reset)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = any free port) and return the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None
        arrivals = self._arrivals
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: _ArrivalStamp(factory(), arrivals), host, port,
                                                  reuse_address=True)
        real_port = self._listener.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.base_url = f"http://{shown}:{real_port}"
        return self.base_url

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._listener is not None:
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await asyncio.wait_for(self._listener.wait_closed(), 1.0)
            self._listener = None

    def reset(self) -> None:
        """Forget stats, the stall origin and the RNG state (a fresh, reproducible run)."""
        self.stats = _Stats()
        self._rng = np.random.default_rng(self.config.seed)
        self._origin = None
        self._stall = None

    # ------------------------------------------------------------------ timing core
    def _arrive(self, request: web.Request) -> tuple[float, int]:
        """When the request arrived: (loop time, perf_counter_ns) of the read that completed it.

        Taken from the connection's last ``data_received`` (see ``_ArrivalStamp``), not at handler entry:
        aiohttp needs a few loop iterations to get from the bytes to the handler, and on a busy server that
        is milliseconds which would otherwise be added on top of the configured TTFT.
        """
        loop = asyncio.get_running_loop()
        now_ns = time.perf_counter_ns()
        loop_now = loop.time()
        arrival_ns = self._arrivals.get(request.transport, now_ns)
        arrival_ns = min(arrival_ns, now_ns)
        arrival = loop_now - (now_ns - arrival_ns) / 1e9
        if self._origin is None:
            self._origin = arrival
            if self.config.stall_at_s is not None and self.config.stall_s > 0:
                start = arrival + self.config.stall_at_s
                self._stall = (start, start + self.config.stall_s)
        self.stats.requests += 1
        return arrival, arrival_ns

    def _plan(self, request: web.Request, max_tokens: Any, ignore_eos: bool, prompt_tokens: int) -> _Plan:
        cfg, rng = self.config, self._rng
        fault = request.headers.get(FAULT_HEADER)
        u = float(rng.random())
        if fault is None and self._faults:
            acc = 0.0
            for kind, p in self._faults:
                acc += p
                if u < acc:
                    fault = kind
                    break
        n = max(1, round(cfg.output_tokens.sample(rng)))
        finish = "stop"
        capped = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
        if capped and (ignore_eos or n >= max_tokens):
            n, finish = max_tokens, "length"
        itl = cfg.itl_ms.sample(rng, n - 1) / 1e3
        ttft = cfg.ttft_ms.sample(rng) / 1e3
        if cfg.leak_kb_per_request:
            self._leaked.append(b"\x01" * (cfg.leak_kb_per_request * 1024))  # written, so it is resident
        if fault is not None:
            self.stats.faults[fault] = self.stats.faults.get(fault, 0) + 1
        return _Plan(fault=fault, ttft_s=ttft, n=n, itl_s=itl, prompt_tokens=prompt_tokens, finish=finish)

    def _adjust(self, deadline: float) -> float:
        if self._stall is not None and self._stall[0] <= deadline < self._stall[1]:
            return self._stall[1]
        return deadline

    def _deadlines(self, start: float, plan: _Plan) -> Iterator[float]:
        d = self._adjust(start + plan.ttft_s)
        yield d
        for gap in plan.itl_s.tolist():
            d = self._adjust(d + gap)
            yield d

    async def _at(self, deadline: float, tokens: int = 1) -> float:
        loop = asyncio.get_running_loop()
        await sleep_until(deadline, loop)
        now = loop.time()
        self.stats.lateness.append(now - deadline)
        if self.config.cpu_ms_per_token:
            _burn_cpu(self.config.cpu_ms_per_token * tokens / 1e3)
        return now

    @contextlib.asynccontextmanager
    async def _slot(self, arrival: float) -> Any:
        """Hold one of ``capacity`` slots; yields the instant service starts (the timing origin of TTFT).

        Service starts at the request's arrival (handler entry, so parsing the request and sending headers
        is not added on top of the configured TTFT) or, when it had to queue, when it got its slot.
        """
        stats = self.stats
        start = arrival
        if self._sem is not None:
            if self._sem.locked():
                stats.queued += 1
                stats.max_queued = max(stats.max_queued, stats.queued)
                try:
                    await self._sem.acquire()
                finally:
                    stats.queued -= 1
                start = asyncio.get_running_loop().time()
            else:
                await self._sem.acquire()
        stats.queue_wait.append(start - arrival)
        stats.inflight += 1
        stats.max_inflight = max(stats.max_inflight, stats.inflight)
        try:
            yield start
        finally:
            stats.inflight -= 1
            if self._sem is not None:
                self._sem.release()

    async def _hang(self) -> None:
        await asyncio.sleep(self.config.hang_s)

    # ------------------------------------------------------------------ small endpoints
    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.config.model, "object": "model", "created": 0, "owned_by": "hwbench-reference"}]})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.to_dict() | {"config": self.config.to_dict()})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "reset"})

    async def _ollama_tags(self, request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": self.config.model, "model": self.config.model,
                                              "size": 0, "details": {"family": "hwbench-reference"}}]})

    async def _ollama_version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.0.0-hwbench-reference"})

    # ------------------------------------------------------------------ OpenAI-compatible
    async def _body(self, request: web.Request) -> dict[str, Any] | None:
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return None
        return body if isinstance(body, dict) else None

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._openai(request, chat=False)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._openai(request, chat=True)

    async def _openai(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        arrival, arrival_ns = self._arrive(request)
        body = await self._body(request)
        if body is None:
            return _json_error(400, "request body is not a JSON object", "BadRequestError")
        model = body.get("model")
        if model != self.config.model:
            return _json_error(404, f"The model `{model}` does not exist.", "NotFoundError")
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return _json_error(400, "messages must be a non-empty list", "BadRequestError")
            text = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list):
                prompt = "".join(str(p) for p in prompt)
            if not isinstance(prompt, str):
                return _json_error(400, "prompt must be a string", "BadRequestError")
            text = prompt
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        plan = self._plan(request, max_tokens, bool(body.get("ignore_eos")), _prompt_tokens(text))
        if plan.fault == "error":
            status = self.config.error_status
            return _json_error(status, "injected error (reference server)",
                               "InternalServerError" if status >= 500 else "BadRequestError")
        if plan.fault == "hang":
            await self._hang()
            return _json_error(504, "hang ended", "Timeout")
        self._next_id += 1
        rid = self._next_id
        if body.get("stream"):
            opts = body.get("stream_options")
            usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            return await self._openai_stream(request, plan, chat=chat, rid=rid, usage=usage, arrival=arrival,
                                             arrival_ns=arrival_ns)
        return await self._openai_plain(plan, chat=chat, rid=rid, arrival=arrival)

    def _openai_frames(self, chat: bool, rid: int) -> tuple[bytes, bytes, bytes]:
        created = int(time.time())
        model = json.dumps(self.config.model)
        if chat:
            head = (f'data: {{"id":"chatcmpl-ref-{rid}","object":"chat.completion.chunk","created":{created},'
                    f'"model":{model},"choices":[{{"index":0,"delta":{{"content":').encode()
            mid = b'},"logprobs":null,"finish_reason":'
        else:
            head = (f'data: {{"id":"cmpl-ref-{rid}","object":"text_completion","created":{created},'
                    f'"model":{model},"choices":[{{"index":0,"text":').encode()
            mid = b',"logprobs":null,"finish_reason":'
        return head, mid, b"}]}\n\n"

    async def _openai_stream(self, request: web.Request, plan: _Plan, *, chat: bool, rid: int,
                             usage: bool, arrival: float, arrival_ns: int) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        head, mid, tail = self._openai_frames(chat, rid)
        fault_at = plan.n // 2
        n_out = plan.n
        first_ns = last_ns = 0
        try:
            async with self._slot(arrival) as start:
                if chat:  # OpenAI and vLLM open a chat stream with a role-only chunk, before any content
                    await resp.write(head.replace(b'"delta":{"content":', b'"delta":{"role":"assistant",'
                                                  b'"content":') + b'""' + mid + b"null" + tail)
                if plan.fault == "empty":
                    await self._at(self._adjust(start + plan.ttft_s))
                    await resp.write(head + b'""' + mid + b'"stop"' + tail)
                    n_out = 0
                else:
                    for i, deadline in enumerate(self._deadlines(start, plan)):
                        if i == fault_at and plan.fault in ("close", "malformed", "inband_error"):
                            await self._at(deadline)
                            if plan.fault == "close":
                                request.transport.close()  # type: ignore[union-attr]
                                return resp
                            if plan.fault == "malformed":
                                await resp.write(b'data: {"id": "broken", "choices": [{"text": \n\n')
                            else:
                                await resp.write(b'data: {"error": {"message": "injected in-band error '
                                                 b'(reference server)", "type": "InternalServerError", '
                                                 b'"code": 500}}\n\ndata: [DONE]\n\n')
                                await resp.write_eof()
                                return resp
                        now = await self._at(deadline)
                        if i == 0:
                            self.stats.ttft.append(now - arrival)
                        last = i == plan.n - 1
                        finish = b'"' + plan.finish.encode() + b'"' if last else b"null"
                        await resp.write(head + _TOKENS_JSON[i % len(_TOKENS_JSON)] + mid + finish + tail)
                        last_ns = time.perf_counter_ns()
                        first_ns = first_ns or last_ns
            if usage:
                u = {"prompt_tokens": plan.prompt_tokens, "completion_tokens": n_out,
                     "total_tokens": plan.prompt_tokens + n_out}
                obj = "chat.completion.chunk" if chat else "text_completion"
                # the server's own instants (perf_counter_ns of this process) — an extension field that
                # OpenAI clients ignore; ours keeps it in RequestRecord.server_timing (see _timing_fields)
                timing = {"arrival_ns": arrival_ns, "first_token_ns": first_ns, "last_token_ns": last_ns}
                await resp.write(b"data: " + json.dumps(
                    {"id": f"ref-{rid}", "object": obj, "created": int(time.time()), "model": self.config.model,
                     "choices": [], "usage": u, "hwbench_timing": timing},
                    separators=(",", ":")).encode() + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            self.stats.completed += 1
        except (ConnectionError, RuntimeError):
            pass  # the client went away; nothing to answer
        return resp

    async def _openai_plain(self, plan: _Plan, *, chat: bool, rid: int, arrival: float) -> web.Response:
        n_out = 0 if plan.fault == "empty" else plan.n
        async with self._slot(arrival) as start:
            deadlines = [self._adjust(start + plan.ttft_s)] if plan.fault == "empty" \
                else list(self._deadlines(start, plan))
            await self._at(deadlines[-1], tokens=max(n_out, 1))
        text = "".join(" " + _TOKEN_WORDS[i % len(_TOKEN_WORDS)] for i in range(n_out))
        usage = {"prompt_tokens": plan.prompt_tokens, "completion_tokens": n_out,
                 "total_tokens": plan.prompt_tokens + n_out}
        finish = "stop" if plan.fault == "empty" else plan.finish
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text},
                                      "finish_reason": finish}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            obj = "text_completion"
        self.stats.completed += 1
        return web.json_response({"id": f"ref-{rid}", "object": obj, "created": int(time.time()),
                                  "model": self.config.model, "choices": [choice], "usage": usage})

    # ------------------------------------------------------------------ Ollama native
    async def _ollama_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, chat=False)

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, chat=True)

    async def _ollama(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        arrival, _ = self._arrive(request)
        body = await self._body(request)
        if body is None:
            return web.json_response({"error": "request body is not a JSON object"}, status=400)
        model = body.get("model")
        if model != self.config.model:
            return web.json_response({"error": f"model '{model}' not found"}, status=404)
        text: str | None
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list):
                return web.json_response({"error": "messages must be a list"}, status=400)
            text = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        else:
            text = body.get("prompt")
            if not isinstance(text, str):
                return web.json_response({"error": "prompt must be a string"}, status=400)
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        num_predict = options.get("num_predict") if options else None
        # Ollama stops at num_predict; without EOS in a fake model, num_predict sets the length when given
        plan = self._plan(request, num_predict, num_predict is not None, _prompt_tokens(text))
        if plan.fault == "error":
            return web.json_response({"error": "injected error (reference server)"},
                                     status=self.config.error_status)
        if plan.fault == "hang":
            await self._hang()
            return web.json_response({"error": "hang ended"}, status=504)
        stream = body.get("stream", True) is not False
        model_json = json.dumps(self.config.model)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if chat:
            head = (f'{{"model":{model_json},"created_at":"{created}","message":{{"role":"assistant",'
                    f'"content":').encode()
            tail = b'},"done":false}\n'
        else:
            head = f'{{"model":{model_json},"created_at":"{created}","response":'.encode()
            tail = b',"done":false}\n'
        resp: web.StreamResponse | None = None
        if stream:
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await resp.prepare(request)
        loop = asyncio.get_running_loop()
        n_out = 0 if plan.fault == "empty" else plan.n
        first = last = None
        try:
            async with self._slot(arrival) as start:
                deadlines = [self._adjust(start + plan.ttft_s)] if plan.fault == "empty" \
                    else self._deadlines(start, plan)
                for i, deadline in enumerate(deadlines):
                    now = await self._at(deadline)
                    if first is None:
                        first = now
                        self.stats.ttft.append(now - arrival)
                    last = now
                    if resp is None or plan.fault == "empty":
                        continue
                    if i == plan.n // 2 and plan.fault == "close":
                        request.transport.close()  # type: ignore[union-attr]
                        return resp
                    if i == plan.n // 2 and plan.fault == "malformed":
                        await resp.write(b'{"model": "broken", "response": \n')
                    if i == plan.n // 2 and plan.fault == "inband_error":
                        await resp.write(b'{"error":"injected in-band error (reference server)"}\n')
                        await resp.write_eof()
                        return resp
                    await resp.write(head + _TOKENS_JSON[i % len(_TOKENS_JSON)] + tail)
            assert first is not None and last is not None
            end = loop.time()
            final: dict[str, Any] = {
                "model": self.config.model, "created_at": created, "done": True,
                "done_reason": "stop" if plan.fault == "empty" else plan.finish,
                "total_duration": int((end - arrival) * 1e9), "load_duration": 0,
                "prompt_eval_count": plan.prompt_tokens, "prompt_eval_duration": int((first - start) * 1e9),
                "eval_count": n_out, "eval_duration": int((last - first) * 1e9) if n_out else 0}
            text_out = "".join(" " + _TOKEN_WORDS[i % len(_TOKEN_WORDS)] for i in range(n_out))
            if chat:
                final["message"] = {"role": "assistant", "content": "" if resp is not None else text_out}
            else:
                final["response"] = "" if resp is not None else text_out
            self.stats.completed += 1
            if resp is None:
                return web.json_response(final)
            await resp.write(json.dumps(final, separators=(",", ":")).encode() + b"\n")
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass
        return resp if resp is not None else web.Response(status=499)


# ---------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hwbench reference-server",
        description="Reference server: a fake LLM server whose timing is known, used as ground truth. "
                    "OpenAI-compatible (/v1/completions, /v1/chat/completions, /v1/models, /health) and "
                    "Ollama-native (/api/generate, /api/chat). Distributions: 50, constant:50, uniform:LO,HI, "
                    "normal:MEAN,STD, lognormal:MEAN,STD.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed on stdout)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the only model name served; others get 404")
    p.add_argument("--ttft-ms", default="50", help="time to first token distribution, ms (default 50)")
    p.add_argument("--itl-ms", default="10", help="inter-token latency distribution, ms (default 10)")
    p.add_argument("--output-tokens", default="64", help="output length distribution, tokens (default 64)")
    p.add_argument("--capacity", type=int, default=None,
                   help="requests served at once; more wait in a FIFO queue (default: unlimited)")
    p.add_argument("--error-rate", type=float, default=0.0, help="probability of an HTTP error answer")
    p.add_argument("--error-status", type=int, default=500)
    p.add_argument("--fault", action="append", default=[], metavar="KIND:P",
                   help=f"inject a fault with probability P; KIND in {', '.join(FAULT_KINDS)} (repeatable)")
    p.add_argument("--stall-at-s", type=float, default=None,
                   help="stall this many seconds after the first request")
    p.add_argument("--stall-s", type=float, default=0.0, help="stall length in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu-ms-per-token", type=float, default=0.0,
                   help="CPU time burnt per emitted token, ms (saturates the server's one thread at "
                        "concurrency ~ itl / cpu-ms-per-token)")
    p.add_argument("--leak-kb-per-request", type=int, default=0,
                   help="memory kept forever per request, KiB (a memory-growing server)")
    p.add_argument("--hang-s", type=float, default=3600.0, help="how long a 'hang' fault holds a request")
    p.add_argument("--no-precise-timers", action="store_true",
                   help="use the default event loop (millisecond timers) instead of select() + low slack")
    return p


def config_from_args(args: argparse.Namespace) -> ReferenceConfig:
    faults = []
    for item in args.fault:
        kind, _, prob = item.partition(":")
        try:
            faults.append((kind, float(prob)))
        except ValueError as exc:
            raise HwbenchInputError(f"cannot read fault {item!r}", field="--fault",
                                    fix="write KIND:PROBABILITY, e.g. close:0.01") from exc
    return ReferenceConfig(model=args.model, ttft_ms=Dist.parse(args.ttft_ms), itl_ms=Dist.parse(args.itl_ms),
                           output_tokens=Dist.parse(args.output_tokens), capacity=args.capacity,
                           error_rate=args.error_rate, error_status=args.error_status, faults=tuple(faults),
                           stall_at_s=args.stall_at_s, stall_s=args.stall_s, seed=args.seed, hang_s=args.hang_s,
                           cpu_ms_per_token=args.cpu_ms_per_token, leak_kb_per_request=args.leak_kb_per_request)


async def _serve(config: ReferenceConfig, host: str, port: int) -> None:
    server = ReferenceServer(config)
    url = await server.start(host, port)
    # Everything allocated so far (modules, the app) lives for the whole process: move it out of the
    # collector's reach, so a full collection during a run scans only per-request objects (measured:
    # emission lateness p99 at 64 streams drops by about half).
    gc.collect()
    gc.freeze()
    print(f"{_READY_PREFIX}{url} (reference server: a fake whose timing is known, used as ground truth)",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """``hwbench reference-server ...``: serve until SIGINT/SIGTERM. Returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = config_from_args(args)
    except SystemExit as exc:  # --help, or argparse's own error message already printed
        return int(exc.code or 0)
    except HwbenchInputError as exc:
        print(f"hwbench reference-server: {exc}", file=sys.stderr)
        return 2
    loop = new_event_loop(not args.no_precise_timers)
    try:
        with precise_timers() if not args.no_precise_timers else contextlib.nullcontext():
            loop.run_until_complete(_serve(config, args.host, args.port))
    except OSError as exc:
        print(f"hwbench reference-server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        loop.close()
    return 0


class ReferenceServerProcess:
    """The reference server in a child process, for tests whose timing matters.

    Why a process: in-process, server timers and client parsing share one event loop and one core, so each
    perturbs the other's timing; as a separate process the server keeps its own loop (and, on a multi-core
    machine, its own core), which is how a real server behaves. Startup costs ~0.5 s (interpreter + imports).
    """

    def __init__(self, config: ReferenceConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 startup_timeout_s: float = 30.0, precise: bool = True) -> None:
        self.config = config or ReferenceConfig()
        self.host = host
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.precise = precise
        self.base_url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the object, closed in __exit__

    def argv(self) -> list[str]:
        """The child's command line (a subclass may run the server differently, e.g. with a test shim)."""
        argv = [sys.executable, "-m", "pytest_hwbench.reference_server", "--host", self.host,
                "--port", str(self.port), *self.config.to_argv()]
        if not self.precise:
            argv.append("--no-precise-timers")
        return argv

    def start(self) -> str:
        self._proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=self._log,
                                      env=os.environ | {"PYTHONUNBUFFERED": "1"},
                                      preexec_fn=restore_default_signals)
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self._proc.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(self.startup_timeout_s)
        text = line[0].decode(errors="replace") if line else ""
        match = re.search(re.escape(_READY_PREFIX) + r"(\S+)", text)
        if not match:
            self.stop()
            raise RuntimeError(f"reference server did not start within {self.startup_timeout_s:g} s: "
                               f"{text.strip()!r}; log: {self.log_text()[-2000:]}")
        self.base_url = match.group(1)
        return self.base_url

    def log_text(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ReferenceServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._log.close()


if __name__ == "__main__":
    sys.exit(main())
