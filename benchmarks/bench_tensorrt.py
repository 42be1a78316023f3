"""TensorRT engines of the real model (SmolLM2-135M) built by TensorRT-RTX on this machine,
without a GPU: build time, engine size, and the engine's weight bytes against the bf16
checkpoint's, per precision.

    python benchmarks/bench_tensorrt.py                        # fp8 (sm89), int4 (sm89), nvfp4 (sm120)
    python benchmarks/bench_tensorrt.py --variants int4 --repeats 3

Quantization is round-to-nearest after fusing q|k|v and gate|up (so NVFP4's parts share one
tensor scale); activation scales come from 4x64 random-token calibration: these figures are
about building, not quality. Prints a table and writes bench_results/tensorrt.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.stats import collect_activation_stats
from inferc.compiler.default_model import ensure_default_model
from inferc.core.ir import ModelIR
from inferc.formats.hf.reader import load_checkpoint
from inferc.formats.tensorrt import export_tensorrt
from inferc.passes import PassContext, get_pass, make_config

REPO = Path(__file__).resolve().parents[1]

# variant -> (target arch, quantization pass, its options)
VARIANTS = {
    "fp8": ("sm89", "quantize_fp8", {"per_channel": True, "activations": "static", "ignore": ["lm_head"]}),
    "int4": ("sm89", "quantize_rtn", {"format": "int4", "group_size": 64}),
    "nvfp4": ("sm120", "quantize_rtn", {"format": "nvfp4", "activations": "nvfp4"}),
}


def quantized(model_dir: Path, pass_name: str, options: dict) -> ModelIR:
    ir = load_checkpoint(model_dir)
    calib = CalibrationSet(tokens=torch.randint(0, ir.spec.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0)),
                           source="random tokens, seed 0")
    ctx = PassContext(calibration=calib, _stats_factory=lambda: collect_activation_stats(ir, calib))
    for name, opts in (("fuse_qkv", {}), ("fuse_gate_up", {}), (pass_name, options)):
        cls = get_pass(name)
        ir = cls(make_config(cls, dict(opts))).run(ir, ctx)
    return ir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeats", type=int, default=1, help="builds per variant (the median is reported)")
    args = ap.parse_args()
    model_dir = ensure_default_model()
    bf16_bytes = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    rows = []
    for name in args.variants.split(","):
        arch, pass_name, options = VARIANTS[name]
        ir = quantized(model_dir, pass_name, options)
        times, info = [], {}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                out = export_tensorrt(ir, Path(tmp) / "trt", arch)
                wall = time.perf_counter() - start
                info = json.loads((out / "build_info.json").read_text())
                times.append((wall, info["build_seconds"]))
        row = {"variant": name, "arch": arch, "builder": f"{info['builder']['flavour']} {info['builder']['version']}",
               "export_and_build_s": statistics.median(t[0] for t in times), "build_s": statistics.median(t[1] for t in times),
               "engine_bytes": info["engine_bytes"], "engine_weight_bytes": info["engine_weight_bytes"],
               "bf16_checkpoint_bytes": bf16_bytes, "repeats": args.repeats}
        rows.append(row)
        print(f"{name:6s} {arch:6s} build {row['build_s']:7.1f} s (export+build {row['export_and_build_s']:.1f} s)  "
              f"engine {row['engine_bytes'] / 2**20:7.1f} MiB  weights {(row['engine_weight_bytes'] or 0) / 2**20:7.1f} MiB  "
              f"({(row['engine_weight_bytes'] or 0) / bf16_bytes:.2f}x the bf16 checkpoint's {bf16_bytes / 2**20:.1f} MiB)",
              flush=True)
    out = REPO / "bench_results" / "tensorrt.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
