"""OpenAI-compatible client (``/v1/completions`` and ``/v1/chat/completions``) for the load engine.

Works with vLLM, SGLang, TGI, llama.cpp's server, LM Studio, Ollama's ``/v1`` and the reference server.
Streams with SSE and asks for ``stream_options.include_usage`` so that ``tokens_out`` is the server's own
count; when a server gives no usage, the number of content chunks is used instead and the record says it is
estimated (docs/architecture.md). TTFT is stamped at the first chunk that *carries generated content* — a chat stream's
opening role-only chunk and the final usage chunk do not count. ``reasoning_content`` / ``reasoning``
(reasoning models) counts as generated content. ``stream=False`` is supported too; the whole answer then
arrives at once and TTFT equals the end-to-end latency.

Hot path (see ``http1`` for why it is not aiohttp): the request bytes are serialised once per prompt; on each
socket read the body parser runs synchronously inside the protocol callback with the read's
``perf_counter_ns`` stamp: one JSON parse per SSE event and one ``int`` append per content event. Several
events arriving in one read share that read's instant (that is what the wire delivered; their ITL is 0).

Every failure becomes a classified record (``records.ErrorClass``), never an exception out of ``send``:
HTTP 4xx/5xx (a wrong model name is the server's 404), connection refused or reset, timeouts, a stream
closed before ``[DONE]``, malformed SSE/JSON, an ``{"error": ...}`` event inside the stream (``server``),
and an answer without any generated content (``empty``). What arrived before a failure stays in the record.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads._http import StreamFailure, api_root, http_error, keep_partial, transmit
from pytest_hwbench.workloads.http1 import HTTP1Pool
from pytest_hwbench.workloads.prompts import Prompt, estimate_tokens
from pytest_hwbench.workloads.records import ErrorClass, RequestRecord
from pytest_hwbench.workloads.server_timing import llamacpp_timing

_perf = time.perf_counter_ns
_ERROR_BODY_LIMIT = 65536


@dataclass(frozen=True)
class OpenAIClientConfig:
    """How to talk to one OpenAI-compatible endpoint. Picklable, so ``open`` can be a ``ClientFactory``.

    ``base_url`` may end in ``/v1`` or not. The API key is taken from ``api_key`` or, better, from the
    environment variable named by ``api_key_env`` at open time, so it never sits in a recipe or a report.
    ``max_connections`` > 0 caps requests in flight inside the client (0: no cap, the default — a hidden cap
    would queue requests where the engine cannot see it).
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
    verify_tls: bool = True
    api_key: str | None = field(default=None, repr=False)
    api_key_env: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    async def open(self) -> OpenAIClient:
        """Create the client in the running loop (the engine's ``ClientFactory``)."""
        return OpenAIClient(self)


class _SSESink:
    """Parses one answer as it arrives, filling the record; raises StreamFailure on bad input."""

    __slots__ = ("body", "buf", "chat", "done", "end_ns", "finished", "n_content", "rec", "sse", "usage")

    def __init__(self, rec: RequestRecord, chat: bool) -> None:
        self.rec = rec
        self.chat = chat
        self.buf = b""
        self.body = bytearray()
        self.sse = False
        self.done = self.finished = False
        self.usage: Any = None
        self.n_content = 0
        self.end_ns = 0

    def on_head(self, status: int, headers: Mapping[str, str], t: int) -> None:
        self.rec.first_byte_ns = t
        self.rec.status = status
        self.sse = status < 400 and "text/event-stream" in headers.get("content-type", "")

    def on_end(self, t: int) -> None:
        self.end_ns = t

    def feed(self, data: bytes, t: int) -> None:
        if not self.sse:  # an error body, or a plain JSON answer: parsed whole at the end
            if len(self.body) < (1 << 26):
                self.body += data
            return
        if self.done:
            return
        buf = self.buf + data if self.buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        while True:
            cut = buf.find(b"\n\n")
            if cut < 0:
                break
            event, buf = buf[:cut], buf[cut + 2:]
            if event.startswith(b"data:") and b"\n" not in event:
                payload: bytes | None
                payload = event[6:] if event[5:6] == b" " else event[5:]
            else:
                payload = _sse_data(event)
                if payload is None:
                    continue  # a comment / keep-alive / event without data
            if payload == b"[DONE]":
                self.done = True
                self.rec.end_ns = t
                break
            self._event(payload, t)
        self.buf = buf

    def _event(self, payload: bytes, t: int) -> None:
        try:
            obj = json.loads(payload)
        except ValueError:
            raise StreamFailure(ErrorClass.MALFORMED, f"SSE event is not JSON: {payload[:120]!r}") from None
        if not isinstance(obj, dict):
            raise StreamFailure(ErrorClass.MALFORMED, f"SSE event is not a JSON object: {payload[:120]!r}")
        if obj.get("error"):
            err = obj["error"]
            msg = err.get("message", err) if isinstance(err, dict) else err
            raise StreamFailure(ErrorClass.SERVER, f"error inside the stream: {msg}")
        if obj.get("usage"):
            self.usage = obj["usage"]
            timing = obj.get("hwbench_timing")  # the reference server's own instants
            if isinstance(timing, dict):
                self.rec.server_timing = {**(self.rec.server_timing or {}),
                                          **{k: v for k, v in timing.items() if isinstance(v, (int, float))}}
        if "timings" in obj:  # llama.cpp's own prefill and decode times (see server_timing)
            llama = llamacpp_timing(obj)
            if llama:
                self.rec.server_timing = {**(self.rec.server_timing or {}), **llama}
        choices = obj.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise StreamFailure(ErrorClass.MALFORMED, "'choices' is not a list")
        carried = False
        for ch in choices:
            if not isinstance(ch, dict):
                raise StreamFailure(ErrorClass.MALFORMED, "a choice is not an object")
            if self.chat:
                delta = ch.get("delta") or {}
                if not isinstance(delta, dict):
                    raise StreamFailure(ErrorClass.MALFORMED, "'delta' is not an object")
                piece = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
            else:
                piece = ch.get("text")
            if piece:
                carried = True
            if ch.get("finish_reason"):
                self.finished = True
        if carried:
            self.rec.chunk_ns.append(t)
            self.n_content += 1


def _sse_data(event: bytes) -> bytes | None:
    """The data of one SSE event (``data:`` lines joined by newlines), or None when it has none."""
    parts = [line[6:] if line[5:6] == b" " else line[5:] for line in event.split(b"\n")
             if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None


class OpenAIClient:
    """Sends one request per ``send(index)`` and returns its :class:`RequestRecord`."""

    def __init__(self, config: OpenAIClientConfig) -> None:
        if not config.prompts:
            raise HwbenchInputError("no prompts to send", field="prompts",
                                    fix="pass synthetic_prompts(...) or load_prompts_jsonl(...)")
        if config.api not in ("chat", "completions"):
            raise HwbenchInputError(f"unknown api {config.api!r}", field="api", fix="use 'chat' or 'completions'")
        self.config = config
        self.root = api_root(config.base_url, "/v1")
        self.http = HTTP1Pool(self.root, timeout_s=config.timeout_s, read_timeout_s=config.read_timeout_s,
                              connect_timeout_s=config.connect_timeout_s, max_connections=config.max_connections,
                              verify_tls=config.verify_tls)
        self._chat = config.api == "chat"
        path = "/chat/completions" if self._chat else "/completions"
        self._headers = {"Content-Type": "application/json",
                         "Accept": "text/event-stream" if config.stream else "application/json",
                         **config.headers}
        key = config.api_key or (os.environ.get(config.api_key_env) if config.api_key_env else None)
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._prompts = list(config.prompts)
        self._requests = [self.http.request_bytes("POST", path, self._body(p), self._headers)
                          for p in self._prompts]

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

    async def aclose(self) -> None:
        await self.http.close()

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def list_models(self) -> list[str]:
        """Model ids the server offers (``GET /v1/models``); raises ConnectionError when unreachable."""
        status, body = await self.http.get("/models", {k: v for k, v in self._headers.items()
                                                       if k == "Authorization"})
        if status >= 400:
            raise ConnectionError(http_error(status, body)[1])
        data = json.loads(body)
        # as the server sent them: a malformed entry may lack an id (check_model prints them with str())
        return cast("list[str]", [m.get("id") for m in data.get("data", []) if isinstance(m, dict)])

    async def check_model(self) -> None:
        """Fail early, with the list of served models, when the configured model is not served."""
        models = await self.list_models()
        if self.config.model not in models:
            raise HwbenchInputError(f"model {self.config.model!r} is not served at {self.root}",
                                    field="model", fix=f"use one of: {', '.join(map(str, models)) or '(none)'}")

    # ------------------------------------------------------------------ the hot path
    async def send(self, index: int) -> RequestRecord:
        """Send request ``index`` (prompt ``index % len(prompts)``) and record what happened."""
        k = index % len(self._requests)
        prompt = self._prompts[k]
        rec = RequestRecord(index=index, tokens_in=prompt.tokens, tokens_in_estimated=prompt.tokens_estimated)
        sink = _SSESink(rec, self._chat)
        if not await transmit(self.http, self._requests[k], sink, rec):
            return rec
        rec.end_ns = sink.end_ns  # the last byte of the answer
        try:
            self._finish(rec, sink)
        except StreamFailure as exc:
            rec.fail(exc.error_class, exc.detail)
            keep_partial(rec)
        return rec

    def _finish(self, rec: RequestRecord, sink: _SSESink) -> None:
        status = rec.status or 0
        if status >= 400:
            rec.fail(*http_error(status, bytes(sink.body[:_ERROR_BODY_LIMIT])))
            return
        if not sink.sse:
            self._plain(rec, sink)
            return
        complete = sink.done or sink.finished
        if rec.chunk_ns:
            rec.first_token_ns = rec.chunk_ns[0]
        usage = sink.usage
        if isinstance(usage, dict):
            if isinstance(usage.get("prompt_tokens"), int):
                rec.tokens_in, rec.tokens_in_estimated = usage["prompt_tokens"], False
            if isinstance(usage.get("completion_tokens"), int):
                rec.tokens_out = usage["completion_tokens"]
        if rec.tokens_out is None:
            rec.tokens_out, rec.tokens_out_estimated = sink.n_content, True
        if sink.buf.strip() and not sink.done:
            raise StreamFailure(ErrorClass.STREAM_CLOSED, "stream ended inside an SSE event")
        if not complete:
            raise StreamFailure(ErrorClass.STREAM_CLOSED,
                                f"stream ended without [DONE] after {sink.n_content} content chunks")
        if not rec.chunk_ns:
            raise StreamFailure(ErrorClass.EMPTY, "the answer carried no generated content")

    def _plain(self, rec: RequestRecord, sink: _SSESink) -> None:
        """A non-streamed answer (or a server that ignored ``stream: true``): one JSON object."""
        raw = bytes(sink.body)
        try:
            obj = json.loads(raw)
        except ValueError:
            raise StreamFailure(ErrorClass.MALFORMED, f"answer is not JSON: {raw[:120]!r}") from None
        if isinstance(obj, dict) and obj.get("error"):
            raise StreamFailure(ErrorClass.SERVER, f"error in a 200 answer: {obj['error']}")
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            raise StreamFailure(ErrorClass.MALFORMED, "answer has no 'choices' list")
        text = ""
        for ch in obj["choices"]:
            if isinstance(ch, dict):
                if self._chat:
                    msg = ch.get("message") or {}
                    if isinstance(msg, dict):
                        text += (msg.get("content") or "") + (msg.get("reasoning_content") or "")
                else:
                    text += ch.get("text") or ""
        usage = cast("dict[str, Any]", obj.get("usage") if isinstance(obj.get("usage"), dict) else {})
        llama = llamacpp_timing(obj)
        if llama:
            rec.server_timing = {**(rec.server_timing or {}), **llama}
        if isinstance(usage.get("prompt_tokens"), int):
            rec.tokens_in, rec.tokens_in_estimated = usage["prompt_tokens"], False
        if isinstance(usage.get("completion_tokens"), int):
            rec.tokens_out = usage["completion_tokens"]
        else:
            rec.tokens_out, rec.tokens_out_estimated = estimate_tokens(text), True
        if not text:
            raise StreamFailure(ErrorClass.EMPTY, "the answer carried no generated content")
        rec.chunk_ns.append(rec.end_ns)  # everything arrived with the last byte: ttft == e2el
        rec.first_token_ns = rec.end_ns
