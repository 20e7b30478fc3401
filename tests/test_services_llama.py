"""A real LLM engine on CPU: llama.cpp's llama-server (built by scripts/build_llama_cpp.sh) started through
the process backend with the tiny random GGUF model, answering /health and /v1/completions with exactly n
tokens; and llama-bench measuring the same model."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import pytest

from pytest_hwbench.services import ServiceSet
from tests.service_helpers import llama_bin_dir, our_processes, spec


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("gguf", reason="pip install gguf (.ci/install-services.sh does)")
    from pytest_hwbench.services.tiny_gguf import tiny_gguf

    return tiny_gguf(tmp_path_factory.mktemp("models"))


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def test_llama_server_process_backend_with_tiny_model(tiny_model, tmp_path):
    bin_dir = llama_bin_dir()
    with ServiceSet(log_dir=tmp_path / "logs", state_dir=tmp_path / "state", run_id="llama-t",
                    handle_signals=False) as services:
        svc = services.start(spec("llamacpp", name="llm", binary=str(bin_dir / "llama-server"),
                                  model=str(tiny_model), ctx_size=512, threads=2, parallel=1, alias="tiny",
                                  startup_timeout=120))
        ep = svc.endpoint
        assert ep.extra == {"openai_base_url": f"http://127.0.0.1:{ep.port}/v1", "model": "tiny"}
        with urllib.request.urlopen(f"{ep.url}/health", timeout=30) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"

        for n in (1, 24):
            answer = _post(f"{ep.extra['openai_base_url']}/completions",
                           {"model": "tiny", "prompt": "Hello, world", "max_tokens": n, "temperature": 0,
                            "ignore_eos": True})
            assert answer["usage"]["completion_tokens"] == n, answer
            assert answer["choices"][0]["finish_reason"] == "length"

        info = svc.info
        assert info["model"] == str(tiny_model) and info["binary"] == str(bin_dir / "llama-server")
        assert info["startup_s"] > 0
        if info["model_load_s"] is not None:  # the server answered (503 "loading") before the model was ready
            assert 0 <= info["model_load_s"] <= info["startup_s"]
        stats = svc.stats()
        assert stats["alive"] and stats["mem_bytes"] > 0
        svc.check_alive()
    assert our_processes("llama-t") == []


def test_llama_bench_runs_on_the_tiny_model(tiny_model):
    bench = llama_bin_dir() / "llama-bench"
    done = subprocess.run([str(bench), "-m", str(tiny_model), "-p", "32", "-n", "16", "-r", "2", "-t", "2",
                           "-o", "json"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    assert {(r["n_prompt"], r["n_gen"]) for r in rows} == {(32, 0), (0, 16)}
    assert all(r["avg_ts"] > 0 for r in rows)
