"""Where registry credentials come from, and the retry policy."""

from __future__ import annotations

import base64
import json

import pytest

from inferc.core.errors import InferCError, PublishError
from inferc.compiler.publish.credentials import registry_credentials
from inferc.compiler.publish.retry import RetryPolicy, TransientError, with_retry


def _docker_config(tmp_path, monkeypatch, auths):
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"auths": auths}))
    monkeypatch.setenv("DOCKER_CONFIG", str(d))


def test_environment_first_then_docker_config(tmp_path, monkeypatch):
    assert registry_credentials("reg.local:5000") is None
    _docker_config(tmp_path, monkeypatch, {"reg.local:5000": {"auth": base64.b64encode(b"bob:s3:cret").decode()},
                                           "https://other.local": {"username": "eve", "password": "pw2"}})
    c = registry_credentials("reg.local:5000")
    assert (c.username, c.password) == ("bob", "s3:cret") and c.source.endswith("config.json")
    c = registry_credentials("other.local")
    assert (c.username, c.password) == ("eve", "pw2")
    assert "s3:cret" not in repr(registry_credentials("reg.local:5000"))
    monkeypatch.setenv("INFERC_REGISTRY_USERNAME", "ann")
    monkeypatch.setenv("INFERC_REGISTRY_PASSWORD", "pw3")
    c = registry_credentials("reg.local:5000")
    assert (c.username, c.password, c.source) == ("ann", "pw3", "INFERC_REGISTRY_USERNAME/INFERC_REGISTRY_PASSWORD")


def test_half_set_environment_and_a_bad_config_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERC_REGISTRY_USERNAME", "ann")
    with pytest.raises(InferCError, match="INFERC_REGISTRY_PASSWORD is not set"):
        registry_credentials("h")
    monkeypatch.delenv("INFERC_REGISTRY_USERNAME")
    _docker_config(tmp_path, monkeypatch, {"h": {"auth": "not-base64-secret!"}})
    with pytest.raises(InferCError, match="is not base64 of 'user:password'") as exc:
        registry_credentials("h")
    assert "not-base64-secret" not in str(exc.value)


def test_retry_backoff_and_what_is_not_retried():
    policy = RetryPolicy(attempts=5, initial_delay_s=1.0, factor=2.0, max_delay_s=6.0)
    assert policy.delays() == [1.0, 2.0, 4.0, 6.0]
    slept, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("HTTP 503")
        return "ok"

    assert with_retry(policy, "x", flaky, lambda e: False, sleep=slept.append) == "ok" and slept == [1.0, 2.0]

    def broken():
        calls.append(1)
        raise ValueError("a bug, not the network")

    calls.clear()
    with pytest.raises(ValueError):
        with_retry(policy, "x", broken, lambda e: False, sleep=slept.append)
    assert len(calls) == 1

    slept.clear()
    with pytest.raises(PublishError, match="uploading w failed after 5 attempts: HTTP 503"):
        with_retry(policy, "uploading w", lambda: (_ for _ in ()).throw(TransientError("HTTP 503")), lambda e: False, sleep=slept.append)
    assert slept == [1.0, 2.0, 4.0, 6.0]
