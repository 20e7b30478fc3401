"""OpenAI-compatible client (``/v1/completions`` and ``/v1/chat/completions``) for the load engine.

Works with vLLM, SGLang, TGI, llama.cpp's server, LM Studio, Ollama's ``/v1`` and the reference server.
Streams with SSE and asks for ``stream_options.include_usage`` so that ``tokens_out`` is the server's own
count; when a server gives no usage, the number of content chunks is used instead and the record says it is
estimated (DESIGN.md). TTFT is stamped at the first chunk that *carries generated content* — a chat stream's
opening role-only chunk and the final usage chunk do not count. ``reasoning_content`` (vLLM's reasoning models)
counts as generated content.

Hot path: one ``perf_counter_ns()`` per socket read, one JSON parse per SSE event, one ``int`` append per
content event. Several events arriving in one read share that read's instant (that is what the wire
delivered; their ITL is then 0). Request bodies are serialised once per prompt, not per request.

Every failure becomes a classified record (``records.ErrorClass``), never an exception out of ``send``.
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
    api_root,
    classify_exception,
    drain,
    http_error,
    keep_partial,
    make_session,
)
from pytest_hwbench.workloads.prompts import Prompt, estimate_tokens
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord

_perf = time.perf_counter_ns


@dataclass(frozen=True)
class OpenAIClientConfig:
    """How to talk to one OpenAI-compatible endpoint. Picklable, so ``open`` can be a ``ClientFactory``.

    ``base_url`` may end in ``/v1`` or not. The API key is taken from ``api_key`` or, better, from the
    environment variable named by ``api_key_env`` at open time, so it never sits in a recipe or a report.
    """

    base_url: str
    model: str
    prompts: Sequence[Prompt] = ()
    api: Literal["chat", "completions"] = "chat"
    max_tokens: int | None = 128
    ignore_eos: bool = False
    stream: bool = True
    include_usage: bool = True
    temperature: float | None = 0.0
    timeout_s: float = 600.0
    read_timeout_s: float | None = None
    connect_timeout_s: float = 10.0
    max_connections: int = 0
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    async def open(self) -> OpenAIClient:
        """Create the client and its HTTP session in the running loop."""
        client = OpenAIClient(self)
        await client.start()
        return client


class OpenAIClient:
    """Sends one request per ``send(index)`` and returns its :class:`RequestRecord`."""

    def __init__(self, config: OpenAIClientConfig) -> None:
        if not config.prompts:
            raise HwbenchInputError("no prompts to send", field="prompts",
                                    fix="pass synthetic_prompts(...) or load_prompts_jsonl(...)")
        if config.api not in ("chat", "completions"):
            raise HwbenchInputError(f"unknown api {config.api!r}", field="api", fix="use 'chat' or 'completions'")
        self.config = config
        root = api_root(config.base_url, "/v1")
        self.root = root
        self.url = root + ("/chat/completions" if config.api == "chat" else "/completions")
        self._chat = config.api == "chat"
        self._bodies = [self._body(p) for p in config.prompts]
        self._prompts = list(config.prompts)
        self.session: aiohttp.ClientSession | None = None

    def _body(self, prompt: Prompt) -> bytes:
        cfg = self.config
        body: dict[str, Any] = {"model": cfg.model}
        if self._chat:
            body["messages"] = prompt.chat_messages()
        else:
            body["prompt"] = prompt.text
        max_tokens = prompt.max_tokens if prompt.max_tokens is not None else cfg.max_tokens
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if cfg.temperature is not None:
            body["temperature"] = cfg.temperature
        if cfg.ignore_eos:
            body["ignore_eos"] = True
        body["stream"] = cfg.stream
        if cfg.stream and cfg.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(cfg.extra_body)
        return json.dumps(body, separators=(",", ":")).encode()

    async def start(self) -> None:
        cfg = self.config
        headers = {"Content-Type": "application/json", **cfg.headers}
        key = cfg.api_key or (os.environ.get(cfg.api_key_env) if cfg.api_key_env else None)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.session = make_session(timeout_s=cfg.timeout_s, connect_timeout_s=cfg.connect_timeout_s,
                                    read_timeout_s=cfg.read_timeout_s, max_connections=cfg.max_connections,
                                    headers=headers)

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def __aenter__(self) -> OpenAIClient:
        if self.session is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def list_models(self) -> list[str]:
        """Model ids the server offers (``GET /v1/models``)."""
        assert self.session is not None, "call start() first"
        async with self.session.get(self.root + "/models") as resp:
            resp.raise_for_status()
            data = await resp.json(content_type=None)
        return [m.get("id") for m in data.get("data", []) if isinstance(m, dict)]

    async def check_model(self) -> None:
        """Fail early, with the list of served models, when the configured model is not served."""
        models = await self.list_models()
        if self.config.model not in models:
            raise HwbenchInputError(f"model {self.config.model!r} is not served at {self.root}",
                                    field="model", fix=f"use one of: {', '.join(map(str, models)) or '(none)'}")

    # ------------------------------------------------------------------ the hot path
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
                    body = await resp.content.read(65536)
                    rec.fail(*http_error(resp.status, body), end_ns=_perf())
                    return rec
                ctype = resp.headers.get("Content-Type", "")
                if self.config.stream and "text/event-stream" in ctype:
                    await self._read_sse(resp, rec)
                else:
                    await self._read_json(resp, rec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            rec.fail(*classify_exception(exc, rec.first_byte_ns is not None), end_ns=_perf())
            keep_partial(rec)
        return rec

    async def _read_sse(self, resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        chunks = rec.chunk_ns
        chat = self._chat
        loads = json.loads
        buf = b""
        done = finished = False
        usage: Any = None
        n_content = 0
        t = 0
        content = resp.content
        async for data in content.iter_any():
            t = _perf()
            buf += data
            if b"\r" in buf:
                buf = buf.replace(b"\r\n", b"\n")
            while True:
                cut = buf.find(b"\n\n")
                if cut < 0:
                    break
                event, buf = buf[:cut], buf[cut + 2:]
                payload = _sse_data(event)
                if payload is None:
                    continue  # comment / keep-alive / event without data
                if payload == b"[DONE]":
                    done = True
                    break
                try:
                    obj = loads(payload)
                except ValueError:
                    raise StreamFailure(ErrorClass.MALFORMED,
                                        f"SSE event is not JSON: {payload[:120]!r}") from None
                if not isinstance(obj, dict):
                    raise StreamFailure(ErrorClass.MALFORMED, f"SSE event is not a JSON object: {payload[:120]!r}")
                if obj.get("error"):
                    err = obj["error"]
                    msg = err.get("message", err) if isinstance(err, dict) else err
                    raise StreamFailure(ErrorClass.SERVER, f"error inside the stream: {msg}")
                if obj.get("usage"):
                    usage = obj["usage"]
                    if isinstance(obj.get("hwbench_timing"), dict):  # reference server's own instants
                        rec.server_timing = {k: v for k, v in obj["hwbench_timing"].items()
                                             if isinstance(v, (int, float))}
                choices = obj.get("choices")
                if choices is None:
                    continue
                if not isinstance(choices, list):
                    raise StreamFailure(ErrorClass.MALFORMED, "'choices' is not a list")
                carried = False
                for ch in choices:
                    if not isinstance(ch, dict):
                        raise StreamFailure(ErrorClass.MALFORMED, "a choice is not an object")
                    if chat:
                        delta = ch.get("delta") or {}
                        piece = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
                    else:
                        piece = ch.get("text")
                    if piece:
                        carried = True
                    if ch.get("finish_reason"):
                        finished = True
                if carried:
                    chunks.append(t)
                    n_content += 1
            if done:
                break
        rec.end_ns = t or _perf()
        if done:
            await drain(resp)
        self._finish(rec, n_content, usage, done or finished)

    async def _read_json(self, resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
        raw = await resp.read()
        t = _perf()
        rec.end_ns = t
        try:
            obj = json.loads(raw)
        except ValueError:
            raise StreamFailure(ErrorClass.MALFORMED, f"answer is not JSON: {raw[:120]!r}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            if isinstance(obj, dict) and obj.get("error"):
                raise StreamFailure(ErrorClass.SERVER, f"error in a 200 answer: {obj['error']}")
            raise StreamFailure(ErrorClass.MALFORMED, "answer has no 'choices' list")
        text = ""
        for ch in obj["choices"]:
            if isinstance(ch, dict):
                if self._chat:
                    msg = ch.get("message") or {}
                    text += (msg.get("content") or "") + (msg.get("reasoning_content") or "")
                else:
                    text += ch.get("text") or ""
        n = 0
        if text:
            rec.chunk_ns.append(t)  # a non-streamed answer arrives in one piece: ttft == e2el
            n = estimate_tokens(text)
        self._finish(rec, n, obj.get("usage"), True)

    def _finish(self, rec: RequestRecord, n_content: int, usage: Any, complete: bool) -> None:
        if rec.chunk_ns:
            rec.first_token_ns = rec.chunk_ns[0]
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                rec.tokens_in, rec.tokens_in_estimated = usage["prompt_tokens"], False
            if isinstance(usage.get("completion_tokens"), int):
                rec.tokens_out = usage["completion_tokens"]
        if rec.tokens_out is None:
            rec.tokens_out, rec.tokens_out_estimated = n_content, True
        if not complete:
            rec.fail(ErrorClass.STREAM_CLOSED, f"stream ended without [DONE] after {n_content} content chunks")
        elif not rec.chunk_ns:
            rec.fail(ErrorClass.EMPTY, "the answer carried no generated content")


def _sse_data(event: bytes) -> bytes | None:
    """The data of one SSE event (``data:`` lines joined by newlines), or None when it has none."""
    if event.startswith(b"data:") and b"\n" not in event:  # the common case: one data line
        return event[6:] if event[5:6] == b" " else event[5:]
    parts = []
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            parts.append(line[6:] if line[5:6] == b" " else line[5:])
    return b"\n".join(parts) if parts else None
