"""Prompts: synthetic lengths, tokenizer hook, JSONL datasets and their error messages."""

from __future__ import annotations

import json

import pytest

from pytest_hwbench.errors import HwbenchInputError
from pytest_hwbench.workloads.prompts import (
    CHARS_PER_TOKEN,
    cycle,
    estimate_tokens,
    load_prompts_jsonl,
    synthetic_prompts,
)


def test_synthetic_prompts_hit_the_target_by_the_documented_approximation():
    prompts = synthetic_prompts(20, 256, seed=1)
    assert len({p.text for p in prompts}) == 20  # random per prompt: no accidental prefix caching
    for p in prompts:
        assert p.tokens_estimated
        assert abs(len(p.text) / CHARS_PER_TOKEN - 256) <= 3
        assert p.tokens == estimate_tokens(p.text)
    assert [p.text for p in synthetic_prompts(3, 50, seed=1)] == [p.text for p in synthetic_prompts(3, 50, seed=1)]


def test_shared_prefix_and_a_real_tokenizer():
    shared = synthetic_prompts(4, 100, seed=2, shared_prefix_tokens=20)
    prefix = shared[0].text[:60]
    assert all(p.text.startswith(prefix) for p in shared)
    words = synthetic_prompts(5, 40, seed=3, count_tokens=lambda s: len(s.split()))
    assert all(p.tokens == 40 and not p.tokens_estimated for p in words)
    assert all(len(p.text.split()) == 40 for p in words)


def test_jsonl_dataset_prompts_messages_and_output_lengths(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join([
        json.dumps({"prompt": "Tell me about rivers.", "max_tokens": 64}),
        "",
        json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Hi"}], "output_tokens": 8}),
    ]), encoding="utf-8")
    prompts = load_prompts_jsonl(path)
    assert [p.max_tokens for p in prompts] == [64, 8]
    assert prompts[0].chat_messages() == [{"role": "user", "content": "Tell me about rivers."}]
    assert prompts[1].chat_messages()[0] == {"role": "system", "content": "Be brief."}
    assert cycle(prompts, 5) is prompts[1]
    assert len(load_prompts_jsonl(path, limit=1)) == 1


@pytest.mark.parametrize("line, field", [
    ("{not json", "line 1"),
    ("[1, 2]", "line 1"),
    (json.dumps({"text": "x"}), "line 1.prompt"),
    (json.dumps({"messages": [{"role": "user"}]}), "line 1.messages"),
    (json.dumps({"prompt": "x", "max_tokens": 0}), "line 1.max_tokens"),
])
def test_bad_dataset_lines_name_file_line_and_fix(tmp_path, line, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(HwbenchInputError) as err:
        load_prompts_jsonl(path)
    text = str(err.value)
    assert str(path) in text and field in text and "fix:" in text


def test_missing_or_empty_dataset(tmp_path):
    with pytest.raises(HwbenchInputError, match="cannot read"):
        load_prompts_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(HwbenchInputError, match="no prompts"):
        load_prompts_jsonl(tmp_path / "empty.jsonl")
