"""Write a tiny, random-weight llama-architecture GGUF model.

Why: a real LLM engine (llama-server, llama-bench) must be exercised end to end — load, /health,
/v1/completions with exactly n tokens — on machines that cannot download model weights. This model is a
few hundred KB, loads in well under a second on one CPU core, and is built here from nothing but numpy and
the ``gguf`` package (llama.cpp's own writer).

Shape: width 64, 2 layers, 4 heads, feed-forward 128, and a byte-level SentencePiece-style vocabulary of
259 tokens — ``<unk>``, ``<s>``, ``</s>`` and the 256 byte tokens ``<0x00>``..``<0xFF>`` — so any text
tokenises (SentencePiece byte fallback) and llama.cpp's SPM tokenizer finds its newline token. The
weights are random, so the output is gibberish; with ``ignore_eos`` generation runs to ``max_tokens``,
which is what a throughput benchmark needs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from pytest_hwbench.errors import ServiceUnavailable

VOCAB_SIZE = 259


def byte_vocab() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the 259-token byte vocabulary (SentencePiece conventions)."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    scores = [0.0] * len(tokens)
    types = ([int(gguf.TokenType.UNKNOWN), int(gguf.TokenType.CONTROL), int(gguf.TokenType.CONTROL)]
             + [int(gguf.TokenType.BYTE)] * 256)
    return tokens, scores, types


def write_tiny_gguf(path: str | os.PathLike[str], *, n_embd: int = 64, n_layer: int = 2, n_head: int = 4,
                    n_ff: int = 128, n_ctx: int = 2048, seed: int = 0, scale: float = 0.02) -> Path:
    """Write the model to ``path`` (atomically: a reader never sees half a file) and return the path.

    The same arguments give the same bytes (seeded), so a cached file can be reused across runs.
    """
    try:
        import gguf
    except ImportError as err:
        raise ServiceUnavailable("the 'gguf' package is needed to write the tiny test model (pip install gguf)") \
            from err
    if n_embd % n_head:
        raise ValueError("n_embd must be a multiple of n_head")
    rng = np.random.default_rng(seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, "llama")
        writer.add_name("hwbench-tiny-llama")
        writer.add_context_length(n_ctx)
        writer.add_embedding_length(n_embd)
        writer.add_block_count(n_layer)
        writer.add_feed_forward_length(n_ff)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head)
        writer.add_rope_dimension_count(n_embd // n_head)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_vocab_size(VOCAB_SIZE)
        writer.add_file_type(int(gguf.LlamaFileType.ALL_F32))

        tokens, scores, types = byte_vocab()
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(0)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)

        def mat(rows: int, cols: int) -> np.ndarray:
            # numpy shape (rows, cols) is ggml ne = [cols, rows]: "rows" is the output dimension.
            return (rng.standard_normal((rows, cols)) * scale).astype(np.float32)

        ones = np.ones(n_embd, dtype=np.float32)
        writer.add_tensor("token_embd.weight", mat(VOCAB_SIZE, n_embd))
        for i in range(n_layer):
            writer.add_tensor(f"blk.{i}.attn_norm.weight", ones.copy())
            writer.add_tensor(f"blk.{i}.attn_q.weight", mat(n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.attn_k.weight", mat(n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.attn_v.weight", mat(n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.attn_output.weight", mat(n_embd, n_embd))
            writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones.copy())
            writer.add_tensor(f"blk.{i}.ffn_gate.weight", mat(n_ff, n_embd))
            writer.add_tensor(f"blk.{i}.ffn_up.weight", mat(n_ff, n_embd))
            writer.add_tensor(f"blk.{i}.ffn_down.weight", mat(n_embd, n_ff))
        writer.add_tensor("output_norm.weight", ones.copy())
        writer.add_tensor("output.weight", mat(VOCAB_SIZE, n_embd))

        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def tiny_gguf(directory: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """The default tiny model in ``directory`` (written once, then reused)."""
    path = Path(directory) / f"hwbench-tiny-llama-s{seed}.gguf"
    if not path.is_file():
        write_tiny_gguf(path, seed=seed)
    return path
