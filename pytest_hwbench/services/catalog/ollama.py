"""Ollama (``ollama serve``): pulls a model by tag, then loads it; both timed apart from start-up.

Why pull and load in ``after_ready``: a pull is network time and a load is disk → memory time; neither
belongs in the first request's latency, and the report shows them as ``model_pull_s`` / ``model_load_s``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from pytest_hwbench.recipe.specs import Bool, Float, Scalar, setting
from pytest_hwbench.services.base import Endpoint, ServiceStartError, StartContext, now_s
from pytest_hwbench.services.catalog import register
from pytest_hwbench.services.catalog.kind import ServiceKind
from pytest_hwbench.services.probes import HttpProbe, Probe
from pytest_hwbench.services.service_settings import opt_str


def _post(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode("utf-8", "replace").strip()
    return json.loads(text.splitlines()[-1]) if text else {}


@dataclass(frozen=True)
class OllamaSettings:
    model: str | None = setting(None, opt_str(), doc="model tag to pull and load before measuring, e.g. llama3.2:1b")
    pull: bool = setting(True, Bool(), doc="pull the model first (default true; false: it must exist already)")
    # a duration ("1h") or seconds, passed to Ollama as written
    keep_alive: str | int | float = setting("1h", Scalar(),
                                            doc="how long the loaded model stays in memory (default 1h)")
    models_dir: str | None = setting(None, opt_str(), doc="host directory for OLLAMA_MODELS (keeps pulls across runs)")
    pull_timeout: float = setting(3600.0, Float(gt=0, lt=1e6), doc="seconds allowed for the pull (default 3600)")


@register
class Ollama(ServiceKind):
    name = "ollama"
    summary = "Ollama model server"
    port = 11434
    image = "ollama/ollama:latest"
    binary = "ollama"
    startup_timeout = 120.0
    Settings = OllamaSettings

    def process_args(self, ctx: StartContext, binary: str) -> list[str]:
        return ["serve"]

    def process_env(self, ctx: StartContext) -> dict[str, str]:
        env = {"OLLAMA_HOST": f"{ctx.host}:{ctx.port}"}
        models_dir = ctx.settings.own_as(OllamaSettings).models_dir
        if models_dir:
            env["OLLAMA_MODELS"] = models_dir
        return env

    def container_volumes(self, ctx: StartContext) -> dict[str, dict[str, str]]:
        models_dir = ctx.settings.own_as(OllamaSettings).models_dir
        if models_dir:
            return {models_dir: {"bind": "/root/.ollama/models", "mode": "rw"}}
        return {}

    def probe(self, ctx: StartContext) -> Probe:
        return HttpProbe(paths=("/api/version",))

    def endpoint(self, ctx: StartContext, host: str, port: int, ports: dict[str, int]) -> Endpoint:
        model = ctx.settings.own_as(OllamaSettings).model
        return Endpoint(host=host, port=port, url=f"http://{host}:{port}",
                        extra={"openai_base_url": f"http://{host}:{port}/v1", "model": model},
                        name=ctx.name, kind=self.name)

    def after_ready(self, ctx: StartContext, endpoint: Endpoint) -> dict[str, Any]:
        s = ctx.settings.own_as(OllamaSettings)
        model = s.model
        if not model:
            return {}
        info: dict[str, Any] = {"model": model}
        try:
            if s.pull:
                t0 = now_s()
                answer = _post(f"{endpoint.url}/api/pull", {"model": model, "stream": False},
                               s.pull_timeout)
                if answer.get("error"):
                    raise ServiceStartError(ctx.name, f"pulling model {model!r} failed: {answer['error']}")
                info["model_pull_s"] = round(now_s() - t0, 4)
            t0 = now_s()
            # An empty prompt loads the model without generating (Ollama API).
            _post(f"{endpoint.url}/api/generate",
                  {"model": model, "keep_alive": s.keep_alive, "stream": False}, 1800)
            info["model_load_s"] = round(now_s() - t0, 4)
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise ServiceStartError(ctx.name, f"loading model {model!r} failed: {err}",
                                    hint="check the tag (ollama list / the library) and network access") from err
        return info
