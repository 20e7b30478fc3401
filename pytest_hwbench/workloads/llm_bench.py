"""The glue an LLM benchmark calls: run the load engine against a service, record the pinned metrics.

Why a separate module: the engine (``engine``), the protocol clients (``openai_client``, ``ollama_client``)
and the metric definitions (``llm_metrics``) know nothing about pytest; a benchmark should not have to know
how they fit together either. One call —

    metrics = run_llm_load(hwbench, hwbench_endpoint, load=LoadSpec.closed(4, requests=32), prompts=prompts,
                           max_tokens=64)

— picks the protocol from the endpoint (OpenAI-compatible, or Ollama's native API for an ``ollama``
service), finds the model name, runs the load, judges the load generator's self-check (a run whose client
was the bottleneck measured the client, so it fails the test instead of reporting its numbers as the
server's), and records into ``hwbench`` for the current trial:

* samples, unit ms, better lower: ``ttft_ms``, ``itl_ms``, ``tpot_ms``, ``e2el_ms`` and, for open-loop
  runs, ``latency_from_intended_ms`` (definitions pinned in docs/metrics.md, computed by ``llm_metrics``);
* scalars, one per trial: ``output_tok_s``, ``total_tok_s``, ``req_s``, ``error_rate`` and, when per-request
  SLOs are given, ``goodput_req_s``;
* optionally ``prefill_tok_s`` (``record_prefill=True``): input tokens / TTFT per request. Not one of the
  pinned metrics: TTFT includes queueing and transport, so this is a lower bound of the prefill rate, useful
  to compare long-prompt runs across machines;

every metric derived from estimated token counts (no usage report from the server) is recorded with
``estimated=True``. ``hwbench.extra[label]`` (plain JSON) gets the target (protocol, API, model, URL without
credentials), the load, per-trial counts, errors by class with a first example each, and the self-check.
API keys are read from the environment variable the settings name and never written anywhere.

Benchmark sizes and client options come from the recipe's ``settings.llm`` mapping, declared, checked and
typed once by the recipe loader (:class:`~pytest_hwbench.recipe.workload_settings.LLMSettings`), so one
benchmark file serves the reference server on a laptop and vLLM on a GPU box.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.recipe.workload_settings import LLM, LLMSettings, check_section
from pytest_hwbench.workloads import server_timing
from pytest_hwbench.workloads._http import api_root
from pytest_hwbench.workloads.engine import LoadSpec, RunResult, run_load_sync
from pytest_hwbench.workloads.llm_metrics import (
    SAMPLE_METRICS,
    SCALAR_METRICS,
    LLMMetrics,
    compute_llm_metrics,
)
from pytest_hwbench.workloads.prompts import Prompt, load_prompts_jsonl, synthetic_prompts

SETTINGS_KEY = "llm"
"""The recipe's ``settings.<SETTINGS_KEY>`` mapping holds the LLM benchmark settings."""

#: Per-request SLO metrics that a run's SLO expressions are turned into for goodput. ``itl_ms`` is left
#: out on purpose: as an SLO it bounds pooled gaps, per request it would bound the *worst* gap, a much
#: stricter reading; give it in ``settings.llm.goodput`` when that is what is meant.
DERIVED_GOODPUT_METRICS = ("ttft_ms", "tpot_ms", "e2el_ms", "latency_ms", "latency_from_intended_ms")

#: Prompt salt of this process when the recipe sets no seed (see LLMSettings.seed).
_SESSION_SALT = int.from_bytes(os.urandom(4), "little")

#: How many distinct error messages per class go into ``extra`` (enough to diagnose, not a log).
_ERROR_EXAMPLES = 1


# ---------------------------------------------------------------------------------------------- settings

def trial_prompts(hwbench: Any, settings: LLMSettings, target_tokens: int | None = None, *, count: int = 0,
                  dataset: bool = True) -> tuple[Prompt, ...]:
    """Prompts for this trial of this test: the configured dataset (when ``dataset``), else ``count`` (or
    ``num_prompts``) synthetic prompts of ``target_tokens`` (default ``prompt_tokens``) tokens.

    Why new random words for every (test, trial): serving engines cache prompt prefixes (vLLM's automatic
    prefix caching, llama.cpp's per-slot cache), so a prompt already sent in an earlier trial or test would
    be answered from the cache and TTFT would measure a cache hit, not prefill. The words are seeded by
    the test id, the trial index and ``seed`` — or, when ``seed`` is unset, a salt drawn once per session, so
    that a server kept up between runs does not see the previous run's prompts either.
    """
    if dataset and settings.prompt_dataset:
        return _dataset_prompts(settings.prompt_dataset, settings.num_prompts)
    salt = f"{getattr(hwbench, 'test_id', '')}#{getattr(hwbench, 'trial', 0)}".encode()
    base = _SESSION_SALT if settings.seed is None else settings.seed
    return _synthetic(count or settings.num_prompts, target_tokens or settings.prompt_tokens,
                      base + zlib.crc32(salt))


@lru_cache(maxsize=8)
def _synthetic(n: int, tokens: int, seed: int) -> tuple[Prompt, ...]:
    return tuple(synthetic_prompts(n, tokens, seed=seed))


@lru_cache(maxsize=4)
def _dataset_prompts(path: str, limit: int) -> tuple[Prompt, ...]:
    return tuple(load_prompts_jsonl(path, limit=limit))


def parse_llm_settings(raw: Any, *, source: str | None = None) -> LLMSettings:
    """Check a ``settings.llm`` mapping outside a recipe (tests, scripts) with the recipe's own declaration;
    a :class:`~pytest_hwbench.recipe.specs.RecipeError` lists every problem with its field."""
    return check_section(LLM, raw, f"settings.{SETTINGS_KEY}", source=source)  # type: ignore[no-any-return]


def llm_settings(hwbench: Any) -> LLMSettings:
    """The LLM settings of this run: the typed record the recipe loader built (``Recipe.workloads.llm``)."""
    workloads = getattr(getattr(hwbench, "recipe", None), "workloads", None)
    return workloads.llm if workloads is not None else LLMSettings()


# ---------------------------------------------------------------------------------------------- goodput SLOs

def request_slos_for(hwbench: Any, request: Any = None, settings: LLMSettings | None = None) -> dict[str, float]:
    """Per-request SLOs for goodput ("requests meeting every SLO of the run", docs/metrics.md).

    ``settings.llm.goodput`` when given; otherwise read off the run's SLO expressions for this test (recipe
    rules matching its node id, plus the marker's when ``request`` is given): an upper bound on a per-request
    latency, e.g. ``ttft_ms.p99 < 500``, becomes "this request's TTFT <= 500 ms". Several bounds on one
    metric keep the tightest. Empty when the run has none (goodput is then not reported).
    """
    settings = settings or llm_settings(hwbench)
    if settings.goodput:
        return dict(settings.goodput)
    from pytest_hwbench.verdict.slo import parse_slo

    texts: list[tuple[str, str]] = []
    recipe = getattr(hwbench, "recipe", None)
    if recipe is not None:
        texts += [(text, f"{recipe.path}: slo.{pattern!r}") for pattern, text in recipe.slos_for(hwbench.test_id)]
    marker = request.node.get_closest_marker("hwbench") if request is not None else None
    marker_slo = marker.kwargs.get("slo", []) if marker else []
    texts += [(text, "marker") for text in ([marker_slo] if isinstance(marker_slo, str) else marker_slo)]
    out: dict[str, float] = {}
    for text, source in texts:
        try:
            expr = parse_slo(text, source)
        except HwbenchInputError:
            continue  # the plugin reports a bad SLO itself; goodput just does not use it
        if expr.metric in DERIVED_GOODPUT_METRICS and expr.op in ("<", "<="):
            out[expr.metric] = min(out.get(expr.metric, math.inf), expr.bound)
    return out


# ---------------------------------------------------------------------------------------------- target

@dataclass(frozen=True)
class LLMTarget:
    """Where and how to send: protocol, API root, model name and API flavour."""

    protocol: Literal["openai", "ollama"]
    base_url: str
    model: str
    api: str
    model_source: str

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "url": redact_url(self.base_url), "model": self.model,
                "api": self.api, "model_source": self.model_source}


def redact_url(url: str) -> str:
    """``url`` without user info: credentials must not reach reports (docs/architecture.md, Conventions)."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url


_MODEL_CACHE: dict[tuple[str, str], str] = {}


def _api_key(endpoint: Any, settings: LLMSettings) -> tuple[str | None, str | None]:
    """(key, env-var name) for the Authorization header: in memory only, never recorded."""
    env_name = settings.api_key_env or endpoint.extra.get("api_key_env")
    key = endpoint.extra.get("api_key") or (os.environ.get(env_name) if env_name else None)
    return (str(key) if key else None), (str(env_name) if env_name else None)


def discover_model(protocol: str, base_url: str, api_key: str | None = None, timeout_s: float = 30.0) -> str:
    """The first model the server offers (``GET /v1/models``, or Ollama's ``/api/tags``), cached per URL.

    Why the first: a serving engine usually serves exactly one model, and the recipe can always name it.
    Raises HwbenchInputError when the server lists none or cannot be asked.
    """
    cache_key = (protocol, base_url)
    if cache_key in _MODEL_CACHE:
        return _MODEL_CACHE[cache_key]
    url = base_url.rstrip("/") + ("/api/tags" if protocol == "ollama" else "/models")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise HwbenchInputError(f"cannot list the served models at {redact_url(url)}: {err}",
                                field=f"settings.{SETTINGS_KEY}.model",
                                fix="name the model in the recipe (settings.llm.model or the service's model)") \
            from None
    items = data.get("models" if protocol == "ollama" else "data") if isinstance(data, dict) else None
    names: list[Any] = [m.get("name" if protocol == "ollama" else "id") for m in items or [] if isinstance(m, dict)]
    names = [n for n in names if isinstance(n, str) and n]
    if not names:
        raise HwbenchInputError(f"the server at {redact_url(url)} lists no model",
                                field=f"settings.{SETTINGS_KEY}.model", fix="load a model, or name one in the recipe")
    _MODEL_CACHE[cache_key] = names[0]
    return names[0]


def resolve_target(endpoint: Any, settings: LLMSettings, *, model: str | None = None,
                   api: str | None = None) -> LLMTarget:
    """Protocol, base URL, model and API for ``endpoint`` (see :class:`LLMSettings` for the precedence)."""
    protocol = settings.protocol or ("ollama" if endpoint.kind == "ollama" else "openai")
    if protocol == "ollama":
        base = str(endpoint.url).rstrip("/")
    else:
        base = api_root(str(endpoint.extra.get("openai_base_url") or endpoint.url), "/v1")
    source = "argument"
    name = model
    if not name and settings.model:
        name, source = settings.model, f"settings.{SETTINGS_KEY}.model"
    if not name and endpoint.extra.get("model"):
        name, source = str(endpoint.extra["model"]), f"services.{endpoint.name}"
    if not name:
        key, _ = _api_key(endpoint, settings)
        name, source = discover_model(protocol, base, key), "served models"
    flavour = api or settings.api
    if protocol == "ollama":
        flavour = "generate" if flavour == "completions" else flavour
    return LLMTarget(protocol=protocol, base_url=base, model=name, api=flavour, model_source=source)  # type: ignore[arg-type]


def client_config(target: LLMTarget, endpoint: Any, settings: LLMSettings, prompts: Sequence[Prompt],
                  max_tokens: int | None) -> Any:
    """The protocol client's (picklable) config; its ``open`` is the engine's client factory."""
    key, env_name = _api_key(endpoint, settings)
    if target.protocol == "ollama":
        from pytest_hwbench.workloads.ollama_client import OllamaClientConfig

        return OllamaClientConfig(base_url=target.base_url, model=target.model, prompts=tuple(prompts),
                                  api=target.api, max_tokens=max_tokens,  # type: ignore[arg-type]
                                  temperature=settings.temperature, timeout_s=settings.timeout_s,
                                  api_key_env=env_name)
    from pytest_hwbench.workloads.openai_client import OpenAIClientConfig

    return OpenAIClientConfig(base_url=target.base_url, model=target.model, prompts=tuple(prompts),
                              api=target.api, max_tokens=max_tokens, ignore_eos=settings.ignore_eos,  # type: ignore[arg-type]
                              temperature=settings.temperature, timeout_s=settings.timeout_s,
                              api_key=key if key and not env_name else None, api_key_env=env_name)


# ---------------------------------------------------------------------------------------------- the run

def run_llm_load(hwbench: Any, endpoint: Any, *, load: LoadSpec, prompts: Sequence[Prompt],
                 max_tokens: int | None, api: str | None = None, model: str | None = None,
                 request_slos: Mapping[str, float] | None = None, settings: LLMSettings | None = None,
                 record_prefill: bool = False, label: str = "llm") -> LLMMetrics:
    """Run ``load`` against ``endpoint`` and record every LLM metric into ``hwbench`` (see the module doc).

    Fails the test (``pytest.fail``) when the load generator was the bottleneck (``settings.self_check:
    warn`` turns that into a warning) or when not a single measured request succeeded — after recording,
    so the partial measurement is kept with the failed test. Returns the computed metrics.
    """
    settings = settings or llm_settings(hwbench)
    try:
        target = resolve_target(endpoint, settings, model=model, api=api)
        if settings.self_check_limits:
            load = dataclasses.replace(load, limits=dataclasses.replace(load.limits, **settings.self_check_limits))
        cfg = client_config(target, endpoint, settings, prompts, max_tokens)
        metrics_url = (getattr(endpoint, "extra", None) or {}).get("metrics_url")
        before = server_timing.scrape(metrics_url) if metrics_url else None
        result = run_load_sync(load, cfg.open, workers=settings.client_workers)
        after = server_timing.scrape(metrics_url) if metrics_url else None
        metrics = compute_llm_metrics(result.records, request_slos=request_slos)
    except HwbenchInputError as err:
        pytest.fail(str(err), pytrace=False)
    record_metrics(hwbench, metrics, result if record_prefill else None)
    record_server_timing(hwbench, result, server_timing.run_means(before, after))
    _note(hwbench, label, target, load, result, metrics, prompts, max_tokens, settings)
    check = result.self_check
    if check.limited:  # a saturated client, or a contended machine: either way not the server's figures
        text = f"{hwbench.test_id}: {check.message()}\n  {_self_check_line(result)}"
        if settings.self_check == "fail":
            pytest.fail(text, pytrace=False)
        warnings.warn(text, RuntimeWarning, stacklevel=2)
    if metrics.counts["attempted"] and not metrics.counts["succeeded"]:
        pytest.fail(f"{hwbench.test_id}: every one of the {metrics.counts['attempted']} measured requests to "
                    f"{redact_url(target.base_url)} (model {target.model!r}) failed: "
                    + "; ".join(f"{cls} x{n} (e.g. {_first_error(result, cls)})"
                                for cls, n in metrics.errors.items()), pytrace=False)
    return metrics


def record_metrics(hwbench: Any, metrics: LLMMetrics, result: RunResult | None = None) -> None:
    """Record samples (ms, better lower) and finite scalars into the current trial; ``result`` adds
    ``prefill_tok_s`` (input tokens / TTFT per successful request)."""
    for name, values in metrics.samples.items():
        if values.size:
            hwbench.record(name, values, unit=SAMPLE_METRICS.get(name, "ms"), better="lower",
                           estimated=name in metrics.estimated)
    for name, value in metrics.scalars.items():
        if math.isfinite(value):
            unit = SCALAR_METRICS.get(name, "")
            hwbench.record(name, value, unit=unit, better="higher" if "/" in unit else "lower",
                           estimated=name in metrics.estimated)
    if result is not None:
        rates, estimated = [], False
        for r in result.measured():
            first = r.first_token_ns
            if r.ok and first is not None and first > r.send_ns and r.tokens_in:
                rates.append(r.tokens_in / ((first - r.send_ns) / 1e9))
                estimated |= r.tokens_in_estimated
        if rates:
            hwbench.record("prefill_tok_s", np.asarray(rates), unit="tok/s", better="higher", estimated=estimated)


def record_server_timing(hwbench: Any, result: RunResult, run_means: Mapping[str, float] | None = None) -> None:
    """Record what the server reported about its own time beside the client's figures (``server_timing``):
    per-request samples from the answers, per-run means from its metrics endpoint."""
    for name, values in server_timing.per_request_samples(result.records).items():
        hwbench.record(name, values, unit="ms", better="lower")
    for name, value in (run_means or {}).items():
        if math.isfinite(value):
            hwbench.record(name, float(value), unit="ms", better="lower")


def _first_error(result: RunResult, cls: str) -> str:
    return next((r.error_detail or cls for r in result.measured() if r.error == cls), cls)


def _num(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars plain Python."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _num(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_num(v) for v in value]
    return value


def _self_check_line(result: RunResult) -> str:
    c = result.self_check
    bits = []
    if c.offered_rate_rps is not None:
        bits.append(f"offered {c.offered_rate_rps:.1f} req/s, achieved {c.achieved_rate_rps or 0:.1f} req/s")
    bits.append(f"event-loop lag p99 {c.loop_lag_ms.get('p99', math.nan):.2f} ms")
    if c.mode == "open":
        bits.append(f"send lag p99 {c.send_lag_ms.get('p99', math.nan):.2f} ms")
    bits.append("client CPU " + ", ".join(f"{x:.0%}" for x in c.client_cpu) + " of a core")
    if c.client_wait and any(math.isfinite(w) for w in c.client_wait):
        bits.append("waited for a CPU " + ", ".join(f"{w:.0%}" for w in c.client_wait) + " of the run")
    if c.machine is not None and c.machine.runnable_mean is not None:
        bits.append(f"{c.machine.runnable_mean:.1f} runnable tasks on {c.machine.cpus} CPUs")
    return "; ".join(bits)


def _load_dict(load: LoadSpec, workers: int) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": load.mode, "requests": load.requests, "duration_s": load.duration_s,
                           "warmup_requests": load.warmup_requests, "workers": workers}
    if load.mode == "closed":
        out |= {"users": load.users, "ramp_up_s": load.ramp_up_s}
    elif load.arrival is not None:
        out |= {"arrival": load.arrival.kind, "rate": load.arrival.rate, "burstiness": load.arrival.burstiness,
                "max_concurrency": load.max_concurrency, "seed": load.seed}
    return out


def _note(hwbench: Any, label: str, target: LLMTarget, load: LoadSpec, result: RunResult, metrics: LLMMetrics,
          prompts: Sequence[Prompt], max_tokens: int | None, settings: LLMSettings) -> None:
    """Put the run's plain-JSON facts into ``hwbench.extra[label]``: fixed facts once, counts per trial."""
    note = hwbench.extra.setdefault(label, {})
    tokens = [p.tokens for p in prompts]
    note.update({
        "target": target.to_dict(),
        "load": _load_dict(load, result.workers),
        "request": {"prompts": len(prompts), "prompt_tokens_mean": float(np.mean(tokens)) if tokens else None,
                    "prompt_tokens_estimated": any(p.tokens_estimated for p in prompts),
                    "max_tokens": max_tokens, "ignore_eos": settings.ignore_eos,
                    "temperature": settings.temperature},
        "request_slos": dict(metrics.request_slos),
        "estimated": sorted(metrics.estimated),
    })
    examples: dict[str, list[str]] = {}
    for r in result.measured():
        if r.error is not None and len(examples.setdefault(r.error, [])) < _ERROR_EXAMPLES:
            examples[r.error].append(r.error_detail[:200])
    check = result.self_check
    trial = {
        "trial": None if getattr(hwbench, "is_warmup", False) else getattr(hwbench, "trial", None),
        "counts": dict(metrics.counts), "errors": dict(metrics.errors), "error_examples": examples,
        "window_s": metrics.window_s,
        "self_check": {"client_bound": check.client_bound, "contended": check.contended,
                       "client_wait": list(check.client_wait),
                       "machine": check.machine.to_dict() if check.machine else None,
                       "reasons": list(check.reasons),
                       "notes": list(check.notes), "offered_rate_rps": check.offered_rate_rps,
                       "achieved_rate_rps": check.achieved_rate_rps, "loop_lag_ms": dict(check.loop_lag_ms),
                       "send_lag_ms": dict(check.send_lag_ms), "client_cpu": list(check.client_cpu),
                       "queued_requests": check.queued_requests},
    }
    if getattr(hwbench, "is_warmup", False):
        note["warmup"] = _num(trial)
        return
    note.setdefault("trials", []).append(_num(trial))
    totals = note.setdefault("totals", {"attempted": 0, "succeeded": 0, "failed": 0, "errors": {},
                                        "client_bound_trials": 0})
    for key in ("attempted", "succeeded", "failed"):
        totals[key] += int(metrics.counts.get(key, 0))
    for cls, n in metrics.errors.items():
        totals["errors"][cls] = totals["errors"].get(cls, 0) + int(n)
    totals["client_bound_trials"] += int(check.client_bound)
