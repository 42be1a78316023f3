from __future__ import annotations

import pytest
import torch

from inferc.formats.gguf.imatrix import read_imatrix, write_imatrix
from inferc.calibration.stats import ActivationStats
from inferc.core.errors import FormatError
from inferc.formats.hf.reader import load_checkpoint


def test_imatrix_roundtrip_and_names(tiny_checkpoint, tmp_path):
    weights = load_checkpoint(tiny_checkpoint("llama")).graph.shapes
    stats = ActivationStats()
    obs = stats.observer()
    obs("layers.0.attn.q.weight", torch.randn(10, 64))
    obs("layers.1.mlp.down.weight", torch.randn(7, 128) * 3)
    stats.num_tokens = 10
    path = tmp_path / "imatrix.gguf"
    write_imatrix(path, stats.importance_sums(), stats.num_tokens, dataset="test")
    import gguf

    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    assert {"blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts", "blk.1.ffn_down.weight.in_sum2"} <= names
    back = read_imatrix(path, weights)
    assert set(back) == set(stats.by_weight)
    for name, v in back.items():
        assert torch.allclose(v, stats[name].mean_sq, rtol=1e-6)


def test_imatrix_bad_files(tiny_checkpoint, tmp_path):
    weights = load_checkpoint(tiny_checkpoint("llama")).graph.shapes
    (tmp_path / "old.dat").write_bytes(b"\x01\x00\x00\x00junk")
    with pytest.raises(FormatError, match="legacy"):
        read_imatrix(tmp_path / "old.dat", weights)
    with pytest.raises(FormatError):
        read_imatrix(tmp_path / "missing.gguf", weights)
