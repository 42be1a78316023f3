"""onnxruntime-genai's description of an exported folder: genai_config.json (the decoder's
I/O names, its shape, the search defaults) and the tokenizer files beside model.onnx, so
the folder runs unchanged in `onnxruntime_genai.Model`."""

from __future__ import annotations

import json
from pathlib import Path

from inferc.core.ir import ModelIR
from inferc.formats.onnx import constants as C

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def genai_config(ir: ModelIR, shared_buffer: bool, max_length: int) -> dict:
    """shared_buffer: past and present are one buffer of max_length positions
    (GroupQueryAttention, the ort flavour); otherwise each step's present is the next past."""
    s = ir.spec
    eos = s.eos_token_id if s.eos_token_id is not None else 0
    return {
        "model": {
            "bos_token_id": s.bos_token_id if s.bos_token_id is not None else eos if isinstance(eos, int) else eos[0],
            "context_length": max_length,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": C.MODEL_FILE,
                "head_size": s.head_dim,
                "hidden_size": s.hidden_size,
                "inputs": {"input_ids": C.INPUT_IDS, "attention_mask": C.ATTENTION_MASK,
                           "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": C.LOGITS, "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"},
                "num_attention_heads": s.num_heads,
                "num_hidden_layers": s.num_layers,
                "num_key_value_heads": s.num_kv_heads,
            },
            "eos_token_id": list(eos) if isinstance(eos, tuple) else eos,
            "pad_token_id": eos if isinstance(eos, int) else eos[0],
            "type": s.model_type,
            "vocab_size": s.vocab_size,
        },
        "search": {
            "do_sample": False, "num_beams": 1, "num_return_sequences": 1, "max_length": max_length, "min_length": 0,
            "past_present_share_buffer": shared_buffer, "repetition_penalty": 1.0, "temperature": 1.0, "top_k": 1,
            "top_p": 1.0, "early_stopping": True, "length_penalty": 1.0, "no_repeat_ngram_size": 0, "diversity_penalty": 0.0,
        },
    }


def genai_files(ir: ModelIR, shared_buffer: bool, max_length: int) -> dict[str, bytes]:
    """File name -> bytes: genai_config.json and the checkpoint's tokenizer files it has."""
    files = {C.GENAI_CONFIG_FILE: json.dumps(genai_config(ir, shared_buffer, max_length), indent=4).encode()}
    src = Path(ir.source.path)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            files[name] = (src / name).read_bytes()
    return files
