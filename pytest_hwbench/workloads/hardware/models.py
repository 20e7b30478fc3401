"""GGUF models where people keep them, and which of them a run benchmarks.

Discovery (each file counted once, by its real path, whatever the number of ways it was found):

* the recipe's ``hardware.models.dirs`` (searched recursively for ``*.gguf``; a split model
  ``name-00001-of-00003.gguf`` ... is one model whose size is the sum of its parts, and an incomplete split
  is reported, not benchmarked; vision projectors (``mmproj``, architecture ``clip``) are left out);
* Ollama's store (``$OLLAMA_MODELS``, ``~/.ollama/models``, ``/usr/share/ollama/.ollama/models``): each
  manifest under ``manifests/<registry>/<namespace>/<model>/<tag>`` names the blob of its model layer;
* the Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``, ``~/.cache/huggingface/hub``):
  ``models--<org>--<name>/snapshots/<revision>/**.gguf``.

Name, architecture, parameter count and quantisation come from the GGUF metadata through the ``gguf``
package (llama.cpp's own reader), not from the file name.

Selection (``hardware.models.select``): ``default`` — the ``default_count`` smallest models that fit, so a
CI run stays short and the same models are chosen on identical machines; ``all``; or a list of globs
(matched against the model id and the file name) and regular expressions written ``re:<pattern>``. A model
whose size times ``1 + memory_headroom`` exceeds the free RAM (or ``max_size_gib``) is kept in the list
with the reason it will be skipped, so the report says what was left out and why.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

_SPLIT = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.I)
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
GIB = 2**30


@dataclass(frozen=True)
class ModelInfo:
    """One discovered GGUF model. ``path`` is what llama.cpp opens (the first part of a split model)."""

    id: str
    path: str
    source: str  # dir | ollama | huggingface
    size_bytes: int
    files: tuple[str, ...] = ()
    name: str = ""
    architecture: str = ""
    parameters: int | None = None
    quantization: str = ""
    size_label: str = ""
    problem: str = ""  # set when the model cannot be benchmarked at all (incomplete split, unreadable)

    @property
    def size_gib(self) -> float:
        return self.size_bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "source": self.source, "size_bytes": self.size_bytes,
                "files": list(self.files), "name": self.name, "architecture": self.architecture,
                "parameters": self.parameters, "quantization": self.quantization, "size_label": self.size_label}


@dataclass(frozen=True)
class Choice:
    """A model the selection picked, with the reason it will be skipped ("" when it will run)."""

    model: ModelInfo
    skip_reason: str = ""


@dataclass
class Selection:
    """The outcome of discovery + selection, with where was searched (for the "nothing found" message)."""

    chosen: list[Choice] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    found: int = 0
    mode: str = "default"


# ---------------------------------------------------------------------------------------------- metadata

def _field(reader: Any, key: str) -> Any:
    f = reader.get_field(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # an unusual field type must not hide the model
        return None


def quantization_name(file_type: int | None) -> str:
    """``general.file_type`` as llama.cpp names it (``MOSTLY_Q4_K_M`` -> ``Q4_K_M``)."""
    if file_type is None:
        return ""
    import gguf

    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return f"type{file_type}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def read_metadata(files: Sequence[str]) -> dict[str, Any]:
    """Name, architecture, size label, quantisation and parameter count (summed over split parts)."""
    from gguf import GGUFReader

    meta: dict[str, Any] = {"parameters": 0}
    for i, path in enumerate(files):
        reader = GGUFReader(path, "r")
        if i == 0:
            meta["name"] = _field(reader, "general.name") or ""
            meta["architecture"] = _field(reader, "general.architecture") or ""
            meta["size_label"] = _field(reader, "general.size_label") or ""
            meta["quantization"] = quantization_name(_field(reader, "general.file_type"))
        meta["parameters"] += sum(int(t.n_elements) for t in reader.tensors)
    return meta


def slug(text: str) -> str:
    """A model id usable in a test id: lower case, runs of unusual characters as one '-'."""
    return re.sub(r"[^a-z0-9._+]+", "-", text.lower()).strip("-") or "model"


# ---------------------------------------------------------------------------------------------- discovery

def _gguf_groups(paths: Iterable[Path]) -> list[tuple[str, list[str], str]]:
    """(id, files, problem) per model: split parts grouped under their prefix, in index order."""
    singles: list[tuple[str, list[str], str]] = []
    splits: dict[tuple[str, int], dict[int, str]] = {}
    for p in paths:
        m = _SPLIT.match(p.name)
        if m:
            splits.setdefault((str(p.parent / m["prefix"]), int(m["count"])), {})[int(m["index"])] = str(p)
        else:
            singles.append((slug(p.stem), [str(p)], ""))
    for (prefix, count), parts in splits.items():
        missing = [i for i in range(1, count + 1) if i not in parts]
        files = [parts[i] for i in sorted(parts)]
        problem = f"split model incomplete: parts {missing} of {count} missing" if missing else ""
        singles.append((slug(Path(prefix).name), files, problem))
    return singles


def scan_dir(directory: str) -> list[tuple[str, list[str], str]]:
    root = Path(directory).expanduser()
    if not root.is_dir():
        return []
    return _gguf_groups(sorted(p for p in root.rglob("*.gguf") if p.is_file()))


def ollama_roots() -> list[str]:
    env = os.environ.get("OLLAMA_MODELS")
    roots = [env] if env else []
    return [*roots, os.path.expanduser("~/.ollama/models"), "/usr/share/ollama/.ollama/models"]


def scan_ollama(root: str) -> list[tuple[str, list[str], str]]:
    """Models of an Ollama store: manifest -> blob of the model layer (``sha256:x`` -> ``blobs/sha256-x``)."""
    manifests = Path(root, "manifests")
    found: list[tuple[str, list[str], str]] = []
    if not manifests.is_dir():
        return found
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        layer = next((x for x in doc.get("layers", []) if x.get("mediaType") == OLLAMA_MODEL_LAYER), None)
        if not layer or "digest" not in layer:
            continue
        blob = Path(root, "blobs", str(layer["digest"]).replace(":", "-"))
        rel = manifest.relative_to(manifests).parts  # registry, namespace, model, tag
        model, tag = (rel[-2], rel[-1]) if len(rel) >= 2 else (rel[-1], "latest")
        namespace = rel[-3] if len(rel) >= 3 else "library"
        name = f"{model}-{tag}" if namespace == "library" else f"{namespace}-{model}-{tag}"
        found.append((slug(name), [str(blob)], "" if blob.is_file() else f"Ollama blob {blob} missing"))
    return found


def hf_roots() -> list[str]:
    if os.environ.get("HF_HUB_CACHE"):
        return [os.environ["HF_HUB_CACHE"]]
    home = os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface")
    return [os.path.join(home, "hub")]


def scan_hf(root: str) -> list[tuple[str, list[str], str]]:
    found: list[tuple[str, list[str], str]] = []
    for repo in sorted(Path(root).glob("models--*")):
        for snapshot in sorted(repo.glob("snapshots/*")):
            found += scan_dir(str(snapshot))
    return found


def discover(dirs: Sequence[str], *, ollama: bool = True, huggingface: bool = True) -> tuple[list[ModelInfo],
                                                                                          list[str]]:
    """Every GGUF model in ``dirs``, Ollama's store and the HF cache (each once), and the places searched."""
    sources: list[tuple[str, str, list[tuple[str, list[str], str]]]] = []
    searched: list[str] = []
    for d in dirs:
        if d:
            searched.append(d)
            sources.append(("dir", d, scan_dir(d)))
    if ollama:
        for root in ollama_roots():
            searched.append(f"ollama:{root}")
            sources.append(("ollama", root, scan_ollama(root)))
    if huggingface:
        for root in hf_roots():
            searched.append(f"huggingface:{root}")
            sources.append(("huggingface", root, scan_hf(root)))
    seen: set[str] = set()
    ids: set[str] = set()
    models: list[ModelInfo] = []
    for source, _, groups in sources:
        for model_id, files, problem in groups:
            real = os.path.realpath(files[0])
            if real in seen:
                continue
            seen.add(real)
            size = sum(os.path.getsize(f) for f in files if os.path.isfile(f))
            info = ModelInfo(id=model_id, path=files[0], source=source, size_bytes=size, files=tuple(files),
                             problem=problem)
            if not problem:
                try:
                    meta = read_metadata(files)
                except ImportError:
                    info = replace(info, problem="the gguf package reads model metadata: pip install gguf "
                                                 "(or pytest-hwbench[hardware])")
                except Exception as err:  # not GGUF after all, truncated, or a newer format
                    info = replace(info, problem=f"unreadable GGUF metadata: {err}")
                else:
                    info = replace(info, **meta)
            if info.architecture == "clip" or "mmproj" in Path(files[0]).name.lower():
                continue  # a vision projector, not a language model llama-bench can run
            unique = info.id
            n = 2
            while unique in ids:
                unique, n = f"{info.id}-{n}", n + 1
            ids.add(unique)
            models.append(replace(info, id=unique))
    return models, searched


# ---------------------------------------------------------------------------------------------- selection

def matches(model: ModelInfo, pattern: str) -> bool:
    if pattern.startswith("re:"):
        rx = re.compile(pattern[3:], re.I)
        return bool(rx.search(model.id) or rx.search(Path(model.path).name))
    pat = pattern.lower()
    return fnmatch.fnmatchcase(model.id, pat) or fnmatch.fnmatchcase(Path(model.path).name.lower(), pat)


def free_memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def human_size(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2**20:.2f} MiB"


def fit_reason(model: ModelInfo, *, headroom: float, max_size_gib: float | None, free_bytes: int) -> str:
    """Why ``model`` will not run here ("" when it fits): the recipe's ceiling, then free RAM."""
    if model.problem:
        return model.problem
    if max_size_gib is not None and model.size_bytes > max_size_gib * GIB:
        return (f"model {model.id} is {human_size(model.size_bytes)}, above hardware.models.max_size_gib "
                f"({max_size_gib:g} GiB)")
    need = model.size_bytes * (1 + headroom)
    if need > free_bytes:
        return (f"model {model.id} needs about {human_size(need)} ({human_size(model.size_bytes)} + "
                f"{headroom:.0%} for context and buffers) but only {human_size(free_bytes)} of RAM is free")
    return ""


def select(models: Sequence[ModelInfo], select: Sequence[str], *, default_count: int, headroom: float,
           max_size_gib: float | None, free_bytes: int | None = None) -> tuple[list[Choice], str]:
    """Apply the selection: returns the chosen models (smallest first) with skip reasons, and the mode."""
    free = free_memory_bytes() if free_bytes is None else free_bytes
    ordered = sorted(models, key=lambda m: (m.size_bytes, m.id))
    words = [s.strip() for s in select]
    choices = [Choice(m, fit_reason(m, headroom=headroom, max_size_gib=max_size_gib, free_bytes=free))
               for m in ordered]
    if words == ["all"]:
        return choices, "all"
    if words in ([], ["default"]):
        fitting = [c for c in choices if not c.skip_reason][:default_count]
        return fitting, "default"
    return [c for c in choices if any(matches(c.model, p) for p in words)], "patterns: " + ", ".join(words)


def select_models(settings: Any) -> Selection:
    """Discovery + selection for a recipe's ``hardware.models`` settings (a ``ModelSettings``)."""
    models, searched = discover(settings.dirs, ollama=settings.ollama, huggingface=settings.huggingface)
    chosen, mode = select(models, settings.select, default_count=settings.default_count,
                          headroom=settings.memory_headroom, max_size_gib=settings.max_size_gib)
    return Selection(chosen=chosen, searched=searched, found=len(models), mode=mode)
