"""Workloads: generate load against a service and record what every request did.

Data flow (docs/architecture.md): a protocol client turns one request index into one ``RequestRecord``; the engine
decides *when* each index is sent (closed or open loop, warm-up, caps, several processes) and checks that
it kept up; ``llm_metrics`` turns records into the pinned metrics that ``measure`` summarises.

* ``records``       — ``RequestRecord`` (integer-ns timings, error class) and ``ErrorClass``.
* ``schedule``      — open-loop arrival processes (constant, Poisson, gamma with burstiness), seeded.
* ``engine``        — ``LoadSpec``, ``run_load`` (async) / ``run_load_sync``, ``RunResult``, ``SelfCheck``.
* ``multiproc``     — one run over K worker processes, clocks aligned, records merged.
* ``loop``          — event loops with sub-millisecond timers (``select()`` + low timer slack).
* ``http1``         — the lean HTTP/1.1 client the protocol clients use (precise arrival stamps).
* ``openai_client`` — OpenAI-compatible completions / chat, streaming SSE.
* ``ollama_client`` — Ollama native generate / chat, streaming NDJSON, with the server's own timings.
* ``prompts``       — synthetic prompts of a target length, JSONL datasets.
* ``llm_metrics``   — records → ttft / itl / tpot / e2el / latency_from_intended samples and rates.

The reference server used as ground truth lives in ``pytest_hwbench.reference_server``.
"""
