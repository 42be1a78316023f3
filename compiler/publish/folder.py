"""A registry folder for air-gapped sites: an OCI image layout (oci-layout, index.json,
blobs/sha256/<hex>) holding the same ModelPack artifacts a registry would, each tagged
by its `org.opencontainers.image.ref.name` in index.json. Any OCI tool that reads image
layouts can copy it into a registry later (tested with oras-py's own layout reader).

Blobs are written by rename, the index last and by rename, under a lock: a publish that
fails leaves no index entry on a partial artifact.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inferc.core.errors import InferCError, PublishError
from inferc.compiler.publish import constants as C
from inferc.compiler.publish.modelpack import Blob, FetchedManifest, Layer, Package, read_manifest
from inferc.compiler.publish.restore import Progress, restore, write_checked
from inferc.compiler.publish.uri import FolderRef
from inferc.compiler.publish.verify import Artifact

_BLOBS = "blobs"
_LOCK = ".inferc.lock"
_CHUNK = 1 << 22


def blob_path(root: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    return root / _BLOBS / algo / hexdigest


def _write_blob(root: Path, blob: Blob) -> None:
    dest = blob_path(root, blob.digest)
    if dest.is_file() and dest.stat().st_size == blob.size and _sha256(dest) == blob.digest:
        return
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_checked(blob.chunks(), tmp, blob.digest, blob.size, f"writing {blob.annotations.get(C.ANNOTATION_FILEPATH, blob.digest)}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    with open(root / _LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_index(root: Path) -> dict[str, Any]:
    path = root / C.INDEX_FILE
    if not path.is_file():
        return {"schemaVersion": 2, "mediaType": C.OCI_INDEX_MEDIA_TYPE, "manifests": []}
    try:
        index = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InferCError(f"{path} is not valid JSON ({exc}); is {root} a registry folder?") from exc
    if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise InferCError(f"{path} has no 'manifests' list; is {root} a registry folder (an OCI image layout)?")
    return index


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _check_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise InferCError(f"registry folder '{root}' is a file, not a directory")
    layout = root / C.OCI_LAYOUT_FILE
    if root.is_dir() and any(root.iterdir()) and not layout.is_file():
        raise InferCError(f"'{root}' is neither empty nor a registry folder (no {C.OCI_LAYOUT_FILE} file); refusing to write into it")


def push(package: Package, ref: FolderRef, tag: str, progress: Progress | None = None) -> str:
    """Write the blobs, the manifest blob, then the index entry tagged `tag`; returns the manifest digest."""
    _check_folder(ref.path)
    try:
        return _push(package, ref.path, tag, progress)
    except OSError as exc:
        raise PublishError(f"{ref}: cannot write the registry folder: {exc.strerror or exc}") from exc


def _push(package: Package, root: Path, tag: str, progress: Progress | None) -> str:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / C.OCI_LAYOUT_FILE).is_file():
        _write_json(root / C.OCI_LAYOUT_FILE, {"imageLayoutVersion": C.OCI_LAYOUT_VERSION})
    total, done = sum(b.size for b in package.blobs), 0
    for blob in package.blobs:
        _write_blob(root, blob)
        done += blob.size
        if progress:
            progress("push", done, total)
    manifest_blob = Blob(C.OCI_MANIFEST_MEDIA_TYPE, package.digest, len(package.manifest), data=package.manifest)
    _write_blob(root, manifest_blob)
    annotations = json.loads(package.manifest).get("annotations") or {}
    entry = {"mediaType": C.OCI_MANIFEST_MEDIA_TYPE, "artifactType": C.ARTIFACT_TYPE_MODEL_MANIFEST, "digest": package.digest,
             "size": len(package.manifest), "annotations": {**annotations, C.OCI_ANNOTATION_REF_NAME: tag}}
    with _locked(root):
        index = read_index(root)
        kept = [m for m in index["manifests"] if (m.get("annotations") or {}).get(C.OCI_ANNOTATION_REF_NAME) != tag]
        index["manifests"] = [*kept, entry]
        _write_json(root / C.INDEX_FILE, index)
    return package.digest


def entries(root: Path) -> list[dict[str, Any]]:
    """index.json's tagged model artifacts."""
    return [m for m in read_index(root)["manifests"] if (m.get("annotations") or {}).get(C.OCI_ANNOTATION_REF_NAME)]


def _find(ref: FolderRef) -> dict[str, Any]:
    if not (ref.path / C.OCI_LAYOUT_FILE).is_file():
        raise InferCError(f"'{ref.path}' is not a registry folder (no {C.OCI_LAYOUT_FILE})")
    found = entries(ref.path)
    tags = [m["annotations"][C.OCI_ANNOTATION_REF_NAME] for m in found]
    if ref.tag is None:
        if len(found) != 1:
            raise InferCError(f"{ref.path} holds {len(found)} artifacts; name one with file://{ref.path}#TAG (tags: {', '.join(tags) or 'none'})")
        return found[0]
    for m in found:
        if m["annotations"][C.OCI_ANNOTATION_REF_NAME] == ref.tag:
            return m
    raise InferCError(f"{ref.path} has no artifact tagged '{ref.tag}' (tags: {', '.join(tags) or 'none'})")


def _read_blob(root: Path, digest: str) -> Iterator[bytes]:
    path = blob_path(root, digest)
    if not path.is_file():
        raise PublishError(f"{root}: blob {digest} is missing")
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def fetch_manifest(ref: FolderRef) -> FetchedManifest:
    entry = _find(ref)
    path = blob_path(ref.path, str(entry.get("digest")))
    if not path.is_file():
        raise PublishError(f"{ref}: the manifest blob {entry.get('digest')} is missing")
    return read_manifest(path.read_bytes(), entry.get("digest"), str(ref))


def pull(ref: FolderRef, out_dir: Path, force: bool, progress: Progress | None = None) -> tuple[Artifact, str]:
    fetched = fetch_manifest(ref)
    config = fetched.config
    write_checked(_read_blob(ref.path, config["digest"]), None, config["digest"], int(config.get("size", -1)), f"{ref}: model config")

    def fetch_to(layer: Layer, dest: Path | None, what: str) -> str:
        return write_checked(_read_blob(ref.path, layer.digest), dest, layer.digest, layer.size, what)

    return restore(fetched.layers, fetch_to, out_dir, force, str(ref), progress), fetched.digest
