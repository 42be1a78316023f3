"""Push and pull ModelPack artifacts to an OCI registry through oras-py.

Push uploads every blob first and the image manifest last: the tag exists only once the
registry has accepted a manifest whose blobs it already holds, so a push that fails at
any point leaves no tag on a partial artifact. Pull checks the manifest's bytes against
the digest asked for (or the one the registry announces), each blob against its
descriptor, and the restored files against their manifest.json.

oras' own retry (five tries, waits of 3 to 83 s, on any exception) is replaced by
retry.RetryPolicy around whole steps, and every request gets a timeout.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inferc.core.errors import PublishError, require
from inferc.compiler.publish import constants as C
from inferc.compiler.publish.credentials import Credentials, registry_credentials
from inferc.compiler.publish.modelpack import Blob, FetchedManifest, Layer, Package, read_manifest
from inferc.compiler.publish.restore import Progress, restore, write_checked
from inferc.compiler.publish.retry import RETRY_STATUSES, RetryPolicy, TransientError, with_retry
from inferc.compiler.publish.uri import OciRef
from inferc.compiler.publish.verify import Artifact

log = logging.getLogger(__name__)

INSTALL = 'pip install "inferc[publish]"'
_CHUNK = 16 << 20  # blob upload PATCH size and download read size


def _oras() -> Any:
    require("oras.provider", "oras", "publishing to an OCI registry", INSTALL)
    import oras.provider

    return oras


def _is_transient(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):  # a certificate problem does not heal by waiting
        return False
    return isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError))


@contextmanager
def _one_line_errors(ref: OciRef) -> Iterator[None]:
    """requests' errors that are not retried (TLS, a bad URL) as one PublishError line."""
    import requests

    try:
        yield
    except requests.RequestException as exc:
        hint = "; a registry without TLS needs --plain-http" if isinstance(exc, requests.exceptions.SSLError) else ""
        raise PublishError(f"{ref}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}{hint}") from exc


def _make_client(ref: OciRef, plain_http: bool, policy: RetryPolicy, backend: str) -> Any:
    oras = _oras()
    import requests.adapters

    unretried = oras.provider.Registry.do_request.__wrapped__  # oras' request without its fixed retry decorator

    class _Timeout(requests.adapters.HTTPAdapter):
        def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = policy.request_timeout_s
            return super().send(request, **kwargs)

    class _Registry(oras.provider.Registry):
        def do_request(self, *args: Any, **kwargs: Any) -> Any:
            return unretried(self, *args, **kwargs)

    reg = _Registry(hostname=ref.host, insecure=plain_http, auth_backend=backend)
    for prefix in ("http://", "https://"):
        reg.session.mount(prefix, _Timeout())
    return reg


def _check(resp: Any, what: str, ok: tuple[int, ...] = (200, 201, 202)) -> Any:
    """resp when its status is one of ok; a transient error for 5xx/429; else PublishError."""
    if resp.status_code in ok:
        return resp
    if resp.status_code in RETRY_STATUSES:
        raise TransientError(f"{what}: HTTP {resp.status_code}")
    if resp.status_code in (401, 403):
        raise PublishError(f"{what}: the registry refused access (HTTP {resp.status_code}); check the credentials and their rights")
    detail = ""
    try:
        errors = resp.json().get("errors") or []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
    except ValueError:
        pass
    raise PublishError(f"{what}: HTTP {resp.status_code}" + (f" ({detail})" if detail else ""))


def connect(ref: OciRef, plain_http: bool, policy: RetryPolicy) -> Any:
    """An oras client for the registry, its credentials checked on /v2/ before anything moves."""
    url_scheme = "http" if plain_http else "https"
    creds = registry_credentials(ref.host)
    probe = _make_client(ref, plain_http, policy, "basic")
    resp = with_retry(policy, f"reaching the registry {ref.host}",
                      lambda: _check(probe.session.get(f"{url_scheme}://{ref.host}/v2/"), f"registry {ref.host}", (200, 401)),
                      _is_transient)
    if resp.status_code == 200:
        return probe
    challenge = resp.headers.get("Www-Authenticate", "")
    if creds is None:
        raise PublishError(f"registry {ref.host} asks for credentials; set INFERC_REGISTRY_USERNAME and INFERC_REGISTRY_PASSWORD, "
                           "or add the host to a docker config file (DOCKER_CONFIG or ~/.docker/config.json)")
    backend = "token" if challenge.lower().startswith("bearer") else "basic"
    reg = _make_client(ref, plain_http, policy, backend)
    reg.auth.set_basic_auth(creds.username, creds.password)
    if backend == "basic":
        reg.set_header("Authorization", reg.auth.get_auth_header()["Authorization"])  # sent up front: no 401 round trip per chunk
        _check_login(reg, ref, creds, url_scheme, policy)
    return reg


def _check_login(reg: Any, ref: OciRef, creds: Credentials, url_scheme: str, policy: RetryPolicy) -> None:
    resp = with_retry(policy, f"logging in to {ref.host}",
                      lambda: _check(reg.do_request(f"{url_scheme}://{ref.host}/v2/", "GET", headers=dict(reg.headers)),
                                     f"registry {ref.host}", (200, 401, 403)),
                      _is_transient)
    if resp.status_code != 200:
        raise PublishError(f"registry {ref.host} refused the credentials of user '{creds.username}' (from {creds.source}): "
                           f"HTTP {resp.status_code}")


def _container(reg: Any, ref: OciRef) -> Any:
    return reg.get_container(f"{ref.host}/{ref.repository}:{ref.tag or 'latest'}")


def _upload(reg: Any, container: Any, blob: Blob, scratch: Path) -> None:
    layer = {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}
    if reg.blob_exists(layer, container):
        log.debug("%s is already in the registry (%s)", _name(blob), blob.digest)
        return
    path = blob.path
    if path is None:  # bytes made here (config, card): oras uploads from a file
        path = scratch / blob.digest.removeprefix("sha256:")
        path.write_bytes(blob.data or b"")
    _check(reg.upload_blob(str(path), container, layer, do_chunked=True, chunk_size=_CHUNK), f"uploading {_name(blob)}")


def _name(blob: Blob) -> str:
    return blob.annotations.get(C.ANNOTATION_FILEPATH) or f"the model config ({blob.digest[:19]})"


def push(package: Package, ref: OciRef, plain_http: bool, policy: RetryPolicy, progress: Progress | None = None) -> str:
    """Upload the blobs, then the manifest under ref's tag; returns the manifest digest."""
    with _one_line_errors(ref):
        return _push(package, ref, plain_http, policy, progress)


def _push(package: Package, ref: OciRef, plain_http: bool, policy: RetryPolicy, progress: Progress | None) -> str:
    reg = connect(ref, plain_http, policy)
    container = _container(reg, ref)
    total, done = sum(b.size for b in package.blobs), 0
    with tempfile.TemporaryDirectory(prefix="inferc-push-") as scratch:
        for blob in package.blobs:
            with_retry(policy, f"uploading {_name(blob)} to {ref.host}", lambda: _upload(reg, container, blob, Path(scratch)), _is_transient)
            done += blob.size
            if progress:
                progress("push", done, total)
    url = f"{reg.prefix}://{container.manifest_url()}"
    headers = {**reg.headers, "Content-Type": C.OCI_MANIFEST_MEDIA_TYPE}
    resp = with_retry(policy, f"putting the manifest {ref}",
                      lambda: _check(reg.do_request(url, "PUT", headers=headers, data=package.manifest), f"putting the manifest {ref}"),
                      _is_transient)
    announced = resp.headers.get("Docker-Content-Digest")
    if announced and announced != package.digest:
        raise PublishError(f"{ref}: the registry stored the manifest as {announced}, not {package.digest}")
    return package.digest


def fetch_manifest(reg: Any, ref: OciRef, policy: RetryPolicy) -> FetchedManifest:
    container = _container(reg, ref)
    url = f"{reg.prefix}://{container.manifest_url(ref.reference)}"
    headers = {**reg.headers, "Accept": C.OCI_MANIFEST_MEDIA_TYPE}
    resp = with_retry(policy, f"fetching the manifest {ref}",
                      lambda: _check(reg.do_request(url, "GET", headers=headers), f"fetching the manifest {ref}", (200, 404)),
                      _is_transient)
    if resp.status_code == 404:
        raise PublishError(f"{ref}: no such artifact in the registry (HTTP 404)")
    expected = ref.digest or resp.headers.get("Docker-Content-Digest")
    return read_manifest(resp.content, expected, str(ref))


def _stream_blob(reg: Any, container: Any, digest: str, what: str) -> Iterator[bytes]:
    with reg.get_blob(container, digest, stream=True) as resp:
        _check(resp, what, (200,))
        yield from resp.iter_content(chunk_size=_CHUNK)


def pull(ref: OciRef, out_dir: Path, force: bool, plain_http: bool, policy: RetryPolicy,
         progress: Progress | None = None) -> tuple[Artifact, str]:
    """Restore the artifact at ref into out_dir; returns it and the manifest digest."""
    with _one_line_errors(ref):
        return _pull(ref, out_dir, force, plain_http, policy, progress)


def _pull(ref: OciRef, out_dir: Path, force: bool, plain_http: bool, policy: RetryPolicy,
          progress: Progress | None) -> tuple[Artifact, str]:
    reg = connect(ref, plain_http, policy)
    fetched = fetch_manifest(reg, ref, policy)
    container = _container(reg, ref)
    config = fetched.config
    with_retry(policy, f"downloading the model config of {ref}",
               lambda: write_checked(_stream_blob(reg, container, config["digest"], "model config"), None, config["digest"],
                                     int(config.get("size", -1)), f"{ref}: model config"), _is_transient)

    def fetch_to(layer: Layer, dest: Path | None, what: str) -> str:
        return with_retry(policy, f"downloading {layer.filepath} from {ref.host}",
                          lambda: write_checked(_stream_blob(reg, container, layer.digest, what), dest, layer.digest, layer.size, what),
                          _is_transient)

    return restore(fetched.layers, fetch_to, out_dir, force, str(ref), progress), fetched.digest
