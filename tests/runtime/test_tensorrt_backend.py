"""The TensorRT backend. Without a GPU: which profile each call's shapes fall in, that an
engine folder opens with this backend (not ONNX Runtime, though it holds the ONNX too) and
refuses with the reason. With a GPU and a builder (`gpu` marker, skipped in CI): a tiny
engine's logits and cached decode against the reference."""

from __future__ import annotations

import json

import pytest
import torch

from inferc.core.errors import MissingDependencyError, UnsupportedError
from inferc.formats.onnx import constants as OC
from inferc.formats.tensorrt import EngineLimits, make_profiles
from inferc.formats.tensorrt import constants as C
from inferc.runtime.backends import open_backend
from inferc.runtime.tensorrt_backend import profile_for

KV = [("past_key_values.0.key", 2, 16), ("past_key_values.0.value", 2, 16)]
PROFILES = [p.to_dict() for p in make_profiles(KV, EngineLimits(max_batch=2, max_seq_len=64, max_context=256))]


def _shapes(b, t, past):
    return {OC.INPUT_IDS: (b, t), OC.ATTENTION_MASK: (b, past + t), **{n: (b, kv, past, hd) for n, kv, hd in KV}}


def test_prefill_and_decode_pick_their_profiles():
    assert profile_for(PROFILES, _shapes(1, 20, 0)) == 0
    assert profile_for(PROFILES, _shapes(2, 64, 0)) == 0
    assert profile_for(PROFILES, _shapes(1, 1, 100)) == 1
    assert profile_for(PROFILES, _shapes(2, 1, 255)) == 1


@pytest.mark.parametrize("b,t,past", [(1, 5, 10), (1, 65, 0), (1, 1, 256), (3, 1, 0)],
                         ids=["chunked-prefill", "long-prompt", "past-max-context", "batch"])
def test_shapes_outside_every_profile_are_refused_naming_the_limits(b, t, past):
    with pytest.raises(UnsupportedError, match="no optimization profile of the engine covers.*max_context"):
        profile_for(PROFILES, _shapes(b, t, past))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")
def test_an_engine_folder_opens_with_the_tensorrt_backend_and_says_why_it_cannot_run(tmp_path):
    (tmp_path / C.ENGINE_FILE).write_bytes(b"plan")
    (tmp_path / "model.onnx").write_bytes(b"")  # the folder holds the ONNX too: ONNX Runtime must not take it
    (tmp_path / C.BUILD_INFO_FILE).write_text(json.dumps({"builder": {"flavour": "tensorrt-rtx", "version": "1.7.1.116"},
                                                          "compute_capability": "sm89", "optimization_profiles": PROFILES}))
    try:
        import tensorrt_rtx_bindings  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="tensorrt-rtx"):
            open_backend(tmp_path)
        return
    with pytest.raises(UnsupportedError, match=r"runs engines on an NVIDIA GPU \(sm89, as built\); this machine has no CUDA GPU"):
        open_backend(tmp_path)


@pytest.mark.gpu
def test_engine_logits_and_cached_decode_match_the_reference(tiny_checkpoint, tmp_path):
    from inferc.formats.hf.reader import load_checkpoint
    from inferc.formats.tensorrt import export_tensorrt, find_builder
    from inferc.runtime.reference import ReferenceModel

    major, minor = torch.cuda.get_device_capability()
    arch = f"sm{10 * major + minor}"
    try:
        find_builder(arch)
    except (MissingDependencyError, UnsupportedError) as exc:
        pytest.skip(f"no TensorRT builder for this GPU: {exc}")
    ir = load_checkpoint(tiny_checkpoint("llama"))
    backend = open_backend(export_tensorrt(ir, tmp_path / "trt", arch, limits=EngineLimits(max_batch=2, max_seq_len=64, max_context=128)))
    assert backend.name == "tensorrt"
    ids = torch.randint(0, ir.spec.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    ref = ReferenceModel(ir).forward(ids)
    tol = 2e-2 * ref.abs().max()  # fp16 activations and KV cache against the float32 reference
    assert (backend.logits(ids) - ref).abs().max() < tol
    state, last = backend.start(ids[:, :16])
    steps = [last] + [backend.step(state, int(ids[0, t])) for t in range(16, 24)]
    assert (torch.stack(steps, 1) - ref[:, 15:]).abs().max() < tol
    backend.close()
