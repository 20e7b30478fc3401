"""Hardware benchmarks people already trust, run as subprocesses and parsed: llama-bench over discovered GGUF
models, 7-Zip's benchmark, STREAM (a STREAM-method kernel cross-checked with likwid-bench), fio, and NVML
GPU telemetry. One small module per tool; :mod:`.runner` runs them reproducibly and records what ran.
"""
