"""Pulled bytes into a directory: every blob checked against its digest and size while it
streams, the result checked against its manifest.json, and only then renamed into place,
so a failed or tampered pull never leaves a directory that looks complete."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from inferc.core.errors import CheckpointError, InferCError, PublishError
from inferc.compiler.manifest import MANIFEST_FILE
from inferc.compiler.publish.modelpack import Layer
from inferc.compiler.publish.verify import Artifact, verify_artifact

Progress = Callable[[str, int, int], None]


def write_checked(chunks: Iterable[bytes], dest: Path | None, digest: str, size: int, what: str) -> str:
    """Stream chunks into dest (or nowhere), refusing a wrong size or sha256 digest;
    returns the sha256 (hex) of what was written."""
    h, n = hashlib.sha256(), 0
    fh = None
    try:
        if dest is not None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fh = open(dest, "wb")
        for chunk in chunks:
            n += len(chunk)
            if n > size:
                raise PublishError(f"{what}: more than the {size} bytes expected; refusing it")
            h.update(chunk)
            if fh is not None:
                fh.write(chunk)
    except OSError as exc:
        raise PublishError(f"{what}: cannot write {dest}: {exc.strerror or exc}") from exc
    finally:
        if fh is not None:
            fh.close()
    if n != size:
        raise PublishError(f"{what}: {n} bytes, expected {size}; refusing it")
    got = f"sha256:{h.hexdigest()}"
    if got != digest:
        raise PublishError(f"{what}: the bytes have digest {got}, expected {digest}; refusing it")
    return h.hexdigest()


def check_destination(out_dir: Path, force: bool) -> None:
    """An absent or empty directory, or (with force) an artifact directory to replace."""
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    if not force:
        raise InferCError(f"output directory '{out_dir}' already exists; pass --force to replace it")
    if not (out_dir.is_dir() and (out_dir / MANIFEST_FILE).is_file()):
        raise InferCError(f"'{out_dir}' exists and is not an artifact directory (no {MANIFEST_FILE}); refusing to replace it")


def staging_dir(out_dir: Path, kind: str) -> Path:
    tmp = out_dir.parent / f".{out_dir.name}.inferc-{kind}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def install(tmp: Path, out_dir: Path, where: str, hashed: dict[str, str]) -> Artifact:
    """Verify tmp against its manifest.json (files hashed while written are not read
    again), then put it at out_dir, replacing what is there."""
    try:
        artifact = verify_artifact(tmp, hashed)
    except CheckpointError as exc:
        raise PublishError(f"{where}: the pulled files do not match their manifest.json: {str(exc).removeprefix(str(tmp) + ': ')}") from exc
    old = out_dir.parent / f".{out_dir.name}.inferc-old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)
    return Artifact(out_dir, artifact.manifest, artifact.manifest_file, artifact.files)


FetchTo = Callable[[Layer, "Path | None", str], str]  # (layer, destination or None, label) -> sha256 hex, via write_checked


def restore(layers: Iterable[Layer], fetch_to: FetchTo, out_dir: Path, force: bool, where: str,
            progress: Progress | None = None) -> Artifact:
    """Fetch each layer to its file path (the model card is checked, not kept: it is made
    from the artifact on every publish), verify, install."""
    out_dir = Path(out_dir)
    check_destination(out_dir, force)
    layers = list(layers)
    total, done = sum(layer.size for layer in layers), 0
    hashed: dict[str, str] = {}
    tmp = None
    try:
        tmp = staging_dir(out_dir, "pull")
        for layer in layers:
            dest = None if layer.is_card else tmp / layer.filepath
            sha = fetch_to(layer, dest, f"{where}: {layer.filepath}")
            if dest is not None:
                hashed[layer.filepath] = sha
            done += layer.size
            if progress:
                progress("pull", done, total)
        return install(tmp, out_dir, where, hashed)
    except OSError as exc:
        raise PublishError(f"{where}: cannot write {out_dir}: {exc.strerror or exc}") from exc
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
