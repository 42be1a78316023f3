"""Speed measurement: structure, call counts and consistency of the figures (no timing
thresholds), artifact size and bits per weight."""

from __future__ import annotations

import time

import pytest
import torch

from inferc.runtime.speed import SpeedResult, artifact_size, bits_per_weight, measure_speed


class CountingBackend:
    """Sleeps a fixed time per call so the figures have a known order of magnitude."""

    name = "counting"
    vocab_size = 17

    def __init__(self, prefill_s: float = 0.004, step_s: float = 0.001) -> None:
        self.prefill_s, self.step_s = prefill_s, step_s
        self.prompts: list[torch.Tensor] = []
        self.steps = 0

    def start(self, ids: torch.Tensor):
        self.prompts.append(ids.clone())
        time.sleep(self.prefill_s)
        return {"len": ids.shape[1]}, torch.randn(1, self.vocab_size)

    def step(self, state, token: int) -> torch.Tensor:
        assert 0 <= token < self.vocab_size
        state["len"] += 1
        self.steps += 1
        time.sleep(self.step_s)
        return torch.randn(1, self.vocab_size)


def test_measure_speed_structure_and_call_counts():
    be = CountingBackend()
    res = measure_speed(be, prompt_len=9, gen_len=5, repeats=3, warmup=2, seed=1)
    assert isinstance(res, SpeedResult)
    assert len(be.prompts) == 5 and all(p.shape == (1, 9) for p in be.prompts)
    assert be.steps == 5 * 4  # gen_len - 1 decode steps per run
    assert res.repeats == 3 and res.backend == "counting"
    assert res.ttft_ms_p50 <= res.ttft_ms_p95 and res.tpot_ms_p50 <= res.tpot_ms_p95
    # sleeps are lower bounds on the measured times
    assert res.ttft_ms_p50 >= 4.0 and res.tpot_ms_p50 >= 1.0
    assert res.prefill_tok_s <= 9 / 0.004 and res.decode_tok_s <= 1 / 0.001
    assert res.peak_memory_mb > 0 and "RSS" in res.memory_scope


def test_slower_steps_give_lower_decode_rate():
    fast = measure_speed(CountingBackend(step_s=0.0005), prompt_len=4, gen_len=6, repeats=2, warmup=0)
    slow = measure_speed(CountingBackend(step_s=0.02), prompt_len=4, gen_len=6, repeats=2, warmup=0)
    assert slow.decode_tok_s < fast.decode_tok_s
    assert slow.tpot_ms_p50 > fast.tpot_ms_p50


def test_prompts_are_seeded():
    a, b, c = CountingBackend(0, 0), CountingBackend(0, 0), CountingBackend(0, 0)
    measure_speed(a, prompt_len=8, gen_len=2, repeats=2, warmup=0, seed=5)
    measure_speed(b, prompt_len=8, gen_len=2, repeats=2, warmup=0, seed=5)
    measure_speed(c, prompt_len=8, gen_len=2, repeats=2, warmup=0, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.prompts, b.prompts))
    assert not torch.equal(a.prompts[0], c.prompts[0])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="gen_len >= 2"):
        measure_speed(CountingBackend(), gen_len=1)


def test_artifact_size_and_bits_per_weight(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 23)
    assert artifact_size(tmp_path) == 123
    assert artifact_size([tmp_path / "a.bin", tmp_path / "sub"]) == 123
    with pytest.raises(FileNotFoundError):
        artifact_size(tmp_path / "missing")
    assert bits_per_weight(1000, 1000) == 8.0
    assert bits_per_weight(1000 + 4 * 10, 1000) == pytest.approx(8.32)  # FP8 data + one fp32 scale per row of 100


def test_copy_bandwidth_is_a_positive_rate_that_depends_on_the_copy():
    from inferc.runtime.speed import copy_bandwidth_gbs

    bw = copy_bandwidth_gbs(mib=16, repeats=2)
    assert 0.05 < bw < 10_000  # GB/s: from a very loaded machine to any memory there is
