"""The checks before any upload, the ModelPack layout, the model card and the URIs, on
a real (tiny) built artifact."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from inferc.core.errors import CheckpointError, InferCError, PublishError
from inferc.compiler.publish import constants as C
from inferc.compiler.publish import publish
from inferc.compiler.publish.card import render_card
from inferc.compiler.publish.modelpack import media_type_of, pack, read_manifest
from inferc.compiler.publish.uri import FolderRef, HubRef, OciRef, parse_uri
from inferc.compiler.publish.verify import verify_artifact


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_built_artifact_verifies_and_lists_every_file(artifact):
    a = verify_artifact(artifact)
    on_disk = sorted(p.relative_to(artifact).as_posix() for p in artifact.rglob("*") if p.is_file())
    assert sorted(f.path for f in a.all_files) == on_disk
    assert a.manifest_file.size == (artifact / "manifest.json").stat().st_size


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda d: _flip_byte(d / "hf" / "model.safetensors"), "hf/model.safetensors has sha256"),
        (lambda d: (d / "report.md").write_text((d / "report.md").read_text() + "\n"), "report.md has"),
        (lambda d: (d / "hf" / "config.json").unlink(), "hf/config.json is listed in manifest.json but missing"),
        (lambda d: (d / "hf" / "extra.bin").write_bytes(b"\x00" * 8), "hf/extra.bin is not listed in manifest.json"),
        (lambda d: os.symlink("/etc/hostname", d / "hf" / "link.txt"), "hf/link.txt is a symbolic link"),
        (lambda d: (d / "manifest.json").unlink(), "has no manifest.json"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json is not valid JSON"),
    ],
)
def test_a_tampered_artifact_is_refused_naming_the_file(artifact, tamper, message):
    tamper(artifact)
    with pytest.raises(CheckpointError) as exc:
        verify_artifact(artifact)
    assert message in str(exc.value)


@pytest.mark.parametrize("bad_path", ["../outside.txt", "/etc/passwd", "hf/../../x", "a\\b", "manifest.json"])
def test_manifest_paths_must_stay_inside_the_artifact(artifact, bad_path):
    manifest = json.loads((artifact / "manifest.json").read_text())
    manifest["files"].append({"path": bad_path, "bytes": 1, "sha256": "0" * 64})
    (artifact / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="plain relative path|as one of its files"):
        verify_artifact(artifact)


def test_publish_refuses_a_tampered_artifact_before_touching_the_destination(artifact, tmp_path):
    _flip_byte(artifact / "hf" / "model.safetensors")
    folder = tmp_path / "registry"
    with pytest.raises(CheckpointError, match="refusing to publish: .*hf/model.safetensors has sha256"):
        publish(artifact, f"file://{folder}")
    assert not folder.exists()


def test_modelpack_layers_media_types_and_annotations(artifact):
    a = verify_artifact(artifact)
    package = pack(a, render_card(a))
    manifest = json.loads(package.manifest)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.model.config.v1+json"
    by_path = {layer["annotations"]["org.cncf.model.filepath"]: layer for layer in manifest["layers"]}
    assert set(by_path) == {f.path for f in a.all_files} | {"README.md"}
    assert by_path["hf/model.safetensors"]["mediaType"] == "application/vnd.cncf.model.weight.v1.raw"
    assert by_path["hf/config.json"]["mediaType"] == "application/vnd.cncf.model.weight.config.v1.raw"
    assert by_path["report.json"]["mediaType"] == "application/vnd.cncf.model.doc.v1.raw"
    assert by_path["README.md"]["annotations"][C.ANNOTATION_MODEL_CARD] == "true"
    for f in a.all_files:  # one unarchived layer per file: its digest is the file's sha256
        assert by_path[f.path]["digest"] == f"sha256:{f.sha256}" and by_path[f.path]["size"] == f.size
        meta = json.loads(by_path[f.path]["annotations"]["org.cncf.model.file.metadata+json"])
        assert meta["size"] == f.size and meta["typeflag"] == ord("0")
    notes = manifest["annotations"]
    report = json.loads((artifact / "report.json").read_text())
    assert notes["org.inferc.target"] == "h100" and notes["org.inferc.quant"] == "fp8" and notes["org.inferc.formats"] == "hf"
    assert float(notes["org.inferc.metric.kld_mean"]) == pytest.approx(report["quality"]["kld_mean"], rel=1e-5)
    assert float(notes["org.inferc.metric.decode_tok_s"]) == pytest.approx(report["speed"]["decode_tok_s"], rel=1e-5)
    assert notes["org.inferc.manifest.sha256"] == a.manifest_file.sha256
    assert all(isinstance(v, str) for v in notes.values())
    config = json.loads(package.config.data)
    assert config["modelfs"] == {"type": "layers", "diffIds": [layer["digest"] for layer in manifest["layers"]]}
    assert config["config"]["quantization"] == "fp8" and config["config"]["format"] == "safetensors"
    assert config["config"]["paramSize"].endswith("K") and set(config) == {"descriptor", "config", "modelfs"}


@pytest.mark.parametrize("path, media_type, untested", [
    ("model.gguf", C.MEDIA_TYPE_WEIGHT_RAW, False),
    ("hf-modelopt/hf_quant_config.json", C.MEDIA_TYPE_WEIGHT_CONFIG_RAW, False),
    ("hf/tokenizer.json", C.MEDIA_TYPE_WEIGHT_CONFIG_RAW, False),
    ("hf/chat_template.json", C.MEDIA_TYPE_WEIGHT_CONFIG_RAW, True),
    ("report.md", C.MEDIA_TYPE_DOC_RAW, False),
    ("notes.txt", C.MEDIA_TYPE_DOC_RAW, True),
])
def test_media_type_by_file(path, media_type, untested):
    assert media_type_of(path) == (media_type, untested)


def test_a_fetched_manifest_is_checked_before_use(artifact):
    a = verify_artifact(artifact)
    package = pack(a, render_card(a))
    fetched = read_manifest(package.manifest, package.digest, "here")
    assert [layer.filepath for layer in fetched.layers if not layer.is_card] == [f.path for f in a.all_files]
    with pytest.raises(PublishError, match="expected sha256:0000"):
        read_manifest(package.manifest, "sha256:" + "0" * 64, "here")
    evil = json.loads(package.manifest)
    evil["layers"][0]["annotations"]["org.cncf.model.filepath"] = "../../etc/cron.d/x"
    with pytest.raises(PublishError, match="not a plain relative path"):
        read_manifest(json.dumps(evil).encode(), None, "here")
    evil["artifactType"] = "application/vnd.example+json"
    with pytest.raises(PublishError, match="not a ModelPack model artifact"):
        read_manifest(json.dumps(evil).encode(), None, "here")


def test_model_card_from_manifest_and_report(artifact):
    a = verify_artifact(artifact)
    card = render_card(a)
    report = json.loads((artifact / "report.json").read_text())
    manifest = a.manifest
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert manifest["source"]["name"] in card and manifest["source"]["sha256"] in card
    assert "tiny-fp8 (quant fp8)" in card and "h100 (sm90)" in card and "hf (compressed-tensors)" in card
    assert f"{report['quality']['candidate']['ppl']:.4f}" in card and f"{report['quality']['kld_mean']:.5f}" in card
    assert f"{report['speed']['decode_tok_s']:.1f} tok/s" in card
    assert "every position after the first" in card  # the method, as measured (held-out samples: full)
    assert manifest["calibration"]["sha256"] in card and a.manifest_file.sha256 in card
    for consumer in ("vLLM", "TensorRT-LLM", "llama.cpp", "ONNX Runtime GenAI"):
        assert f"**{consumer}**" in card
    assert "`vllm serve ./hf`" in card and "no GGUF export" in card and "no ModelOpt export" in card


def test_model_card_for_a_gguf_artifact_without_evaluation(artifact):
    a = verify_artifact(artifact)
    manifest = {**a.manifest, "exports": [{"format": "gguf", "path": "model.gguf"}]}
    gguf_only = dataclasses.replace(a, manifest=manifest, files=tuple(f for f in a.files if f.path != "report.json"))
    card = render_card(gguf_only)
    assert "library_name: gguf" in card and "`llama-cli -m ./model.gguf" in card
    assert "Not measured: the artifact was built without evaluation." in card and "Speed was not measured." in card
    assert "no compressed-tensors export" in card


@pytest.mark.parametrize("uri, ref", [
    ("oci://127.0.0.1:5000/models/tiny:v1", OciRef("127.0.0.1:5000", "models/tiny", "v1", None)),
    ("oci://registry.example.com/a/b/c:1.0-rc", OciRef("registry.example.com", "a/b/c", "1.0-rc", None)),
    ("oci://localhost:5000/tiny@sha256:" + "a" * 64, OciRef("localhost:5000", "tiny", None, "sha256:" + "a" * 64)),
    ("hf://org/model", HubRef("org/model", None)),
    ("hf://org/model@v2", HubRef("org/model", "v2")),
    ("file:///srv/models", FolderRef(Path("/srv/models"), None)),
    ("file://reg#tiny-fp8", FolderRef(Path("reg"), "tiny-fp8")),
])
def test_uris(uri, ref):
    assert parse_uri(uri) == ref


@pytest.mark.parametrize("uri, message", [
    ("s3://bucket/x", "unknown scheme 's3'"),
    ("models/tiny", "no scheme"),
    ("oci://127.0.0.1:5000/tiny", "no tag"),
    ("oci://127.0.0.1:5000/Tiny:v1", "must be lowercase"),
    ("oci://127.0.0.1:5000/tiny:-v1", "tag '-v1'"),
    ("oci://127.0.0.1:5000/tiny@sha256:abc", "is not a sha256"),
    ("hf://just-a-name", "is not OWNER/NAME"),
    ("file://", "no path"),
])
def test_bad_uris(uri, message):
    with pytest.raises(InferCError) as exc:
        parse_uri(uri)
    assert message in str(exc.value)


def test_credentials_in_a_uri_are_refused_without_echoing_them():
    with pytest.raises(InferCError) as exc:
        parse_uri("oci://bob:hunter2@127.0.0.1:5000/tiny:v1")
    assert "must not carry credentials" in str(exc.value) and "hunter2" not in str(exc.value)
    assert OciRef("127.0.0.1:5000", "t", "v", None).is_loopback and not OciRef("example.com", "t", "v", None).is_loopback
    assert OciRef("[::1]:5000", "t", "v", None).is_loopback
