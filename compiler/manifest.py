"""manifest.json: what an artifact is and how it was made, with every file's hash."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inferc.compiler import __version__

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
GENERATOR = "inferc"
_TRACKED_PACKAGES = ("torch", "numpy", "safetensors", "transformers", "compressed-tensors", "gguf", "llama-cpp-python", "tokenizers")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"inferc": __version__, "python": platform.python_version()}
    for pkg in _TRACKED_PACKAGES:
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def list_files(root: Path, exclude: tuple[str, ...] = (MANIFEST_FILE,)) -> list[dict[str, Any]]:
    """Every file under root (relative path, size, sha256), sorted by path."""
    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in exclude:
            continue
        out.append({"path": rel, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return out


def make_manifest(
    root: Path,
    recipe: dict[str, Any],
    target: str,
    source: dict[str, Any],
    calibration: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "generator": GENERATOR,
        "manifest_version": MANIFEST_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "target": target,
        "recipe": recipe,
        "source": source,
        "calibration": calibration,
        "files": list_files(root),
    }


def is_inferc_manifest(data: Any) -> bool:
    """Whether parsed manifest.json content was written by inferc: it says so, or (written
    before the `generator` field) it has inferc's `manifest_version` and `files` list."""
    if not isinstance(data, dict):
        return False
    if data.get("generator") == GENERATOR:
        return True
    return "generator" not in data and isinstance(data.get("manifest_version"), int) and isinstance(data.get("files"), list)
