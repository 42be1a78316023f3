"""CPU decoding figures: our ONNX exports beside onnxruntime-genai's model builder and
llama.cpp, on one machine in one run.

SmolLM2-135M (the embedded default, bf16), batch 1. Rows:
  ours fp32 ONNX        recipes/fp32_onnx.yaml   (fused graph, ort flavour)
  ours INT4 RTN ONNX    recipes/rtn_onnx.yaml
  ours INT4 GPTQ ONNX   recipes/gptq_onnx.yaml   (calibrated on wikitext-2 test after the evaluated chunks)
  builder INT4 / fp32   python -m onnxruntime_genai.models.builder -i <hf dir> -o <dir> -p int4|fp32 -e cpu
  llama.cpp Q4_K_M      recipes/q4_k_m.yaml      (our GGUF; imatrix from the same held-out tokens)
Our artifacts are built through `inferc.compiler.build.build` from the shipped recipes
(evaluation off: every row is scored here by the same evaluator).

Speed: a 128-token prompt and 128 new tokens (greedy), each row measured in its own
subprocess (so peak RSS is that row's), rounds alternating between the rows; the figure is
the median over rounds. All ONNX rows (ours and the builder's) run through the same ONNX
Runtime backend (runtime/onnxruntime_backend.py, 2 intra-op threads); llama.cpp through
llama-cpp-python (2 threads). Achieved decode bandwidth = bytes the matrix products read
per token (every weight but the embedding table) x decode tok/s, against the machine's
copy bandwidth (a 512 MiB numpy copy, read + write), measured before and after the runs.

Perplexity: wikitext-2 test, context 512, the first `--chunks` chunks, llama.cpp's
second-half method, by runtime/evaluate.perplexity on each row's backend (one process a
row, `--ppl-jobs` at a time).

Usage:
    python benchmarks/bench_onnx.py [--chunks 40] [--rounds 3] [--out bench_results] [--reuse]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WIKI = REPO.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"

OURS = {"ours fp32 (ONNX)": "fp32_onnx", "ours INT4 RTN (ONNX)": "rtn_onnx", "ours INT4 GPTQ (ONNX, gptq_onnx)": "gptq_onnx"}
BUILDER = {"builder fp32 (onnxruntime-genai)": "fp32", "builder INT4 (onnxruntime-genai)": "int4"}
LLAMA = {"llama.cpp Q4_K_M (our GGUF)": "q4_k_m"}


def build_ours(preset: str, model: Path, out: Path, dataset: Path, calib_seqs: int | None = None) -> Path:
    from inferc.compiler.build import build
    from inferc.compiler.recipe import load_preset

    recipe = load_preset(preset)
    recipe = dataclasses.replace(
        recipe, target="cpu", gates={},
        calibration=dataclasses.replace(recipe.calibration, dataset=str(dataset),
                                        num_sequences=calib_seqs or recipe.calibration.num_sequences),
        eval=dataclasses.replace(recipe.eval, dataset=str(dataset), enabled=False),  # calibration skips the eval region
    )
    build(recipe, out, model_dir=model, force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    return out / manifest["exports"][0]["path"]


def build_builder(precision: str, model: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model), "-o", str(out),
                    "-p", precision, "-e", "cpu", "-c", str(out.parent / "builder-cache")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return out


def artifacts(args, model: Path) -> dict[str, Path]:
    work = args.out / "onnx"
    work.mkdir(parents=True, exist_ok=True)
    arts, seconds = {}, {}
    for label, preset in {**OURS, **LLAMA}.items():
        if label in args.skip:
            continue
        out = work / preset
        t = time.perf_counter()
        if args.reuse and (out / "manifest.json").is_file():
            manifest = json.loads((out / "manifest.json").read_text())
            arts[label] = out / manifest["exports"][0]["path"]
        else:
            arts[label] = build_ours(preset, model, out, args.dataset, args.calib_seqs)
        seconds[label] = time.perf_counter() - t
    for label, precision in BUILDER.items():
        if label in args.skip:
            continue
        out = work / f"builder-{precision}"
        t = time.perf_counter()
        arts[label] = out if args.reuse and (out / "model.onnx").is_file() else build_builder(precision, model, out)
        seconds[label] = time.perf_counter() - t
    return arts


def open_row(path: Path, threads: int):
    if path.suffix == ".gguf":
        from inferc.runtime.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(path, n_ctx=512, n_threads=threads)
    from inferc.runtime.onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(path, threads=threads)


def decode_bytes(path: Path) -> int:
    if path.suffix == ".gguf":
        from inferc.formats.gguf import read_gguf_summary

        return read_gguf_summary(path).decode_weight_bytes
    from inferc.formats.onnx.reader import read_onnx_summary

    return read_onnx_summary(path / "model.onnx").matmul_bytes


def speed_child(path: Path, threads: int, prompt: int, gen: int, seed: int) -> None:
    """One row's speed in this (fresh) process, printed as one JSON line."""
    import torch

    from inferc.runtime.speed import measure_speed

    torch.set_num_threads(threads)
    backend = open_row(path, threads)
    s = measure_speed(backend, prompt_len=prompt, gen_len=gen, repeats=1, warmup=1, seed=seed)
    backend.close()
    print(json.dumps(dataclasses.asdict(s)))


def speed_rounds(args, arts: dict[str, Path]) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {label: [] for label in arts}
    for r in range(args.rounds):
        for label, path in arts.items():
            out = subprocess.run([sys.executable, __file__, "--speed-child", str(path), "--threads", str(args.threads),
                                  "--seed", str(r)], check=True, capture_output=True, text=True)
            runs[label].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def ppl_file(path: Path, chunks: int) -> Path:
    return path.parent / f"{path.name}.ppl{chunks}.json"


def ppl_child(path: Path, args) -> None:
    """One row's perplexity in this process, written beside the artifact."""
    import torch

    from inferc.calibration.corpus import load_tokenizer, read_text_file, tokenize
    from inferc.runtime.evaluate import perplexity

    torch.set_num_threads(args.threads)
    model = args.model or _default_model()
    tokens = tokenize(load_tokenizer(model), read_text_file(args.dataset))[: args.chunks * 512]
    backend = open_row(path, args.threads)
    result = perplexity(backend, tokens, ctx_len=512, n_chunks=args.chunks, method="half")
    backend.close()
    ppl_file(path, args.chunks).write_text(json.dumps({"ppl": result.ppl, "stderr": result.ppl_stderr,
                                                       "tokens_scored": result.tokens_scored}))


def perplexities(args, arts: dict[str, Path]) -> dict[str, float]:
    """Each row scored by runtime/evaluate.perplexity in its own process, up to --ppl-jobs
    at a time (the scores do not depend on it); --reuse keeps scores already written."""
    todo = [p for p in arts.values() if not (args.reuse and ppl_file(p, args.chunks).is_file())]
    running: list[subprocess.Popen] = []
    for path in todo:
        while len(running) >= args.ppl_jobs:
            running.pop(0).wait()
        running.append(subprocess.Popen([sys.executable, __file__, "--ppl-child", str(path), "--threads", str(args.threads),
                                         "--chunks", str(args.chunks), "--dataset", str(args.dataset)]
                                        + (["--model", str(args.model)] if args.model else [])))
    for proc in running:
        if proc.wait() != 0:
            raise RuntimeError(f"a perplexity run failed ({proc.args})")
    return {label: json.loads(ppl_file(p, args.chunks).read_text())["ppl"] for label, p in arts.items()}


def _default_model() -> Path:
    from inferc.compiler.default_model import ensure_default_model

    return ensure_default_model()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="HF checkpoint (default: the embedded SmolLM2-135M)")
    ap.add_argument("--dataset", type=Path, default=WIKI)
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    ap.add_argument("--calib-seqs", type=int, default=None, help="calibration sequences (default: each preset's)")
    ap.add_argument("--reuse", action="store_true", help="keep artifacts already built under OUT/onnx, and their perplexities")
    ap.add_argument("--no-ppl", action="store_true", help="speed only")
    ap.add_argument("--skip", action="append", default=[], metavar="ROW", help="leave this row out (repeatable)")
    ap.add_argument("--ppl-jobs", type=int, default=1, help="perplexity runs at a time (one process each)")
    ap.add_argument("--speed-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--ppl-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.speed_child:
        return speed_child(args.speed_child, args.threads, args.prompt, args.gen, args.seed)
    if args.ppl_child:
        return ppl_child(args.ppl_child, args)

    from inferc.compiler.default_model import ensure_default_model
    from inferc.runtime.speed import copy_bandwidth_gbs

    model = args.model or ensure_default_model()
    loads = [load_average()]
    arts = artifacts(args, model)
    bandwidth = [copy_bandwidth_gbs()]
    loads.append(load_average())
    runs = speed_rounds(args, arts)
    bandwidth.append(copy_bandwidth_gbs())
    loads.append(load_average())
    ppl = {} if args.no_ppl else perplexities(args, arts)
    loads.append(load_average())
    bw = statistics.median(bandwidth)

    rows = []
    for label, path in arts.items():
        rs = runs[label]
        decode = statistics.median(r["decode_tok_s"] for r in rs)
        nbytes = decode_bytes(path)
        rows.append({
            "row": label, "artifact": str(path), "ppl": ppl.get(label),
            "decode_tok_s": decode, "decode_tok_s_rounds": [r["decode_tok_s"] for r in rs],
            "prefill_tok_s": statistics.median(r["prefill_tok_s"] for r in rs),
            "ttft_ms": statistics.median(r["ttft_ms_p50"] for r in rs),
            "peak_rss_mib": statistics.median(r["peak_memory_mb"] for r in rs),
            "decode_read_mb": nbytes / 1e6, "decode_gbs": nbytes * decode / 1e9,
            "of_copy_bw_pct": 100 * nbytes * decode / 1e9 / bw,
        })
    by = {r["row"]: r for r in rows}
    targets = {}
    for ours in ("ours INT4 RTN (ONNX)", "ours INT4 GPTQ (ONNX, gptq_onnx)"):
        for peer, goal in (("builder INT4 (onnxruntime-genai)", 1.2), ("llama.cpp Q4_K_M (our GGUF)", 1.0)):
            if ours in by and peer in by:
                targets[f"decode {ours} / {peer} (>= {goal})"] = by[ours]["decode_tok_s"] / by[peer]["decode_tok_s"]
        if ppl and ours in ppl and "builder INT4 (onnxruntime-genai)" in ppl:
            targets[f"ppl {ours} - builder INT4 (< 0)"] = ppl[ours] - ppl["builder INT4 (onnxruntime-genai)"]

    print(f"\nSmolLM2-135M, batch 1, {args.prompt}-token prompt, {args.gen} new tokens, {args.threads} threads, "
          f"medians of {args.rounds} alternating rounds (one subprocess per row and round); load average {' -> '.join(loads)}")
    print(f"copy bandwidth (512 MiB numpy copy, read + write): {', '.join(f'{b:.1f}' for b in bandwidth)} GB/s")
    print(f"perplexity: {args.dataset.name}, ctx 512, {args.chunks} chunks, second half of each chunk\n")
    print("| row | PPL | decode tok/s | prefill tok/s | TTFT ms | peak RSS MiB | MB read/token | decode GB/s | % of copy BW |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = f"{r['ppl']:.4f}" if r["ppl"] is not None else "-"
        print(f"| {r['row']} | {p} | {r['decode_tok_s']:.1f} | {r['prefill_tok_s']:.1f} | {r['ttft_ms']:.0f} | "
              f"{r['peak_rss_mib']:.0f} | {r['decode_read_mb']:.1f} | {r['decode_gbs']:.2f} | {r['of_copy_bw_pct']:.1f} |")
    print()
    for k, v in targets.items():
        print(f"{k}: {v:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_onnx.json").write_text(json.dumps({
        "model": str(model), "prompt_len": args.prompt, "gen_len": args.gen, "threads": args.threads, "rounds": args.rounds,
        "chunks": args.chunks, "load_average": loads, "copy_bandwidth_gbs": bandwidth, "rows": rows, "targets": targets,
    }, indent=2))


if __name__ == "__main__":
    main()
