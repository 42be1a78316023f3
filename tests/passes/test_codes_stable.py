"""The codes RTN, FP8, GPTQ and AWQ give on tiny checkpoints are those they gave before
the model graph landed (tests/data/codes_before_graph.json: sha256 prefixes of every
quantized weight's codes, scales, zero points, g_idx and input scale, by checkpoint name,
computed by the code of commit 6f74dab, with the float32 rotary frequencies of the FP8
consumer fix applied to it, on the same tiny checkpoints and calibration). Statistics are
summed over one shard, in the order that code summed them; the default of 8 shards adds
per-shard partial sums, which moves AWQ's scale picks within float32 rounding."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.calibration.distributed import Reducer
from inferc.calibration.stats import collect_activation_stats
from inferc.formats.hf.reader import load_checkpoint
from inferc.passes import PassContext, get_pass, make_config

BEFORE = json.loads((Path(__file__).parents[1] / "data" / "codes_before_graph.json").read_text())
RUNS = {
    "rtn": ("quantize_rtn", {"format": "int4", "group_size": 32}),
    "fp8": ("quantize_fp8", {"per_channel": True, "activations": "static"}),
    "gptq": ("quantize_gptq", {"format": "int4", "group_size": 32, "act_order": True, "static_groups": True, "observer": "mse"}),
    "awq": ("quantize_awq", {"format": "int4", "group_size": 32}),
}


def _digest(q, act) -> str:
    m = hashlib.sha256()
    for t in (q.data, q.scale, q.zero_point, q.global_scale, q.g_idx):
        if t is not None:
            m.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    if act is not None and act.scale is not None:
        m.update(act.scale.float().numpy().tobytes())
    return m.hexdigest()[:16]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
@pytest.mark.parametrize("algo", list(RUNS))
def test_codes_equal_those_before_the_graph(tiny_checkpoint, family, algo):
    calib = CalibrationSet(torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(0)), "random")
    ir = load_checkpoint(tiny_checkpoint(family))
    ctx = PassContext(calibration=calib, reducer=Reducer(shards=1))  # one shard: sums in the order they had
    ctx._stats_factory = lambda: collect_activation_stats(ir, calib)
    name, options = RUNS[algo]
    cls = get_pass(name)
    cls(make_config(cls, options)).run(ir, ctx)
    now = {f"{family}/{algo}/{ir.source_name(n)}": _digest(q, ir.activations.get(n)) for n, q in ir.weights.items()}
    before = {k: v for k, v in BEFORE.items() if k.startswith(f"{family}/{algo}/")}
    assert before and now.keys() == before.keys()
    changed = sorted(k for k in now if now[k] != before[k])
    assert not changed, f"{len(changed)} weights' codes changed, e.g. {changed[:3]}"
