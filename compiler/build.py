"""The build driver: recipe -> plan -> load -> calibrate -> passes -> export -> evaluate
-> report + manifest, written into a temporary directory renamed into place at the end
(compiler/outdir.py: what may be replaced, the lock held for the whole build, the swap).

Steps, in order (each timed into the report):
  plan        recipe validated, passes configured, target checked, output directory checked
              and locked: before any weight is read
  load        checkpoint opened as IR (memory-mapped) and validated
  data        calibration and evaluation token sets
  calibrate   activation statistics, once, if a pass needs them
  <passes>    the pipeline
  export      each export format
  evaluate    quality against the unquantized model, speed

Distributed (a `Reducer` from torch.distributed, see calibration/distributed.py): rank 0
plans, locks the output directory and prepares the data; every rank loads the model,
receives rank 0's calibration set, walks its shards through the passes and quantizes
from the reduced statistics; the ranks then compare digests of the quantized model,
and rank 0 alone exports, evaluates and writes the artifact.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from inferc.calibration.corpus import (
    load_tokenizer,
    read_hf_dataset,
    read_text_file,
    sample_from_model,
    sample_sequences,
    tokenize,
)
from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.distributed import Reducer
from inferc.formats.gguf.imatrix import importance_for
from inferc.calibration.stats import collect_activation_stats
from inferc.compiler.default_model import DEFAULT_MODEL_NAME, ensure_default_model
from inferc.core.errors import GateFailedError, InferCError
from inferc.core.ir import ModelIR
from inferc.compiler.manifest import MANIFEST_FILE, make_manifest
from inferc.compiler.memory import PeakMemory
from inferc.compiler.outdir import OutputDir
from inferc.compiler.pipeline import Plan, check_plan, make_plan, run_plan
from inferc.compiler.preflight import check_build_inputs
from inferc.compiler.recipe import EvalConfig, Recipe
from inferc.compiler.targets import ExportFormat, Quant, Target, get_target
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, Requirement
from inferc.runtime.evaluate import compare_logits
from inferc.runtime.report import (
    CalibrationInfo,
    EventRecord,
    PassRecord,
    Report,
    ExportRecord,
    SizeInfo,
    SkippedExport,
    evaluate_gates,
    reference_speed_note,
    render_markdown,
    to_json,
)
from inferc.runtime.speed import artifact_size, bits_per_weight, measure_speed, tensor_data_bytes
from inferc.formats.registry import get_exporter
from inferc.formats.tensorrt import check_precisions, find_builder
from inferc.runtime.backends import open_backend
from inferc.runtime.torch_backend import TorchBackend

Progress = Callable[[str, int, int], None]
Step = Callable[[str], None]

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class BuildResult:
    out_dir: Path
    report: Report | None  # None on a rank other than 0 of a distributed build (it writes nothing)


@dataclass
class _Data:
    calibration: CalibrationSet | None
    eval_tokens: torch.Tensor | None  # [tokens] corpus stream, or [n, L] held-out samples
    eval_source: str
    eval_is_corpus: bool


def resolve_target(recipe: Recipe) -> tuple[Target, str | None]:
    if not recipe.target:
        raise InferCError("no target: pass --target (see `inferc targets`) or set 'target:' in the recipe")
    target = get_target(recipe.target)
    quant = recipe.quant or target.default_quant
    formats = tuple(e.format for e in recipe.export) or target.default_formats
    return target, target.check(quant, emulate=recipe.emulate, formats=formats)


@dataclass(frozen=True)
class ExportJob:
    """One export of the build: its format and options, whether the target added it on its
    own (optional: built when it can be, else skipped), and the reason it is skipped."""

    format: ExportFormat
    options: dict[str, Any]
    optional: bool = False
    skipped: str | None = None


# the quantized precisions a TensorRT engine of each --quant computes in
_ENGINE_PRECISIONS: dict[Quant, set[str]] = {Quant.FP8: {"fp8"}, Quant.NVFP4: {"nvfp4"}, Quant.AWQ: {"int4"},
                                             Quant.GPTQ: {"int4"}, Quant.RTN: {"int4"}}


def _check_engine(recipe: Recipe, target: Target) -> None:
    """A TensorRT engine for this target and quant: a builder that fits and tensor cores for
    its precisions, or the InferCError saying what is missing."""
    check_precisions(target.arch, _ENGINE_PRECISIONS.get(recipe.quant or target.default_quant, set()))
    find_builder(target.arch)


def plan_exports(recipe: Recipe, target: Target) -> list[ExportJob]:
    """The recipe's exports (or the target's defaults), then the target's optional ones.
    An explicit TensorRT export that cannot be built is refused here, before any weight is
    read; an optional one is kept with the reason it will be skipped."""
    jobs = []
    for spec in recipe.export or target.default_exports(recipe.quant):
        fmt = spec.format if hasattr(spec, "format") else spec["format"]
        options = {k: v for k, v in (vars(spec) if hasattr(spec, "format") else spec).items() if k != "format" and v is not None}
        if fmt is ExportFormat.TENSORRT:
            _check_engine(recipe, target)
            options["arch"] = target.arch
        jobs.append(ExportJob(fmt, options))
    for fmt in target.optional_formats:
        if any(j.format is fmt for j in jobs):
            continue
        assert fmt is ExportFormat.TENSORRT, fmt
        try:
            _check_engine(recipe, target)
            skipped = None
        except InferCError as exc:
            skipped = str(exc)
        jobs.append(ExportJob(fmt, {"arch": target.arch}, optional=True, skipped=skipped))
    return jobs


_HELD_OUT_SEED_OFFSET = 1_000_003


def _stream(dataset: str, recipe_part: Any, model_dir: Path) -> tuple[torch.Tensor, str]:
    tok = load_tokenizer(model_dir)
    split, text_field = getattr(recipe_part, "split", "train"), getattr(recipe_part, "text_field", "text")
    if dataset.startswith("hf:"):
        name, _, config = dataset[3:].partition(":")
        text = read_hf_dataset(name, split, config or None, text_field)
    else:
        text = read_text_file(dataset, text_field)
    return tokenize(tok, text), Path(dataset).name if not dataset.startswith("hf:") else dataset


def evaluation_tokens(
    ev: EvalConfig, ir: ModelIR, seed: int, device: str, progress: Progress | None = None
) -> tuple[torch.Tensor, str, bool]:
    """(tokens, description, is_corpus): the first ctx_len * chunks tokens of the corpus
    as one stream, or, with no corpus, held-out [n, L] samples of the model's own text
    (a seed distinct from calibration's)."""
    if ev.dataset:
        stream, name = _stream(ev.dataset, ev, ir.source.path)
        end = min(stream.numel(), ev.ctx_len * ev.chunks)
        return stream[:end], f"{name} tokens[0:{end}]", True
    held_out_seed = seed + _HELD_OUT_SEED_OFFSET
    n = min(ev.num_samples, ev.chunks)  # each sample is one chunk: sample no more than are scored
    tokens = sample_from_model(ir, n, ev.sample_len, seed=held_out_seed, device=device, progress=progress).tokens
    return tokens, f"held-out text sampled from the model (no corpus), {n}x{ev.sample_len} tokens, seed {held_out_seed}", False


def prepare_data(recipe: Recipe, plan: Plan, ir: ModelIR, device: str, progress: Progress | None = None) -> _Data:
    """Calibration and evaluation tokens. With the same corpus for both, calibration
    samples only from the tokens after the evaluation region (ctx_len * chunks tokens,
    whether or not this build evaluates), so they stay disjoint."""
    cal_cfg, ev = recipe.calibration, recipe.eval
    eval_tokens, eval_source, is_corpus = None, "", False
    if ev.enabled:
        eval_tokens, eval_source, is_corpus = evaluation_tokens(ev, ir, cal_cfg.seed, device, progress)
    calib = None
    if plan.needs_calibration:
        if cal_cfg.dataset:
            stream, name = _stream(cal_cfg.dataset, cal_cfg, ir.source.path)
            # the evaluation region is skipped even when this build does not evaluate, so a
            # later `inferc eval` on the same corpus scores tokens calibration never saw
            same = bool(ev.dataset) and Path(ev.dataset).resolve() == Path(cal_cfg.dataset).resolve()
            start = min(stream.numel(), ev.ctx_len * ev.chunks) if same else 0
            calib = sample_sequences(stream[start:], cal_cfg.num_sequences, cal_cfg.seq_len, cal_cfg.seed, f"{name} tokens[{start}:]")
        else:
            calib = sample_from_model(ir, cal_cfg.num_sequences, cal_cfg.seq_len, seed=cal_cfg.seed, device=device, progress=progress)
    return _Data(calib, eval_tokens, eval_source, is_corpus)


def _timed(records: list[PassRecord], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    with PeakMemory() as mem:
        out = fn()
    records.append(PassRecord(name, time.perf_counter() - start, max(mem.peak_rss, mem.peak_cuda) / 2**20))
    return out


def _export(model: ModelIR, jobs: list[ExportJob], root: Path, skipped: list[SkippedExport],
            announce: Step) -> list[tuple[ExportFormat, Path]]:
    """Each planned export by its registered exporter; an optional one that cannot be built
    is appended to `skipped` with the reason (and announced), never dropped silently."""
    out = []
    for job in jobs:
        reason = job.skipped
        if reason is None:
            try:
                out.append((job.format, get_exporter(job.format.value)(model, root, dict(job.options))))
                continue
            except InferCError as exc:
                if not job.optional:
                    raise
                reason = str(exc)
        skipped.append(SkippedExport(job.format.value, reason))
        announce(f"export {job.format.value}: skipped ({reason})")
    return out


def build(
    recipe: Recipe,
    out_dir: Path,
    model_dir: Path | None = None,
    force: bool = False,
    device: str = "cpu",
    progress: Progress | None = None,
    step: Step | None = None,
    imatrix: Path | None = None,
    reducer: Reducer | None = None,
) -> BuildResult:
    """Run a whole build. Raises InferCError subclasses for bad input; raises
    BuildGateError (carrying the result) after the artifact is written when a gate fails.
    `out_dir` is locked from the plan step to the end; `force` replaces only an empty
    folder or an inferc artifact (see compiler/outdir.py). With a distributed `reducer`,
    every rank calls this; only rank 0 touches `out_dir`."""
    announce = step or (lambda _s: None)
    records: list[PassRecord] = []
    reducer = reducer or Reducer(recipe.calibration.shards)

    announce("plan")
    target, emulation_note = _timed(records, "plan", lambda: resolve_target(recipe))
    plan = make_plan(recipe)
    imatrix_entries = check_build_inputs(recipe, plan, device, imatrix)
    jobs = plan_exports(recipe, target)
    out_dir = Path(out_dir)
    if not reducer.is_main:
        _build_into(None, recipe, plan, target, emulation_note, model_dir, device, progress, announce, imatrix, imatrix_entries,
                    records, reducer, jobs)
        return BuildResult(out_dir, None)
    with OutputDir(out_dir, force) as out:
        report = _build_into(out.temporary, recipe, plan, target, emulation_note, model_dir, device, progress, announce,
                             imatrix, imatrix_entries, records, reducer, jobs)
        out.commit()
    result = BuildResult(out_dir, report)
    failed = [g.name for g in report.gates if not g.passed]
    if failed:
        raise BuildGateError(result, f"gates failed: {', '.join(failed)} (artifact written to {out_dir}; see its report.md)")
    return result


def _build_into(
    tmp: Path,
    recipe: Recipe,
    plan: Plan,
    target: Target,
    emulation_note: str | None,
    model_dir: Path | None,
    device: str,
    progress: Progress | None,
    announce: Step,
    imatrix: Path | None,
    imatrix_entries: dict | None,
    records: list[PassRecord],
    reducer: Reducer,
    jobs: list[ExportJob],
) -> Report | None:
    """Every step after plan, writing the artifact into the (empty) folder tmp; on a rank
    other than 0 (tmp None) only up to the end of the passes."""
    announce("load")
    if model_dir is None and recipe.model:
        model_dir = Path(recipe.model)
    model_label = str(model_dir) if model_dir else f"{DEFAULT_MODEL_NAME} (embedded default)"
    if model_dir is None:
        model_dir = _timed(records, "prepare default model", ensure_default_model)
    ir = _timed(records, "load", lambda: load_checkpoint(model_dir))
    check_plan(plan, ir)
    importance = importance_for(imatrix_entries, ir.graph.shapes, Path(imatrix)) if imatrix_entries is not None else None

    announce("data")
    if reducer.is_main:
        data = _timed(records, "data", lambda: prepare_data(recipe, plan, ir, device, progress))
    else:
        data = _Data(None, None, "", False)
    if plan.needs_calibration and reducer.world_size > 1:
        data.calibration = reducer.broadcast_calibration(data.calibration)
    ctx = PassContext(device=device, calibration=data.calibration, progress=progress, importance=importance, reducer=reducer)
    if data.calibration is not None:
        calib = data.calibration
        ctx._stats_factory = lambda: collect_activation_stats(ir, calib, device, recipe.calibration.batch_size, progress, reducer)
        if Requirement.ACTIVATION_STATS in plan.requirements:
            announce("calibrate")
            _timed(records, "calibrate", ctx.activation_stats)

    announce("passes")
    ir, pass_records = run_plan(plan, ir, ctx)
    records += [PassRecord(f"pass {r.name}", r.seconds, max(r.peak_rss_mb, r.peak_cuda_mb)) for r in pass_records]
    if reducer.world_size > 1:
        reducer.agree(model_digest(ir), "quantized model")
    if tmp is None:
        return None

    announce("export")
    skipped: list[SkippedExport] = []
    exports = _timed(records, "export", lambda: _export(ir, jobs, tmp, skipped, announce))
    quality, speed = None, None
    if recipe.eval.enabled and exports:
        announce("evaluate")
        base_ir = load_checkpoint(model_dir, validate=False)  # the unquantized reference
        quality, speed = _timed(records, "evaluate", lambda: _evaluate(recipe, base_ir, exports[0], data, device, progress))
    report = Report(
        model=model_label,
        architecture=f"{ir.spec.model_type} ({ir.num_parameters():,} parameters)",
        target=f"{target.name} ({target.arch})" + (f"; {emulation_note}" if emulation_note else ""),
        recipe=f"{recipe.name} ({recipe.source})",
        calibration=CalibrationInfo(data.calibration.source, data.calibration.sha256(), data.calibration.num_sequences,
                                    data.calibration.seq_len) if data.calibration else None,
        passes=records,
        events=[EventRecord(e.pass_name, e.tensor, e.kind, e.detail) for e in ctx.events]
        + [EventRecord("plan", n, "unquantized", why) for n, why in ir.unquantized.items()],
        quality=quality,
        quality_note="" if data.eval_is_corpus else "no corpus given: scored on held-out text sampled from the model itself",
        speed=speed,
        speed_note=reference_speed_note(speed, target.name),
        sizes=size_info(ir, [p for f, p in exports if f is not ExportFormat.TENSORRT]),
        skipped_exports=skipped,
        exports=[_export_record(f, p, tmp) for f, p in exports],
    )
    report.gates = evaluate_gates(recipe.gates, quality, speed, report.sizes)
    (tmp / REPORT_JSON).write_text(to_json(report))
    (tmp / REPORT_MD).write_text(render_markdown(report))
    manifest = make_manifest(
        tmp, recipe.to_dict(), target.name,
        {"path": str(ir.source.path), "name": model_label, "sha256": ir.source.sha256},
        {"source": data.calibration.source, "sha256": data.calibration.sha256()} if data.calibration else None,
    )
    manifest["exports"] = [_manifest_entry(f, p, tmp) for f, p in exports] + [{"format": s.format, "skipped": s.reason}
                                                                                for s in skipped]
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return report


def model_digest(ir: ModelIR) -> str:
    """sha256 of what the passes computed: quantized weights, activation scales and the
    tensors held in memory (AWQ's folded norms); file-backed tensors are the checkpoint's."""
    h = hashlib.sha256()

    def add(key: str, t: torch.Tensor | None) -> None:
        h.update(key.encode())
        if t is not None:
            t = t.detach().cpu().contiguous()
            h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    for name in sorted(ir.weights):
        qw = ir.weights[name]
        for f in ("data", "scale", "zero_point", "global_scale", "g_idx"):
            add(f"{name}.{f}", getattr(qw, f))
    for name in sorted(ir.activations):
        add(f"{name}.act_scale", ir.activations[name].scale)
        add(f"{name}.act_global_scale", ir.activations[name].global_scale)
    for name in sorted(ir.tensors.in_memory()):
        add(name, ir.tensors.get(name))
    return h.hexdigest()


def _export_record(fmt: ExportFormat, path: Path, root: Path) -> ExportRecord:
    """What an export holds, for the report; an engine says how it was built."""
    if fmt is not ExportFormat.TENSORRT:
        return ExportRecord(fmt.value, path.relative_to(root).as_posix())
    from inferc.formats.tensorrt.constants import BUILD_INFO_FILE, ENGINE_FILE

    info = json.loads((path / BUILD_INFO_FILE).read_text())
    detail = (f"{info['engine_bytes'] / 2**20:.1f} MiB engine for {info['compute_capability']} by "
              f"{info['builder']['flavour']} {info['builder']['version']} in {info['build_seconds']:.1f} s")
    return ExportRecord(fmt.value, (path / ENGINE_FILE).relative_to(root).as_posix(), detail)


def _manifest_entry(fmt: ExportFormat, path: Path, root: Path) -> dict[str, Any]:
    entry = {"format": fmt.value, "path": path.relative_to(root).as_posix()}
    if fmt is ExportFormat.TENSORRT:
        from inferc.formats.tensorrt.constants import BUILD_INFO_FILE, ENGINE_FILE

        entry.update(engine=(path / ENGINE_FILE).relative_to(root).as_posix(),
                     build_info=(path / BUILD_INFO_FILE).relative_to(root).as_posix())
    return entry


class BuildGateError(GateFailedError):
    """A gate failed; the artifact and its report are written and carried here."""

    def __init__(self, result: BuildResult, message: str) -> None:
        super().__init__(message)
        self.result = result


def _evaluate(recipe: Recipe, base_ir: ModelIR, export: tuple[ExportFormat, Path], data: _Data, device: str, progress: Progress | None):
    ev = recipe.eval
    reference = TorchBackend(base_ir, device=device, quantized=False)
    candidate = open_backend(export[1], device)  # the exported bytes, not the in-memory IR
    method = ev.method if data.eval_is_corpus else "full"  # held-out samples: score every position
    try:
        quality = compare_logits(reference, candidate, data.eval_tokens, ctx_len=ev.ctx_len, n_chunks=ev.chunks,
                                 method=method, source=data.eval_source, progress=progress)
        speed = None
        if ev.speed.enabled:
            speed = measure_speed(candidate, prompt_len=ev.speed.prompt_len, gen_len=ev.speed.gen_len, repeats=ev.speed.repeats,
                                  device=device)
    finally:
        candidate.close()
        reference.close()
    return quality, speed


def size_info(ir: ModelIR, paths: list[Path]) -> SizeInfo:
    """Artifact bytes, and bits per weight over the tensor data of the weight files
    (safetensors, GGUF; see runtime/speed.py for the definition)."""
    weight_files = [f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.suffix in (".safetensors", ".gguf", ".data")]
    weight_bytes = tensor_data_bytes(weight_files)
    n = ir.num_parameters()
    return SizeInfo(artifact_bytes=artifact_size(paths), weight_bytes=weight_bytes, n_weights=n,
                    bits_per_weight=bits_per_weight(weight_bytes, n))


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (Quant, ExportFormat)):
        return o.value
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")

