"""Checks of a build's or an evaluation's inputs that need no model: run when the work is
planned, so a bad device, a missing corpus or a bad importance matrix is one line before
any weight is loaded, any text sampled or any calibration run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from inferc.core.errors import CalibrationError, InferCError, MissingDependencyError, RecipeError

if TYPE_CHECKING:
    from inferc.compiler.pipeline import Plan
    from inferc.compiler.recipe import Recipe

_DEVICES = "cpu, cuda or cuda:N"


def check_device(device: str) -> torch.device:
    """The torch device `--device` names, refused unless this torch can use it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise InferCError(f"--device '{device}' is not a torch device; expected {_DEVICES}") from exc
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch ({torch.__version__}) is a CPU-only build" if torch.version.cuda is None
                   else "no CUDA GPU is visible")
            raise InferCError(f"--device {device}: {why}; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InferCError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible (cuda:0 ..)")
        return dev
    backend = getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if not callable(available) or not available():
        raise InferCError(f"--device {device}: the '{dev.type}' device is not available in this torch; expected {_DEVICES}")
    return dev


def check_dataset(dataset: str, role: str) -> None:
    """A corpus spec (`path` or `hf:<name>[:<config>]`) that can be read at all."""
    if dataset.startswith("hf:"):
        if not dataset[3:].partition(":")[0]:
            raise RecipeError(f"{role} dataset '{dataset}': expected hf:<name>[:<config>]")
        if importlib.util.find_spec("datasets") is None:
            raise MissingDependencyError("datasets", f"the {role} dataset '{dataset}'", "pip install datasets")
        return
    path = Path(dataset)
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise CalibrationError(f"{role} corpus '{dataset}' {what}; pass a local .txt/.raw/.jsonl file or hf:<name>[:<config>]")


def _uses_imatrix(plan: Plan) -> bool:
    return any(getattr(p.instance.config, "use_imatrix", False) for p in plan.passes)


def check_build_inputs(recipe: Recipe, plan: Plan, device: str, imatrix: Path | None) -> dict[str, np.ndarray] | None:
    """Everything of a build checkable before the model is loaded; returns the importance
    matrix's entries (by llama.cpp tensor name) when one is given."""
    check_device(device)
    if plan.needs_calibration and recipe.calibration.dataset:
        check_dataset(recipe.calibration.dataset, "calibration")
    if recipe.eval.enabled and recipe.eval.dataset:
        check_dataset(recipe.eval.dataset, "evaluation")
    if imatrix is None:
        return None
    if not _uses_imatrix(plan):
        passes = ", ".join(p.name for p in plan.passes) or "none"
        raise RecipeError(f"--imatrix is read by quantize_gguf with use_imatrix: true, and this recipe has no such pass (passes: {passes})")
    from inferc.formats.gguf.imatrix import read_imatrix_file

    return read_imatrix_file(Path(imatrix))
