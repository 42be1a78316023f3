"""Recipes: versioned YAML build descriptions, validated into typed objects.

    version: 1
    name: fp8
    quant: fp8
    target: h100              # optional: `--target` sets or overrides it
    calibration: {dataset: null, num_sequences: 32, seq_len: 512, seed: 0}
    pipeline:
      - pass: quantize_fp8
        options: {per_channel: true, activations: static}
    export: [{format: hf, layout: compressed-tensors}]
    eval: {dataset: null, ctx_len: 512, chunks: 40, method: half}
    gates: {ppl_increase_pct: 2.0, kld_max: 0.05}

`dataset: null` means "no corpus": calibration and evaluation use seeded text sampled
from the model itself. Every unknown key or bad value is an error naming the key,
the allowed values and its line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from inferc.core.errors import RecipeError
from inferc.core.schema import build_dataclass, coerce_value
from inferc.compiler.targets import ExportFormat, Quant

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CalibrationConfig:
    dataset: str | None = None  # .txt/.raw/.jsonl path, "hf:<name>[:<config>]", or null (sample the model)
    split: str = "train"
    text_field: str = "text"
    num_sequences: int = 32
    seq_len: int = 512
    seed: int = 0
    batch_size: int = 4
    # contiguous slices whose statistics are summed apart and added in order: a build on
    # up to this many ranks (torch.distributed) computes the same statistics as on one
    shards: int = 8

    def __post_init__(self) -> None:
        if self.num_sequences < 1 or self.seq_len < 2 or self.batch_size < 1:
            raise ValueError(f"calibration needs num_sequences >= 1, seq_len >= 2 and batch_size >= 1, found {self.num_sequences}, {self.seq_len}, {self.batch_size}")
        if self.shards < 1:
            raise ValueError("calibration.shards must be at least 1")


@dataclass(frozen=True)
class PassSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    options_lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ExportSpec:
    format: ExportFormat
    layout: Literal["compressed-tensors", "modelopt"] = "compressed-tensors"
    # onnx only: which operators (ort: ONNX Runtime's fused ones; standard: opset 21 only;
    # tensorrt: opset 23 for TensorRT's parser); onnx: activations and dense weights (fp32,
    # fp16; default fp32; tensorrt: fp16); gguf: the tensors left unquantized (fp32, fp16,
    # bf16; default fp16); MatMulNBits' accuracy_level (0 unset, 1 fp32 ... 4 int8), and an
    # unquantized LM head kept dense or rounded into an 8- or 4-bit MatMulNBits (ort)
    flavour: Literal["ort", "standard", "tensorrt"] = "ort"
    dtype: Literal["fp32", "fp16", "bf16"] | None = None
    accuracy_level: int = 0
    lm_head: Literal["dense", "int8", "int4"] = "dense"
    # tensorrt only: the optimization profiles' extents (batch, prefill tokens, decode context)
    max_batch: int | None = None
    max_seq_len: int | None = None
    max_context: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.format is ExportFormat.ONNX:
            return {"format": self.format.value, "flavour": self.flavour, "dtype": self.dtype or "fp32",
                    "accuracy_level": self.accuracy_level, "lm_head": self.lm_head}
        if self.format is ExportFormat.TENSORRT:
            return {"format": self.format.value, "dtype": self.dtype or "fp16", "max_batch": self.max_batch,
                    "max_seq_len": self.max_seq_len, "max_context": self.max_context}
        if self.format is ExportFormat.GGUF:
            return {"format": self.format.value, "dtype": self.dtype or "fp16"}
        return {"format": self.format.value, "layout": self.layout}


@dataclass(frozen=True)
class SpeedConfig:
    enabled: bool = True
    prompt_len: int = 128
    gen_len: int = 32
    repeats: int = 3

    def __post_init__(self) -> None:
        if self.prompt_len < 1 or self.gen_len < 2 or self.repeats < 1:
            raise ValueError(f"speed needs prompt_len >= 1, gen_len >= 2 and repeats >= 1, found {self.prompt_len}, {self.gen_len}, {self.repeats}")


@dataclass(frozen=True)
class EvalConfig:
    enabled: bool = True
    dataset: str | None = None  # as calibration.dataset; null: held-out samples of the model
    ctx_len: int = 512
    chunks: int = 40
    method: Literal["half", "full"] = "half"
    num_samples: int = 8  # held-out sequences when sampling the model (no corpus)
    sample_len: int = 256
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError(f"eval needs chunks >= 1 (chunks of ctx_len tokens scored), found {self.chunks}")
        if self.ctx_len < 2 or self.num_samples < 1 or self.sample_len < 2:
            raise ValueError(f"eval needs ctx_len >= 2, num_samples >= 1 and sample_len >= 2, found {self.ctx_len}, {self.num_samples}, {self.sample_len}")


@dataclass(frozen=True)
class Recipe:
    version: int
    name: str
    description: str = ""
    quant: Quant | None = None
    target: str | None = None
    emulate: bool = False
    model: str | None = None
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    pipeline: tuple[PassSpec, ...] = ()
    export: tuple[ExportSpec, ...] = ()
    eval: EvalConfig = field(default_factory=EvalConfig)
    gates: dict[str, float] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    def with_overrides(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe as plain data (for the manifest and `recipe show`)."""
        return {
            "version": self.version,
            "name": self.name,
            "description": self.description,
            "quant": self.quant.value if self.quant else None,
            "target": self.target,
            "emulate": self.emulate,
            "model": self.model,
            "calibration": dataclasses.asdict(self.calibration),
            "pipeline": [{"pass": p.name, "options": dict(p.options)} for p in self.pipeline],
            "export": [e.to_dict() for e in self.export],
            "eval": dataclasses.asdict(self.eval),
            "gates": dict(self.gates),
        }


# ---- YAML with line numbers ------------------------------------------------------------


class _LineDict(dict):
    lines: dict[str, int]


class _LineList(list):
    lines: list[int]


# Recipes are plain data: a node may carry only the tags plain YAML resolves to.
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "str", "int", "float", "bool", "null", "timestamp")}


def _plain(node: yaml.Node) -> Any:
    _check_tag(node)
    if isinstance(node, yaml.MappingNode):
        out = _LineDict()
        out.lines = {}
        for key_node, value_node in node.value:
            _check_tag(key_node)
            key = key_node.value
            if key in out:
                raise RecipeError(f"line {key_node.start_mark.line + 1}: duplicate key '{key}'")
            out[key] = _plain(value_node)
            out.lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = _LineList(_plain(v) for v in node.value)
        seq.lines = [v.start_mark.line + 1 for v in node.value]
        return seq
    return yaml.SafeLoader(" ").construct_object(node)  # scalars, typed as YAML says


def _check_tag(node: yaml.Node) -> None:
    if node.tag not in _PLAIN_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise RecipeError(
            f"line {node.start_mark.line + 1}: the YAML tag '{tag}' is not allowed; a recipe holds plain mappings, lists, "
            "strings, numbers, booleans and null"
        )


def _load_yaml(text: str, where: str) -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise RecipeError(f"{where}:{line} is not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if node is None:
        raise RecipeError(f"{where}: the recipe is empty")
    try:
        return _plain(node)
    except RecipeError as exc:
        raise RecipeError(f"{where}: {exc}") from None


def _lines(value: Any) -> dict[str, int]:
    return getattr(value, "lines", {}) if isinstance(value, dict) else {}


# ---- validation ---------------------------------------------------------------------------


def _pipeline(items: Any, where: str, line: int | None) -> tuple[PassSpec, ...]:
    if not isinstance(items, list):
        raise RecipeError(f"{where}pipeline (line {line}): expected a list of passes")
    specs = []
    for i, item in enumerate(items):
        item_line = items.lines[i] if isinstance(items, _LineList) else None
        at = f"{where}pipeline[{i}] (line {item_line})"
        if not isinstance(item, dict) or "pass" not in item:
            raise RecipeError(f"{at}: expected a mapping with a 'pass' key, e.g. '- pass: quantize_fp8'")
        unknown = set(item) - {"pass", "options"}
        if unknown:
            raise RecipeError(f"{at}: unknown key '{sorted(unknown)[0]}'; allowed: pass, options")
        options = item.get("options") or {}
        if not isinstance(options, dict):
            raise RecipeError(f"{at}: 'options' must be a mapping")
        specs.append(PassSpec(str(item["pass"]), dict(options), _lines(options)))
    return tuple(specs)


def parse_recipe(data: Any, where: str = "recipe") -> Recipe:
    """Validate plain YAML data into a Recipe (pass options are checked by `plan`)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping at the top level")
    lines = _lines(data)
    prefix = f"{where}: "
    version = data.get("version")
    if version != SCHEMA_VERSION:
        raise RecipeError(f"{where}: 'version' must be {SCHEMA_VERSION} (the recipe schema version), found {version!r} (line {lines.get('version', 1)})")
    allowed = {f.name for f in dataclasses.fields(Recipe)} - {"source"}
    for key in data:
        if key not in allowed:
            raise RecipeError(f"{prefix}unknown key '{key}' (line {lines.get(key)}); allowed: {', '.join(sorted(allowed))}")
    kwargs: dict[str, Any] = {"source": where}
    for key, value in data.items():
        at = f"{prefix}{key}"
        if key == "pipeline":
            kwargs[key] = _pipeline(value, prefix, lines.get(key))
        elif key == "export":
            if not isinstance(value, list):
                raise RecipeError(f"{at} (line {lines.get(key)}): expected a list such as [{{format: hf}}]")
            kwargs[key] = tuple(build_dataclass(ExportSpec, v, f"{at}[{i}]", _lines(v)) for i, v in enumerate(value))
        elif key == "calibration":
            kwargs[key] = build_dataclass(CalibrationConfig, value, at, _lines(value))
        elif key == "eval":
            value = dict(value or {})
            speed = value.pop("speed", None)
            ev = build_dataclass(EvalConfig, value, at, _lines(data[key]))
            kwargs[key] = dataclasses.replace(ev, speed=build_dataclass(SpeedConfig, speed, f"{at}.speed", _lines(speed)))
        elif key == "gates":
            kwargs[key] = _gates(value, at, lines.get(key))
        else:
            kwargs[key] = coerce_value(value, _RECIPE_HINTS[key], f"{at} (line {lines.get(key)})")
    return Recipe(**kwargs)


_RECIPE_HINTS: dict[str, Any] = {
    "version": int,
    "name": str,
    "description": str,
    "quant": Quant | None,
    "target": str | None,
    "emulate": bool,
    "model": str | None,
}


def _gates(value: Any, at: str, line: int | None) -> dict[str, float]:
    from inferc.runtime.report import KNOWN_GATES

    if not isinstance(value, dict):
        raise RecipeError(f"{at} (line {line}): expected a mapping of gate name to threshold")
    lines = _lines(value)
    for name, threshold in value.items():
        if name not in KNOWN_GATES:
            raise RecipeError(f"{at}.{name} (line {lines.get(name)}): unknown gate; known gates: {', '.join(sorted(KNOWN_GATES))}")
        coerce_value(threshold, float, f"{at}.{name} (line {lines.get(name)})")
    return {k: float(v) for k, v in value.items()}


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file '{path}' does not exist")
    return parse_recipe(_load_yaml(path.read_text(encoding="utf-8"), str(path)), str(path))


# ---- shipped presets --------------------------------------------------------------------


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("inferc.recipes").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    res = resources.files("inferc.recipes") / f"{name}.yaml"
    if not res.is_file():
        raise RecipeError(f"no preset named '{name}'; shipped presets: {', '.join(preset_names())}")
    return res.read_text(encoding="utf-8")


def load_preset(name: str) -> Recipe:
    return parse_recipe(_load_yaml(preset_text(name), f"preset {name}"), f"preset {name}")
