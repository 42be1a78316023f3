"""The build/eval report (`report.json`, `report.md`, the CLI's summary table) and the
recipe gates checked against it.

Gates (recipe `gates:` mapping, name -> threshold):

    ppl_increase_pct   max   perplexity increase over the reference, percent
    kld_max            max   mean KL(reference || candidate) per token, nats
    top1_min           min   top-1 agreement with the reference, a fraction (0.97)
    decode_tok_s_min   min   decode tokens/s (median over repeats)
    prefill_tok_s_min  min   prefill tokens/s (median over repeats)
    size_mb_max        max   artifact size, MiB (2**20 bytes)

A gate whose measurement is absent (e.g. a speed gate when speed was not measured)
fails with "not measured": a CI gate never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from inferc.core.errors import RecipeError
from inferc.runtime.evaluate import QualityResult
from inferc.runtime.speed import SpeedResult

REPORT_VERSION = 1


@dataclass(frozen=True)
class SizeInfo:
    artifact_bytes: int  # every file of the artifact
    weight_bytes: int  # the tensor data of the weight files (codes, scales), headers not counted
    n_weights: int  # parameters those bytes encode
    bits_per_weight: float  # 8 * weight_bytes / n_weights (runtime/speed.py: the one definition)

    @property
    def artifact_mb(self) -> float:
        return self.artifact_bytes / 2**20


@dataclass(frozen=True)
class CalibrationInfo:
    source: str  # e.g. "wiki.train.raw, 128x512 tokens, seed 0" or "sampled from the model (no corpus) ..."
    sha256: str  # of the calibration token ids
    num_sequences: int
    seq_len: int


@dataclass(frozen=True)
class PassRecord:
    name: str
    seconds: float
    peak_memory_mb: float


@dataclass(frozen=True)
class EventRecord:
    """A per-layer event (fallback, layer left unquantized, ...) from a pass."""

    pass_name: str
    tensor: str
    kind: str
    detail: str


@dataclass(frozen=True)
class ExportRecord:
    """An export the build wrote: its format, its path in the artifact, and what it holds."""

    format: str
    path: str
    detail: str = ""


@dataclass(frozen=True)
class SkippedExport:
    """An export the target adds on its own (a TensorRT engine) that could not be built here."""

    format: str
    reason: str


@dataclass(frozen=True)
class GateResult:
    name: str
    threshold: float
    direction: str  # "max" or "min"
    measured: float | None  # None: not measured
    passed: bool
    detail: str


@dataclass
class Report:
    model: str  # name or path of the source model
    architecture: str
    target: str
    recipe: str
    calibration: CalibrationInfo | None = None
    passes: list[PassRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    quality: QualityResult | None = None
    quality_note: str = ""  # e.g. "measured on held-out samples from the model: no corpus given"
    speed: SpeedResult | None = None
    speed_note: str = ""  # e.g. "measured on cpu by the torch reference runtime, not on the h100"
    sizes: SizeInfo | None = None
    gates: list[GateResult] = field(default_factory=list)
    skipped_exports: list[SkippedExport] = field(default_factory=list)
    exports: list[ExportRecord] = field(default_factory=list)

    @property
    def gates_passed(self) -> bool:
        return all(g.passed for g in self.gates)


# ---- gates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateSpec:
    direction: str  # "max": measured <= threshold passes; "min": measured >= threshold
    description: str
    measure: Callable[[QualityResult | None, SpeedResult | None, SizeInfo | None], float | None]


KNOWN_GATES: dict[str, GateSpec] = {
    "ppl_increase_pct": GateSpec("max", "perplexity increase over the reference, percent",
                                 lambda q, s, z: q.ppl_increase_pct if q else None),
    "kld_max": GateSpec("max", "mean KL divergence from the reference per token, nats",
                        lambda q, s, z: q.kld_mean if q else None),
    "top1_min": GateSpec("min", "top-1 agreement with the reference, a fraction in [0, 1]",
                         lambda q, s, z: q.top1 if q else None),
    "decode_tok_s_min": GateSpec("min", "decode tokens per second", lambda q, s, z: s.decode_tok_s if s else None),
    "prefill_tok_s_min": GateSpec("min", "prefill tokens per second", lambda q, s, z: s.prefill_tok_s if s else None),
    "size_mb_max": GateSpec("max", "artifact size in MiB", lambda q, s, z: z.artifact_mb if z else None),
}


def validate_gates(gates: dict[str, Any], where: str = "gates") -> dict[str, float]:
    """Check names and values of a recipe's gates -> {name: threshold}; raises RecipeError."""
    if not isinstance(gates, dict):
        raise RecipeError(f"{where}: expected a mapping of gate name to threshold, found {gates!r}")
    out = {}
    for name, value in gates.items():
        if name not in KNOWN_GATES:
            raise RecipeError(f"{where}: unknown gate '{name}'; known gates: {', '.join(sorted(KNOWN_GATES))}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RecipeError(f"{where}: gate '{name}' needs a finite number ({KNOWN_GATES[name].description}), found {value!r}")
        if name == "top1_min" and not 0.0 <= value <= 1.0:
            raise RecipeError(f"{where}: gate 'top1_min' is a fraction in [0, 1] (e.g. 0.97), found {value!r}")
        out[name] = float(value)
    return out


def evaluate_gates(
    gates: dict[str, Any],
    quality: QualityResult | None,
    speed: SpeedResult | None,
    sizes: SizeInfo | None = None,
) -> list[GateResult]:
    """Each gate against the measurements; a gate whose measurement is missing fails."""
    results = []
    for name, threshold in validate_gates(gates).items():
        spec = KNOWN_GATES[name]
        measured = spec.measure(quality, speed, sizes)
        if measured is None:
            results.append(GateResult(name, threshold, spec.direction, None, False, f"not measured ({spec.description})"))
            continue
        ok = measured <= threshold if spec.direction == "max" else measured >= threshold
        op = "<=" if spec.direction == "max" else ">="
        detail = f"{measured:.4g} {op} {threshold:.4g}" if ok else f"{measured:.4g} violates {op} {threshold:.4g}"
        results.append(GateResult(name, threshold, spec.direction, float(measured), ok, detail))
    return results


# ---- rendering -----------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def to_json(report: Report) -> str:
    data = {"version": REPORT_VERSION, **_plain(report), "gates_passed": report.gates_passed}
    return json.dumps(data, indent=2) + "\n"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines + [""]


def _quality_rows(q: QualityResult) -> list[tuple[str, str]]:
    return [
        ("perplexity (reference)", f"{q.reference.ppl:.4f} ± {q.reference.ppl_stderr:.4f}"),
        ("perplexity (this artifact)", f"{q.candidate.ppl:.4f} ± {q.candidate.ppl_stderr:.4f}"),
        ("perplexity increase", f"{q.ppl_increase_pct:+.3f} %"),
        ("KL divergence mean / p99 / max", f"{q.kld_mean:.5f} / {q.kld_p99:.5f} / {q.kld_max:.5f}"),
        ("top-1 agreement", f"{100 * q.top1:.2f} %"),
        ("tokens scored", f"{q.tokens_scored} ({q.reference.chunks} x {q.reference.ctx_len}, method {q.reference.method})"),
    ]


def _speed_rows(s: SpeedResult) -> list[tuple[str, str]]:
    return [
        ("prefill", f"{s.prefill_tok_s:.1f} tok/s ({s.prompt_len}-token prompt)"),
        ("decode", f"{s.decode_tok_s:.1f} tok/s ({s.gen_len} tokens)"),
        ("time to first token p50 / p95", f"{s.ttft_ms_p50:.1f} / {s.ttft_ms_p95:.1f} ms"),
        ("time per output token p50 / p95", f"{s.tpot_ms_p50:.2f} / {s.tpot_ms_p95:.2f} ms"),
        (s.memory_label, f"{s.peak_memory_mb:.0f} MiB ({s.memory_scope})"),
    ]


def reference_speed_note(speed: SpeedResult | None, target: str | None = None) -> str:
    """What a speed measured by the torch reference runtime is not: the target's speed."""
    if speed is None or speed.backend != "torch":
        return ""
    on = f"the {target}'s kernels" if target else "a deployment kernel"
    return (f"measured on {speed.device} by the torch reference runtime, which computes with dequantized weights and "
            f"fake-quantized activations: not the speed of {on}")


def _scored(q: QualityResult) -> str:
    r = q.reference
    return f"{q.tokens_scored} tokens ({r.chunks} x {r.ctx_len}, method {r.method}) of {q.source}"


def event_groups(events: list[EventRecord]) -> list[tuple[EventRecord, int, list[str]]]:
    """Events that say the same thing (pass, kind, detail), once each with their count and
    tensors, in order of first appearance."""
    groups: dict[tuple[str, str, str], tuple[EventRecord, list[str]]] = {}
    for e in events:
        groups.setdefault((e.pass_name, e.kind, e.detail), (e, []))[1].append(e.tensor)
    return [(first, len(tensors), tensors) for first, tensors in groups.values()]


def _event_kinds(events: list[EventRecord]) -> str:
    counts: dict[str, int] = {}
    for e in events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in counts.items())


def _tensor_list(tensors: list[str], shown: int = 3) -> str:
    names = ", ".join(f"`{t}`" for t in tensors[:shown])
    return names + (f" and {len(tensors) - shown} more" if len(tensors) > shown else "")


def render_markdown(report: Report) -> str:
    r = report
    out = [f"# inferc build report: {r.model}", ""]
    out += _table(("", ""), [("architecture", r.architecture), ("target", r.target), ("recipe", r.recipe)])
    if r.calibration:
        c = r.calibration
        out += ["## Calibration", ""] + _table(("", ""), [
            ("source", c.source), ("sequences", f"{c.num_sequences} x {c.seq_len} tokens"), ("sha256", f"`{c.sha256}`"),
        ])
    if r.passes:
        out += ["## Passes", ""] + _table(("pass", "time (s)", "peak memory (MiB, process RSS)"),
                                          [(p.name, f"{p.seconds:.2f}", f"{p.peak_memory_mb:.0f}") for p in r.passes])
    if r.events:
        out += [f"## Per-layer events ({_event_kinds(r.events)}; every tensor in report.json)", ""] + _table(
            ("pass", "kind", "detail", "count", "tensors"),
            [(e.pass_name, e.kind, e.detail, str(n), _tensor_list(tensors)) for e, n, tensors in event_groups(r.events)])
    if r.exports:
        out += ["## Exports", ""] + _table(("format", "path", ""), [(e.format, f"`{e.path}`", e.detail) for e in r.exports])
    if r.skipped_exports:
        out += ["## Skipped exports", ""] + _table(("format", "reason"), [(s.format, s.reason) for s in r.skipped_exports])
    if r.quality:
        out += ["## Quality", ""] + ([r.quality_note, ""] if r.quality_note else [])
        out += [f"Scored: {_scored(r.quality)}", ""] + _table(("metric", "value"), _quality_rows(r.quality))
    if r.speed:
        out += [f"## Speed ({r.speed.backend} backend on {r.speed.device}, {r.speed.repeats} runs)", ""]
        out += ([r.speed_note, ""] if r.speed_note else []) + _table(("metric", "value"), _speed_rows(r.speed))
    if r.sizes:
        z = r.sizes
        out += ["## Size", ""] + _table(("", ""), [
            ("artifact", f"{z.artifact_mb:.2f} MiB ({z.artifact_bytes} bytes)"),
            ("tensor data", f"{z.weight_bytes} bytes for {z.n_weights} parameters"),
            ("bits per weight", f"{z.bits_per_weight:.3f} (tensor data bytes x 8 / parameters; file headers and metadata not counted)"),
        ])
    if r.gates:
        verdict = "all passed" if r.gates_passed else "FAILED"
        out += [f"## Gates: {verdict}", ""] + _table(("gate", "threshold", "measured", "result"), [
            (g.name, f"{g.direction} {g.threshold:g}", "—" if g.measured is None else f"{g.measured:.4g}",
             ("pass" if g.passed else "FAIL") + f": {g.detail}") for g in r.gates])
    return "\n".join(out)


def summary_rows(report: Report) -> list[tuple[str, str]]:
    """(label, value) rows for the CLI's terminal table."""
    r = report
    rows = [("model", r.model), ("target", r.target), ("recipe", r.recipe)]
    if r.calibration:
        rows.append(("calibration", r.calibration.source))
    if r.passes:
        rows.append(("build time", f"{sum(p.seconds for p in r.passes):.1f} s"))
    if r.events:
        rows.append(("per-layer events", f"{_event_kinds(r.events)} (report.md)"))
    for e in r.exports:
        if e.detail:
            rows.append((f"{e.format} export", f"{e.path}: {e.detail}"))
    for s in r.skipped_exports:
        rows.append((f"{s.format} export", f"skipped: {s.reason}"))
    if r.quality:
        q = r.quality
        rows += [
            ("scored", _scored(q)),
            ("perplexity", f"{q.reference.ppl:.3f} -> {q.candidate.ppl:.3f} ({q.ppl_increase_pct:+.2f} %)"),
            ("KL divergence (mean)", f"{q.kld_mean:.5f}"),
            ("top-1 agreement", f"{100 * q.top1:.2f} %"),
        ]
        if r.quality_note:
            rows.append(("quality data", r.quality_note))
    if r.speed:
        s = r.speed
        rows += [(f"prefill / decode ({s.backend} on {s.device})", f"{s.prefill_tok_s:.1f} / {s.decode_tok_s:.1f} tok/s"),
                 ("TTFT / TPOT p50", f"{s.ttft_ms_p50:.1f} / {s.tpot_ms_p50:.2f} ms"),
                 (s.memory_label, f"{s.peak_memory_mb:.0f} MiB")]
        if r.speed_note:
            rows.append(("speed data", r.speed_note))
    if r.sizes:
        rows.append(("size", f"{r.sizes.artifact_mb:.2f} MiB, {r.sizes.bits_per_weight:.2f} bits/weight"))
    for g in r.gates:
        rows.append((f"gate {g.name}", ("pass" if g.passed else "FAIL") + f" ({g.detail})"))
    return rows
