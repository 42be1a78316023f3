"""file://: a registry folder (an OCI image layout) for air-gapped sites."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import FAST
from test_publish_oci import _same_tree

from inferc.core.errors import InferCError, PublishError
from inferc.compiler.publish import folder, publish, pull


def test_publish_then_pull_through_a_folder(artifact, tmp_path):
    reg = tmp_path / "registry"
    done = publish(artifact, f"file://{reg}")
    assert json.loads((reg / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = folder.entries(reg)
    assert entry["digest"] == done.location and entry["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "ckpt-fp8-h100"  # <model>-<quant>-<target>
    assert entry["annotations"]["org.inferc.target"] == "h100"
    pull(f"file://{reg}", tmp_path / "out")
    _same_tree(artifact, tmp_path / "out")


def test_tags_in_one_folder(artifact, tmp_path):
    reg = tmp_path / "registry"
    publish(artifact, f"file://{reg}#one")
    publish(artifact, f"file://{reg}#two")
    publish(artifact, f"file://{reg}#two")  # republishing a tag replaces its entry
    assert sorted(e["annotations"]["org.opencontainers.image.ref.name"] for e in folder.entries(reg)) == ["one", "two"]
    with pytest.raises(InferCError, match="holds 2 artifacts; name one with .*#TAG \\(tags: one, two\\)"):
        pull(f"file://{reg}", tmp_path / "out")
    with pytest.raises(InferCError, match="no artifact tagged 'three'"):
        pull(f"file://{reg}#three", tmp_path / "out")
    pull(f"file://{reg}#two", tmp_path / "out")
    _same_tree(artifact, tmp_path / "out")


def test_a_tampered_blob_in_the_folder_is_refused(artifact, tmp_path):
    reg = tmp_path / "registry"
    publish(artifact, f"file://{reg}#t")
    files = json.loads((artifact / "manifest.json").read_text())["files"]
    sha = next(f["sha256"] for f in files if f["path"] == "hf/model.safetensors")
    blob = folder.blob_path(reg, f"sha256:{sha}")
    data = bytearray(blob.read_bytes())
    data[10] ^= 0x40
    blob.write_bytes(bytes(data))
    with pytest.raises(PublishError, match="hf/model.safetensors: the bytes have digest"):
        pull(f"file://{reg}#t", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_registry_is_left_alone(artifact, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("mine")
    with pytest.raises(InferCError, match="neither empty nor a registry folder"):
        publish(artifact, f"file://{tmp_path / 'docs'}")
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["notes.txt"]
    with pytest.raises(InferCError, match="is not a registry folder"):
        pull(f"file://{tmp_path / 'docs'}", tmp_path / "out")


def test_oras_reads_the_folder_and_copies_it_into_a_registry(artifact, tmp_path, registry):
    """The air-gapped path: the folder carried over, pushed into the site's registry by
    oras-py's own OCI layout code, then pulled by inferc."""
    from oras.layout import Layout
    from oras.provider import Registry

    reg = tmp_path / "registry"
    done = publish(artifact, f"file://{reg}#site")
    layout = Layout(str(reg), validate=True)  # raises unless a valid OCI image layout
    layout.push_to_registry(Registry(hostname=registry.host, insecure=True), f"{registry.host}/mirror/tiny:site", tag="site")
    got = pull(f"oci://{registry.host}/mirror/tiny:site", tmp_path / "out", policy=FAST)
    assert got.location == done.location
    _same_tree(artifact, tmp_path / "out")


def test_layers_that_disagree_with_manifest_json_are_refused(artifact, tmp_path):
    """A consistent OCI artifact (every digest right) whose report.md is not the one
    manifest.json lists: the pull's last check, against manifest.json, refuses it."""
    reg = tmp_path / "registry"
    done = publish(artifact, f"file://{reg}#t")
    other = b"# a different report\n"
    other_digest = f"sha256:{hashlib.sha256(other).hexdigest()}"
    folder.blob_path(reg, other_digest).write_bytes(other)
    manifest = json.loads(folder.blob_path(reg, done.location).read_bytes())
    layer = next(x for x in manifest["layers"] if x["annotations"]["org.cncf.model.filepath"] == "report.md")
    layer["digest"], layer["size"] = other_digest, len(other)
    raw = json.dumps(manifest).encode()
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    folder.blob_path(reg, digest).write_bytes(raw)
    index = json.loads((reg / "index.json").read_text())
    index["manifests"][0].update(digest=digest, size=len(raw))
    (reg / "index.json").write_text(json.dumps(index))
    with pytest.raises(PublishError, match=f"do not match their manifest.json: report.md has {len(other)} bytes, manifest.json says"):
        pull(f"file://{reg}#t", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_publish_that_fails_midway_leaves_the_index_as_it_was(artifact, tmp_path, monkeypatch):
    reg = tmp_path / "registry"
    publish(artifact, f"file://{reg}#old")
    before = (reg / "index.json").read_bytes()
    (artifact / "report.md").write_text("rebuilt\n")  # a new artifact: same files but one
    m = json.loads((artifact / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == "report.md":
            f.update(bytes=8, sha256=hashlib.sha256(b"rebuilt\n").hexdigest())
    (artifact / "manifest.json").write_text(json.dumps(m))
    calls = []
    real = folder.write_checked

    def disk_full_on_third_blob(chunks, dest, digest, size, what):
        calls.append(what)
        if len(calls) == 3:
            def failing():
                yield b"x" * 10
                raise OSError(28, "No space left on device")

            chunks = failing()
        return real(chunks, dest, digest, size, what)

    monkeypatch.setattr(folder, "write_checked", disk_full_on_third_blob)
    with pytest.raises(PublishError, match="No space left on device"):
        publish(artifact, f"file://{reg}#new")
    assert (reg / "index.json").read_bytes() == before  # no entry for the partial artifact
    assert not list((reg / "blobs" / "sha256").glob(".*.tmp-*"))  # nor a half-written blob
