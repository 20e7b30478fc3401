"""llama.cpp's ``llama-bench``: prompt-processing and generation tokens/s of a GGUF model.

One invocation per trial with ``-p N_PROMPT -n N_GEN -r REPETITIONS -o json``; llama-bench prints one JSON
record per test (a ``pp`` record with ``n_gen == 0`` and a ``tg`` record with ``n_prompt == 0``), each with
``samples_ts`` — the tokens/s of every repetition — which become the samples of ``pp_tok_s`` / ``tg_tok_s``
unchanged, so the reported figures are llama-bench's own. Threads, batch size, GPU layers and flash
attention come from the recipe's sweep and are passed through as llama-bench's flags.

Older llama-bench builds had no ``samples_ts`` (only ``samples_ns`` or just ``avg_ts``) and wrote
``flash_attn`` as a bool; those layouts parse too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from pytest_hwbench.workloads.hardware.runner import ToolFailed, cache_dir, find_tool, version_of

INSTALL = ("build it with scripts/build_llama_cpp.sh (cached in ~/.cache/hwbench/llama.cpp/<version>/bin) or put "
           "a llama.cpp build's llama-bench on PATH")


@dataclass(frozen=True)
class LlamaBenchRecord:
    """One llama-bench test: ``kind`` is ``pp`` (prompt processing) or ``tg`` (text generation)."""

    kind: str
    n_prompt: int
    n_gen: int
    samples_ts: list[float]
    avg_ts: float
    stddev_ts: float
    model_filename: str = ""
    model_type: str = ""
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    n_batch: int | None = None
    flash_attn: str | None = None
    backends: str = ""
    gpu_info: str = ""
    build: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def find_llama_bench() -> str:
    return find_tool(("llama-bench",), install=INSTALL,
                     patterns=(os.path.join(cache_dir(), "llama.cpp", "*", "bin", "llama-bench"),))


def llama_bench_version(binary: str) -> str:
    return version_of([binary, "--version"], pick="version")


def flag_value(value: Any) -> str:
    """A recipe value as llama-bench expects it: YAML booleans (``off`` parses as False) become 0/1."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def llama_bench_argv(binary: str, *, model: str, n_prompt: int, n_gen: int, repetitions: int,
                     threads: int | None = None, batch_size: int | None = None, n_gpu_layers: int | None = None,
                     flash_attn: Any = None, extra: list[str] | None = None) -> list[str]:
    argv = [binary, "-m", model, "-p", str(n_prompt), "-n", str(n_gen), "-r", str(repetitions), "-o", "json"]
    for flag, value in (("-t", threads), ("-b", batch_size), ("-ngl", n_gpu_layers), ("-fa", flash_attn)):
        if value is not None:
            argv += [flag, flag_value(value)]
    return argv + list(extra or [])


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _samples(rec: dict[str, Any]) -> list[float]:
    if rec.get("samples_ts"):
        return [float(x) for x in rec["samples_ts"]]
    tokens = int(rec.get("n_prompt", 0)) + int(rec.get("n_gen", 0))
    if rec.get("samples_ns") and tokens:
        return [tokens * 1e9 / float(ns) for ns in rec["samples_ns"]]
    return [float(rec["avg_ts"])] if "avg_ts" in rec else []


def parse_llama_bench(text: str) -> list[LlamaBenchRecord]:
    """Records of llama-bench's ``-o json`` (or ``-o jsonl``) output. Raises :class:`ToolFailed` when there is
    no JSON (llama-bench prints its errors, e.g. a model that fails to load, on stderr and exits non-zero)."""
    stripped = text.strip()
    start = text.find("[")
    if not stripped.startswith("{") and start < 0:
        raise ToolFailed("llama-bench printed no JSON: " + (stripped.splitlines() or ["(nothing)"])[-1])
    try:  # -o json: one array; -o jsonl: one object per line
        if stripped.startswith("{"):
            doc = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        else:
            doc = json.loads(text[start:])
    except json.JSONDecodeError as err:
        raise ToolFailed(f"llama-bench's JSON output does not parse ({err})") from None
    records = []
    for rec in doc:
        n_prompt, n_gen = int(rec.get("n_prompt", 0)), int(rec.get("n_gen", 0))
        fa = rec.get("flash_attn")
        records.append(LlamaBenchRecord(
            kind="pp" if n_gen == 0 else ("tg" if n_prompt == 0 else "pg"), n_prompt=n_prompt, n_gen=n_gen,
            samples_ts=_samples(rec), avg_ts=float(rec.get("avg_ts", 0.0)),
            stddev_ts=float(rec.get("stddev_ts", 0.0)), model_filename=str(rec.get("model_filename", "")),
            model_type=str(rec.get("model_type", "")), n_threads=_int(rec.get("n_threads")),
            n_gpu_layers=_int(rec.get("n_gpu_layers")), n_batch=_int(rec.get("n_batch")),
            flash_attn=None if fa is None else str(fa).lower(), backends=str(rec.get("backends", "")),
            gpu_info=str(rec.get("gpu_info", "")),
            build=f"{rec.get('build_commit', '?')} ({rec.get('build_number', '?')})", raw=rec))
    if not records:
        raise ToolFailed("llama-bench's JSON output holds no test records")
    return records


def has_gpu_backend(records: list[LlamaBenchRecord]) -> bool:
    """True when the build ran on a GPU backend (``backends`` names CUDA, ROCm, Vulkan, Metal, SYCL...)."""
    return any(b.strip() and b.strip().upper() not in ("CPU", "BLAS") for r in records
               for b in r.backends.split(","))
