"""llama-bench over the GGUF models this machine has: prompt and generation tokens/s per model.

Models come from the recipe's ``hardware.models`` (directories searched recursively, Ollama's store, the
Hugging Face cache) and its selection (``default``: the smallest few that fit in memory; ``all``; or globs and
``re:`` regexes); ``hwbench models list --recipe R`` prints what a recipe selects. Each model is a test
parameter, e.g. ``test_llama_bench[model=qwen2.5-7b-instruct-q4_k_m-n_prompt=512-n_gen=128]``; a model too
large for the free memory is a skip that says so.

Metrics: ``pp_tok_s`` (prompt processing, ``-p n_prompt``) and ``tg_tok_s`` (generation, ``-n n_gen``), one
sample per llama-bench repetition (``hardware.llama_bench_repetitions``) — llama-bench's own ``samples_ts``.
Sweep parameters passed to llama-bench when the recipe sweeps them: ``threads`` (-t, ``max`` = all CPUs),
``batch_size`` (-b), ``n_gpu_layers`` (-ngl; needs a GPU build, else a skip) and ``flash_attn`` (-fa).
llama-bench comes from PATH or the cache ``scripts/build_llama_cpp.sh`` fills.
"""

from __future__ import annotations

import pytest

from pytest_hwbench.service_hub import unavailable
from pytest_hwbench.workloads.hardware import bench
from pytest_hwbench.workloads.hardware.models import Choice, Selection, select_models

_SELECTIONS: dict[int, Selection] = {}


def _selection(config: pytest.Config) -> Selection:
    from pytest_hwbench.plugin import get_session

    recipe = get_session(config).recipe
    if id(recipe) not in _SELECTIONS:
        _SELECTIONS[id(recipe)] = select_models(recipe.hardware.models)
    return _SELECTIONS[id(recipe)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "model" not in metafunc.fixturenames:
        return
    sel = _selection(metafunc.config)
    if sel.chosen:
        metafunc.parametrize("model", sel.chosen, ids=[f"model={c.model.id}" for c in sel.chosen])
    else:
        metafunc.parametrize("model", [sel], ids=["model=none"])


# Optional llama-bench flags: None unless the recipe's sweep parametrises them (which overrides these).
@pytest.fixture
def batch_size() -> None:
    return None


@pytest.fixture
def n_gpu_layers() -> None:
    return None


@pytest.fixture
def flash_attn() -> None:
    return None


@pytest.fixture
def gguf_model(model: Choice | Selection, n_gpu_layers: int | None) -> Choice:
    """The chosen model; a skip saying why when it does not fit, none was found, or GPU layers are asked for
    on a machine without a GPU."""
    if n_gpu_layers:
        from pytest_hwbench.workloads.hardware.gpu import gpu_skip_reason

        reason = gpu_skip_reason()
        if reason:
            pytest.skip(f"n_gpu_layers={n_gpu_layers} needs a GPU: {reason}")
    if isinstance(model, Selection):
        # The fix first: pytest shortens long skip lines in its summary, and the fix is what a reader needs.
        unavailable("no GGUF model selected: set HWBENCH_MODELS=DIR (recipes/gguf.yaml) or hardware.models.dirs, "
                    "or write two tiny test models with `hwbench models tiny DIR` "
                    f"({model.found} found; mode {model.mode}; searched {', '.join(model.searched) or 'no place'})")
    if model.skip_reason:
        pytest.skip(model.skip_reason)
    return model


@pytest.mark.hwbench(sweep={"n_prompt": [64], "n_gen": [16], "threads": ["max"]})
def test_llama_bench(hwbench, gguf_model: Choice, n_prompt: int, n_gen: int, threads, batch_size, n_gpu_layers,
                     flash_attn) -> None:
    m = gguf_model.model
    hwbench.extra["model"] = m.to_dict()
    bench.llama_bench_trial(hwbench, m.path, n_prompt=n_prompt, n_gen=n_gen, threads=threads,
                            batch_size=batch_size, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn)
