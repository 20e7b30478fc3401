"""Ollama native client (``/api/generate`` or ``/api/chat``, streaming NDJSON) for the load engine.

Why a native client when Ollama also speaks OpenAI at ``/v1``: the native final line carries Ollama's own
accounting — ``eval_count``, ``eval_duration``, ``prompt_eval_count``, ``prompt_eval_duration``,
``load_duration``, ``total_duration`` (ns) — which the record keeps in ``server_timing`` beside the client's
timings. Comparing the two separates server time from network/queueing time, and ``load_duration`` shows a
model (re)load that would otherwise look like a slow first token.

Token counts come from ``eval_count`` / ``prompt_eval_count`` (not estimated); TTFT is the first line with
non-empty ``response`` (or ``message.content``, or ``thinking``); the stream must end with ``"done": true``,
otherwise the request is ``stream_closed``. An ``{"error": ...}`` line inside a 200 stream is ``server``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads._http import (
    StreamFailure,
    classify_exception,
    drain,
    http_error,
    keep_partial,
    make_session,
)
from pytest_hwbench.workloads.prompts import Prompt
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord

_perf = time.perf_counter_ns

#: Fields of Ollama's final line copied into ``RequestRecord.server_timing`` (durations in ns).
SERVER_TIMING_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                        "eval_count", "eval_duration")


@dataclass(frozen=True)
class OllamaClientConfig:
    """How to talk to one Ollama server. Picklable, so ``open`` can be a ``ClientFactory``.

    ``max_tokens`` becomes ``options.num_predict``; ``options`` is merged into the request's options
    (e.g. ``{"num_ctx": 4096}``). ``keep_alive`` keeps the model loaded between requests.
    """

    base_url: str
    model: str
    prompts: Sequence[Prompt] = ()
    api: Literal["generate", "chat"] = "generate"
    max_tokens: int | None = 128
    temperature: float | None = 0.0
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    keep_alive: str | None = "10m"
    timeout_s: float = 600.0
    read_timeout_s: float | None = None
    connect_timeout_s: float = 10.0
    max_connections: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key_env: str | None = None

    async def open(self) -> OllamaClient:
        client = OllamaClient(self)
        await client.start()
        return client


class OllamaClient:
    """Sends one request per ``send(index)`` and returns its :class:`RequestRecord`."""

    def __init__(self, config: OllamaClientConfig) -> None:
        if not config.prompts:
            raise HwbenchInputError("no prompts to send", field="prompts",
                                    fix="pass synthetic_prompts(...) or load_prompts_jsonl(...)")
        if config.api not in ("generate", "chat"):
            raise HwbenchInputError(f"unknown api {config.api!r}", field="api", fix="use 'generate' or 'chat'")
        self.config = config
        base = config.base_url.rstrip("/")
        if base.endswith("/api"):
            base = base[:-4]
        self.root = base
        self.url = f"{base}/api/{config.api}"
        self._chat = config.api == "chat"
        self._prompts = list(config.prompts)
        self._bodies = [self._body(p) for p in self._prompts]
        self.session: aiohttp.ClientSession | None = None

    def _body(self, prompt: Prompt) -> bytes:
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model, "stream": True}
        if self._chat:
            body["messages"] = prompt.chat_messages()
        else:
            body["prompt"] = prompt.text
        options: dict[str, Any] = {}
        max_tokens = prompt.max_tokens if prompt.max_tokens is not None else cfg.max_tokens
        if max_tokens is not None:
            options["num_predict"] = max_tokens
        if cfg.temperature is not None:
            options["temperature"] = cfg.temperature
        if cfg.seed is not None:
            options["seed"] = cfg.seed
        options.update(cfg.options)
        if options:
            body["options"] = options
        if cfg.keep_alive is not None:
            body["keep_alive"] = cfg.keep_alive
        return json.dumps(body, separators=(",", ":")).encode()

    async def start(self) -> None:
        cfg = self.config
        headers = {"Content-Type": "application/json", **cfg.headers}
        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.session = make_session(timeout_s=cfg.timeout_s, connect_timeout_s=cfg.connect_timeout_s,
                                    read_timeout_s=cfg.read_timeout_s, max_connections=cfg.max_connections,
                                    headers=headers)

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def __aenter__(self) -> OllamaClient:
        if self.session is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def list_models(self) -> list[str]:
        """Model names the server has (``GET /api/tags``)."""
        assert self.session is not None, "call start() first"
        async with self.session.get(self.root + "/api/tags") as resp:
            resp.raise_for_status()
            data = await resp.json(content_type=None)
        return [m.get("name") for m in data.get("models", []) if isinstance(m, dict)]

    async def send(self, index: int) -> RequestRecord:
        """Send request ``index`` (prompt ``index % len(prompts)``) and record what happened."""
        session = self.session
        assert session is not None, "call start() first"
        k = index % len(self._bodies)
        prompt = self._prompts[k]
        rec = RequestRecord(index=index, tokens_in=prompt.tokens, tokens_in_estimated=prompt.tokens_estimated)
        rec.send_wall_ns = time.time_ns()
        rec.send_ns = _perf()
        try:
            async with session.post(self.url, data=self._bodies[k]) as resp:
                rec.first_byte_ns = _perf()
                rec.status = resp.status
                if resp.status >= 400:
                    rec.fail(*http_error(resp.status, await resp.content.read(65536)), end_ns=_perf())
                    return rec
                await self._read_ndjson(resp, rec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            rec.fail(*classify_exception(exc, rec.first_byte_ns is not None), end_ns=_perf())
            keep_partial(rec)
        return rec

    async def _read_ndjson(self, resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        chunks = rec.chunk_ns
        chat = self._chat
        loads = json.loads
        buf = b""
        final: dict[str, Any] | None = None
        t = 0
        async for data in resp.content.iter_any():
            t = _perf()
            buf += data
            while True:
                cut = buf.find(b"\n")
                if cut < 0:
                    break
                line, buf = buf[:cut].strip(), buf[cut + 1:]
                if not line:
                    continue
                try:
                    obj = loads(line)
                except ValueError:
                    raise StreamFailure(ErrorClass.MALFORMED, f"NDJSON line is not JSON: {line[:120]!r}") from None
                if not isinstance(obj, dict):
                    raise StreamFailure(ErrorClass.MALFORMED, f"NDJSON line is not an object: {line[:120]!r}")
                if obj.get("error"):
                    raise StreamFailure(ErrorClass.SERVER, f"error inside the stream: {obj['error']}")
                if chat:
                    msg = obj.get("message") or {}
                    piece = (msg.get("content") or msg.get("thinking")) if isinstance(msg, dict) else None
                else:
                    piece = obj.get("response") or obj.get("thinking")
                if piece:
                    chunks.append(t)
                if obj.get("done"):
                    final = obj
                    break
            if final is not None:
                break
        rec.end_ns = t or _perf()
        if final is not None:
            await drain(resp)
        if chunks:
            rec.first_token_ns = chunks[0]
        if final is None:
            # a stream that never said done (and the last partial line, if any) is cut short
            keep_partial(rec)
            rec.fail(ErrorClass.STREAM_CLOSED, f"stream ended without a done line after {len(chunks)} chunks")
            return
        rec.server_timing = {name: final[name] for name in SERVER_TIMING_FIELDS
                             if isinstance(final.get(name), (int, float))}
        if isinstance(final.get("prompt_eval_count"), int):
            rec.tokens_in, rec.tokens_in_estimated = final["prompt_eval_count"], False
        if isinstance(final.get("eval_count"), int):
            rec.tokens_out, rec.tokens_out_estimated = final["eval_count"], False
        else:
            rec.tokens_out, rec.tokens_out_estimated = len(chunks), True
        if not chunks:
            rec.fail(ErrorClass.EMPTY, "the answer carried no generated content")
