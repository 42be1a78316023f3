"""An artifact checked against its manifest.json: every listed file present with its size
and sha256, nothing unlisted beside them, no link and no path leaving the directory.

Publishing runs this before any byte leaves the machine; pulling runs it on what it
restored before the directory is put in place.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from inferc.core.errors import CheckpointError
from inferc.compiler.manifest import MANIFEST_FILE, file_sha256


@dataclass(frozen=True)
class ArtifactFile:
    path: str  # relative, "/"-separated
    size: int
    sha256: str


@dataclass(frozen=True)
class Artifact:
    """A verified artifact directory: its manifest and the files the manifest lists."""

    root: Path
    manifest: dict[str, Any]
    manifest_file: ArtifactFile  # manifest.json itself
    files: tuple[ArtifactFile, ...]  # as listed, manifest.json excluded

    @property
    def all_files(self) -> tuple[ArtifactFile, ...]:
        return (*self.files, self.manifest_file)

    def read_json(self, path: str) -> dict[str, Any] | None:
        """A listed JSON file (report.json, hf/config.json), or None when it is not listed."""
        if path not in {f.path for f in self.files}:
            return None
        return json.loads((self.root / path).read_text())


def check_relative_path(path: str, where: str) -> str:
    """A relative "/"-separated path that stays inside its directory, or CheckpointError."""
    p = PurePosixPath(path)
    if not path or "\\" in path or p.is_absolute() or any(part in ("", ".", "..") for part in path.split("/")):
        raise CheckpointError(f"{where}: file path {path!r} is not a plain relative path inside the artifact")
    return p.as_posix()


def manifest_entries(manifest: Any, where: str) -> list[ArtifactFile]:
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list):
        raise CheckpointError(f"{where}: manifest.json has no 'files' list; is this a directory written by `inferc build`?")
    out, seen = [], set()
    for i, entry in enumerate(files):
        ok = isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("bytes"), int) \
            and isinstance(entry.get("sha256"), str)
        if not ok:
            raise CheckpointError(f"{where}: manifest.json files[{i}] needs 'path' (text), 'bytes' (integer) and 'sha256' (text)")
        path = check_relative_path(entry["path"], where)
        if path == MANIFEST_FILE or path in seen:
            raise CheckpointError(f"{where}: manifest.json lists {path!r} {'twice' if path in seen else 'as one of its files'}")
        seen.add(path)
        out.append(ArtifactFile(path, entry["bytes"], entry["sha256"].lower()))
    return out


def _files_on_disk(root: Path) -> list[str]:
    """Every file under root, relative; a symbolic link anywhere is refused."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            if full.is_symlink():
                raise CheckpointError(f"{root}: {full.relative_to(root).as_posix()} is a symbolic link; an artifact holds plain files only")
        found += [(Path(dirpath) / n).relative_to(root).as_posix() for n in filenames]
    return sorted(found)


def verify_artifact(root: Path, hashed: Mapping[str, str] | None = None) -> Artifact:
    """Check root against its manifest.json; raises CheckpointError naming the first
    file that is missing, unlisted, or whose size or sha256 differs. `hashed` gives the
    sha256 of files just written while hashing them (a pull), which are not read again."""
    root = Path(root)
    where = str(root)
    if not root.is_dir():
        raise CheckpointError(f"{where} is not an artifact directory (no such directory)")
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise CheckpointError(f"{where} has no {MANIFEST_FILE}; publish a directory written by `inferc build`")
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{where}: {MANIFEST_FILE} is not valid JSON ({exc})") from exc
    entries = manifest_entries(manifest, where)
    listed = {e.path for e in entries}
    for path in _files_on_disk(root):
        if path != MANIFEST_FILE and path not in listed:
            raise CheckpointError(f"{where}: {path} is not listed in {MANIFEST_FILE}")
    for e in entries:
        path = root / e.path
        if not path.is_file():
            raise CheckpointError(f"{where}: {e.path} is listed in {MANIFEST_FILE} but missing")
        size = path.stat().st_size
        if size != e.size:
            raise CheckpointError(f"{where}: {e.path} has {size} bytes, {MANIFEST_FILE} says {e.size}")
        digest = (hashed or {}).get(e.path) or file_sha256(path)
        if digest != e.sha256:
            raise CheckpointError(f"{where}: {e.path} has sha256 {digest}, {MANIFEST_FILE} says {e.sha256}")
    manifest_file = ArtifactFile(MANIFEST_FILE, len(raw), hashlib.sha256(raw).hexdigest())
    return Artifact(root, manifest, manifest_file, tuple(entries))
