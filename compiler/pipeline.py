"""The pass pipeline: a plan made and checked before any weight is loaded, then run
with per-pass time and peak memory recorded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from inferc.core.errors import RecipeError
from inferc.core.ir import ModelIR
from inferc.compiler.memory import PeakMemory
from inferc.compiler.recipe import Recipe
from inferc.passes import Pass, PassContext, Requirement, get_pass, make_config


@dataclass(frozen=True)
class PlannedPass:
    name: str
    instance: Pass
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True)
class Plan:
    passes: tuple[PlannedPass, ...]

    @property
    def requirements(self) -> set[Requirement]:
        return {r for p in self.passes for r in p.requirements}

    @property
    def needs_calibration(self) -> bool:
        return bool(self.requirements)


@dataclass
class PassRecord:
    name: str
    seconds: float
    peak_rss_mb: float
    peak_cuda_mb: float
    options: dict[str, Any] = field(default_factory=dict)


def make_plan(recipe: Recipe) -> Plan:
    """Instantiate every pass with its validated config and check requirements."""
    planned = []
    for i, spec in enumerate(recipe.pipeline):
        cls = get_pass(spec.name)
        config = make_config(cls, spec.options, where=f"{recipe.source}: pipeline[{i}] ", lines=spec.options_lines)
        inst = cls(config)
        planned.append(PlannedPass(spec.name, inst, tuple(inst.requirements())))
    plan = Plan(tuple(planned))
    if plan.needs_calibration and recipe.calibration.num_sequences < 1:
        raise RecipeError(f"{recipe.source}: passes {', '.join(p.name for p in plan.passes if p.requirements)} need calibration data")
    return plan


def check_plan(plan: Plan, model: ModelIR) -> None:
    """Every planned pass's options against the loaded model, before data is prepared."""
    for planned in plan.passes:
        planned.instance.check(model)


def run_plan(plan: Plan, model: ModelIR, ctx: PassContext) -> tuple[ModelIR, list[PassRecord]]:
    records = []
    for planned in plan.passes:
        start = time.perf_counter()
        with PeakMemory() as mem:
            model = planned.instance.run(model, ctx)
        records.append(
            PassRecord(
                planned.name,
                time.perf_counter() - start,
                mem.peak_rss / 2**20,
                mem.peak_cuda / 2**20,
                {k: _plain(v) for k, v in vars(planned.instance.config).items()},
            )
        )
    return model, records


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return getattr(v, "value", v)
