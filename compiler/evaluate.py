"""`inferc eval`: run an existing artifact through its runtime backend and compare it
with its unquantized reference, in the same report format as `inferc build`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from inferc.compiler.build import evaluation_tokens
from inferc.core.errors import CheckpointError, InferCError, UnsupportedError
from inferc.compiler.manifest import MANIFEST_FILE
from inferc.compiler.preflight import check_dataset, check_device
from inferc.compiler.recipe import EvalConfig
from inferc.formats.hf.reader import load_checkpoint
from inferc.runtime.report import Report, reference_speed_note


def _resolve(artifact: Path, reference: Path | None, export: str | None = None) -> tuple[str, Path, Path]:
    """(kind, candidate path, reference checkpoint dir) for an artifact directory (its first
    export, or the one of format `export`), an HF checkpoint directory or a .gguf file."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise CheckpointError(f"'{artifact}' does not exist; pass an artifact directory, a checkpoint directory or a .gguf file")
    if artifact.is_dir() and (artifact / MANIFEST_FILE).is_file():
        manifest = json.loads((artifact / MANIFEST_FILE).read_text())
        exports = manifest.get("exports") or []
        if not exports:
            raise CheckpointError(f"artifact '{artifact}' lists no exported formats in its {MANIFEST_FILE}")
        first = exports[0]
        if export is not None:
            chosen = [e for e in exports if e["format"] == export]
            if not chosen:
                raise CheckpointError(f"artifact '{artifact}' has no '{export}' export; it has: "
                                      f"{', '.join(e['format'] for e in exports)}")
            first = chosen[0]
            if "skipped" in first:
                raise UnsupportedError(f"artifact '{artifact}': its {export} export was skipped at build time: {first['skipped']}")
        ref = reference or Path(manifest["source"]["path"])
        return first["format"], artifact / first["path"], ref
    if reference is None:
        raise InferCError(f"'{artifact}' is not an inferc artifact (no {MANIFEST_FILE}); pass --reference with the unquantized checkpoint")
    if artifact.is_file() and artifact.suffix == ".gguf":
        return "gguf", artifact, reference
    return "hf", artifact, reference


def evaluate_artifact(
    artifact: Path,
    reference: Path | None,
    dataset: str | None,
    ctx_len: int,
    chunks: int,
    method: str,
    speed: bool,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
    step: Callable[[str], None] | None = None,
    export: str | None = None,
) -> Report:
    """Score an artifact against its reference; `step` is told each stage as it starts
    (load, data, quality, speed) and `progress` how far the long ones have got."""
    from inferc.runtime.evaluate import compare_logits
    from inferc.runtime.speed import measure_speed
    from inferc.runtime.backends import open_backend
    from inferc.runtime.torch_backend import TorchBackend

    announce = step or (lambda _s: None)
    ev = EvalConfig(dataset=dataset, ctx_len=ctx_len, chunks=chunks, method=method)  # type: ignore[arg-type]
    check_device(device)
    if dataset:
        check_dataset(dataset, "evaluation")
    kind, path, ref_dir = _resolve(artifact, reference, export)
    announce("load")
    ref_ir = load_checkpoint(ref_dir)
    announce("data")
    tokens, source, is_corpus = evaluation_tokens(ev, ref_ir, seed=0, device=device, progress=progress)
    candidate = open_backend(path, device)
    reference_backend = TorchBackend(ref_ir, device=device, quantized=False)
    try:
        announce("quality")
        quality = compare_logits(reference_backend, candidate, tokens, ctx_len=ctx_len, n_chunks=chunks,
                                 method=method if is_corpus else "full", source=source, progress=progress)
        spd = None
        if speed:
            announce("speed")
            spd = measure_speed(candidate, device=device)
    finally:
        candidate.close()
        reference_backend.close()
    return Report(
        model=str(artifact),
        architecture=ref_ir.spec.model_type,
        target=f"{candidate.name} backend",
        recipe="-",
        quality=quality,
        quality_note="" if is_corpus else "no corpus given: scored on held-out text sampled from the reference model",
        speed=spd,
        speed_note=reference_speed_note(spd),
    )
