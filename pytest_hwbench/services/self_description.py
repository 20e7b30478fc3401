"""What a running server says about itself: version, build, models served, ``Server`` header.

For an ``external`` service we start nothing, so we cannot read a binary's version or an image digest; the
only way a server upgrade (vLLM 0.5 -> 0.6, a new llama.cpp build, another model behind the same URL) can
show in a baseline's environment diff is to ask the server. Each kind has its own endpoint:

* vLLM: ``GET /version`` (``{"version": ...}``)
* llama.cpp server: ``GET /props`` (``build_info``, ``model_path``, context size, slots)
* Ollama: ``GET /api/version``, ``GET /api/tags`` (installed models with digests)
* Triton: ``GET /v2`` (``name``, ``version``)
* every OpenAI-compatible server: ``GET /v1/models`` (the model ids it serves)

plus the ``Server`` response header. Every query is best-effort with a short timeout: a server that does not
answer one of them simply has no such fact (the health probe already decided whether it is usable).
Values are kept short and stable (no timestamps, no chat templates), so they diff well.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

#: Longest string value kept (a model path or build string), so one fact stays one readable diff line.
MAX_CHARS = 200

_QUERIES: dict[str, tuple[str, ...]] = {
    "vllm": ("/version", "/v1/models"),
    "llamacpp": ("/props", "/v1/models"),
    "ollama": ("/api/version", "/api/tags"),
    "triton": ("/v2",),
}
_OPENAI_COMPATIBLE = ("/v1/models",)


def _get(url: str, timeout: float) -> tuple[Any, str | None]:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # the recipe's own URL
        body = resp.read(1 << 20)
        server = resp.headers.get("Server")
    try:
        return json.loads(body), server
    except ValueError:
        return None, server


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_CHARS:
        return value[: MAX_CHARS - 1] + "…"
    return value


def _pick(path: str, doc: Any) -> dict[str, Any]:
    """The stable facts of one answer."""
    if not isinstance(doc, dict):
        return {}
    if path == "/version" or path == "/api/version":
        return {"version": _short(doc.get("version"))} if doc.get("version") else {}
    if path == "/props":
        gen = doc.get("default_generation_settings") or {}
        out = {"build_info": doc.get("build_info"), "model_path": doc.get("model_path"),
               "n_ctx": gen.get("n_ctx") if isinstance(gen, dict) else None, "total_slots": doc.get("total_slots")}
        return {k: _short(v) for k, v in out.items() if v is not None}
    if path == "/v2":
        return {k: _short(doc[k]) for k in ("name", "version") if doc.get(k)}
    if path == "/v1/models":
        ids = sorted(str(m.get("id")) for m in doc.get("data") or [] if isinstance(m, dict) and m.get("id"))
        return {"models": ids} if ids else {}
    if path == "/api/tags":
        models = sorted(f"{m.get('name')}@{str(m.get('digest', ''))[:12]}" for m in doc.get("models") or []
                        if isinstance(m, dict) and m.get("name"))
        return {"models": models} if models else {}
    return {}


def describe_server(kind: str, base_url: str, *, timeout: float = 2.0) -> dict[str, Any]:
    """The server's own description as a flat, diff-friendly dict (empty when it says nothing)."""
    if not base_url.startswith(("http://", "https://")):
        return {}
    out: dict[str, Any] = {}
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        base = base[:-3]
    for path in _QUERIES.get(kind, _OPENAI_COMPATIBLE):
        try:
            doc, server = _get(base + path, timeout)
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if server and "server_header" not in out:
            out["server_header"] = _short(server)
        out.update(_pick(path, doc))
    return out


__all__ = ["describe_server"]
