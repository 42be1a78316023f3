"""Corpora and tokenization: local text/jsonl files, `datasets` names when available,
and text sampled from the model itself when there is no corpus at all."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.core.errors import CalibrationError, require
from inferc.core.ir import ModelIR
from inferc.runtime.reference import ReferenceModel


@dataclass(frozen=True)
class Tokenizer:
    """The model's tokenizer, from tokenizer.json (fast path) or transformers."""

    _impl: object
    _fast: bool

    def encode(self, text: str) -> list[int]:
        if self._fast:
            return self._impl.encode(text, add_special_tokens=False).ids  # type: ignore[attr-defined]
        return self._impl.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]

    def decode(self, ids: list[int]) -> str:
        return self._impl.decode(ids)  # type: ignore[attr-defined]


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    model_dir = Path(model_dir)
    tj = model_dir / "tokenizer.json"
    if tj.is_file():
        tokenizers = require("tokenizers", "tokenizers", "reading tokenizer.json")
        return Tokenizer(tokenizers.Tokenizer.from_file(str(tj)), True)
    transformers = require("transformers", "transformers", "loading a tokenizer without tokenizer.json")
    try:
        return Tokenizer(transformers.AutoTokenizer.from_pretrained(str(model_dir)), False)
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"'{model_dir}' has no usable tokenizer (tokenizer.json or tokenizer.model): {exc}") from exc


def read_text_file(path: str | Path, text_field: str = "text") -> str:
    """Plain text (.txt, .raw, ...) as is; .jsonl as the `text_field` of each line."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"corpus file '{path}' does not exist; pass a local .txt or .jsonl file")
    if path.suffix == ".jsonl":
        texts = []
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.append(json.loads(line)[text_field])
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CalibrationError(f"{path}:{lineno}: expected a JSON object with a '{text_field}' string") from exc
        return "\n\n".join(texts)
    return path.read_text(encoding="utf-8")


def read_hf_dataset(name: str, split: str = "train", config: str | None = None, text_field: str = "text") -> str:
    """Text of a Hugging Face `datasets` dataset, when the library and the data are there."""
    datasets = require("datasets", "datasets", f"calibrating on the dataset '{name}'")
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # noqa: BLE001 - datasets raises many unrelated types for "unavailable"
        raise CalibrationError(
            f"dataset '{name}' could not be loaded ({type(exc).__name__}: {exc}); "
            "without network access pass a local file instead: calibration: {dataset: path/to/corpus.txt}"
        ) from exc
    return "\n\n".join(t for t in ds[text_field] if t)


def tokenize(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The whole text as one token stream, [tokens] int64."""
    return torch.tensor(tokenizer.encode(text), dtype=torch.int64)


def sample_sequences(
    stream: torch.Tensor,
    num_sequences: int,
    seq_len: int,
    seed: int,
    source: str,
) -> CalibrationSet:
    """Seeded random windows of `seq_len` tokens from a token stream."""
    available = stream.numel() - seq_len
    if available < 0 or stream.numel() < num_sequences * seq_len // 4:
        raise CalibrationError(
            f"calibration corpus has {stream.numel()} tokens; {num_sequences} sequences of {seq_len} tokens "
            f"need at least {max(seq_len, num_sequences * seq_len // 4)}; give a larger corpus or fewer/shorter sequences"
        )
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, available + 1, (num_sequences,), generator=gen)
    tokens = torch.stack([stream[s : s + seq_len] for s in starts.tolist()])
    return CalibrationSet(tokens=tokens, source=f"{source}, {num_sequences}x{seq_len} tokens, seed {seed}")


@torch.inference_mode()
def sample_from_model(
    model: ModelIR,
    num_sequences: int,
    seq_len: int,
    seed: int,
    device: str = "cpu",
    batch_size: int = 16,
    temperature: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> CalibrationSet:
    """Text the model writes itself, from its BOS token with seeded sampling: the
    fallback calibration (and held-out evaluation) data when no corpus is available."""
    ref = ReferenceModel(model, device=device, quantized=False)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    bos = model.spec.bos_token_id if model.spec.bos_token_id is not None else 0
    out = []
    for start in range(0, num_sequences, batch_size):
        b = min(batch_size, num_sequences - start)
        ids = torch.full((b, 1), bos, dtype=torch.int64)
        cache = ref.new_cache()
        logits = ref.forward(ids, cache)[:, -1]
        seq = [ids]
        for _ in range(seq_len - 1):
            probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen)  # [b, 1]
            seq.append(nxt)
            logits = ref.forward(nxt, cache)[:, -1]
            if progress is not None:
                progress("sampling text from the model", start * seq_len + b * len(seq), num_sequences * seq_len)
        out.append(torch.cat(seq, dim=1))
    tokens = torch.cat(out)
    return CalibrationSet(tokens=tokens, source=f"sampled from the model (no corpus), {num_sequences}x{seq_len} tokens, seed {seed}")
