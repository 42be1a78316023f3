"""Where a publication goes: `oci://HOST[:PORT]/REPO:TAG` (or `@sha256:...` to pull),
`hf://OWNER/NAME[@REVISION]`, `file://PATH[#TAG]`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from inferc.core.errors import InferCError

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")
_REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")  # OCI distribution spec
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HUB_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class OciRef:
    host: str  # host[:port]
    repository: str
    tag: str | None
    digest: str | None  # "sha256:..." (pull only)

    @property
    def hostname(self) -> str:
        """The host without its port."""
        return self.host if self.host.endswith("]") or ":" not in self.host else self.host.rsplit(":", 1)[0]

    @property
    def is_loopback(self) -> bool:
        return self.hostname in _LOOPBACK or self.hostname.startswith("127.")

    @property
    def reference(self) -> str:
        return self.digest or self.tag or ""

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repository}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    revision: str | None

    def __str__(self) -> str:
        return f"hf://{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class FolderRef:
    path: Path
    tag: str | None

    def __str__(self) -> str:
        return f"file://{self.path}" + (f"#{self.tag}" if self.tag else "")


Ref = OciRef | HubRef | FolderRef


def _bad(uri: str, why: str) -> InferCError:
    return InferCError(f"'{uri}' is not a publish URI: {why}; expected oci://HOST[:PORT]/REPO:TAG, hf://OWNER/NAME[@REVISION] or file://PATH[#TAG]")


def _parse_oci(uri: str, rest: str) -> OciRef:
    host, sep, path = rest.partition("/")
    if "@" in host:  # never echo the part before '@': it may be a password
        raise InferCError("an oci:// URI must not carry credentials (user:password@host); set INFERC_REGISTRY_USERNAME and "
                          "INFERC_REGISTRY_PASSWORD, or log in with a docker-style config file")
    if not sep or not _HOST.match(host):
        raise _bad(uri, f"'{host}' is not HOST[:PORT]")
    digest = tag = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST.match(digest):
            raise _bad(uri, f"'{digest}' is not a sha256:<64 hex> digest")
    elif ":" in path:
        path, _, tag = path.rpartition(":")
        if not _TAG.match(tag):
            raise _bad(uri, f"tag '{tag}' must be 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')")
    if not _REPO.match(path):
        raise _bad(uri, f"repository '{path}' must be lowercase path components (letters, digits, '.', '_', '-')")
    if tag is None and digest is None:
        raise _bad(uri, "no tag: end it with :TAG")
    return OciRef(host, path, tag, digest)


def _parse_hub(uri: str, rest: str) -> HubRef:
    repo_id, _, revision = rest.partition("@")
    if not _HUB_REPO.match(repo_id) or ".." in repo_id:
        raise _bad(uri, f"'{repo_id}' is not OWNER/NAME")
    if "@" in rest and not revision:
        raise _bad(uri, "empty revision after '@'")
    return HubRef(repo_id, revision or None)


def _parse_folder(uri: str, rest: str) -> FolderRef:
    path, _, tag = rest.partition("#")
    if not path:
        raise _bad(uri, "no path")
    if tag and not _TAG.match(tag):
        raise _bad(uri, f"tag '{tag}' must be 1-128 of letters, digits, '_', '.', '-'")
    return FolderRef(Path(path), tag or None)


def parse_uri(uri: str) -> Ref:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise _bad(uri, "no scheme")
    parsers = {"oci": _parse_oci, "hf": _parse_hub, "file": _parse_folder}
    if scheme not in parsers:
        raise _bad(uri, f"unknown scheme '{scheme}'")
    return parsers[scheme](uri, rest)
