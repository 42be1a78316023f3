"""GPU runtime speed on one CUDA GPU: the card's read and copy bandwidth, then for a
Llama-3-8B-shaped and a SmolLM2-135M-shaped model with random weights made on the GPU
(no download), batch 1 and 16, a random 512-token prompt and 256 new tokens (greedy):
decode and prefill tokens/s, time to first token and peak GPU memory for bf16, FP8
(W8A8, dynamic per-token activations) and INT4 (W4A16, group 128, symmetric RTN), beside
`transformers` (eager with its dynamic cache, and with its static cache) on the same
bf16 weights. Every variant's logits are first checked on a short prompt against the
float32 torch reference of the same IR (relative error, top-1 agreement) and against the
float32 dense model (beside the reference's own error and its bf16 drift, see `check`).

    python benchmarks/bench_gpu.py --out bench_results/gpu.json
    python benchmarks/bench_gpu.py --models smollm2 --batches 1 --new 32   # a quick look

Decode tokens/s counts every row (batch x steps / time); bandwidth limit per precision =
measured read bandwidth / bytes of weights read per decode step (all linears, the head
included). The JSON is written after each measurement, so a run cut short keeps what
it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from inferc.core.ir import ActivationQuant, Granularity, ModelIR, QuantFormat
from inferc.core.numerics.choose import auto_group_size
from inferc.core.numerics.fp8 import FP8WeightFormat
from inferc.core.numerics.int4 import INT4WeightFormat
from inferc.formats.hf.reader import ir_from_tensors
from inferc.passes import PassContext, get_pass, make_config
from inferc.runtime.gpu import CudaBackend
from inferc.runtime.reference import ReferenceModel

SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0, max_position_embeddings=8192,
                      tie_word_embeddings=False, rms_norm_eps=1e-5),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, rope_theta=100000.0, max_position_embeddings=8192,
                         tie_word_embeddings=True, rms_norm_eps=1e-5),
}


def _timed(fn, sync=True) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _events_ms(fn, reps: int = 10) -> float:
    fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def bandwidth(gib: int = 4) -> dict:
    """Read: a bf16 sum over `gib` GiB; copy: a device-to-device copy (read + write bytes)."""
    x = torch.randn(gib * 2**29, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(x)
    nbytes = x.numel() * 2
    read_ms = _events_ms(lambda: x.sum(dtype=torch.float32))
    copy_ms = _events_ms(lambda: y.copy_(x))
    del x, y
    torch.cuda.empty_cache()
    return {"bytes": nbytes, "read_GBps": nbytes / read_ms / 1e6, "copy_GBps": 2 * nbytes / copy_ms / 1e6}


def make_model(shape: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**SHAPES[shape], bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    tensors = {k: v for k, v in model.state_dict().items() if not (cfg.tie_word_embeddings and k == "lm_head.weight")}
    cfg_dict = cfg.to_dict()
    cfg_dict["architectures"] = ["LlamaForCausalLM"]
    ir = ir_from_tensors(cfg_dict, tensors)
    ctx = PassContext()
    for name in ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm"):
        cls = get_pass(name)
        ir = cls(make_config(cls, {})).run(ir, ctx)
    return model, ir


def quantized(ir: ModelIR, precision: str) -> ModelIR:
    """A copy of the IR (tensors shared) with its decoder linears quantized on the GPU."""
    out = dataclasses.replace(ir, weights={}, activations={})
    if precision == "bf16":
        return out
    for name in out.linear_names():
        w = out.dense(name)  # INT4 groups of 128 where they divide the input (SmolLM2's 576 takes 64)
        fmt = FP8WeightFormat(per_channel=True) if precision == "fp8" else INT4WeightFormat(group_size=auto_group_size(w.shape[1]))
        out.quantize(name, fmt.quantize(w, fmt.choose_qparams(w)))
        if precision == "fp8":
            out.activations[name] = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)
    return out


def _logits(ir: ModelIR, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    ref = ReferenceModel(ir, device="cuda", dtype=dtype)
    out = ref.forward(ids).float()
    ref.release()
    del ref
    torch.cuda.empty_cache()
    return out


def check(ir: ModelIR, backend: CudaBackend, ids: torch.Tensor, dense: torch.Tensor) -> dict:
    """Logits on a short prompt against the float32 reference of the same IR, and against
    the float32 dense model beside the reference's own error (the format's error); for a
    quantized IR also the reference's own bf16 drift from its float32 run (FP8 re-quantizes
    activations at every linear, so a bf16 difference across an E4M3 rounding boundary
    costs a whole E4M3 step: the GPU may drift that much from the float32 reference)."""
    rel = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    top1 = lambda a, b: float((a.argmax(-1) == b.argmax(-1)).float().mean())  # noqa: E731
    ref = _logits(ir, ids, torch.float32)
    got = backend.logits(ids)
    out = {"rel_error_vs_fp32_reference": rel(got, ref), "top1_agreement": top1(got, ref),
           "rel_error_vs_dense_fp32": rel(got, dense), "reference_rel_error_vs_dense_fp32": rel(ref, dense)}
    if ir.weights:
        out["reference_bf16_rel_error_vs_fp32_reference"] = rel(_logits(ir, ids, torch.bfloat16), ref)
    return out


def generate_ours(backend: CudaBackend, ids: torch.Tensor, new: int) -> dict:
    b, t = ids.shape
    out: dict = {}

    def prefill():
        out["tok"] = backend.prefill(ids, new_tokens=new).argmax(-1)
        out["tok"][0].item()  # the first token is on the host

    ttft = [_timed(prefill) for _ in range(3)]
    tok = out["tok"]

    def decode():
        nonlocal tok
        for _ in range(new - 1):
            tok = backend.decode(tok).argmax(-1)

    dec = _timed(decode)
    return {"ttft_ms": 1e3 * statistics.median(ttft), "prefill_tok_s": b * t / statistics.median(ttft),
            "decode_tok_s": b * (new - 1) / dec, "decode_ms_per_step": 1e3 * dec / (new - 1)}


def generate_hf(model, ids: torch.Tensor, new: int, static: bool) -> dict:
    b, t = ids.shape
    kw = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids))
    if static:
        kw["cache_implementation"] = "static"
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kw)  # warm-up
        first = _timed(lambda: model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw))
        full = _timed(lambda: model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kw))
    return {"ttft_ms": 1e3 * first, "prefill_tok_s": b * t / first, "decode_tok_s": b * (new - 1) / (full - first)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_results/gpu.json")
    ap.add_argument("--models", default="llama3-8b,smollm2-135m")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--precisions", default="bf16,fp8,int4")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=256)
    ap.add_argument("--no-hf", action="store_true")
    args = ap.parse_args()
    import transformers
    import triton

    res: dict = {"command": "python " + " ".join(sys.argv), "gpu": torch.cuda.get_device_name(),
                 "torch": torch.__version__, "triton": triton.__version__, "transformers": transformers.__version__,
                 "prompt": args.prompt, "new_tokens": args.new, "models": {}}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    save = lambda: path.write_text(json.dumps(res, indent=2))  # noqa: E731
    res["bandwidth"] = bandwidth()
    read_bw = res["bandwidth"]["read_GBps"] * 1e9
    print(f"read {res['bandwidth']['read_GBps']:.0f} GB/s, copy {res['bandwidth']['copy_GBps']:.0f} GB/s", flush=True)
    save()
    batches = [int(b) for b in args.batches.split(",")]
    for shape in args.models.split(","):
        model, ir = make_model(shape)
        vocab = ir.spec.vocab_size
        entry: dict = res["models"].setdefault(shape, {"ours": {}, "transformers": {}})
        check_ids = torch.randint(0, vocab, (1, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        dense = _logits(ir, check_ids, torch.float32)
        for precision in args.precisions.split(","):
            qir = quantized(ir, precision)
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            backend = CudaBackend(qir, max_len=args.prompt + args.new)
            wbytes = backend.model.weight_bytes()
            row = {"weight_bytes_per_step": wbytes, "bandwidth_limit_tok_s": read_bw / wbytes,
                   "kinds": sorted({lin.kind for lin in backend.model.linears.values()}), "notes": backend.notes}
            row["check"] = check(qir, backend, check_ids, dense)
            for b in batches:
                ids = torch.randint(0, vocab, (b, args.prompt), device="cuda", generator=torch.Generator("cuda").manual_seed(b))
                generate_ours(backend, ids[:, :64], 8)  # warm-up: compile, tune, capture
                r = generate_ours(backend, ids, args.new)
                r["peak_memory_MiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                if b == 1:
                    r["fraction_of_bandwidth_limit"] = r["decode_tok_s"] / row["bandwidth_limit_tok_s"]
                row[f"batch{b}"] = r
                print(shape, precision, b, {k: round(v, 3) for k, v in r.items()}, flush=True)
                entry["ours"][precision] = row
                save()
            backend.close()
            del backend, qir
            torch.cuda.empty_cache()
        if not args.no_hf:
            for static in (False, True):
                name = "static_cache" if static else "eager"
                for b in batches:
                    ids = torch.randint(0, vocab, (b, args.prompt), device="cuda", generator=torch.Generator("cuda").manual_seed(b))
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    r = generate_hf(model, ids, args.new, static)
                    r["peak_memory_MiB_above_weights"] = (torch.cuda.max_memory_allocated() - base) / 2**20
                    entry["transformers"].setdefault(name, {})[f"batch{b}"] = r
                    print(shape, "transformers", name, b, {k: round(v, 3) for k, v in r.items()}, flush=True)
                    save()
        del model, ir
        torch.cuda.empty_cache()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
