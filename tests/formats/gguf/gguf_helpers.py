"""Tiny checkpoints with a byte-level BPE tokenizer, so llama.cpp can load their GGUF."""

from __future__ import annotations

from pathlib import Path

import torch


def add_byte_tokenizer(ckpt: Path) -> None:
    from tokenizers import Tokenizer, decoders, models
    from tokenizers.pre_tokenizers import ByteLevel

    chars = sorted(ByteLevel.alphabet())[:-1]  # 255 byte symbols and one merge: 256 tokens
    vocab = {c: i for i, c in enumerate(chars)}
    vocab["\u0120\u0120"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("\u0120", "\u0120")]))
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.save(str(ckpt / "tokenizer.json"))


def make_wide_llama(out: Path, seed: int = 0) -> Path:
    """Llama with rows of 256 (K-quants apply) and 576 (fallbacks), 2 layers, vocab 256."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=256, hidden_size=256, intermediate_size=576, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.1)
            else:
                p.normal_(0.0, 0.05)
    model.save_pretrained(out)
    add_byte_tokenizer(out)
    return out


