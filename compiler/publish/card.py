"""The model card (README.md) of a publication, written from the artifact's manifest.json
and report.json only: what the model is, how it was made, what was measured and how,
and how each consumer runs it. Nothing in it is typed by hand, so it cannot drift from
the artifact it describes."""

from __future__ import annotations

import json
from typing import Any

from inferc.compiler.publish.facts import Export, exports, model_name, quant_name
from inferc.compiler.publish.verify import Artifact


def _fmt(x: float | None, digits: int = 4) -> str:
    return "not measured" if x is None else f"{x:.{digits}f}"


def _front_matter(artifact: Artifact, exps: list[Export]) -> list[str]:
    library = "transformers" if any(e.format == "hf" for e in exps) else "gguf"
    tags = ["inferc", quant_name(artifact.manifest), f"target-{artifact.manifest.get('target')}", *sorted({e.format for e in exps})]
    return ["---", f"library_name: {library}", "pipeline_tag: text-generation", "tags:", *[f"  - {t}" for t in tags], "---", ""]


def _provenance(artifact: Artifact, report: dict[str, Any] | None) -> list[str]:
    m = artifact.manifest
    source, calib, versions = m.get("source") or {}, m.get("calibration"), m.get("versions") or {}
    recipe = m.get("recipe") or {}
    rows = [
        ("base model", model_name(m)),
        ("base model sha256", f"`{source.get('sha256', 'unknown')}`"),
        ("architecture", (report or {}).get("architecture", "unknown")),
        ("recipe", f"{recipe.get('name', 'unknown')} (quant {quant_name(m)})"),
        ("target", (report or {}).get("target") or str(m.get("target"))),
        ("calibration", f"{calib['source']}, token ids sha256 `{calib['sha256']}`" if calib else "none (no pass needed it)"),
        ("built", f"{m.get('created', 'unknown')} by inferc {versions.get('inferc', '?')} (torch {versions.get('torch', '?')})"),
        ("manifest.json sha256", f"`{artifact.manifest_file.sha256}`"),
    ]
    lines = ["## Provenance", "", "|  |  |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]
    lines += ["Pipeline:", ""]
    for step in recipe.get("pipeline") or []:
        lines.append(f"- `{step.get('pass')}` {json.dumps(step.get('options') or {}, sort_keys=True)}")
    return lines + [""]


def _quality(report: dict[str, Any] | None) -> list[str]:
    q = (report or {}).get("quality")
    if not q:
        return ["## Quality", "", "Not measured: the artifact was built without evaluation.", ""]
    ref, cand = q.get("reference") or {}, q.get("candidate") or {}
    method = cand.get("method") or ref.get("method")
    how = {"half": "llama.cpp's method: only the second half of each chunk is scored",
           "full": "every position after the first in each chunk is scored"}.get(method, str(method))
    lines = [
        "## Quality", "",
        "| metric | value |", "|---|---|",
        f"| perplexity, unquantized reference | {_fmt(ref.get('ppl'))} |",
        f"| perplexity, this artifact | {_fmt(cand.get('ppl'))} |",
        f"| perplexity increase | {_fmt(q.get('ppl_increase_pct'), 3)} % |",
        f"| mean KL(reference ‖ artifact) per token | {_fmt(q.get('kld_mean'), 5)} nats |",
        f"| top-1 agreement with the reference | {_fmt(100 * q['top1'] if q.get('top1') is not None else None, 2)} % |",
        "",
        f"Method: {q.get('tokens_scored', '?')} tokens scored in {cand.get('chunks', '?')} chunks of {cand.get('ctx_len', '?')} "
        f"tokens ({how}), on {q.get('source', 'unknown text')}. KL divergence is taken per scored token against the "
        "unquantized model; top-1 is the share of positions where both models' most likely token agree.",
    ]
    if (report or {}).get("quality_note"):
        lines += ["", f"Note: {report['quality_note']}."]
    return lines + [""]


def _speed_and_size(report: dict[str, Any] | None) -> list[str]:
    s, z = (report or {}).get("speed"), (report or {}).get("sizes")
    lines = ["## Speed and size", ""]
    if s:
        lines += [
            f"Measured with the {s.get('backend')} backend on {s.get('device')}, median of {s.get('repeats')} runs: "
            f"prefill {_fmt(s.get('prefill_tok_s'), 1)} tok/s ({s.get('prompt_len')}-token prompt), "
            f"decode {_fmt(s.get('decode_tok_s'), 1)} tok/s ({s.get('gen_len')} tokens), "
            f"time to first token p50 {_fmt(s.get('ttft_ms_p50'), 2)} ms, time per output token p50 {_fmt(s.get('tpot_ms_p50'), 2)} ms. "
            "These figures describe the build machine, not a serving engine.",
            "",
        ]
    else:
        lines += ["Speed was not measured.", ""]
    if z:
        lines += [f"{z['artifact_bytes']:,} bytes in all; {z['weight_bytes']:,} weight bytes for {z['n_weights']:,} parameters "
                  f"({z['bits_per_weight']:.3f} bits per weight).", ""]
    return lines


def _how_to_run(exps: list[Export]) -> list[str]:
    lines = ["## How to run it", ""]
    hf_ct = next((e for e in exps if e.format == "hf" and e.layout == "compressed-tensors"), None)
    hf_mo = next((e for e in exps if e.format == "hf" and e.layout == "modelopt"), None)
    gguf = next((e for e in exps if e.format == "gguf"), None)
    hf_any = hf_ct or hf_mo
    lines.append("**vLLM** (reads the compressed-tensors layout): " + (
        f"`vllm serve ./{hf_ct.path}` or `LLM(model=\"./{hf_ct.path}\")`." if hf_ct else "this artifact has no compressed-tensors export."))
    lines.append("")
    lines.append("**TensorRT-LLM** (reads the ModelOpt layout): " + (
        f"`trtllm-serve ./{hf_mo.path}` or `tensorrt_llm.LLM(model=\"./{hf_mo.path}\")`." if hf_mo
        else "this artifact has no ModelOpt export; rebuild with `export: [{format: hf, layout: modelopt}]`."))
    lines.append("")
    lines.append("**llama.cpp**: " + (
        f"`llama-cli -m ./{gguf.path} -p \"Hello\"` or `llama-server -m ./{gguf.path}`." if gguf
        else "this artifact has no GGUF export; rebuild with `--target cpu` (or `export: [{format: gguf}]`)."))
    lines.append("")
    lines.append("**ONNX Runtime GenAI**: inferc writes no ONNX model; its model builder makes one from an HF checkpoint: " + (
        f"`python -m onnxruntime_genai.models.builder -i ./{hf_any.path} -o ./onnx -p int4 -e cpu` "
        "(whether the builder accepts this quantized checkpoint depends on its version)." if hf_any
        else "this artifact has no HF export to start from."))
    lines += ["", "**transformers**: " + (f"`AutoModelForCausalLM.from_pretrained(\"./{hf_ct.path}\")`." if hf_ct else "no compressed-tensors export."),
              "", "Paths are relative to the published directory. inferc's own tests load its HF exports with transformers "
              "and its GGUF files with llama.cpp; the vLLM, TensorRT-LLM and ONNX Runtime GenAI commands were not run here.", ""]
    return lines


def render_card(artifact: Artifact) -> str:
    """README.md for the artifact, from manifest.json and report.json."""
    report = artifact.read_json("report.json")
    exps = exports(artifact)
    m = artifact.manifest
    title = f"{model_name(m)}: {quant_name(m)} for {m.get('target')}"
    lines = _front_matter(artifact, exps) + [
        f"# {title}", "",
        f"Built by inferc from {model_name(m)} with the `{quant_name(m)}` recipe for `{m.get('target')}`. "
        f"Formats: {', '.join(f'{e.format} ({e.layout})' if e.layout else e.format for e in exps) or 'none'}. "
        "Every file's size and sha256 is in `manifest.json`, which was checked before this was published.", "",
    ]
    lines += _provenance(artifact, report) + _quality(report) + _speed_and_size(report) + _how_to_run(exps)
    return "\n".join(lines)
