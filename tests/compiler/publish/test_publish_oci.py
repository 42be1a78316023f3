"""oci://: push to and pull from a real registry (Debian's docker-registry on 127.0.0.1),
without and with htpasswd basic auth; tampering, a registry killed mid-push, and a
registry that comes back during the backoff."""

from __future__ import annotations

import base64
import filecmp
import json
import logging
import threading
import time
from pathlib import Path

import pytest
from conftest import FAST, PASSWORD, USER

from inferc.compiler.cli import main
from inferc.core.errors import CheckpointError, ExitCode, PublishError
from inferc.compiler.publish import RetryPolicy, publish, pull

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    match, mismatch, errors = filecmp.cmpfiles(a, b, files_a, shallow=False)
    assert mismatch == [] and errors == [] and len(match) == len(files_a)


def _manifest(registry, repo: str, ref: str, auth=None) -> tuple[int, dict, dict]:
    status, body, headers = registry.get(f"/v2/{repo}/manifests/{ref}", auth=auth, accept=OCI_MANIFEST)
    return status, (json.loads(body) if status == 200 else {}), headers


def test_push_then_pull_gives_identical_bytes(registry, artifact, tmp_path):
    done = publish(artifact, f"oci://{registry.host}/models/tiny:v1", policy=FAST)
    status, manifest, headers = _manifest(registry, "models/tiny", "v1")
    assert status == 200 and headers["Docker-Content-Digest"] == done.location
    assert manifest["artifactType"] == "application/vnd.cncf.model.manifest.v1+json"
    assert manifest["annotations"]["org.inferc.quant"] == "fp8"
    status, config, _ = registry.get(f"/v2/models/tiny/blobs/{manifest['config']['digest']}")
    assert status == 200 and json.loads(config)["config"]["quantization"] == "fp8"

    out = tmp_path / "pulled"
    got = pull(f"oci://{registry.host}/models/tiny:v1", out, policy=FAST)
    assert got.location == done.location
    _same_tree(artifact, out)  # byte for byte; the model card is verified but not written

    by_digest = pull(f"oci://{registry.host}/models/tiny@{done.location}", tmp_path / "by-digest", policy=FAST)
    assert by_digest.files == done.files
    _same_tree(artifact, tmp_path / "by-digest")


def test_a_second_push_of_the_same_artifact_uploads_nothing_new_and_pull_refuses_an_existing_dir(registry, artifact, tmp_path):
    first = publish(artifact, f"oci://{registry.host}/models/again:a", policy=FAST)
    second = publish(artifact, f"oci://{registry.host}/models/again:b", policy=FAST)
    assert first.location == second.location  # same content, same manifest digest
    out = tmp_path / "out"
    pull(f"oci://{registry.host}/models/again:a", out, policy=FAST)
    with pytest.raises(Exception, match="already exists; pass --force"):
        pull(f"oci://{registry.host}/models/again:a", out, policy=FAST)
    pull(f"oci://{registry.host}/models/again:b", out, force=True, policy=FAST)
    _same_tree(artifact, out)


def test_a_tampered_artifact_is_refused_before_upload(registry, artifact):
    data = bytearray((artifact / "hf" / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (artifact / "hf" / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="refusing to publish: .*hf/model.safetensors has sha256"):
        publish(artifact, f"oci://{registry.host}/models/tampered:v1", policy=FAST)
    status, body, _ = registry.get("/v2/models/tampered/tags/list")
    assert status == 404, body  # the repository was never created: nothing was uploaded


def test_pulling_a_manifest_whose_digest_does_not_match_is_refused(registry, artifact, tmp_path):
    done = publish(artifact, f"oci://{registry.host}/models/swapped:v1", policy=FAST)
    stored = registry.blob_data(done.location)
    original = stored.read_bytes()
    manifest = json.loads(original)
    manifest["annotations"]["org.inferc.quant"] = "bf16"  # a registry serving other bytes under the digest
    stored.write_bytes(json.dumps(manifest, separators=(",", ":")).encode())
    for uri in (f"oci://{registry.host}/models/swapped:v1", f"oci://{registry.host}/models/swapped@{done.location}"):
        with pytest.raises(PublishError, match=f"expected {done.location}; refusing to pull it"):
            pull(uri, tmp_path / "out", policy=FAST)
        assert not (tmp_path / "out").exists()
    stored.write_bytes(original)


def test_pulling_a_corrupted_layer_is_refused_and_leaves_nothing(registry, artifact, tmp_path):
    done = publish(artifact, f"oci://{registry.host}/models/corrupt:v1", policy=FAST)
    status, manifest, _ = _manifest(registry, "models/corrupt", "v1")
    weights = next(x for x in manifest["layers"] if x["annotations"]["org.cncf.model.filepath"] == "hf/model.safetensors")
    stored = registry.blob_data(weights["digest"])
    original = stored.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    dest.mkdir()
    try:
        with pytest.raises(PublishError, match=f"hf/model.safetensors: the bytes have digest .*, expected {weights['digest']}"):
            pull(f"oci://{registry.host}/models/corrupt:v1", dest / "out", policy=FAST)
        assert list(dest.iterdir()) == []  # neither the directory nor its staging copy
    finally:
        stored.write_bytes(original)
    assert done.location


def test_a_registry_killed_mid_push_leaves_no_tag(own_registry, artifact):
    uploaded = []

    def kill_after_first_blob(label, done, total):
        uploaded.append(done)
        if len(uploaded) == 1:
            own_registry.stop()

    with pytest.raises(PublishError, match="failed after 2 attempts"):
        publish(artifact, f"oci://{own_registry.host}/models/partial:v1", policy=FAST, progress=kill_after_first_blob)
    own_registry.start()
    first = json.loads((artifact / "manifest.json").read_text())["files"][0]
    status, _, _ = own_registry.get(f"/v2/models/partial/blobs/sha256:{first['sha256']}")
    assert status == 200  # the push did get under way: its first blob is there
    status, _, _ = _manifest(own_registry, "models/partial", "v1")
    assert status == 404  # but no tag points at the partial artifact
    status, body, _ = own_registry.get("/v2/models/partial/tags/list")
    assert status == 404 or not (json.loads(body).get("tags") or []), body


def test_a_transient_outage_is_retried_with_backoff(own_registry, artifact, tmp_path, caplog):
    own_registry.stop()
    restarter = threading.Timer(0.8, own_registry.start)
    restarter.start()
    policy = RetryPolicy(attempts=6, initial_delay_s=0.3, factor=2.0, request_timeout_s=10)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="inferc.compiler.publish.retry"):
        done = publish(artifact, f"oci://{own_registry.host}/models/retried:v1", policy=policy)
    restarter.join()
    assert time.monotonic() - started >= 0.8
    assert any("retry 1 of 5 in 0.3 s" in r.getMessage() for r in caplog.records)
    pull(f"oci://{own_registry.host}/models/retried@{done.location}", tmp_path / "out", policy=FAST)
    _same_tree(artifact, tmp_path / "out")


def test_basic_auth_from_the_environment(auth_registry, artifact, tmp_path, monkeypatch):
    with pytest.raises(PublishError, match="asks for credentials; set INFERC_REGISTRY_USERNAME"):
        publish(artifact, f"oci://{auth_registry.host}/models/auth:v1", policy=FAST)
    monkeypatch.setenv("INFERC_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("INFERC_REGISTRY_PASSWORD", PASSWORD)
    done = publish(artifact, f"oci://{auth_registry.host}/models/auth:v1", policy=FAST)
    status, manifest, _ = _manifest(auth_registry, "models/auth", "v1", auth=(USER, PASSWORD))
    assert status == 200 and manifest["annotations"]["org.inferc.target"] == "h100"
    pull(f"oci://{auth_registry.host}/models/auth:v1", tmp_path / "out", policy=FAST)
    _same_tree(artifact, tmp_path / "out")
    assert done.location


def test_basic_auth_from_a_docker_config_file(auth_registry, artifact, tmp_path, monkeypatch):
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config_dir / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    publish(artifact, f"oci://{auth_registry.host}/models/dockercfg:v1", policy=FAST)
    pull(f"oci://{auth_registry.host}/models/dockercfg:v1", tmp_path / "out", policy=FAST)
    _same_tree(artifact, tmp_path / "out")


def test_a_wrong_password_is_refused_clearly_and_never_printed(auth_registry, artifact, tmp_path, monkeypatch, capsys, caplog):
    wrong = "Wr0ng-pa55word-xyzzy"
    monkeypatch.setenv("INFERC_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("INFERC_REGISTRY_PASSWORD", wrong)
    caplog.set_level(logging.DEBUG)  # everything any library logs, urllib3 included
    code = main(["-vv", "publish", str(artifact), "--to", f"oci://{auth_registry.host}/models/denied:v1", "--quiet"])
    out = capsys.readouterr()
    assert code == ExitCode.PUBLISH_FAILED
    assert f"refused the credentials of user '{USER}' (from INFERC_REGISTRY_USERNAME/INFERC_REGISTRY_PASSWORD)" in out.err
    code = main(["-vv", "pull", f"oci://{auth_registry.host}/models/denied:v1", "--out", str(tmp_path / "o"), "--quiet"])
    out2 = capsys.readouterr()
    assert code == ExitCode.PUBLISH_FAILED and "refused the credentials" in out2.err
    everything = out.out + out.err + out2.out + out2.err + caplog.text
    for secret in (wrong, base64.b64encode(f"{USER}:{wrong}".encode()).decode(), PASSWORD):
        assert secret not in everything
    status, _, _ = auth_registry.get("/v2/models/denied/tags/list", auth=(USER, PASSWORD))
    assert status == 404  # nothing was uploaded


def test_https_to_a_plain_http_registry_is_one_line_with_the_hint(registry, artifact):
    from inferc.compiler.publish import oci
    from inferc.compiler.publish.card import render_card
    from inferc.compiler.publish.modelpack import pack
    from inferc.compiler.publish.uri import parse_uri
    from inferc.compiler.publish.verify import verify_artifact

    a = verify_artifact(artifact)
    started = time.monotonic()
    with pytest.raises(PublishError, match="SSLError: .*a registry without TLS needs --plain-http"):
        oci.push(pack(a, render_card(a)), parse_uri(f"oci://{registry.host}/models/tls:v1"), False, FAST)
    assert time.monotonic() - started < 5  # not retried: a TLS failure does not heal by waiting
