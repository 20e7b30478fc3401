"""``hwbench models list`` (what a recipe's ``hardware.models`` finds and selects) and ``hwbench models tiny DIR``
(two tiny random-weight GGUF models of different sizes, for trying the GGUF benchmarks without downloads)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

TINY: dict[str, dict[str, int]] = {"tiny-llama-e64": {"n_embd": 64, "n_ff": 128},
                                   "tiny-llama-e128": {"n_embd": 128, "n_ff": 256}}


def add_parser(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="GGUF models: list what a recipe selects, write tiny test models")
    msub = models.add_subparsers(dest="models_command", required=True)
    lst = msub.add_parser("list", help="models found and selected by a recipe's hardware.models")
    lst.add_argument("--recipe", help="recipe file (default: recipes/gguf.yaml if present, else the embedded "
                                      "default)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=list_models)
    tiny = msub.add_parser("tiny", help="write two tiny GGUF models (random weights) into DIR")
    tiny.add_argument("dir")
    tiny.set_defaults(func=write_tiny)


def _recipe(path: str | None) -> Any:
    from pytest_hwbench.recipe.loader import default_recipe, load_recipe

    if path:
        return load_recipe(path)
    return load_recipe("recipes/gguf.yaml") if os.path.isfile("recipes/gguf.yaml") else default_recipe()


def list_models(args: argparse.Namespace) -> int:
    from pytest_hwbench.errors import HwbenchInputError
    from pytest_hwbench.workloads.hardware.models import discover, fit_reason, free_memory_bytes, select

    try:
        recipe = _recipe(args.recipe)
    except HwbenchInputError as err:
        print(f"hwbench: {err}")
        return 2
    ms = recipe.hardware.models
    models, searched = discover(ms.dirs, ollama=ms.ollama, huggingface=ms.huggingface)
    chosen, mode = select(models, ms.select, default_count=ms.default_count, headroom=ms.memory_headroom,
                          max_size_gib=ms.max_size_gib)
    picked = {c.model.id: c for c in chosen}
    free = free_memory_bytes()
    rows = []
    for m in sorted(models, key=lambda x: (x.size_bytes, x.id)):
        c = picked.get(m.id)
        status = ("run" if not c.skip_reason else f"skip: {c.skip_reason}") if c else (
            "not selected" + (f" ({reason})" if (reason := fit_reason(m, headroom=ms.memory_headroom,
                                                               max_size_gib=ms.max_size_gib, free_bytes=free))
                              else ""))
        rows.append({**m.to_dict(), "status": status})
    if args.json:
        print(json.dumps({"recipe": recipe.path, "mode": mode, "searched": searched, "models": rows}, indent=2))
        return 0
    print(f"recipe {recipe.path}: selection {mode}; searched {', '.join(searched) or 'nothing'}")
    if not rows:
        print("no GGUF models found (set HWBENCH_MODELS=DIR, or write test models with `hwbench models tiny DIR`)")
        return 0
    print(f"{'model':32} {'size MiB':>9} {'params':>8} {'quant':8} {'arch':10} {'source':11} status")
    for r in rows:
        params = f"{r['parameters'] / 1e6:.1f}M" if r["parameters"] else "?"
        print(f"{r['id'][:32]:32} {r['size_bytes'] / 2**20:9.1f} {params:>8} {r['quantization'][:8]:8} "
              f"{r['architecture'][:10]:10} {r['source']:11} {r['status']}")
    return 0


def write_tiny(args: argparse.Namespace) -> int:
    from pytest_hwbench.services.tiny_gguf import write_tiny_gguf

    for name, shape in TINY.items():
        path = Path(args.dir, f"{name}.gguf")
        if not path.is_file():
            write_tiny_gguf(path, **shape)
        print(path)
    return 0
