"""hf://: the real huggingface_hub client against a loopback fake of the Hub endpoints it
calls (fake_hub.py). No request reaches the real Hub, and the fake takes every file as a
regular inline upload: LFS/Xet transfers and the real Hub's answers are not exercised."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import FAST
from fake_hub import FakeHub
from test_publish_oci import _same_tree

from inferc.compiler.cli import main
from inferc.core.errors import ExitCode, PublishError
from inferc.compiler.publish import publish, pull
from inferc.compiler.publish.card import render_card
from inferc.compiler.publish.hub import upload_plan
from inferc.compiler.publish.verify import verify_artifact

TOKEN = "hf_fake-token-for-tests-0123456789"


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    with FakeHub() as fake:
        monkeypatch.setattr(constants, "ENDPOINT", fake.url)  # as HF_ENDPOINT sets both at import
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", fake.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield fake
        assert fake.state.unknown == []  # huggingface_hub called nothing the fake does not know


def test_the_upload_plan_is_the_artifact_plus_its_card(artifact):
    a = verify_artifact(artifact)
    plan = upload_plan(a, render_card(a))
    assert [u.path_in_repo for u in plan] == [f.path for f in a.all_files] + ["README.md"]
    assert plan[-1].source == render_card(a).encode()
    (artifact / "README.md").write_text("the artifact's own card\n")  # listed in the manifest: kept, not replaced
    m = json.loads((artifact / "manifest.json").read_text())
    m["files"].append({"path": "README.md", "bytes": 24, "sha256": hashlib.sha256(b"the artifact's own card\n").hexdigest()})
    (artifact / "manifest.json").write_text(json.dumps(m))
    a2 = verify_artifact(artifact)
    assert [u.path_in_repo for u in upload_plan(a2, "generated")].count("README.md") == 1


def test_publish_creates_the_repo_and_uploads_in_one_commit(hub, artifact, tmp_path):
    done = publish(artifact, "hf://acme/tiny-fp8", create=True, private=True, message="first", policy=FAST)
    assert hub.state.created == [("acme/tiny-fp8", True)]
    (commit,) = hub.state.commit_posts  # one commit with everything
    a = verify_artifact(artifact)
    assert sorted(commit.files) == sorted([f.path for f in a.all_files] + ["README.md"])
    for f in a.all_files:
        assert commit.files[f.path] == (artifact / f.path).read_bytes()
    assert commit.files["README.md"].decode() == render_card(a)
    assert commit.summary == "first" and done.location.endswith(commit.sha)
    (front,) = hub.state.validated_yaml  # huggingface_hub sent the card's metadata for validation
    assert front["library_name"] == "transformers" and "fp8" in front["tags"]
    assert f"Bearer {TOKEN}" in hub.state.authorizations  # huggingface_hub's own token (HF_TOKEN)

    pull("hf://acme/tiny-fp8", tmp_path / "out", policy=FAST)
    _same_tree(artifact, tmp_path / "out")  # the card is not restored: it is not part of the artifact


def test_a_revision_is_a_branch_made_with_create(hub, artifact, tmp_path):
    publish(artifact, "hf://acme/branchy", create=True, policy=FAST)
    with pytest.raises(PublishError, match="no revision 'v2'; pass --create to make the branch"):
        publish(artifact, "hf://acme/branchy@v2", policy=FAST)
    publish(artifact, "hf://acme/branchy@v2", create=True, policy=FAST)
    assert [c.revision for c in hub.state.commit_posts] == ["main", "v2"]
    pull("hf://acme/branchy@v2", tmp_path / "out", policy=FAST)
    _same_tree(artifact, tmp_path / "out")


def test_a_missing_repo_without_create_is_one_clear_line(hub, artifact, capsys):
    code = main(["publish", str(artifact), "--to", "hf://acme/absent", "--quiet"])
    err = capsys.readouterr().err
    assert code == ExitCode.PUBLISH_FAILED
    assert "hf://acme/absent: no such repository, or the token may not access it; pass --create to create it" in err
    assert len([line for line in err.splitlines() if not line.startswith("[inferc] ")]) == 1
    assert TOKEN not in err and hub.state.commit_posts == []


def test_a_pulled_file_that_does_not_match_the_manifest_is_refused(hub, artifact, tmp_path):
    publish(artifact, "hf://acme/changed", create=True, policy=FAST)
    head = hub.state.trees["acme/changed"]["main"]
    hub.state.commits[head].files["report.md"] += b"edited on the Hub\n"  # someone edited a file in the web UI
    with pytest.raises(PublishError, match="report.md: more than the [0-9]+ bytes expected; refusing it"):
        pull("hf://acme/changed", tmp_path / "out", policy=FAST)
    assert not (tmp_path / "out").exists()
