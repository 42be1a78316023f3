"""Passes: IR -> IR units with a frozen Config, declared requirements and a registry.

    @register_pass("quantize_fp8")
    class QuantizeFP8(Pass):
        @dataclass(frozen=True)
        class Config:
            per_channel: bool = True
        requires = (Requirement.CALIBRATION,)

        def run(self, model: ModelIR, ctx: PassContext) -> ModelIR: ...

Requirements are checked when the pipeline is planned, before any weight is loaded.
Passes do no file I/O: data comes in through the context.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from inferc.calibration.distributed import Reducer
from inferc.core.errors import RecipeError
from inferc.core.ir import ModelIR
from inferc.core.schema import build_dataclass

if TYPE_CHECKING:
    from inferc.calibration.dataset import CalibrationSet
    from inferc.calibration.stats import ActivationStats

log = logging.getLogger("inferc.passes")


class Requirement(str, Enum):
    CALIBRATION = "calibration"  # calibration token sequences (ctx.calibration)
    ACTIVATION_STATS = "activation_stats"  # per-linear input statistics (ctx.activation_stats())


@dataclass
class LayerEvent:
    """A numeric fallback or notable decision for one tensor, kept in the build report."""

    pass_name: str
    tensor: str
    kind: str  # e.g. "fallback", "unquantized", "cholesky_retry", "group_size"
    detail: str


@dataclass
class PassContext:
    """What a pass may use besides the model: calibration data, the target, a device,
    and a place to record per-layer events for the build report."""

    device: str = "cpu"
    calibration: CalibrationSet | None = None
    events: list[LayerEvent] = field(default_factory=list)
    progress: Callable[[str, int, int], None] | None = None  # (label, done, total)
    # per-input-column importance by linear weight name, given by the user (llama.cpp imatrix)
    importance: dict[str, Any] | None = None
    # where calibration statistics are reduced: this process alone, or every rank of a
    # torch.distributed build (each pass walks its rank's shards and quantizes from the totals)
    reducer: Reducer = field(default_factory=Reducer)
    _stats: ActivationStats | None = None
    _stats_factory: Callable[[], ActivationStats] | None = None

    def activation_stats(self) -> ActivationStats:
        """Input statistics of every linear, collected once on first use and shared."""
        if self._stats is None:
            if self._stats_factory is None:
                raise RecipeError("a pass needs activation statistics but the recipe configures no calibration")
            self._stats = self._stats_factory()
        return self._stats

    def event(self, pass_name: str, tensor: str, kind: str, detail: str) -> None:
        log.info("%s: %s: %s (%s)", pass_name, tensor, detail, kind)
        self.events.append(LayerEvent(pass_name, tensor, kind, detail))

    def tick(self, label: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(label, done, total)


class Pass:
    """Base of every pass. Subclasses define `Config` (a frozen dataclass), `requires`
    and `run`; `name` is set by `register_pass`."""

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[Requirement, ...]] = ()

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    def requirements(self) -> tuple[Requirement, ...]:
        """What this configured pass needs; defaults to the class's `requires`."""
        return self.requires

    def check(self, model: ModelIR) -> None:
        """Refuse options that cannot apply to this model, before any data is prepared
        (the build calls it right after loading). By default: every `ignore` pattern
        must match a linear."""
        check_ignore(model, self.name, tuple(getattr(self.config, "ignore", ()) or ()))

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        raise NotImplementedError


def _matches(module: str, ignore: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(module, pat) for pat in ignore)


def check_ignore(model: ModelIR, pass_name: str, ignore: tuple[str, ...]) -> None:
    """Every `ignore` pattern must name at least one linear module of this model;
    `lm_head` always counts, tied to the embeddings or not."""
    names = model.quantizable()
    modules = [n.removesuffix(".weight") for n in names] + [model.source_name(n).removesuffix(".weight") for n in names] + ["lm_head"]
    unmatched = [pat for pat in ignore if not any(fnmatch.fnmatchcase(m, pat) for m in modules)]
    if unmatched:
        raise RecipeError(
            f"pass '{pass_name}' option ignore: pattern '{unmatched[0]}' matches no linear of this model; "
            f"patterns are fnmatch patterns on module names such as '{modules[0]}', 'layers.0.*', '*.mlp.down', "
            "the checkpoint's 'model.layers.0.*', or 'lm_head'"
        )


def select_linears(model: ModelIR, ignore: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(to quantize, ignored) linear weight names. `ignore` holds fnmatch patterns on
    module names (weight name without `.weight`), matched against the IR's names
    (`lm_head`, `layers.0.*`, `*.attn.v`) and the checkpoint's (`model.layers.0.*`)."""
    chosen, skipped = [], []
    for name in model.quantizable():
        modules = (name.removesuffix(".weight"), model.source_name(name).removesuffix(".weight"))
        (skipped if any(_matches(m, ignore) for m in modules) else chosen).append(name)
    return chosen, skipped


_REGISTRY: dict[str, type[Pass]] = {}


def register_pass(name: str) -> Callable[[type[Pass]], type[Pass]]:
    def deco(cls: type[Pass]) -> type[Pass]:
        if name in _REGISTRY:
            raise ValueError(f"pass '{name}' is already registered by {_REGISTRY[name].__qualname__}")
        if not dataclasses.is_dataclass(cls.Config) or not cls.Config.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"pass '{name}': Config must be a frozen dataclass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_passes() -> dict[str, type[Pass]]:
    return dict(_REGISTRY)


def get_pass(name: str) -> type[Pass]:
    if name not in _REGISTRY:
        raise RecipeError(f"unknown pass '{name}'; registered passes: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def make_config(
    pass_cls: type[Pass], options: dict[str, Any] | None, where: str = "", lines: dict[str, int] | None = None
) -> Any:
    """Build a pass's frozen Config from recipe options, naming any bad key or value."""
    options = dict(options or {})
    return build_dataclass(pass_cls.Config, options, f"{where}pass '{pass_cls.name}' options", lines)


def fused_groups(model: ModelIR, names: list[str]) -> list[list[str]]:
    """`names` grouped by the linear they are parts of (one group per fused linear, in
    graph order): the parts of a fused matrix must share any tensor-wide scale."""
    wanted, groups = set(names), []
    for lin in model.graph.linears():
        group = [w for w in lin.weights if w in wanted]
        if group:
            groups.append(group)
    return groups


def select_targets(model: ModelIR, pass_name: str, ctx: PassContext, ignore: tuple[str, ...]) -> list[str]:
    """Linears a weight pass should quantize: ignored ones are recorded as left dense,
    already-quantized ones are skipped with an event; an `ignore` pattern that matches
    nothing is an error."""
    check_ignore(model, pass_name, ignore)
    targets, ignored = select_linears(model, ignore)
    for name in ignored:
        model.unquantized[name] = "ignored by recipe"
    chosen = []
    for name in targets:
        if model.is_quantized(name):
            ctx.event(pass_name, name, "skipped", f"already quantized as {model.weights[name].format.value}")
        else:
            chosen.append(name)
    return chosen
