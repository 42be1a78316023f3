"""Run llm-compressor's `oneshot` (GPTQ or AWQ, INT4 symmetric, one group size) on CPU
with given calibration token ids, then write the model with its weights dequantized by
compressed-tensors' own fake_quantize as a plain checkpoint, so inferc's evaluator can
score exactly what llm-compressor produced. Runs in the llm-compressor venv:

    /work/venvs/llmc/bin/python benchmarks/llmc_oneshot.py gptq MODEL_DIR IDS.pt OUT_DIR --group-size 64

Prints one JSON line: {"algorithm", "seconds" (oneshot wall time), "quantized_linears"}.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def calibration_dataset(ids: torch.Tensor):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})


def recipe(algorithm: str, group_size: int, actorder: str | None):
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.awq import AWQModifier

    weights = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": group_size}
    groups = {"group_0": {"targets": ["Linear"], "weights": weights}}
    if algorithm == "gptq":
        return [GPTQModifier(ignore=["lm_head"], config_groups=groups, actorder=actorder, block_size=128, dampening_frac=0.01)]
    return [AWQModifier(duo_scaling=False, n_grid=20), QuantizationModifier(ignore=["lm_head"], config_groups=groups)]


def dequantize_in_place(model) -> int:
    """Replace each quantized Linear's weight by its quantize-dequantize (compressed-tensors)."""
    from compressed_tensors.quantization.lifecycle.forward import fake_quantize

    n = 0
    for module in model.modules():
        scheme = getattr(module, "quantization_scheme", None)
        if scheme is None or scheme.weights is None or not hasattr(module, "weight_scale"):
            continue
        if getattr(module, "weight_g_idx", None) is not None:
            raise SystemExit("a weight has a g_idx (actorder=group); this script dequantizes without act-order groups only")
        zp = getattr(module, "weight_zero_point", None)
        with torch.no_grad():
            module.weight.data = fake_quantize(module.weight, module.weight_scale, zp, scheme.weights)
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("algorithm", choices=["gptq", "awq"])
    ap.add_argument("model_dir")
    ap.add_argument("ids")
    ap.add_argument("out_dir")
    ap.add_argument("--group-size", type=int, default=64)
    ap.add_argument("--actorder", default=None, choices=[None, "static", "group"])
    args = ap.parse_args()
    torch.set_num_threads(2)
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM

    if not torch.cuda.is_available():
        # llm-compressor's AWQ pins cached activations (pipelines/cache.py, `value.pin_memory()`),
        # which raises "Cannot access accelerator device when none is available" on a CPU-only
        # torch. Pinning only speeds host-to-device copies, so on CPU it is safely a no-op.
        torch.Tensor.pin_memory = lambda self, *a, **k: self
    ids = torch.load(args.ids)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)
    t0 = time.perf_counter()
    oneshot(model=model, dataset=calibration_dataset(ids), recipe=recipe(args.algorithm, args.group_size, args.actorder),
            max_seq_length=ids.shape[1], num_calibration_samples=ids.shape[0])
    seconds = time.perf_counter() - t0
    n = dequantize_in_place(model)
    state = {k: v for k, v in model.state_dict().items() if not any(s in k for s in ("weight_scale", "weight_zero_point", "weight_g_idx"))}
    from safetensors.torch import save_file

    import pathlib
    import shutil

    out = pathlib.Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state.pop("lm_head.weight", None)  # tied to the embeddings
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    for f in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"):
        src = pathlib.Path(args.model_dir) / f
        if src.exists():
            shutil.copy(src, out / f)
    print(json.dumps({"algorithm": args.algorithm, "seconds": seconds, "quantized_linears": n}))


if __name__ == "__main__":
    main()
