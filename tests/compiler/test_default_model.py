"""The prepared default model is keyed by the packages that converted it."""

from __future__ import annotations

import json

import pytest

from inferc.compiler import default_model as dm


class _Converted(Exception):
    pass


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERC_CACHE", str(tmp_path))

    def refuse(*_args, **_kwargs):
        raise _Converted()

    monkeypatch.setattr(dm, "require", refuse)  # the first step of a conversion
    target = dm.default_model_dir()
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"x")
    (target / "config.json").write_text("{}")
    return target


def test_current_conversion_is_reused(cache):
    (cache / dm.CONVERSION_FILE).write_text(json.dumps(dm.conversion_key()))
    assert dm.ensure_default_model() == cache


@pytest.mark.parametrize("stamp", [None, "stale", "garbage"])
def test_unkeyed_or_stale_conversion_is_redone(cache, stamp):
    if stamp == "stale":
        (cache / dm.CONVERSION_FILE).write_text(json.dumps({**dm.conversion_key(), "transformers": "4.57.1"}))
    elif stamp == "garbage":
        (cache / dm.CONVERSION_FILE).write_text("{not json")
    with pytest.raises(_Converted):
        dm.ensure_default_model()


def test_key_names_the_converting_versions():
    key = dm.conversion_key()
    assert set(key) == {"gguf_file", *dm._CONVERTERS}
    assert key["torch"] != "not installed"
