"""GGUF figures, ours beside llama.cpp's, on one machine in one run.

SmolLM2-135M, wikitext-2 test, context 512, llama.cpp's perplexity method (second half
of each chunk scored), perplexity measured by llama.cpp itself (llama-cpp-python) for:
F16, Q8_0 (ours and llama.cpp's), Q4_K_M (ours; llama.cpp's from our F16 GGUF), Q4_K_M
with an importance matrix (ours; llama.cpp's when the bindings can take one), plus
quantization wall time and llama.cpp decode tokens/s for each artifact.

The importance matrix is calibrated on wikitext-2 test tokens *after* the evaluated
chunks (disjoint from them). Usage:
    python benchmarks/bench_gguf.py [--model /tmp/smol] [--chunks 40] [--out bench_results]
    python benchmarks/bench_gguf.py --speed-only 5      # quantization wall time only
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from pathlib import Path

import torch

from inferc.calibration.corpus import load_tokenizer, read_text_file, sample_sequences, tokenize
from inferc.formats.gguf.imatrix import read_imatrix, write_imatrix
from inferc.calibration.stats import collect_activation_stats
from inferc.core.ir import QuantFormat
from inferc.formats.gguf import export_gguf, read_gguf_summary
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass
from inferc.runtime.evaluate import perplexity
from inferc.runtime.llamacpp_backend import LlamaCppBackend

REPO = Path(__file__).resolve().parents[1]
WIKI = REPO.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"


def llama_quantize(src: Path, dst: Path, ftype: str, threads: int) -> float:
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    p.nthread = threads
    t = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p))
    assert rc == 0, f"llama_model_quantize failed ({rc})"
    return time.perf_counter() - t


def ours_quantize(model_dir: Path, dst: Path, mixture: str, importance=None) -> tuple[float, int]:
    model = load_checkpoint(model_dir)
    p = get_pass("quantize_gguf")
    ctx = PassContext(importance=importance)
    t = time.perf_counter()
    p(p.Config(mixture=mixture, use_imatrix=importance is not None)).run(model, ctx)
    export_gguf(model, dst)
    return time.perf_counter() - t, sum(e.kind == "fallback" for e in ctx.events)


def decode_tps(path: Path, threads: int, n: int = 64, repeats: int = 5) -> float:
    """Median over `repeats` greedy decodes of n tokens (single runs on a shared 2-core
    machine scatter by tens of percent)."""
    b = LlamaCppBackend(path, n_ctx=256, n_threads=threads)
    rates = []
    for _ in range(repeats):
        state, logits = b.start(torch.tensor([[1, 504, 3458, 282]]))
        t = time.perf_counter()
        for _ in range(n):
            logits = b.step(state, int(logits.argmax()))
        rates.append(n / (time.perf_counter() - t))
    b.close()
    return statistics.median_high(rates)


def speed_only(args, f16: Path, work: Path) -> None:
    """Quantization wall time only, alternating ours and llama.cpp's so both see the same
    machine state; medians over the rounds."""
    times: dict[str, list[float]] = {}
    for _ in range(args.speed_only):
        for mixture, ftype in (("q8_0", "Q8_0"), ("q4_k_m", "Q4_K_M")):
            times.setdefault(f"{ftype} ours", []).append(ours_quantize(args.model, work / f"ours-{mixture}.gguf", mixture)[0])
            times.setdefault(f"{ftype} llama.cpp", []).append(llama_quantize(f16, work / f"lcpp-{mixture}.gguf", ftype, args.threads))
    med = {k: statistics.median_high(v) for k, v in times.items()}
    print(f"\nquantization wall time, median of {args.speed_only} rounds, {args.threads} threads\n")
    print("| mixture | ours s | llama.cpp s | ratio |\n|---|---|---|---|")
    for ftype in ("Q8_0", "Q4_K_M"):
        a, b = med[f"{ftype} ours"], med[f"{ftype} llama.cpp"]
        print(f"| {ftype} | {a:.2f} | {b:.2f} | {a / b:.2f}x |")
    (args.out / "bench_gguf_speed.json").write_text(json.dumps({"rounds": times, "median": med, "threads": args.threads}, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: the embedded SmolLM2-135M)")
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-seqs", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    ap.add_argument("--speed-only", type=int, default=0, metavar="N",
                    help="only time quantization, ours and llama.cpp's alternately, N rounds; print medians")
    args = ap.parse_args()
    work = args.out / "gguf"
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)

    if args.model is None:
        from inferc.compiler.default_model import ensure_default_model

        args.model = ensure_default_model()
    tok = load_tokenizer(args.model)
    stream = tokenize(tok, read_text_file(WIKI))
    eval_tokens = stream[: args.chunks * 512]

    base = load_checkpoint(args.model)
    f16, f32 = work / "f16.gguf", work / "f32.gguf"
    export_gguf(base, f16)
    if args.speed_only:
        return speed_only(args, f16, work)
    export_gguf(base, f32, dense=QuantFormat.GGUF_F32)

    # importance matrix from tokens after the evaluated chunks
    calib = sample_sequences(stream[args.chunks * 512 :], args.calib_seqs, 512, seed=0, source="wikitext-2 test (held out)")
    stats = collect_activation_stats(base, calib)
    imx = work / "imatrix.gguf"
    write_imatrix(imx, stats.importance_sums(), stats.num_tokens, dataset="wikitext-2 test, held-out part")
    importance = read_imatrix(imx, base.graph.shapes)

    rows: list[dict] = []
    arts: dict[str, tuple[Path, float | None, int | None]] = {"F16 (ours)": (f16, None, None)}
    arts["Q8_0 (ours)"] = (work / "ours-q8_0.gguf", *ours_quantize(args.model, work / "ours-q8_0.gguf", "q8_0"))
    arts["Q8_0 (llama.cpp, from our F16)"] = (work / "lcpp-q8_0.gguf", llama_quantize(f16, work / "lcpp-q8_0.gguf", "Q8_0", args.threads), None)
    arts["Q4_K_M (ours)"] = (work / "ours-q4km.gguf", *ours_quantize(args.model, work / "ours-q4km.gguf", "q4_k_m"))
    arts["Q4_K_M (llama.cpp, from our F16)"] = (work / "lcpp-q4km.gguf", llama_quantize(f16, work / "lcpp-q4km.gguf", "Q4_K_M", args.threads), None)
    arts["Q4_K_M + imatrix (ours)"] = (work / "ours-q4km-imx.gguf", *ours_quantize(args.model, work / "ours-q4km-imx.gguf", "q4_k_m", importance))
    for label, (path, secs, fallbacks) in arts.items():
        b = LlamaCppBackend(path, n_ctx=512, n_threads=args.threads)
        ppl = perplexity(b, eval_tokens, ctx_len=512, n_chunks=args.chunks, method="half", bos=None)
        b.close()
        s = read_gguf_summary(path)
        rows.append({
            "artifact": label, "ppl": ppl.ppl, "chunks": args.chunks, "bpw": round(s.bits_per_weight, 3),
            "mib": round(s.file_bytes / 2**20, 1), "quant_s": None if secs is None else round(secs, 2),
            "fallbacks": fallbacks, "decode_tok_s": round(decode_tps(path, args.threads), 1),
        })
    rows.append({"artifact": "Q4_K_M + imatrix (llama.cpp)", "ppl": None, "note": (
        "not run: llama_model_quantize_params.imatrix is a void* to a C++ std::unordered_map<std::string, "
        "std::vector<float>>, which cannot be built from Python through llama-cpp-python 0.3.36")})

    print(f"\nSmolLM2-135M, wikitext-2 test, ctx 512, {args.chunks} chunks, llama.cpp half-chunk perplexity, {args.threads} threads\n")
    print("| artifact | PPL (llama.cpp) | bpw | MiB | quantize s | fallbacks | decode tok/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("ppl") is None:
            print(f"| {r['artifact']} | n/a | | | | | | ({r['note']})")
            continue
        print(f"| {r['artifact']} | {r['ppl']:.4f} | {r['bpw']} | {r['mib']} | {r['quant_s'] if r['quant_s'] is not None else '-'} "
              f"| {r['fallbacks'] if r['fallbacks'] is not None else '-'} | {r['decode_tok_s']} |")
    (args.out / "bench_gguf.json").write_text(json.dumps({"rows": rows, "chunks": args.chunks, "threads": args.threads}, indent=2))


if __name__ == "__main__":
    main()
