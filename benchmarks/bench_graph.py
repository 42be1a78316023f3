"""Reference forward speed on the CPU, fused graph beside unfused, on one machine in one run.

SmolLM2-135M (the embedded default), batch 1: a 512-token prefill and greedy decode of
64 tokens after it, through the torch backend (the graph interpreter). The fused graph is
the unfused one after the fuse_qkv, fuse_gate_up and fuse_residual_norm passes. Rounds
alternate between the two (the machine is shared, so absolute speed drifts); each figure
is the median over rounds. Usage:
    python benchmarks/bench_graph.py [--model DIR] [--rounds 5] [--out bench_results]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from inferc.compiler.default_model import ensure_default_model
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass
from inferc.runtime.speed import measure_speed
from inferc.runtime.torch_backend import TorchBackend

FUSIONS = ("fuse_qkv", "fuse_gate_up", "fuse_residual_norm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    args = ap.parse_args()
    model_dir = args.model or ensure_default_model()
    fused = load_checkpoint(model_dir)
    for name in FUSIONS:
        fused = get_pass(name)().run(fused, PassContext())
    backends = {"unfused": TorchBackend(load_checkpoint(model_dir)), "fused": TorchBackend(fused)}
    ids = torch.randint(0, 1000, (1, 64), generator=torch.Generator().manual_seed(0))
    diff = (backends["fused"].logits(ids) - backends["unfused"].logits(ids)).abs().max().item()
    runs: dict[str, list] = {k: [] for k in backends}
    for r in range(args.rounds):
        for name, backend in backends.items():
            s = measure_speed(backend, prompt_len=args.prompt, gen_len=args.gen, repeats=1, warmup=1 if r == 0 else 0, seed=r)
            runs[name].append(s)
    rows = []
    for name, results in runs.items():
        rows.append({"graph": name, "nodes": len((fused if name == "fused" else load_checkpoint(model_dir)).graph.nodes),
                     "prefill_tok_s": statistics.median(s.prefill_tok_s for s in results),
                     "decode_tok_s": statistics.median(s.decode_tok_s for s in results),
                     "ttft_ms": statistics.median(s.ttft_ms_p50 for s in results)})
    print(f"SmolLM2-135M, torch reference forward, CPU threads {torch.get_num_threads()}, {args.rounds} alternating rounds, medians")
    print(f"max |logit difference| fused vs unfused on 64 tokens: {diff:.2e}")
    print(f"{'graph':<9} {'nodes':>6} {'prefill tok/s':>14} {'decode tok/s':>13} {'TTFT ms':>9}")
    for row in rows:
        print(f"{row['graph']:<9} {row['nodes']:>6} {row['prefill_tok_s']:>14.1f} {row['decode_tok_s']:>13.2f} {row['ttft_ms']:>9.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    out = {"model": str(model_dir), "prompt_len": args.prompt, "gen_len": args.gen, "rounds": args.rounds,
           "threads": torch.get_num_threads(), "max_abs_logit_diff": diff, "rows": rows}
    (args.out / "graph.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
