"""What the server says about its own time, beside what the client measured.

Why: a client's TTFT is queueing + network + the server's prefill; its inter-token time is the server's
decode step plus delivery. When the server reports its own timings, recording them beside the client's
figures separates "the server got slower" from "the path to it did" (a driver upgrade that slows prefill,
against a NIC or proxy change that adds network time). Two sources:

* **Per request**, in the answer (kept in ``RequestRecord.server_timing`` by the protocol clients):
  llama.cpp's ``timings`` object (``prompt_ms``, ``predicted_per_token_ms``, ...), Ollama's final line
  (``prompt_eval_duration``, ``eval_duration``, ``eval_count`` in ns).
* **Per run**, from a Prometheus metrics endpoint scraped just before and just after the measured run
  (vLLM ``/metrics``; Triton's metrics port): the change of each latency histogram's sum and count over the
  run gives the server's mean for exactly the requests of this run (assuming nothing else used the server).

Metric definitions (all in ms, better lower; only recorded when the server reports them):

* ``server_prefill_ms`` — per request: llama.cpp ``prompt_ms``; Ollama ``prompt_eval_duration``; the
  reference server's arrival → first token write.
* ``server_tpot_ms`` — per request: llama.cpp ``predicted_per_token_ms``; Ollama ``eval_duration`` /
  ``eval_count``.
* ``ttft_outside_server_ms`` — per request: client TTFT − ``server_prefill_ms``: queueing before the slot,
  network both ways and the client's own delay.
* ``server_<name>_mean_ms`` — per run, from the metrics endpoint, e.g. ``server_ttft_mean_ms`` (vLLM
  ``vllm:time_to_first_token_seconds``), ``server_queue_mean_ms`` (vLLM ``vllm:request_queue_time_seconds``,
  Triton ``nv_inference_queue_duration_us``), ``server_request_mean_ms``, ``server_compute_mean_ms``.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pytest_hwbench.workloads.records import RequestRecord


def is_server_timing_metric(name: str) -> bool:
    """A metric this module defines (the server's own account of its timing): evidence beside the client's
    figures, which the baseline gate leaves out unless the recipe lists it."""
    return name in ("server_prefill_ms", "server_tpot_ms", "ttft_outside_server_ms") or (
        name.startswith("server_") and name.endswith("_mean_ms"))


#: llama.cpp's per-request ``timings`` fields kept in ``RequestRecord.server_timing``.
LLAMACPP_TIMINGS = ("prompt_n", "prompt_ms", "prompt_per_token_ms", "predicted_n", "predicted_ms",
                    "predicted_per_token_ms")

#: Prometheus histogram (or summary) → (our name, factor to ms). Sums are in the unit of the name's suffix.
PROMETHEUS_LATENCIES: dict[str, tuple[str, float]] = {
    "vllm:time_to_first_token_seconds": ("ttft", 1e3),
    "vllm:time_per_output_token_seconds": ("tpot", 1e3),
    "vllm:e2e_request_latency_seconds": ("request", 1e3),
    "vllm:request_queue_time_seconds": ("queue", 1e3),
    "vllm:request_prefill_time_seconds": ("prefill", 1e3),
    "vllm:request_decode_time_seconds": ("decode", 1e3),
    "nv_inference_request_duration_us": ("request", 1e-3),
    "nv_inference_queue_duration_us": ("queue", 1e-3),
    "nv_inference_compute_infer_duration_us": ("compute", 1e-3),
}
#: Triton exports cumulative durations with a separate request counter.
_TRITON_COUNT = "nv_inference_request_success"


def llamacpp_timing(obj: Mapping[str, object]) -> dict[str, float] | None:
    """The numeric fields of a llama.cpp ``timings`` object, or None when the event carries none."""
    timings = obj.get("timings")
    if not isinstance(timings, Mapping):
        return None
    out = {k: float(v) for k in LLAMACPP_TIMINGS if isinstance(v := timings.get(k), (int, float))
           and not isinstance(v, bool)}
    return out or None


def per_request_samples(records: Iterable[RequestRecord]) -> dict[str, np.ndarray]:
    """Server-reported per-request samples of the measured, successful records (see the module doc)."""
    prefill: list[float] = []
    tpot: list[float] = []
    outside: list[float] = []
    for r in records:
        st = r.server_timing
        if r.warmup or not r.ok or not st:
            continue
        pre = st.get("prompt_ms")
        if pre is None and "prompt_eval_duration" in st:
            pre = st["prompt_eval_duration"] / 1e6
        if pre is None and st.get("first_token_ns") and st.get("arrival_ns"):  # the reference server
            pre = (st["first_token_ns"] - st["arrival_ns"]) / 1e6
        per_tok = st.get("predicted_per_token_ms")
        if per_tok is None and st.get("eval_count") and "eval_duration" in st:
            per_tok = st["eval_duration"] / st["eval_count"] / 1e6
        if pre is not None and math.isfinite(pre):
            prefill.append(pre)
            if r.first_token_ns is not None and r.first_token_ns > r.send_ns:
                outside.append((r.first_token_ns - r.send_ns) / 1e6 - pre)
        if per_tok is not None and math.isfinite(per_tok):
            tpot.append(per_tok)
    out = {}
    for name, values in (("server_prefill_ms", prefill), ("server_tpot_ms", tpot),
                         ("ttft_outside_server_ms", outside)):
        if values:
            out[name] = np.asarray(values, dtype=np.float64)
    return out


@dataclass
class MetricsSnapshot:
    """Sums and counts of the latency series of one scrape, keyed by our name."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)


def parse_prometheus(text: str) -> MetricsSnapshot:
    """Sum and count of every known latency series in a Prometheus text exposition (all labels added)."""
    from prometheus_client.parser import text_string_to_metric_families

    snap = MetricsSnapshot()
    triton_count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removesuffix("_total")  # the parser names a counter's sample with _total
            if name == _TRITON_COUNT:
                triton_count += sample.value
                continue
            if name in PROMETHEUS_LATENCIES:  # a cumulative duration counter (Triton)
                base, target, factor_on = name, snap.sums, True
            elif name.endswith("_sum") and name[:-4] in PROMETHEUS_LATENCIES:
                base, target, factor_on = name[:-4], snap.sums, True
            elif name.endswith("_count") and name[:-6] in PROMETHEUS_LATENCIES:
                base, target, factor_on = name[:-6], snap.counts, False
            else:
                continue
            ours, factor = PROMETHEUS_LATENCIES[base]
            target[ours] = target.get(ours, 0.0) + sample.value * (factor if factor_on else 1.0)
    if triton_count:
        for ours in {PROMETHEUS_LATENCIES[k][0] for k in PROMETHEUS_LATENCIES if k.startswith("nv_")}:
            if ours in snap.sums and ours not in snap.counts:
                snap.counts[ours] = triton_count
    return snap


def scrape(url: str, timeout_s: float = 5.0) -> MetricsSnapshot | None:
    """One scrape of a metrics endpoint; None when it cannot be read (the run goes on without it)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return parse_prometheus(resp.read().decode("utf-8", "replace"))
    except Exception:
        return None


def run_means(before: MetricsSnapshot | None, after: MetricsSnapshot | None) -> dict[str, float]:
    """``server_<name>_mean_ms`` over the requests between two scrapes (only series that moved)."""
    if before is None or after is None:
        return {}
    out = {}
    for name, total in after.sums.items():
        count = after.counts.get(name, 0.0) - before.counts.get(name, 0.0)
        if count > 0:
            out[f"server_{name}_mean_ms"] = (total - before.sums.get(name, 0.0)) / count
    return out
