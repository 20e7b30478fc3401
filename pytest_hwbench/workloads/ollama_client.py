"""Ollama native client (``/api/generate`` or ``/api/chat``, streaming NDJSON) for the load engine.

Why a native client when Ollama also speaks OpenAI at ``/v1``: the native final line carries Ollama's own
accounting — ``eval_count``, ``eval_duration``, ``prompt_eval_count``, ``prompt_eval_duration``,
``load_duration``, ``total_duration`` (ns) — which the record keeps in ``server_timing`` beside the client's
timings. Comparing the two separates server time from network/queueing time, and ``load_duration`` shows a
model (re)load that would otherwise look like a slow first token.

Token counts come from ``eval_count`` / ``prompt_eval_count`` (not estimated); TTFT is the first line with
non-empty ``response`` (or ``message.content``, or ``thinking``); the stream must end with ``"done": true``,
otherwise the request is ``stream_closed``. An ``{"error": ...}`` line inside a 200 stream is ``server``.
Transport and hot path as in ``openai_client`` (``http1``: stamp and parse inside the protocol callback).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads._http import StreamFailure, http_error, keep_partial, transmit
from pytest_hwbench.workloads.http1 import HTTP1Pool
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
    verify_tls: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    api_key_env: str | None = None

    async def open(self) -> OllamaClient:
        """Create the client in the running loop (the engine's ``ClientFactory``)."""
        return OllamaClient(self)


class _NDJSONSink:
    """Parses Ollama's NDJSON stream as it arrives, filling the record."""

    __slots__ = ("body", "buf", "chat", "end_ns", "final", "ok", "rec")

    def __init__(self, rec: RequestRecord, chat: bool) -> None:
        self.rec = rec
        self.chat = chat
        self.buf = b""
        self.body = bytearray()
        self.ok = False
        self.final: dict[str, Any] | None = None
        self.end_ns = 0

    def on_head(self, status: int, headers: Mapping[str, str], t: int) -> None:
        self.rec.first_byte_ns = t
        self.rec.status = status
        self.ok = status < 400

    def on_end(self, t: int) -> None:
        self.end_ns = t

    def feed(self, data: bytes, t: int) -> None:
        if not self.ok:
            if len(self.body) < 65536:
                self.body += data
            return
        if self.final is not None:
            return
        buf = self.buf + data if self.buf else data
        chunks = self.rec.chunk_ns
        while True:
            cut = buf.find(b"\n")
            if cut < 0:
                break
            line, buf = buf[:cut], buf[cut + 1:]
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise StreamFailure(ErrorClass.MALFORMED, f"NDJSON line is not JSON: {line[:120]!r}") from None
            if not isinstance(obj, dict):
                raise StreamFailure(ErrorClass.MALFORMED, f"NDJSON line is not an object: {line[:120]!r}")
            if obj.get("error"):
                raise StreamFailure(ErrorClass.SERVER, f"error inside the stream: {obj['error']}")
            if self.chat:
                msg = obj.get("message") or {}
                piece = (msg.get("content") or msg.get("thinking")) if isinstance(msg, dict) else None
            else:
                piece = obj.get("response") or obj.get("thinking")
            if piece:
                chunks.append(t)
            if obj.get("done"):
                self.final = obj
                self.rec.end_ns = t
                break
        self.buf = buf


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
        base = base[:-4] if base.endswith("/api") else base
        self.http = HTTP1Pool(base, timeout_s=config.timeout_s, read_timeout_s=config.read_timeout_s,
                              connect_timeout_s=config.connect_timeout_s, max_connections=config.max_connections,
                              verify_tls=config.verify_tls)
        self._chat = config.api == "chat"
        self._headers = {"Content-Type": "application/json", **config.headers}
        key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._prompts = list(config.prompts)
        path = f"/api/{config.api}"
        self._requests = [self.http.request_bytes("POST", path, self._body(p), self._headers)
                          for p in self._prompts]

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

    async def aclose(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> OllamaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def list_models(self) -> list[str]:
        """Model names the server has (``GET /api/tags``); raises ConnectionError when unreachable."""
        status, body = await self.http.get("/api/tags")
        if status >= 400:
            raise ConnectionError(http_error(status, body)[1])
        data = json.loads(body)
        # as the server sent them: a malformed entry may lack a name
        return cast("list[str]", [m.get("name") for m in data.get("models", []) if isinstance(m, dict)])

    async def send(self, index: int) -> RequestRecord:
        """Send request ``index`` (prompt ``index % len(prompts)``) and record what happened."""
        k = index % len(self._requests)
        prompt = self._prompts[k]
        rec = RequestRecord(index=index, tokens_in=prompt.tokens, tokens_in_estimated=prompt.tokens_estimated)
        sink = _NDJSONSink(rec, self._chat)
        if not await transmit(self.http, self._requests[k], sink, rec):
            return rec
        rec.end_ns = sink.end_ns
        status = rec.status or 0
        if status >= 400:
            rec.fail(*http_error(status, bytes(sink.body)))
            return rec
        chunks = rec.chunk_ns
        if chunks:
            rec.first_token_ns = chunks[0]
        final = sink.final
        if final is None:
            keep_partial(rec)
            rec.fail(ErrorClass.STREAM_CLOSED, f"stream ended without a done line after {len(chunks)} chunks")
            return rec
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
        return rec
