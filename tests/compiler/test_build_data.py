"""The build's token sets: calibration never samples the evaluation region of a shared corpus."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "formats" / "gguf"))
from gguf_helpers import add_byte_tokenizer  # noqa: E402

from inferc.compiler.build import prepare_data
from inferc.compiler.pipeline import make_plan
from inferc.compiler.recipe import parse_recipe
from inferc.formats.hf.reader import load_checkpoint


@pytest.mark.parametrize("evaluates", [True, False])
def test_calibration_skips_the_evaluation_region_even_without_evaluation(tiny_checkpoint, tmp_path, evaluates):
    model = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("llama"), model)
    add_byte_tokenizer(model)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of a corpus with some words in it\n" for i in range(400)))
    recipe = parse_recipe({"version": 1, "name": "t", "quant": "gptq", "target": "cpu",
                           "calibration": {"dataset": str(corpus), "num_sequences": 2, "seq_len": 16},
                           "pipeline": [{"pass": "quantize_gptq", "options": {"format": "int4", "group_size": 32}}],
                           "eval": {"dataset": str(corpus), "ctx_len": 32, "chunks": 5}})
    recipe = dataclasses.replace(recipe, eval=dataclasses.replace(recipe.eval, enabled=evaluates))
    data = prepare_data(recipe, make_plan(recipe), load_checkpoint(model), "cpu")
    assert data.calibration.source.startswith("corpus.txt tokens[160:]")
    assert (data.eval_tokens is not None) == evaluates
