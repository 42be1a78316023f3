"""Target table: native combinations pass, others are refused with reasons and alternatives."""

from __future__ import annotations

import pytest

from inferc.core.errors import UnsupportedError
from inferc.compiler.targets import TARGETS, Quant, get_target


def test_defaults():
    assert get_target("h100").default_quant is Quant.FP8
    assert get_target("b200").default_quant is Quant.NVFP4
    assert get_target("cpu").default_quant is Quant.Q4_K_M
    assert get_target("a100").default_quant is Quant.AWQ
    for t in TARGETS.values():
        assert t.check(t.default_quant) is None  # every default runs natively


@pytest.mark.parametrize(
    "target, quant, reason",
    [("a100", Quant.FP8, "sm89 or newer; a100 is sm80"), ("h100", Quant.NVFP4, "Blackwell"), ("cpu", Quant.FP8, "llama.cpp")],
)
def test_refused_with_reason_and_alternatives(target, quant, reason):
    with pytest.raises(UnsupportedError, match=f"{reason}.*native choices: .*--emulate"):
        get_target(target).check(quant)


def test_emulation_is_an_explicit_opt_in():
    note = get_target("h100").check(Quant.NVFP4, emulate=True)
    assert note is not None and "emulated" in note


def test_unknown_target():
    with pytest.raises(UnsupportedError, match="unknown target 'tpu'; known targets: h100"):
        get_target("tpu")
