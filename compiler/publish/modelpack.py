"""An artifact as a CNCF ModelPack OCI artifact (model-spec v0.0.7, see constants.py):
the model config blob, one unarchived layer per file with its media type and
`org.cncf.model.filepath`, and an image manifest whose annotations carry the artifact's
key facts. `pack` builds it; `read_manifest` checks one fetched back before any layer
is written. Used by the registry (oci.py) and the registry folder (folder.py) alike."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from inferc.core.errors import CheckpointError, PublishError
from inferc.compiler.manifest import MANIFEST_FILE
from inferc.compiler.publish import constants as C
from inferc.compiler.publish.facts import artifact_name, description, exports, model_name, quant_name
from inferc.compiler.publish.verify import Artifact, check_relative_path

_CHUNK = 1 << 22

# Files that configure the weights (the spec's weight.config type); weights by suffix.
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth")
_WEIGHT_CONFIG_NAMES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja",
                        "hf_quant_config.json", "model.safetensors.index.json")
_DOC_NAMES = (MANIFEST_FILE, "report.json", "report.md", C.CARD_FILE)
_FORMAT_NAMES = {"hf": "safetensors", "gguf": "gguf"}
_PRECISION = {"bf16": "bfloat16", "fp8": "float8_e4m3,bfloat16"}  # spec names; other quants: see `quantization`


def sha256_digest(hexdigest: str) -> str:
    return f"sha256:{hexdigest}"


@dataclass(frozen=True)
class Blob:
    """A blob to upload: a file of the artifact, or bytes made here (config, card)."""

    media_type: str
    digest: str  # "sha256:<hex>"
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    data: bytes | None = None

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d

    def chunks(self) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with open(self.path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk


def blob_of(data: bytes, media_type: str, annotations: dict[str, str] | None = None) -> Blob:
    return Blob(media_type, sha256_digest(hashlib.sha256(data).hexdigest()), len(data), annotations or {}, data=data)


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Package:
    config: Blob
    layers: tuple[Blob, ...]
    manifest: bytes  # the image manifest, exactly as uploaded
    digest: str  # its "sha256:<hex>"

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config)


def media_type_of(path: str) -> tuple[str, bool]:
    """(media type, classified by fallback): weights by suffix, weight configs by name or
    by living in an export folder, documentation by name; anything else is documentation,
    flagged as untested."""
    p = PurePosixPath(path)
    if p.suffix in _WEIGHT_SUFFIXES:
        return C.MEDIA_TYPE_WEIGHT_RAW, False
    if p.name in _WEIGHT_CONFIG_NAMES or (len(p.parts) > 1 and p.parts[0].startswith("hf")):
        return C.MEDIA_TYPE_WEIGHT_CONFIG_RAW, p.name not in _WEIGHT_CONFIG_NAMES
    return C.MEDIA_TYPE_DOC_RAW, p.name not in _DOC_NAMES


def _layer_annotations(path: str, size: int, mtime: str, untested: bool) -> dict[str, str]:
    metadata = {"name": PurePosixPath(path).name, "mode": 0o644, "uid": 0, "gid": 0, "size": size, "mtime": mtime,
                "typeflag": C.TAR_TYPEFLAG_REGULAR}
    out = {C.ANNOTATION_FILEPATH: path, C.OCI_ANNOTATION_TITLE: path, C.ANNOTATION_FILE_METADATA: json.dumps(metadata, separators=(",", ":"))}
    if untested:
        out[C.ANNOTATION_MEDIATYPE_UNTESTED] = "true"
    return out


def _param_size(n: int | None) -> str | None:
    if not n:
        return None
    for scale, letter in ((10**15, "Q"), (10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= scale:
            return f"{n / scale:.1f}{letter}"
    return str(n)


def model_config(artifact: Artifact, diff_ids: list[str]) -> dict[str, Any]:
    """The model config blob (`application/vnd.cncf.model.config.v1+json`)."""
    m = artifact.manifest
    report = artifact.read_json("report.json") or {}
    quant = quant_name(m)
    config: dict[str, Any] = {"architecture": "transformer",
                              "format": ",".join(_FORMAT_NAMES.get(e.format, e.format) for e in exports(artifact)),
                              "quantization": quant,
                              "capabilities": {"inputTypes": ["text"], "outputTypes": ["text"]}}
    if quant in _PRECISION:
        config["precision"] = _PRECISION[quant]
    if size := _param_size((report.get("sizes") or {}).get("n_weights")):
        config["paramSize"] = size
    descriptor: dict[str, Any] = {"name": artifact_name(m), "description": description(m)}
    if m.get("created"):
        descriptor["createdAt"] = m["created"]
    if report.get("architecture"):
        descriptor["family"] = str(report["architecture"]).split(" ")[0]
    return {"descriptor": descriptor, "config": config, "modelfs": {"type": C.MODELFS_TYPE, "diffIds": diff_ids}}


def _metrics(report: dict[str, Any]) -> dict[str, str]:
    q, s = report.get("quality") or {}, report.get("speed") or {}
    values = {
        "ppl": (q.get("candidate") or {}).get("ppl"), "ppl_reference": (q.get("reference") or {}).get("ppl"),
        "ppl_increase_pct": q.get("ppl_increase_pct"), "kld_mean": q.get("kld_mean"), "top1": q.get("top1"),
        "prefill_tok_s": s.get("prefill_tok_s"), "decode_tok_s": s.get("decode_tok_s"),
    }
    out = {C.ANNOTATION_METRIC_PREFIX + k: f"{v:.6g}" for k, v in values.items() if isinstance(v, (int, float))}
    cand = q.get("candidate") or {}
    if cand:
        out[C.ANNOTATION_EVAL_METHOD] = (f"{cand.get('method')}, {cand.get('chunks')}x{cand.get('ctx_len')} tokens, "
                                         f"{q.get('tokens_scored')} scored, on {q.get('source')}")
    return out


def manifest_annotations(artifact: Artifact) -> dict[str, str]:
    """The image manifest's annotations: the artifact's key facts, all strings."""
    m = artifact.manifest
    out = {
        C.OCI_ANNOTATION_TITLE: artifact_name(m),
        C.OCI_ANNOTATION_DESCRIPTION: description(m),
        C.ANNOTATION_MODEL: model_name(m),
        C.ANNOTATION_TARGET: str(m.get("target")),
        C.ANNOTATION_QUANT: quant_name(m),
        C.ANNOTATION_RECIPE: str((m.get("recipe") or {}).get("name")),
        C.ANNOTATION_FORMATS: ",".join(e.format for e in exports(artifact)),
        C.ANNOTATION_VERSION: str((m.get("versions") or {}).get("inferc")),
        C.ANNOTATION_MANIFEST_SHA256: artifact.manifest_file.sha256,
    }
    if m.get("created"):
        out[C.OCI_ANNOTATION_CREATED] = m["created"]
    return out | _metrics(artifact.read_json("report.json") or {})


def pack(artifact: Artifact, card: str | None) -> Package:
    """The artifact as a ModelPack artifact; `card` becomes README.md unless the artifact has one."""
    mtime = str(artifact.manifest.get("created") or "1970-01-01T00:00:00Z")
    layers = []
    for f in artifact.all_files:
        media_type, untested = media_type_of(f.path)
        layers.append(Blob(media_type, sha256_digest(f.sha256), f.size, _layer_annotations(f.path, f.size, mtime, untested),
                           path=artifact.root / f.path))
    if card is not None and C.CARD_FILE not in {f.path for f in artifact.all_files}:
        data = card.encode()
        notes = _layer_annotations(C.CARD_FILE, len(data), mtime, False) | {C.ANNOTATION_MODEL_CARD: "true"}
        layers.append(blob_of(data, C.MEDIA_TYPE_DOC_RAW, notes))
    config = blob_of(_canonical(model_config(artifact, [b.digest for b in layers])), C.MEDIA_TYPE_MODEL_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": C.OCI_MANIFEST_MEDIA_TYPE,
        "artifactType": C.ARTIFACT_TYPE_MODEL_MANIFEST,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
        "annotations": manifest_annotations(artifact),
    }
    raw = _canonical(manifest)
    return Package(config, tuple(layers), raw, sha256_digest(hashlib.sha256(raw).hexdigest()))


# ---- reading one back ------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    filepath: str
    digest: str
    size: int
    is_card: bool


@dataclass(frozen=True)
class FetchedManifest:
    digest: str
    config: dict[str, Any]  # the config descriptor
    layers: tuple[Layer, ...]
    annotations: dict[str, str]


def _check_digest(d: Any, where: str) -> str:
    if not (isinstance(d, str) and d.startswith("sha256:") and len(d) == 71 and all(c in "0123456789abcdef" for c in d[7:])):
        raise PublishError(f"{where}: digest {d!r} is not a sha256 digest")
    return d


def read_manifest(raw: bytes, expected_digest: str | None, where: str) -> FetchedManifest:
    """Parse a fetched image manifest after checking its bytes against the digest asked
    for or announced; refuses anything but a ModelPack artifact with safe file paths."""
    digest = sha256_digest(hashlib.sha256(raw).hexdigest())
    if expected_digest is not None and digest != expected_digest:
        raise PublishError(f"{where}: the manifest's bytes have digest {digest}, expected {expected_digest}; refusing to pull it")
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PublishError(f"{where}: the manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("artifactType") != C.ARTIFACT_TYPE_MODEL_MANIFEST:
        found = manifest.get("artifactType") if isinstance(manifest, dict) else type(manifest).__name__
        raise PublishError(f"{where}: not a ModelPack model artifact (artifactType {found!r}, expected {C.ARTIFACT_TYPE_MODEL_MANIFEST})")
    config = manifest.get("config") or {}
    if config.get("mediaType") != C.MEDIA_TYPE_MODEL_CONFIG:
        raise PublishError(f"{where}: config media type {config.get('mediaType')!r}, expected {C.MEDIA_TYPE_MODEL_CONFIG}")
    _check_digest(config.get("digest"), where)
    layers, seen = [], set()
    for i, desc in enumerate(manifest.get("layers") or []):
        notes = desc.get("annotations") or {}
        path = notes.get(C.ANNOTATION_FILEPATH)
        if not isinstance(path, str):
            raise PublishError(f"{where}: layer {i} has no {C.ANNOTATION_FILEPATH} annotation")
        try:
            path = check_relative_path(path, where)
        except CheckpointError as exc:
            raise PublishError(str(exc)) from exc
        if path in seen:
            raise PublishError(f"{where}: two layers claim the file {path}")
        seen.add(path)
        size = desc.get("size")
        if not isinstance(size, int) or size < 0:
            raise PublishError(f"{where}: layer {path} has no valid size")
        layers.append(Layer(path, _check_digest(desc.get("digest"), where), size, notes.get(C.ANNOTATION_MODEL_CARD) == "true"))
    if MANIFEST_FILE not in seen:
        raise PublishError(f"{where}: no layer holds {MANIFEST_FILE}; this artifact was not published by inferc")
    return FetchedManifest(digest, config, tuple(layers), dict(manifest.get("annotations") or {}))
