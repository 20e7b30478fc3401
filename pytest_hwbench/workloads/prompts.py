"""Prompts for LLM load: synthetic ones of a target length, or a JSONL dataset.

Why synthetic prompts are random English-like words: prompt processing cost depends on the token count, and
random words (seeded, so runs are repeatable) defeat prefix caching between requests unless a shared prefix
is asked for explicitly, which keeps "prompt length" the only knob.

Token length without a tokenizer is an approximation, and it is documented as such: **~4 characters per
token** of English text (the rule of thumb OpenAI documents for its BPE tokenizers; words from the list below
are common and mostly one token each with their leading space). Such prompts carry ``tokens_estimated=True``
and the measured ``tokens_in`` comes from the server's usage report whenever the server gives one. When a
real tokenizer is at hand, pass ``count_tokens`` (any ``str -> int``, e.g. ``lambda s: len(tok.encode(s))``)
and the prompt is trimmed to the exact target.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_hwbench.errors import HwbenchInputError

#: Characters per token assumed when no tokenizer is given.
CHARS_PER_TOKEN = 4.0

_WORDS = (  # noqa: SIM905 -- a word list reads better as prose
    "the of and to in is was for that with as on by at from his her this which are were be been has have "
    "had not but all they one you can more when there their time will would about out up what some so who "
    "them its into only other new these two may first then any like now over such our also most after "
    "many made did just where well back through years being much great make state long world still very "
    "own under last never city while both good same high part since might found house place family "
    "water system group number night point small large light hand early order power story country school "
    "river music table garden market letter window friend paper answer change reason morning"
).split()


def estimate_tokens(text: str) -> int:
    """Token count by the ~4 chars/token rule (at least 1 for non-empty text)."""
    return max(1 if text else 0, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(frozen=True)
class Prompt:
    """One prompt. ``messages`` is set for chat-style prompts (``text`` is then their concatenation)."""

    text: str
    tokens: int
    tokens_estimated: bool = True
    messages: tuple[dict[str, Any], ...] | None = None
    #: Per-prompt output length (from a dataset); overrides the client's ``max_tokens`` when set.
    max_tokens: int | None = None

    def chat_messages(self) -> list[dict[str, Any]]:
        """Messages for a chat API: the dataset's, or the text as one user message."""
        if self.messages is not None:
            return [dict(m) for m in self.messages]
        return [{"role": "user", "content": self.text}]


def _words(rng: np.random.Generator, n: int) -> str:
    picks = rng.integers(0, len(_WORDS), n)
    return " ".join(_WORDS[i] for i in picks)


def synthetic_prompts(n: int, target_tokens: int, *, seed: int = 0, shared_prefix_tokens: int = 0,
                      count_tokens: Callable[[str], int] | None = None,
                      max_tokens: int | None = None) -> list[Prompt]:
    """``n`` prompts of about ``target_tokens`` tokens each (see the module doc for how "about").

    ``shared_prefix_tokens`` makes every prompt start with the same words (to exercise prefix caching on
    purpose); the rest is random per prompt.
    """
    if n < 1 or target_tokens < 1:
        raise HwbenchInputError(f"need n >= 1 and target_tokens >= 1, got n={n}, target_tokens={target_tokens}",
                                field="prompts", fix="give positive numbers")
    rng = np.random.default_rng(seed)
    prefix = _words(rng, max(1, shared_prefix_tokens)) if shared_prefix_tokens > 0 else ""
    target_chars = int(target_tokens * CHARS_PER_TOKEN)
    out = []
    for _ in range(n):
        words: list[str] = [prefix] if prefix else []
        length = len(prefix)
        while length < target_chars:
            w = _WORDS[int(rng.integers(0, len(_WORDS)))]
            words.append(w)
            length += len(w) + 1
        text = " ".join(words)[:target_chars].rstrip()
        if count_tokens is None:
            out.append(Prompt(text=text, tokens=estimate_tokens(text), max_tokens=max_tokens))
            continue
        # exact length with a real tokenizer: grow or trim word by word around the estimate
        parts = text.split(" ")
        while count_tokens(" ".join(parts)) < target_tokens:
            parts.append(_WORDS[int(rng.integers(0, len(_WORDS)))])
        while len(parts) > 1 and count_tokens(" ".join(parts)) > target_tokens:
            parts.pop()
        text = " ".join(parts)
        out.append(Prompt(text=text, tokens=count_tokens(text), tokens_estimated=False, max_tokens=max_tokens))
    return out


def load_prompts_jsonl(path: str | Path, *, limit: int | None = None,
                       count_tokens: Callable[[str], int] | None = None) -> list[Prompt]:
    """Prompts from a JSONL file: one object per line with ``prompt`` (a string) or ``messages`` (a list of
    ``{"role", "content"}``), and optionally ``max_tokens`` (alias ``output_tokens``). Blank lines are skipped.

    Bad lines raise :class:`HwbenchInputError` naming the file, the line and the fix.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise HwbenchInputError(f"cannot read prompt dataset: {exc.strerror or exc}", file=str(path),
                                fix="check the path in the recipe") from exc
    out: list[Prompt] = []
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {no}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HwbenchInputError(f"not valid JSON ({exc.msg})", file=str(path), field=where,
                                    fix="one JSON object per line") from exc
        if not isinstance(obj, dict):
            raise HwbenchInputError("expected a JSON object", file=str(path), field=where,
                                    fix='write {"prompt": "..."} or {"messages": [...]}')
        out.append(_prompt_from_obj(obj, str(path), where, count_tokens))
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise HwbenchInputError("the dataset has no prompts", file=str(path),
                                fix='add lines like {"prompt": "Hello"}')
    return out


def _prompt_from_obj(obj: dict[str, Any], file: str, where: str,
                     count_tokens: Callable[[str], int] | None) -> Prompt:
    max_tokens = obj.get("max_tokens", obj.get("output_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or max_tokens < 1):
        raise HwbenchInputError(f"max_tokens must be a positive integer, got {max_tokens!r}", file=file,
                                field=f"{where}.max_tokens", fix="give a positive integer or leave it out")
    messages = None
    if "messages" in obj:
        raw = obj["messages"]
        if not (isinstance(raw, list) and raw and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in raw)):
            raise HwbenchInputError("messages must be a non-empty list of {role, content} strings", file=file,
                                    field=f"{where}.messages",
                                    fix='write [{"role": "user", "content": "..."}]')
        messages = tuple(dict(m) for m in raw)
        text = "\n".join(m["content"] for m in raw)
    elif isinstance(obj.get("prompt"), str) and obj["prompt"]:
        text = obj["prompt"]
    else:
        raise HwbenchInputError("no prompt: expected a non-empty string 'prompt' or a 'messages' list",
                                file=file, field=f"{where}.prompt", fix='add "prompt": "..."')
    if count_tokens is not None:
        return Prompt(text=text, tokens=count_tokens(text), tokens_estimated=False, messages=messages,
                      max_tokens=max_tokens)
    return Prompt(text=text, tokens=estimate_tokens(text), messages=messages, max_tokens=max_tokens)


def cycle(prompts: Sequence[Prompt], index: int) -> Prompt:
    """The prompt for request ``index`` (prompts are reused round-robin when there are fewer than requests)."""
    return prompts[index % len(prompts)]
