"""FP8 quality on the real model: SmolLM2-135M, wikitext-2 test, context 512.

Evaluates FP8 variants (round-to-nearest, and GPTQ driving the FP8 format) against the unquantized (bf16 checkpoint, float32
compute) model with `compare_many`: one pass over the chunks, the reference logits
computed once per chunk. Calibration uses a disjoint part of the corpus (tokens after
the evaluated chunks). Besides the shipped configurations it runs prototype variants
that diagnose the error (which linears' activations cause it) without editing the pass:
they change the IR's activation annotations after the pass has run.

    python benchmarks/bench_fp8.py                    # 40 chunks, 32 calibration sequences
    python benchmarks/bench_fp8.py --chunks 10 --variants static,weight_only

Prints a table and writes bench_results/fp8.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from inferc.calibration.corpus import load_tokenizer, read_text_file, sample_sequences, tokenize
from inferc.calibration.stats import ActivationStats, collect_activation_stats
from inferc.compiler.default_model import ensure_default_model
from inferc.core.ir import ActivationQuant, Granularity, ModelIR, QuantFormat
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass, make_config
from inferc.core.numerics.fp8 import fp8_scale
from inferc.runtime.evaluate import compare_many
from inferc.runtime.torch_backend import TorchBackend

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"


def outlier_linears(stats: ActivationStats, ir: ModelIR, ratio: float) -> list[str]:
    """Linears whose input amax exceeds `ratio` x the input's RMS (massive activations)."""
    out = []
    for name in ir.linear_names():
        st = stats[name]
        rms = float(st.mean_sq.mean().sqrt())
        if float(st.amax) > ratio * rms:
            out.append(name)
    return out


def _unquantize_acts(names: list[str]) -> Callable[[ModelIR, ActivationStats], None]:
    def edit(ir: ModelIR, stats: ActivationStats) -> None:
        for n in names:
            ir.activations.pop(n, None)

    return edit


def _bf16_weights(ir: ModelIR, stats: ActivationStats) -> None:
    """Undo the weight rounding, keep the activation annotations: the activations' share alone."""
    ir.weights.clear()


def _dynamic_acts(names: list[str]) -> Callable[[ModelIR, ActivationStats], None]:
    def edit(ir: ModelIR, stats: ActivationStats) -> None:
        for n in names:
            ir.activations[n] = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)

    return edit


def _scaled_static(factor: float) -> Callable[[ModelIR, ActivationStats], None]:
    """Static scale from factor x amax (factor < 1 clips the largest activations)."""

    def edit(ir: ModelIR, stats: ActivationStats) -> None:
        for n, aq in list(ir.activations.items()):
            ir.activations[n] = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False,
                                                scale=fp8_scale(stats[n].amax * factor))

    return edit


def build_variants(stats: ActivationStats, ir0: ModelIR) -> dict[str, tuple[str, dict, Callable | None, str]]:
    """name -> (pass, options, post-edit, description)."""
    down = [n for n in ir0.linear_names() if n.endswith("mlp.down_proj.weight")]
    outliers = outlier_linears(stats, ir0, ratio=200.0)
    keep = ["lm_head", *(n.removesuffix(".weight") for n in outliers)]  # the pass's own `ignore` option
    fp8 = "quantize_fp8"
    gptq = {"format": "fp8", "group_size": None, "act_order": True, "sequential": True}
    return {
        "static": (fp8, {"activations": "static"}, None, "RTN: per-channel weights, static per-tensor activations (the issue's configuration)"),
        "dynamic": (fp8, {"activations": "dynamic"}, None, "RTN: per-channel weights, dynamic per-token activations"),
        "weight_only": (fp8, {"activations": "none"}, None, "RTN: per-channel weights only"),
        "gptq_static": ("quantize_gptq", {**gptq, "activations": "fp8"}, None,
                        "GPTQ into FP8 per-channel weights (act-order, sequential), static per-tensor activations"),
        "gptq_dynamic": ("quantize_gptq", {**gptq, "activations": "fp8_dynamic"}, None,
                         "GPTQ into FP8 per-channel weights, dynamic per-token activations"),
        "gptq_weight_only": ("quantize_gptq", {**gptq, "activations": "none"}, None, "GPTQ into FP8 per-channel weights only"),
        "acts_only_static": (fp8, {"activations": "static"}, _bf16_weights,
                             "bf16 weights, static per-tensor FP8 activations (the activations' share alone)"),
        "acts_only_dynamic": (fp8, {"activations": "dynamic"}, _bf16_weights,
                              "bf16 weights, dynamic per-token FP8 activations (the activations' share alone)"),
        "static_down_a16": (fp8, {"activations": "static"}, _unquantize_acts(down),
                            "prototype: static, but every down_proj input left unquantized (W8A16 there)"),
        "static_outliers_a16": (fp8, {"activations": "static"}, _unquantize_acts(outliers),
                                f"prototype: static, inputs with amax > 200 x RMS left unquantized ({len(outliers)} linears)"),
        "static_down_dynamic": (fp8, {"activations": "static"}, _dynamic_acts(down),
                                "prototype: static, but down_proj inputs dynamic per token"),
        "static_skip_outliers": (fp8, {"activations": "static", "ignore": keep}, None,
                                 f"fix via recipe: static, linears with amax > 200 x RMS inputs kept in bf16 ({len(outliers)})"),
        "weight_only_skip_outliers": (fp8, {"activations": "none", "ignore": keep}, None,
                                      f"weights only, linears with amax > 200 x RMS inputs kept in bf16 ({len(outliers)})"),
        "static_clip_0.5": (fp8, {"activations": "static"}, _scaled_static(0.5),
                            "prototype: static scale from 0.5 x amax (clips outliers)"),
    }


@torch.inference_mode()
def weight_sensitivity(ir: ModelIR, tokens: torch.Tensor, ctx: int, n_chunks: int, device: str) -> dict[str, float]:
    """Mean KL against the unquantized model when only one linear's weight is FP8 (per
    channel), for every linear: which weights carry the weight-only error."""
    from inferc.core.numerics.fp8 import FP8WeightFormat
    from inferc.runtime.evaluate import cut_chunks, kl_divergence
    from inferc.runtime.reference import ReferenceModel

    ref = ReferenceModel(ir, device=device, quantized=False)
    chunks = cut_chunks(tokens, ctx, n_chunks).to(device)
    first = ctx // 2
    ref_logits = [ref.forward(chunks[i : i + 1])[0, first : ctx - 1] for i in range(chunks.shape[0])]
    fmt = FP8WeightFormat(per_channel=True)
    out = {}
    for name in ir.linear_names():
        dense = ref.param(name)
        w = ir.dense(name)
        ref._params[name] = fmt.fake_quantize(w, fmt.choose_qparams(w)).to(device=device, dtype=dense.dtype)
        kls = [kl_divergence(ref_logits[i], ref.forward(chunks[i : i + 1])[0, first : ctx - 1]) for i in range(chunks.shape[0])]
        out[name] = float(torch.cat(kls).mean())
        ref._params[name] = dense
    return out


def _fp8_group(w: torch.Tensor, group: int = 64) -> torch.Tensor:
    from inferc.core.numerics.fp8 import fp8_round

    g = w.float().reshape(w.shape[0], -1, group)
    scale = fp8_scale(g.abs().amax(-1, keepdim=True))
    return (fp8_round(g / scale).float() * scale).reshape(w.shape)


def _fp8_channel(w: torch.Tensor) -> torch.Tensor:
    from inferc.core.numerics.fp8 import FP8WeightFormat

    fmt = FP8WeightFormat(per_channel=True)
    return fmt.fake_quantize(w, fmt.choose_qparams(w))


def _int8_channel(w: torch.Tensor) -> torch.Tensor:
    w = w.float()
    scale = (w.abs().amax(1, keepdim=True) / 127).clamp(min=1e-12)
    return (w / scale).round().clamp(-127, 127) * scale


WEIGHT_PROBES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "fp8_e4m3_per_channel": _fp8_channel,
    "fp8_e4m3_per_group64": _fp8_group,
    "int8_per_channel": _int8_channel,
}


@torch.inference_mode()
def weight_probes(ir: ModelIR, tokens: torch.Tensor, ctx: int, n_chunks: int, device: str) -> dict[str, dict[str, float]]:
    """Weight-only rounding of every linear by several number formats (no activation
    quantization): SQNR of the weights and mean KL / top-1 against the unquantized model."""
    from inferc.runtime.evaluate import cut_chunks, kl_divergence
    from inferc.runtime.reference import ReferenceModel

    ref = ReferenceModel(ir, device=device, quantized=False)
    chunks = cut_chunks(tokens, ctx, n_chunks).to(device)
    first = ctx // 2
    ref_logits = [ref.forward(chunks[i : i + 1])[0, first : ctx - 1] for i in range(chunks.shape[0])]
    dense = {n: ref.param(n) for n in ir.linear_names()}
    out = {}
    for label, fn in WEIGHT_PROBES.items():
        sig = err = 0.0
        for n, w in dense.items():
            q = fn(w)
            sig += float(w.double().pow(2).sum())
            err += float((q.double() - w.double()).pow(2).sum())
            ref._params[n] = q.to(w.dtype)
        kls, agree = [], []
        for i in range(chunks.shape[0]):
            cand = ref.forward(chunks[i : i + 1])[0, first : ctx - 1]
            kls.append(kl_divergence(ref_logits[i], cand))
            agree.append(cand.argmax(-1) == ref_logits[i].argmax(-1))
        out[label] = {"weight_sqnr_db": 10 * math.log10(sig / err), "kld_mean": float(torch.cat(kls).mean()),
                      "top1": float(torch.cat(agree).double().mean())}
        ref._params.update(dense)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--calib", type=int, default=32, help="calibration sequences of --ctx tokens")
    ap.add_argument("--variants", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--out", default=str(REPO / "bench_results" / "fp8.json"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--corpus", default=str(WIKITEXT))
    ap.add_argument("--model-dir", default="", help="checkpoint (default: the embedded default model)")
    ap.add_argument("--probe-chunks", type=int, default=0,
                    help="also compare weight-only FP8 per channel / per group of 64 / INT8 per channel on this many chunks")
    ap.add_argument("--sensitivity-chunks", type=int, default=0,
                    help="also measure the KL of quantizing each linear's weight alone, on this many chunks")
    args = ap.parse_args()
    torch.set_num_threads(2)

    model_dir = Path(args.model_dir) if args.model_dir else ensure_default_model()
    tokens = tokenize(load_tokenizer(model_dir), read_text_file(args.corpus))
    n_eval = args.chunks * args.ctx
    eval_tokens, calib_stream = tokens[:n_eval], tokens[n_eval:]
    calib = sample_sequences(calib_stream, args.calib, args.ctx, seed=0,
                             source=f"wiki.test.raw tokens[{n_eval}:] (disjoint from the evaluated chunks)")
    t0 = time.perf_counter()
    ir0 = load_checkpoint(model_dir)
    stats = collect_activation_stats(ir0, calib, device=args.device)
    t_stats = time.perf_counter() - t0
    print(f"calibration: {calib.source}; {calib.num_sequences}x{calib.seq_len} tokens; stats in {t_stats:.0f} s", flush=True)

    variants = build_variants(stats, ir0)
    if args.variants:
        variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    candidates, build_seconds = {}, {}
    for name, (pass_name, options, edit, _) in variants.items():
        ir = load_checkpoint(model_dir)
        cls = get_pass(pass_name)
        t_build = time.perf_counter()
        cls(make_config(cls, options)).run(ir, PassContext(device=args.device, calibration=calib, _stats=stats))
        build_seconds[name] = time.perf_counter() - t_build
        if edit is not None:
            edit(ir, stats)
        candidates[name] = TorchBackend(ir, device=args.device)
        print(f"built {name} in {build_seconds[name]:.1f} s", flush=True)

    t0 = time.perf_counter()
    results = compare_many(
        TorchBackend(ir0, device=args.device, quantized=False), candidates, eval_tokens, ctx_len=args.ctx, n_chunks=args.chunks,
        method="half", source=f"wiki.test.raw, first {args.chunks} chunks x {args.ctx}, method half, no BOS",
        progress=lambda label, done, total: print(f"\r{label} {done}/{total}", end="", flush=True),
    )
    t_eval = time.perf_counter() - t0
    print()
    ref = next(iter(results.values())).reference
    print(f"bf16 reference: ppl {ref.ppl:.4f} ± {ref.ppl_stderr:.4f} on {ref.tokens_scored} tokens ({ref.chunks} chunks)")
    print(f"{'variant':22s} {'ppl':>9s} {'Δppl %':>8s} {'KL mean':>9s} {'KL p99':>8s} {'KL max':>8s} {'top-1 %':>8s}")
    for name, q in results.items():
        print(f"{name:22s} {q.candidate.ppl:9.4f} {q.ppl_increase_pct:+8.3f} {q.kld_mean:9.5f} {q.kld_p99:8.4f} "
              f"{q.kld_max:8.3f} {100 * q.top1:8.2f}")
    sensitivity = {}
    if args.sensitivity_chunks:
        del candidates
        sensitivity = weight_sensitivity(ir0, eval_tokens, args.ctx, args.sensitivity_chunks, args.device)
        print(f"weight-only FP8 of one linear at a time, mean KL on {args.sensitivity_chunks} chunks (top 15):")
        for name, kl in sorted(sensitivity.items(), key=lambda kv: -kv[1])[:15]:
            print(f"  {kl:9.5f}  {name}")
        print(f"  sum over all {len(sensitivity)} linears: {sum(sensitivity.values()):.5f}")
    probes = {}
    if args.probe_chunks:
        probes = weight_probes(ir0, eval_tokens, args.ctx, args.probe_chunks, args.device)
        print(f"weight-only rounding of every linear, {args.probe_chunks} chunks:")
        for label, r in probes.items():
            print(f"  {label:24s} weight SQNR {r['weight_sqnr_db']:5.1f} dB  KL {r['kld_mean']:.5f}  top-1 {100 * r['top1']:.2f} %")
    amax = {n: {"amax": float(stats[n].amax), "amax_over_rms": float(stats[n].amax / stats[n].mean_sq.mean().sqrt())}
            for n in ir0.linear_names()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "device": args.device, "weight_probes": probes, "weight_sensitivity_kld": sensitivity, "activation_amax": amax,
        "model": str(model_dir), "ctx": args.ctx, "chunks": args.chunks, "method": "half", "bos": None,
        "calibration": calib.source, "calibration_sha256": calib.sha256(), "eval_seconds": t_eval,
        "reference": {"ppl": ref.ppl, "ppl_stderr": ref.ppl_stderr, "tokens_scored": ref.tokens_scored},
        "variants": {name: {"description": variants[name][3], "build_seconds": build_seconds[name], "ppl": q.candidate.ppl, "ppl_increase_pct": q.ppl_increase_pct,
                            "kld_mean": q.kld_mean, "kld_p99": q.kld_p99, "kld_max": q.kld_max, "top1": q.top1}
                     for name, q in results.items()},
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
