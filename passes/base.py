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
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from inferc.compiler.errors import RecipeError
from inferc.compiler.ir import ModelIR

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

    def run(self, model: ModelIR, ctx: PassContext) -> ModelIR:
        raise NotImplementedError


def select_linears(model: ModelIR, ignore: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(to quantize, ignored) linear weight names. `ignore` holds fnmatch patterns on
    module names (weight name without `.weight`), e.g. "lm_head", "model.layers.0.*"."""
    names = list(model.linear_names())
    if not model.spec.tie_word_embeddings:
        names.append("lm_head.weight")
    chosen, skipped = [], []
    for name in names:
        module = name.removesuffix(".weight")
        (skipped if any(fnmatch.fnmatchcase(module, pat) for pat in ignore) else chosen).append(name)
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


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Validate a YAML value against a Config field's type; str Enums accept their values."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise RecipeError(f"{where}: expected one of {', '.join(map(repr, args))}, found {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, found {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(v, inner, where) for v in value)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        try:
            return annotation(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in annotation)
            raise RecipeError(f"{where}: expected one of {allowed}, found {value!r}") from None
    if annotation is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, found {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, found {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, found {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, found {value!r}")
        return value
    return value


def make_config(pass_cls: type[Pass], options: dict[str, Any] | None, where: str = "") -> Any:
    """Build a pass's frozen Config from recipe options, naming any bad key or value."""
    options = dict(options or {})
    hints = typing.get_type_hints(pass_cls.Config)
    fields = {f.name for f in dataclasses.fields(pass_cls.Config)}
    prefix = f"{where}pass '{pass_cls.name}'"
    unknown = sorted(set(options) - fields)
    if unknown:
        raise RecipeError(f"{prefix}: unknown option '{unknown[0]}'; allowed: {', '.join(sorted(fields)) or '(none)'}")
    values = {k: _coerce(v, hints[k], f"{prefix} option '{k}'") for k, v in options.items()}
    try:
        return pass_cls.Config(**values)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"{prefix}: {exc}") from exc
