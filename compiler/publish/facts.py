"""The facts about an artifact that its card, its OCI annotations and its model config
all state, read once from manifest.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from inferc.compiler.publish.verify import Artifact
from inferc.formats.hf.constants import HF_QUANT_CONFIG_FILE


@dataclass(frozen=True)
class Export:
    format: str  # "hf" or "gguf"
    path: str  # inside the artifact
    layout: str | None  # HF only: "compressed-tensors" or "modelopt"


def exports(artifact: Artifact) -> list[Export]:
    """The artifact's exports (manifest 'exports'; those listed as skipped hold no files),
    each HF one with its layout."""
    listed = {f.path for f in artifact.files}
    out = []
    for e in artifact.manifest.get("exports") or []:
        if e.get("skipped"):
            continue
        fmt, path = str(e.get("format")), str(e.get("path"))
        layout = None
        if fmt == "hf":
            layout = "modelopt" if f"{path}/{HF_QUANT_CONFIG_FILE}" in listed else "compressed-tensors"
        out.append(Export(fmt, path, layout))
    return out


def quant_name(manifest: dict[str, Any]) -> str:
    recipe = manifest.get("recipe") or {}
    return str(recipe.get("quant") or recipe.get("name") or "unknown")


def model_name(manifest: dict[str, Any]) -> str:
    source = manifest.get("source") or {}
    return str(source.get("name") or source.get("path") or "unknown model")


def artifact_name(manifest: dict[str, Any]) -> str:
    """<model>-<quant>-<target>, as `inferc build` names its output directory."""
    return f"{PurePosixPath(model_name(manifest)).name}-{quant_name(manifest)}-{manifest.get('target')}".lower()


def description(manifest: dict[str, Any]) -> str:
    return f"{model_name(manifest)} quantized ({quant_name(manifest)}) for {manifest.get('target')} by inferc"
