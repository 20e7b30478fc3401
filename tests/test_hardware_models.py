"""GGUF discovery and selection on real (tiny) GGUF files laid out the ways people keep models: plain
directories with split files, Ollama's store (manifests -> blobs) and the Hugging Face cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

from pytest_hwbench.services.tiny_gguf import write_tiny_gguf  # noqa: E402
from pytest_hwbench.workloads.hardware import models  # noqa: E402
from pytest_hwbench.workloads.hardware.models import discover, select  # noqa: E402

GIB = 2**30


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "small.gguf", n_embd=64, n_ff=128)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("m") / "big.gguf", n_embd=128, n_ff=256)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real Ollama store or HF cache leaks into the test."""
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(models, "ollama_roots", lambda: [str(tmp_path / "ollama")])
    return tmp_path


def test_directory_split_files_and_metadata(isolated: Path, small: Path, big: Path) -> None:
    d = isolated / "models" / "nested"
    d.mkdir(parents=True)
    shutil.copy(small, d / "Qwen2.5-0.5B-Q4_K_M.gguf")
    shutil.copy(small, d / "llama-00001-of-00002.gguf")
    shutil.copy(big, d / "llama-00002-of-00002.gguf")
    shutil.copy(small, d / "broken-00001-of-00003.gguf")
    shutil.copy(small, d / "mmproj-model-f16.gguf")  # a vision projector: not a model llama-bench runs
    found, searched = discover([str(isolated / "models")], ollama=False, huggingface=False)
    by_id = {m.id: m for m in found}
    assert set(by_id) == {"qwen2.5-0.5b-q4_k_m", "llama", "broken"} and searched == [str(isolated / "models")]
    q = by_id["qwen2.5-0.5b-q4_k_m"]
    assert (q.name, q.architecture, q.quantization, q.source) == ("hwbench-tiny-llama", "llama", "F32", "dir")
    assert q.parameters and q.parameters > 0 and q.size_bytes == small.stat().st_size
    split = by_id["llama"]
    assert split.path.endswith("llama-00001-of-00002.gguf") and len(split.files) == 2
    assert split.size_bytes == small.stat().st_size + big.stat().st_size
    assert split.parameters and split.parameters > q.parameters  # summed over the parts
    assert "parts [2, 3] of 3 missing" in by_id["broken"].problem


def test_ollama_store_and_hf_cache_each_file_once(isolated: Path, small: Path, big: Path) -> None:
    root = isolated / "ollama"
    digest = "sha256:" + "ab" * 32
    (root / "blobs").mkdir(parents=True)
    shutil.copy(big, root / "blobs" / digest.replace(":", "-"))
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "llama3.2" / "1b"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": big.stat().st_size},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "cd" * 32}]}))
    snap = isolated / "hf" / "models--org--tiny-GGUF" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    blob = isolated / "hf" / "models--org--tiny-GGUF" / "blobs" / "x"
    blob.parent.mkdir(parents=True)
    shutil.copy(small, blob)
    os.symlink(blob, snap / "tiny-q8_0.gguf")
    d = isolated / "models"
    d.mkdir()
    os.symlink(blob, d / "same-file.gguf")  # the HF blob again, through a directory: counted once
    found, _ = discover([str(d)], ollama=True, huggingface=True)
    assert sorted((m.id, m.source) for m in found) == [("llama3.2-1b", "ollama"), ("same-file", "dir")]
    assert next(m for m in found if m.source == "ollama").size_bytes == big.stat().st_size


def test_selection_modes_and_memory_limit(isolated: Path, small: Path, big: Path) -> None:
    d = isolated / "models"
    d.mkdir()
    for name in ("a-q4_k_m", "b-q8_0"):
        shutil.copy(small, d / f"{name}.gguf")
    shutil.copy(big, d / "c-f16.gguf")
    found, _ = discover([str(d)], ollama=False, huggingface=False)
    kw = {"default_count": 2, "headroom": 0.2, "max_size_gib": None, "free_bytes": 64 * GIB}
    default, mode = select(found, ["default"], **kw)
    assert mode == "default" and [c.model.id for c in default] == ["a-q4_k_m", "b-q8_0"]  # smallest first
    everything, _ = select(found, ["all"], **kw)
    assert [c.model.id for c in everything] == ["a-q4_k_m", "b-q8_0", "c-f16"]
    picked, mode = select(found, ["*q8*", "re:^c-"], **kw)
    assert [c.model.id for c in picked] == ["b-q8_0", "c-f16"] and mode.startswith("patterns")
    # c-f16 does not fit in the free memory: listed with the reason, and not in the default subset
    tight = {**kw, "free_bytes": int(big.stat().st_size * 1.1)}
    everything, _ = select(found, ["all"], **tight)
    reason = everything[-1].skip_reason
    assert everything[-1].model.id == "c-f16" and "of RAM is free" in reason and "+ 20%" in reason
    assert not everything[0].skip_reason
    capped, _ = select(found, ["all"], **{**kw, "max_size_gib": small.stat().st_size * 1.5 / GIB})
    assert "above hardware.models.max_size_gib" in capped[-1].skip_reason


def test_models_cli_lists_the_selection(isolated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_hwbench.cli import main

    d = tmp_path / "tiny"
    assert main(["models", "tiny", str(d)]) == 0
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"version: 1\nhardware:\n  models: {{dirs: [{d}], select: [all], ollama: false}}\n")
    capsys.readouterr()
    assert main(["models", "list", "--recipe", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "selection all" in out and "tiny-llama-e64" in out and "tiny-llama-e128" in out and " run" in out
    assert main(["models", "list", "--recipe", str(recipe), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    sizes = [m["size_bytes"] for m in doc["models"]]
    assert len(sizes) == 2 and sizes[0] < sizes[1] and {m["status"] for m in doc["models"]} == {"run"}
