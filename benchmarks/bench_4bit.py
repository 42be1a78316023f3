"""4-bit weight quality on the real model: SmolLM2-135M, wikitext-2 test, context 512.

Variants (group size 64: SmolLM2's hidden size 576 is not a multiple of 128): bf16
reference, RTN, AWQ, GPTQ with and without act-order, NVFP4 W4A16 and W4A4; and, side
by side, llm-compressor's `oneshot` GPTQ and AWQ on CPU with the same calibration
token ids and group size, run in its own venv (benchmarks/llmc_oneshot.py) and scored
by the same evaluator on its dequantized weights. Calibration sequences come from the
corpus after the evaluated chunks (disjoint). All candidates are scored in one pass
over the chunks (`compare_many`: the reference logits once per chunk).

    python benchmarks/bench_4bit.py                       # 40 chunks, 8 calibration sequences
    python benchmarks/bench_4bit.py --variants rtn_g64,gptq_g64 --no-llmc --chunks 4
    python benchmarks/bench_4bit.py --time-gptq 128       # GPTQ build only: 128x512 tokens, time and peak RSS

Prints a markdown table and writes bench_results/4bit.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from inferc.calibration.corpus import load_tokenizer, read_text_file, sample_sequences, tokenize
from inferc.calibration.stats import collect_activation_stats
from inferc.compiler.default_model import ensure_default_model
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import get_pass, make_config
from inferc.passes.base import PassContext
from inferc.runtime.evaluate import compare_many
from inferc.runtime.torch_backend import TorchBackend

REPO = Path(__file__).resolve().parents[1]
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext-2-raw" / "wiki.test.raw"
LLMC_PYTHON = Path("/work/venvs/llmc/bin/python")


def variants(group: int) -> dict[str, tuple[str, dict, str]]:
    return {
        "rtn_g64": ("quantize_rtn", {"format": "int4", "group_size": group}, f"INT4 sym RTN, group {group}"),
        "awq_g64": ("quantize_awq", {"format": "int4", "group_size": group},
                    f"INT4 sym AWQ (the awq preset: grid 20, block losses on 2048 tokens, clip search, amax/7 grid), group {group}"),
        "awq_g64_full": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full"},
                         f"INT4 sym AWQ as the preset but on the amax/7.5 grid, group {group}"),
        "awq_g64_linear": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full", "loss": "linear"},
                           f"INT4 sym AWQ, losses at the linears' outputs instead of the attention/MLP blocks, amax/7.5 grid, group {group}"),
        "awq_g64_8k": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full", "search_tokens": 8192},
                       f"INT4 sym AWQ, block losses on 8192 tokens, group {group}"),
        "awq_g64_linear_8k": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full", "loss": "linear", "search_tokens": 8192},
                              f"INT4 sym AWQ, linear-output losses on 8192 tokens, group {group}"),
        "awq_g64_mse": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full", "observer": "mse"},
                        f"INT4 sym AWQ, MSE-searched group ranges, group {group}"),
        "awq_g64_nonseq": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full", "sequential": False},
                           f"INT4 sym AWQ, each layer calibrated on unquantized outputs, group {group}"),
        "rtn_g64_asym": ("quantize_rtn", {"format": "int4", "group_size": group, "symmetric": False},
                         f"INT4 asymmetric RTN, group {group}"),
        "awq_g64_asym": ("quantize_awq", {"format": "int4", "group_size": group, "symmetric": False},
                         f"INT4 asymmetric AWQ (AutoAWQ's default zero point), group {group}"),
        "awq_g64_duo": ("quantize_awq", {"format": "int4", "group_size": group, "sym_range": "full", "duo_scaling": "both"},
                        f"INT4 sym AWQ, duo scaling searched beside plain (grid 20 each), clip search, group {group}"),
        "gptq_g64": ("quantize_gptq", {"format": "int4", "group_size": group, "act_order": False}, f"INT4 sym GPTQ, group {group}"),
        "gptq_g64_act": ("quantize_gptq", {"format": "int4", "group_size": group, "act_order": True},
                         f"INT4 sym GPTQ act-order (g_idx), group {group}"),
        "rtn_g64_mse": ("quantize_rtn", {"format": "int4", "group_size": group, "observer": "mse"},
                        f"INT4 sym RTN, MSE-searched group ranges, group {group}"),
        "gptq_g64_mse": ("quantize_gptq", {"format": "int4", "group_size": group, "act_order": False, "observer": "mse"},
                         f"INT4 sym GPTQ, MSE-searched group ranges, group {group}"),
        "gptq_g64_act_mse": ("quantize_gptq", {"format": "int4", "group_size": group, "act_order": True, "observer": "mse"},
                             f"INT4 sym GPTQ act-order (g_idx), MSE-searched group ranges, group {group}"),
        "gptq_g64_act_static_mse": ("quantize_gptq", {"format": "int4", "group_size": group, "act_order": True, "static_groups": True,
                                                      "observer": "mse"},
                                    f"INT4 sym GPTQ act-order, static groups, MSE-searched ranges (the gptq preset), group {group}"),
        "awq_gptq_g64": ([("quantize_awq", {"format": "int4", "group_size": group, "quantize": False}),
                          ("quantize_gptq", {"format": "int4", "group_size": group, "act_order": True, "static_groups": True,
                                             "observer": "mse"})], {},
                         f"AWQ scales folded (no rounding), then the gptq preset's GPTQ, group {group}"),
        "nvfp4_w4a16": ("quantize_rtn", {"format": "nvfp4"}, "NVFP4 weights (RTN), 16-blocks"),
        "nvfp4_w4a4": ("quantize_rtn", {"format": "nvfp4", "activations": "nvfp4"}, "NVFP4 weights and activations (static input scale)"),
    }


def _layer_progress(label: str, done: int, total: int) -> None:
    if label == "calibrating layers" and done % 5 == 0:
        print(f"  {label} {done}/{total} at {time.strftime('%H:%M:%S')}", flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(model_dir: Path, pass_name: str | list[tuple[str, dict]], options: dict, calib) -> tuple[object, float, list]:
    """Run one pass (or a list of (pass, options) in order) on a fresh load of the model."""
    ir = load_checkpoint(model_dir)
    steps = pass_name if isinstance(pass_name, list) else [(pass_name, options)]
    t0 = time.perf_counter()
    ctx = PassContext(calibration=calib, _stats_factory=lambda: collect_activation_stats(ir, calib), progress=_layer_progress)
    for name, opts in steps:
        cls = get_pass(name)
        cls(make_config(cls, opts)).run(ir, ctx)
    return ir, time.perf_counter() - t0, ctx.events


def run_llmc(algorithm: str, model_dir: Path, ids_path: Path, group: int, out_root: Path, timeout: float) -> tuple[Path | None, dict]:
    """llm-compressor in its own venv, alone on the machine; (its output or None, info)."""
    out = out_root / f"llmc_{algorithm}"
    cmd = [str(LLMC_PYTHON), str(REPO / "benchmarks" / "llmc_oneshot.py"), algorithm, str(model_dir), str(ids_path), str(out),
           "--group-size", str(group)]
    t0 = time.perf_counter()
    with open(out_root / f"llmc_{algorithm}.log", "w") as log:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None, {"error": f"did not finish within {timeout:.0f} s; killed", "wall_seconds": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return None, {"error": f"exit {proc.returncode}; see {out}.log", "wall_seconds": wall}
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["wall_seconds"] = wall  # includes interpreter start, model load and the dequantized save
    return out, info


def reused_llmc(algos: list[str], out: Path, calib_sha: str, group: int) -> dict[str, tuple[Path, dict]]:
    """Earlier llm-compressor outputs to score again: each must come from a run on the
    same calibration ids (checked against the earlier results file), or it is refused."""
    if not algos:
        return {}
    prev = json.loads(out.read_text()) if out.exists() else {}
    if prev.get("calibration_sha256") != calib_sha:
        raise SystemExit(f"--llmc-reuse: {out} is missing or was made with other calibration ids; run llm-compressor again")
    found = {}
    for algo in algos:
        key, path = f"llmc_{algo}_g{group}", out.parent / f"llmc_{algo}"
        row = prev.get("variants", {}).get(key)
        if row is None or not (path / "model.safetensors").exists():
            raise SystemExit(f"--llmc-reuse: no earlier {key} in {out} or no output in {path}; run llm-compressor again")
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime((path / "model.safetensors").stat().st_mtime))
        keep = {k: row[k] for k in ("algorithm", "seconds", "build_seconds", "wall_seconds", "quantized_linears") if k in row}
        run = row.get("run", row["description"])  # the llm-compressor run itself, however often it is scored again
        found[key] = (path, {"description": f"{run} (output of the run at {stamp}, same calibration ids, scored again)",
                             "run": run, "reused": True, **keep})
    return found


def time_gptq(model_dir: Path, calib, group: int) -> None:
    """The shipped `gptq` preset's algorithm (act-order, static groups, MSE-searched ranges) on `calib`."""
    options = {"format": "int4", "group_size": group, "act_order": True, "static_groups": True, "observer": "mse"}
    t0 = time.perf_counter()
    _, seconds, events = build(model_dir, "quantize_gptq", options, calib)
    result = {"options": options, "gptq_seconds": seconds, "wall_with_load_seconds": time.perf_counter() - t0,
              "peak_rss_mb": peak_rss_mb(), "calibration": calib.source,
              "events": sum(e.kind != "group_size" for e in events)}
    print(json.dumps(result))
    (REPO / "bench_results").mkdir(exist_ok=True)
    (REPO / "bench_results" / "gptq_time.json").write_text(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=40)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--calib", type=int, default=8, help="calibration sequences of --ctx tokens")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--variants", default="", help="comma-separated subset (default: all)")
    ap.add_argument("--no-llmc", action="store_true")
    ap.add_argument("--llmc-algos", default="gptq,awq", help="llm-compressor algorithms to run side by side")
    ap.add_argument("--llmc-reuse", default="", help="llm-compressor algorithms not re-run: their output from an earlier run "
                    "with the same calibration ids (bench_results/llmc_<algo>) is scored, its build time taken from --out")
    ap.add_argument("--llmc-timeout", type=float, default=1800, help="seconds before an llm-compressor run is killed")
    ap.add_argument("--time-gptq", type=int, default=0, help="only time a GPTQ build on this many sequences")
    ap.add_argument("--out", default=str(REPO / "bench_results" / "4bit.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    model_dir = ensure_default_model()
    tokens = tokenize(load_tokenizer(model_dir), read_text_file(WIKITEXT))
    n_eval = args.chunks * args.ctx
    eval_tokens, calib_stream = tokens[:n_eval], tokens[n_eval:]
    calib = sample_sequences(calib_stream, args.time_gptq or args.calib, args.ctx, seed=0,
                             source=f"wiki.test.raw tokens[{n_eval}:] (disjoint from the evaluated chunks)")
    if args.time_gptq:
        return time_gptq(model_dir, calib, args.group_size)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ids_path = out.parent / "4bit_calib_ids.pt"
    torch.save(calib.tokens, ids_path)
    reuse = [a for a in args.llmc_reuse.split(",") if a]
    earlier = reused_llmc(reuse, out, calib.sha256(), args.group_size)

    chosen = variants(args.group_size)
    if args.variants:
        chosen = {k: v for k, v in chosen.items() if k in args.variants.split(",")}
    candidates, meta = {}, {}
    if not args.no_llmc and LLMC_PYTHON.exists():  # one at a time, alone on the machine, like ours
        for algo in [a for a in args.llmc_algos.split(",") if a not in reuse]:
            path, info = run_llmc(algo, model_dir, ids_path, args.group_size, out.parent, args.llmc_timeout)
            key = f"llmc_{algo}_g{args.group_size}"
            meta[key] = {"description": f"llm-compressor {algo} oneshot, INT4 sym group {args.group_size}", **info}
            if path is not None:
                candidates[key] = TorchBackend(load_checkpoint(path), quantized=False)
                meta[key]["build_seconds"] = info["seconds"]
            print(f"{key}: {info}", flush=True)
    for key, (path, info) in earlier.items():
        candidates[key], meta[key] = TorchBackend(load_checkpoint(path), quantized=False), info
    for name, (pass_name, options, desc) in chosen.items():
        ir, seconds, events = build(model_dir, pass_name, options, calib)
        candidates[name] = TorchBackend(ir)
        kinds = {}
        for e in events:
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
        meta[name] = {"description": desc, "build_seconds": seconds, "events": kinds, "peak_rss_mb_so_far": peak_rss_mb()}
        print(f"built {name} in {seconds:.0f} s; events {kinds}", flush=True)
    t0 = time.perf_counter()
    results = compare_many(
        TorchBackend(load_checkpoint(model_dir), quantized=False), candidates, eval_tokens, ctx_len=args.ctx,
        n_chunks=args.chunks, method="half", source=f"wiki.test.raw, first {args.chunks} chunks x {args.ctx}, method half",
        progress=lambda label, done, total: print(f"\r{label} {done}/{total}", end="", flush=True),
    )
    print()
    ref = next(iter(results.values())).reference
    rtn = results.get(f"rtn_g{args.group_size}")
    print(f"calibration: {calib.source}; eval {time.perf_counter() - t0:.0f} s\n")
    print("| variant | ppl | KL mean | top-1 % | gap closed vs RTN | build s |")
    print("|---|---|---|---|---|---|")
    print(f"| bf16 | {ref.ppl:.4f} | 0 | 100 | | |")
    rows = {}
    for name, q in results.items():
        gap = None
        if rtn is not None and rtn.candidate.ppl > ref.ppl:
            gap = (rtn.candidate.ppl - q.candidate.ppl) / (rtn.candidate.ppl - ref.ppl)
        rows[name] = {**meta[name], "ppl": q.candidate.ppl, "kld_mean": q.kld_mean, "top1": q.top1, "gap_closed": gap}
        gap_s = "" if gap is None else f"{100 * gap:.0f} %"
        print(f"| {name} | {q.candidate.ppl:.4f} | {q.kld_mean:.5f} | {100 * q.top1:.2f} | {gap_s} | {meta[name].get('build_seconds', float('nan')):.0f} |")
    out.write_text(json.dumps({"model": str(model_dir), "ctx": args.ctx, "chunks": args.chunks, "calibration": calib.source,
                               "calibration_sha256": calib.sha256(), "reference_ppl": ref.ppl, "variants": rows,
                               "llmc_failures": {k: v for k, v in meta.items() if "error" in v}}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
