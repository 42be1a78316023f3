"""Publishing: an artifact verified against its manifest.json, then pushed with its model
card to an OCI registry (as a CNCF ModelPack artifact), the Hugging Face Hub, or a
registry folder; and pulled back, every byte checked, into the same directory.

    publish(artifact_dir, "oci://HOST[:PORT]/REPO:TAG")
    publish(artifact_dir, "hf://OWNER/NAME[@REVISION]", create=True)
    publish(artifact_dir, "file://PATH[#TAG]")
    pull("oci://HOST/REPO:TAG" | "oci://HOST/REPO@sha256:..." | "hf://..." | "file://...", out_dir)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inferc.core.errors import CheckpointError, InferCError
from inferc.compiler.publish import folder, hub, oci
from inferc.compiler.publish.card import render_card
from inferc.compiler.publish.facts import artifact_name
from inferc.compiler.publish.modelpack import pack
from inferc.compiler.publish.restore import Progress
from inferc.compiler.publish.retry import RetryPolicy
from inferc.compiler.publish.uri import FolderRef, HubRef, OciRef, parse_uri
from inferc.compiler.publish.verify import Artifact, verify_artifact

Step = Callable[[str], None]


@dataclass(frozen=True)
class Transfer:
    """What a publish or pull moved, and how long each part took."""

    uri: str
    location: str  # manifest digest (oci://, file://) or commit (hf://)
    files: int
    bytes: int
    verify_s: float  # publish: checking the artifact against its manifest.json
    transfer_s: float  # upload or download, with the checks made while streaming


def _verified(artifact_dir: Path) -> Artifact:
    try:
        return verify_artifact(artifact_dir)
    except CheckpointError as exc:
        raise CheckpointError(f"refusing to publish: {exc}") from exc


def publish(artifact_dir: Path, uri: str, *, create: bool = False, private: bool = False, message: str | None = None,
            plain_http: bool = False, policy: RetryPolicy = RetryPolicy(), progress: Progress | None = None,
            step: Step | None = None) -> Transfer:
    """Verify the artifact, then upload it and its model card to uri. Raises CheckpointError
    naming the file when the artifact does not match its manifest, before any upload."""
    announce = step or (lambda _s: None)
    ref = parse_uri(uri)
    if (create or private) and not isinstance(ref, HubRef):
        raise InferCError("--create and --private apply to hf:// destinations only")
    if isinstance(ref, OciRef) and ref.digest:
        raise InferCError(f"{ref}: publish to a tag (oci://HOST/REPO:TAG); a digest is what the registry gives back")
    announce("verify")
    start = time.perf_counter()
    artifact = _verified(Path(artifact_dir))
    card = render_card(artifact)
    verify_s = time.perf_counter() - start
    announce(f"upload to {ref}")
    start = time.perf_counter()
    if isinstance(ref, OciRef):
        location = oci.push(pack(artifact, card), ref, plain_http or ref.is_loopback, policy, progress)
    elif isinstance(ref, FolderRef):
        location = folder.push(pack(artifact, card), ref, ref.tag or artifact_name(artifact.manifest), progress)
    else:
        location = hub.push(artifact, card, ref, create, private, message, policy)
    size = sum(f.size for f in artifact.all_files)
    return Transfer(str(ref), location, len(artifact.all_files), size, verify_s, time.perf_counter() - start)


def pull(uri: str, out_dir: Path, *, force: bool = False, plain_http: bool = False, policy: RetryPolicy = RetryPolicy(),
         progress: Progress | None = None) -> Transfer:
    """Restore the artifact at uri into out_dir, every file checked against its digest and
    the whole against its manifest.json before the directory appears."""
    ref = parse_uri(uri)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    if isinstance(ref, OciRef):
        artifact, location = oci.pull(ref, out_dir, force, plain_http or ref.is_loopback, policy, progress)
    elif isinstance(ref, FolderRef):
        artifact, location = folder.pull(ref, out_dir, force, progress)
    else:
        artifact, location = hub.pull(ref, out_dir, force, policy, progress)
    size = sum(f.size for f in artifact.all_files)
    return Transfer(str(ref), location, len(artifact.all_files), size, 0.0, time.perf_counter() - start)


__all__ = ["Transfer", "RetryPolicy", "publish", "pull", "verify_artifact", "render_card", "parse_uri"]
