"""Tokenizer metadata for GGUF from Hugging Face tokenizer files.

Two families llama.cpp can express: GPT-2 style byte-level BPE (tokens, merges, token
types; `tokenizer.ggml.model = gpt2`) and SentencePiece-style BPE with byte fallback as
Llama/Gemma use (`tokenizer.ggml.model = llama`, tokens with scores). Anything else is
refused with UnsupportedError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inferc.core.errors import CheckpointError, UnsupportedError
from inferc.formats.gguf import constants as C


@dataclass
class TokenizerMeta:
    model: str  # "gpt2" | "llama"
    pre: str | None
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] = field(default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | None = None


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}; the tokenizer file is missing or corrupt") from exc


def _pre_name(pre: dict[str, Any] | None) -> str:
    """llama.cpp's pre-tokenizer id for an HF byte-level pre-tokenizer."""
    if not pre:
        return C.PRE_DEFAULT
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    text = json.dumps(pre)
    if "Digits" in kinds and any(p.get("individual_digits") for p in parts if p.get("type") == "Digits"):
        return C.PRE_SMOLLM
    if "\\\\p{N}{1,3}" in text or "\\p{N}{1,3}" in text:
        return C.PRE_LLAMA3
    if "\\\\p{N}" in text and "Split" in kinds:
        return C.PRE_QWEN2
    if kinds == ["ByteLevel"]:
        return C.PRE_GPT2
    return C.PRE_DEFAULT


def _token_for(cfg: dict[str, Any], key: str) -> str | None:
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def read_tokenizer(model_dir: Path, model_config: dict[str, Any]) -> TokenizerMeta:
    """Tokenizer metadata from tokenizer.json (+ tokenizer_config.json, chat_template.jinja)."""
    model_dir = Path(model_dir)
    tj = model_dir / "tokenizer.json"
    if not tj.is_file():
        raise UnsupportedError(
            f"'{model_dir}' has no tokenizer.json; GGUF export needs the tokenizer (save it with "
            "AutoTokenizer.save_pretrained into the checkpoint directory)"
        )
    tok = _load_json(tj)
    cfg_path = model_dir / "tokenizer_config.json"
    cfg = _load_json(cfg_path) if cfg_path.is_file() else {}
    model = tok.get("model", {})
    if model.get("type") != "BPE":
        raise UnsupportedError(
            f"tokenizer model '{model.get('type')}' cannot be expressed in GGUF by inferc; supported: "
            "byte-level BPE (GPT-2 style) and BPE with byte fallback (SentencePiece/Llama/Gemma style)"
        )
    vocab: dict[str, int] = dict(model.get("vocab", {}))
    added = {a["content"]: a for a in tok.get("added_tokens", [])}
    for content, a in added.items():
        vocab.setdefault(content, a["id"])
    n = max(int(model_config.get("vocab_size", 0)), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [C.TOKEN_UNUSED] * n
    for text, idx in vocab.items():
        tokens[idx] = text
        types[idx] = C.TOKEN_NORMAL
    for content, a in added.items():
        types[a["id"]] = C.TOKEN_CONTROL if a.get("special") else C.TOKEN_USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    byte_fallback = bool(model.get("byte_fallback"))
    meta = TokenizerMeta(model="llama" if byte_fallback else "gpt2", pre=None, tokens=tokens, token_types=types)
    if byte_fallback:
        meta.scores = [-float(i) for i in range(n)]
        for i, t in enumerate(tokens):
            if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                types[i] = C.TOKEN_BYTE
        unk = model.get("unk_token")
        if unk in vocab:
            types[vocab[unk]] = C.TOKEN_UNKNOWN
        meta.add_bos = bool(cfg.get("add_bos_token", True))
    else:
        if not merges:
            raise UnsupportedError(f"{tj} is a byte-level BPE without merges, which llama.cpp cannot load; a GPT-2 style tokenizer needs its merges")
        meta.pre = _pre_name(tok.get("pre_tokenizer"))
        meta.merges = merges
        meta.add_bos = bool(cfg.get("add_bos_token", False))
    meta.add_eos = bool(cfg.get("add_eos_token", False))
    for key in ("bos", "eos", "unk", "pad"):
        text = _token_for(cfg, f"{key}_token")
        if text is not None and text in vocab:
            meta.special_ids[key] = vocab[text]
    for key in ("bos", "eos", "pad"):
        cid = model_config.get(f"{key}_token_id")
        if isinstance(cid, list):
            cid = cid[0] if cid else None
        if key not in meta.special_ids and isinstance(cid, int):
            meta.special_ids[key] = cid
    template = cfg.get("chat_template")
    jinja = model_dir / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = jinja.read_text()
    meta.chat_template = template if isinstance(template, str) else None
    return meta


def add_tokenizer(writer: Any, meta: TokenizerMeta) -> None:
    """Add the tokenizer keys to a gguf.GGUFWriter."""
    writer.add_tokenizer_model(meta.model)
    if meta.pre is not None:
        writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.token_types)
    if meta.scores is not None:
        writer.add_token_scores(meta.scores)
    if meta.merges:
        writer.add_token_merges(meta.merges)
    setters = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id, "unk": writer.add_unk_token_id, "pad": writer.add_pad_token_id}
    for key, idx in meta.special_ids.items():
        setters[key](idx)
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(meta.add_eos)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)
