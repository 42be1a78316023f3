"""Recipe schema: presets validate, and bad recipes name the key, allowed values and line."""

from __future__ import annotations

import textwrap

import pytest

from inferc.core.errors import RecipeError
from inferc.compiler.pipeline import make_plan
from inferc.compiler.recipe import load_preset, load_recipe, preset_names
from inferc.passes import Requirement

GOOD = """\
version: 1
name: test
quant: fp8
target: h100
calibration: {num_sequences: 4, seq_len: 64}
pipeline:
  - pass: quantize_fp8
    options: {per_channel: false, activations: dynamic}
export: [{format: hf}]
gates: {kld_max: 0.05}
"""


def _write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(textwrap.dedent(text))
    return p


@pytest.mark.parametrize("name", preset_names())
def test_every_shipped_preset_plans(name):
    recipe = load_preset(name)
    assert recipe.name == name
    make_plan(recipe)  # pass names and options resolve


def test_good_recipe(tmp_path):
    recipe = load_recipe(_write(tmp_path, GOOD))
    plan = make_plan(recipe)
    assert plan.passes[0].instance.config.per_channel is False
    assert Requirement.ACTIVATION_STATS not in plan.requirements  # dynamic activations need no statistics
    assert recipe.gates == {"kld_max": 0.05}


@pytest.mark.parametrize(
    "change, pattern",
    [
        (("calibration: {", "calibrate: {"), r"unknown key 'calibrate' \(line 5\); allowed: .*calibration"),
        (("num_sequences: 4", "num_sequences: four"), r"num_sequences \(line 5\): expected an integer, found 'four'"),
        (("activations: dynamic", "activations: sometimes"), r"activations.*line 8.*expected one of static, dynamic, none"),
        (("per_channel: false", "per_chanel: false"), r"unknown key 'per_chanel'.*allowed: per_channel"),
        (("pass: quantize_fp8", "pass: quantize_fp9"), r"unknown pass 'quantize_fp9'; registered passes: .*quantize_fp8"),
        (("format: hf", "format: tflite"), r"format.*expected one of hf, gguf, onnx, tensorrt, found 'tflite'"),
        (("kld_max: 0.05", "kl_max: 0.05"), r"unknown gate.*known gates: .*kld_max"),
        (("version: 1", "version: 7"), r"'version' must be 1"),
        (("quant: fp8", "quant: int3"), r"quant \(line 3\): expected one of bf16, fp8"),
    ],
)
def test_bad_recipes_are_named(tmp_path, change, pattern):
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(RecipeError, match=pattern):
        make_plan(load_recipe(_write(tmp_path, text)))


def test_invalid_yaml_reports_line(tmp_path):
    with pytest.raises(RecipeError, match="line 3.* not valid YAML|not valid YAML"):
        load_recipe(_write(tmp_path, "version: 1\nname: x\npipeline: [\n"))


def test_duplicate_key(tmp_path):
    with pytest.raises(RecipeError, match="line 3: duplicate key 'name'"):
        load_recipe(_write(tmp_path, "version: 1\nname: a\nname: b\n"))


def test_unknown_preset():
    with pytest.raises(RecipeError, match="no preset named 'int2'; shipped presets: .*fp8"):
        load_preset("int2")


@pytest.mark.parametrize("value", [
    "!!python/object/apply:os.system ['echo hi']",
    "[lm_head, !!python/name:os.system x]",
    "!custom [lm_head]",
])
def test_yaml_tags_are_refused(tmp_path, value):
    text = GOOD.replace("activations: dynamic}", f"activations: dynamic, ignore: {value}}}")
    with pytest.raises(RecipeError, match=r"r.yaml: line 8: the YAML tag '.*' is not allowed"):
        load_recipe(_write(tmp_path, text))


@pytest.mark.parametrize("section, pattern", [
    ("eval: {chunks: 0}", "eval needs chunks >= 1"),
    ("eval: {chunks: -1}", "eval needs chunks >= 1"),
    ("eval: {speed: {repeats: 0}}", "speed needs"),
    ("calibration: {batch_size: 0}", "batch_size >= 1"),
])
def test_eval_and_calibration_counts_are_checked(tmp_path, section, pattern):
    text = GOOD.replace("calibration: {num_sequences: 4, seq_len: 64}\n", "") + section + "\n"
    with pytest.raises(RecipeError, match=pattern):
        load_recipe(_write(tmp_path, text))


def test_readme_recipe_is_the_shipped_fp8_preset():
    import re
    from pathlib import Path

    import yaml

    from inferc.compiler.recipe import parse_recipe

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "name: fp8" in b)
    shown = parse_recipe(yaml.safe_load(block), "README").to_dict()
    preset = load_preset("fp8").to_dict()
    shown["description"] = preset["description"]
    preset["target"] = shown["target"]  # the README shows the optional target key
    assert shown == preset
