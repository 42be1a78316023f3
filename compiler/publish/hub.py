"""Publish to and pull from the Hugging Face Hub through huggingface_hub.

The repository holds the artifact's directory as it is (manifest.json, report.*, hf/,
model.gguf) plus the model card as README.md, all in one commit: a failed upload makes
no commit, so the branch never points at a partial artifact. The token is
huggingface_hub's own (HF_TOKEN or `hf auth login`); the endpoint follows HF_ENDPOINT.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferc.core.errors import CheckpointError, PublishError, require
from inferc.compiler.manifest import MANIFEST_FILE
from inferc.compiler.publish import constants as C
from inferc.compiler.publish.modelpack import Layer
from inferc.compiler.publish.restore import Progress, check_destination, restore, write_checked
from inferc.compiler.publish.retry import RetryPolicy, with_retry
from inferc.compiler.publish.uri import HubRef
from inferc.compiler.publish.verify import Artifact, manifest_entries

INSTALL = 'pip install "inferc[publish]"'


@dataclass(frozen=True)
class Upload:
    """One file of the commit: path in the repository and where its bytes come from."""

    path_in_repo: str
    source: Path | bytes


def upload_plan(artifact: Artifact, card: str) -> list[Upload]:
    """Every file of the commit: the artifact's files, its manifest.json, and README.md
    (the card, unless the artifact has a README.md of its own)."""
    plan = [Upload(f.path, artifact.root / f.path) for f in artifact.all_files]
    if C.CARD_FILE not in {u.path_in_repo for u in plan}:
        plan.append(Upload(C.CARD_FILE, card.encode()))
    return plan


def _hub() -> Any:
    return require("huggingface_hub", "huggingface_hub", "publishing to the Hugging Face Hub", INSTALL)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's connection-level errors (huggingface_hub 2.x uses httpx2, 1.x httpx)."""
    for name in ("httpx2", "httpx"):
        try:
            return (importlib.import_module(name).TransportError,)
        except (ImportError, AttributeError):
            continue
    return ()


def _is_transient(exc: BaseException) -> bool:
    from huggingface_hub import errors

    if isinstance(exc, (*_transport_errors(), ConnectionError, TimeoutError)):
        return True
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(exc, errors.HfHubHTTPError) and status is not None and status >= 500


def _refused(exc: BaseException, ref: HubRef, create_hint: bool) -> PublishError | None:
    from huggingface_hub import errors

    if isinstance(exc, errors.RevisionNotFoundError):
        return PublishError(f"{ref}: no revision '{ref.revision}'" + ("; pass --create to make the branch" if create_hint else ""))
    if isinstance(exc, errors.RepositoryNotFoundError):
        return PublishError(f"{ref}: no such repository, or the token may not access it"
                            + ("; pass --create to create it" if create_hint else ""))
    if isinstance(exc, ValueError) and str(exc).startswith("Invalid metadata in README.md"):
        return PublishError(f"{ref}: the Hub refused the model card's metadata: {' '.join(str(exc).split())[:300]}")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        hint = "; set HF_TOKEN or run `hf auth login` with a token that may write here" if status in (401, 403) else ""
        return PublishError(f"{ref}: the Hub answered HTTP {status}: {str(exc).splitlines()[0][:300]}{hint}")
    if isinstance(exc, OSError):  # offline mode, a refused connection after huggingface_hub's own retries
        return PublishError(f"{ref}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else 'no detail'}")
    return None


def _call(policy: RetryPolicy, what: str, ref: HubRef, create_hint: bool, fn: Any) -> Any:
    try:
        return with_retry(policy, what, fn, _is_transient)
    except PublishError:
        raise
    except Exception as exc:  # noqa: BLE001 - huggingface_hub's HTTP errors become one line; others propagate
        refused = _refused(exc, ref, create_hint)
        if refused is None:
            raise
        raise refused from exc


def push(artifact: Artifact, card: str, ref: HubRef, create: bool, private: bool, message: str | None,
         policy: RetryPolicy) -> str:
    """One commit with every file of the plan; returns the commit's URL."""
    hf = _hub()
    api = hf.HfApi()
    if create:
        _call(policy, f"creating {ref}", ref, False, lambda: api.create_repo(ref.repo_id, private=private, exist_ok=True))
        if ref.revision:
            _call(policy, f"creating branch {ref.revision}", ref, False,
                  lambda: api.create_branch(ref.repo_id, branch=ref.revision, exist_ok=True))
    ops = [hf.CommitOperationAdd(path_in_repo=u.path_in_repo, path_or_fileobj=u.source if isinstance(u.source, bytes) else str(u.source))
           for u in upload_plan(artifact, card)]
    title = message or f"inferc: publish {artifact.manifest.get('target')} {(artifact.manifest.get('recipe') or {}).get('name')}"
    info = _call(policy, f"committing to {ref}", ref, not create,
                 lambda: api.create_commit(ref.repo_id, operations=ops, commit_message=title,
                                           commit_description=f"manifest.json sha256 {artifact.manifest_file.sha256}",
                                           revision=ref.revision))
    return str(getattr(info, "commit_url", info))


def pull(ref: HubRef, out_dir: Path, force: bool, policy: RetryPolicy, progress: Progress | None = None) -> tuple[Artifact, str]:
    """Download manifest.json and every file it lists at one commit, checked against it."""
    check_destination(out_dir, force)
    hf = _hub()
    api = hf.HfApi()
    sha = _call(policy, f"resolving {ref}", ref, False, lambda: api.repo_info(ref.repo_id, revision=ref.revision).sha)
    staging = out_dir.parent / f".{out_dir.name}.inferc-hub-cache"
    try:
        manifest_path = Path(_call(policy, f"downloading {MANIFEST_FILE}", ref, False,
                                   lambda: api.hf_hub_download(ref.repo_id, MANIFEST_FILE, revision=sha, cache_dir=staging)))
        raw = manifest_path.read_bytes()
        try:
            entries = manifest_entries(json.loads(raw), str(ref))
        except (CheckpointError, ValueError) as exc:
            raise PublishError(f"{ref}: its {MANIFEST_FILE} is not an inferc manifest: {exc}") from exc
        layers = [Layer(e.path, f"sha256:{e.sha256}", e.size, False) for e in entries]
        layers.append(Layer(MANIFEST_FILE, f"sha256:{hashlib.sha256(raw).hexdigest()}", len(raw), False))

        def fetch_to(layer: Layer, dest: Path | None, what: str) -> str:
            local = Path(_call(policy, f"downloading {layer.filepath}", ref, False,
                               lambda: api.hf_hub_download(ref.repo_id, layer.filepath, revision=sha, cache_dir=staging)))
            return write_checked(_chunks(local), dest, layer.digest, layer.size, what)

        return restore(layers, fetch_to, out_dir, force, str(ref), progress), sha
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            yield chunk
