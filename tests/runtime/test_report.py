"""Report rendering and recipe gates."""

from __future__ import annotations

import dataclasses
import json

import pytest

from inferc.core.errors import RecipeError
from inferc.runtime.evaluate import PerplexityResult, QualityResult
from inferc.runtime.report import (
    KNOWN_GATES, CalibrationInfo, EventRecord, PassRecord, Report, SizeInfo, evaluate_gates, reference_speed_note, render_markdown,
    summary_rows, to_json, validate_gates,
)
from inferc.runtime.speed import SpeedResult


def _ppl(ppl: float) -> PerplexityResult:
    return PerplexityResult(ppl=ppl, nll=0.0, ppl_stderr=0.123, tokens_scored=10200, chunks=40, method="half",
                            ctx_len=512, chunk_nll=(1.0, 2.0))


QUALITY = QualityResult(reference=_ppl(26.7012), candidate=_ppl(26.8351), ppl_increase_pct=0.4992, kld_mean=0.00731,
                        kld_p99=0.051, kld_max=0.61, top1=0.9712, tokens_scored=10200, source="wiki.test.raw")
SPEED = SpeedResult(backend="torch", prompt_len=128, gen_len=64, repeats=5, prefill_tok_s=812.5, decode_tok_s=31.25,
                    ttft_ms_p50=160.0, ttft_ms_p95=171.0, tpot_ms_p50=32.0, tpot_ms_p95=35.5, peak_memory_mb=1200.0,
                    memory_scope="process peak RSS", device="cpu")
SIZES = SizeInfo(artifact_bytes=170 * 2**20, weight_bytes=134_600_000, n_weights=134_515_008, bits_per_weight=8.005)


def _report(gates: dict[str, float]) -> Report:
    return Report(
        model="SmolLM2-135M-Instruct", architecture="llama", target="h100", recipe="fp8",
        calibration=CalibrationInfo("wiki.train.raw, 64x512 tokens, seed 0", "ab" * 32, 64, 512),
        passes=[PassRecord("quantize_fp8", 3.25, 900.0)],
        events=[EventRecord("quantize_fp8", "model.layers.3.mlp.down_proj.weight", "fallback", "amax set to 1.0")],
        quality=QUALITY, speed=SPEED, sizes=SIZES, gates=evaluate_gates(gates, QUALITY, SPEED, SIZES),
    )


def test_gates_pass_and_fail_by_direction():
    res = {g.name: g for g in evaluate_gates(
        {"ppl_increase_pct": 1.0, "kld_max": 0.005, "top1_min": 0.97, "decode_tok_s_min": 40, "prefill_tok_s_min": 500,
         "size_mb_max": 200}, QUALITY, SPEED, SIZES)}
    assert res["ppl_increase_pct"].passed and res["top1_min"].passed and res["prefill_tok_s_min"].passed
    assert res["size_mb_max"].passed and res["size_mb_max"].measured == pytest.approx(170.0)
    assert not res["kld_max"].passed and res["kld_max"].measured == pytest.approx(0.00731)
    assert not res["decode_tok_s_min"].passed
    assert set(res) == set(KNOWN_GATES)


def test_gate_without_measurement_fails():
    (g,) = evaluate_gates({"decode_tok_s_min": 1.0}, QUALITY, None)
    assert not g.passed and g.measured is None and "not measured" in g.detail


def test_unknown_gate_lists_known_ones():
    with pytest.raises(RecipeError, match="unknown gate 'ppl_max'.*kld_max.*top1_min"):
        validate_gates({"ppl_max": 1.0})
    with pytest.raises(RecipeError, match="fraction"):
        validate_gates({"top1_min": 97})
    with pytest.raises(RecipeError, match="finite number"):
        validate_gates({"kld_max": "low"})


def test_json_round_trips_the_figures():
    data = json.loads(to_json(_report({"kld_max": 0.01})))
    assert data["quality"]["kld_mean"] == 0.00731
    assert data["quality"]["reference"]["ppl"] == 26.7012
    assert data["speed"]["decode_tok_s"] == 31.25
    assert data["sizes"]["bits_per_weight"] == 8.005
    assert data["events"][0]["tensor"] == "model.layers.3.mlp.down_proj.weight"
    assert data["gates"][0]["passed"] is True and data["gates_passed"] is True


def test_markdown_and_summary_contain_the_figures():
    rep = _report({"kld_max": 0.005})
    md = render_markdown(rep)
    for text in ("26.7012", "26.8351", "+0.499 %", "0.00731", "97.12 %", "812.5 tok/s", "31.2 tok/s", "160.0 / 171.0 ms",
                 "8.005", "170.00 MiB", "quantize_fp8", "down_proj", "Gates: FAILED", "FAIL"):
        assert text in md, text
    rows = dict(summary_rows(rep))
    assert rows["perplexity"] == "26.701 -> 26.835 (+0.50 %)"
    assert rows["top-1 agreement"] == "97.12 %"
    assert rows["gate kld_max"].startswith("FAIL")
    assert not rep.gates_passed


def test_repeated_events_are_summarised_by_kind_with_counts():
    fallbacks = [EventRecord("quantize_gguf", f"blk.{i}.ffn_down.weight", "fallback", "q4_k -> q5_0: 576 columns") for i in range(180)]
    other = EventRecord("plan", "lm_head.weight", "unquantized", "ignored by recipe")
    rep = _report({})
    rep.events = fallbacks[:90] + [other] + fallbacks[90:]
    md = render_markdown(rep)
    assert md.count("q4_k -> q5_0") == 1 and "| 180 |" in md and "and 177 more" in md
    assert "180 fallback, 1 unquantized" in md
    assert dict(summary_rows(rep))["per-layer events"].startswith("180 fallback, 1 unquantized")
    assert len(json.loads(to_json(rep))["events"]) == 181  # the JSON keeps every tensor


def test_labels_say_what_was_measured_and_scored():
    rep = _report({})
    rep.speed_note = reference_speed_note(SPEED, "h100")
    assert "cpu" in rep.speed_note and "not the speed of the h100's kernels" in rep.speed_note
    assert reference_speed_note(dataclasses.replace(SPEED, backend="llama.cpp"), "cpu") == ""
    rows = dict(summary_rows(rep))
    assert rows["scored"] == "10200 tokens (40 x 512, method half) of wiki.test.raw"
    assert rows["prefill / decode (torch on cpu)"] == "812.5 / 31.2 tok/s"
    assert rows["speed data"] == rep.speed_note
    assert rows["peak process RSS"] == "1200 MiB" and "peak memory" not in rows
    md = render_markdown(rep)
    assert "Speed (torch backend on cpu, 5 runs)" in md and rep.speed_note in md
    assert "10200 tokens (40 x 512, method half) of wiki.test.raw" in md
    assert "tensor data bytes x 8 / parameters" in md
