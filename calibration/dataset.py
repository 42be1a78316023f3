"""A calibration set: N token sequences of L tokens, with where they came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CalibrationSet:
    tokens: torch.Tensor  # [num_sequences, seq_len] int64
    source: str  # human-readable origin, e.g. "wiki.test.raw tokens[20480:], seed 0"

    @property
    def num_sequences(self) -> int:
        return self.tokens.shape[0]

    @property
    def seq_len(self) -> int:
        return self.tokens.shape[1]

    @property
    def num_tokens(self) -> int:
        return self.tokens.numel()

    def sha256(self) -> str:
        return hashlib.sha256(self.tokens.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()

    def batches(self, batch_size: int):
        for i in range(0, self.num_sequences, batch_size):
            yield self.tokens[i : i + batch_size]
