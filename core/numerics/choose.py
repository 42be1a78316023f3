"""Which 4-bit weight format object a given linear gets: format name, group size
(fixed, per channel, or `auto`), symmetry. Shared by the RTN, AWQ and GPTQ passes."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from inferc.core.errors import RecipeError
from inferc.core.numerics.fp8 import FP8WeightFormat
from inferc.core.numerics.int4 import INT4WeightFormat, check_group_size
from inferc.core.numerics.nvfp4 import NVFP4_BLOCK, NVFP4WeightFormat

AUTO_GROUP_SIZES = (128, 64, 32)
GroupSize = int | Literal["auto"] | None  # None: one scale per output channel


class WeightFormatName(str, Enum):
    INT4 = "int4"
    NVFP4 = "nvfp4"
    FP8 = "fp8"  # E4M3, one scale per output channel (group_size is not used)


def auto_group_size(cols: int) -> int | None:
    """Largest of 128/64/32 dividing `cols`; None (per channel) when none does."""
    return next((g for g in AUTO_GROUP_SIZES if cols % g == 0), None)


def weight_format_for(
    name: WeightFormatName, group_size: GroupSize, symmetric: bool, cols: int, tensor: str, observer: str = "minmax", sym_range: str = "full"
):
    """The format object for one linear with `cols` inputs; raises RecipeError when an
    explicit group size does not divide `cols`, or NVFP4's block of 16 does not."""
    if name is WeightFormatName.NVFP4:
        check_group_size(cols, NVFP4_BLOCK, f"'{tensor}' (NVFP4 blocks of 16)")
        return NVFP4WeightFormat()
    if name is WeightFormatName.FP8:
        return FP8WeightFormat(per_channel=True)
    if group_size == "auto":
        group_size = auto_group_size(cols)
    elif group_size is not None:
        check_group_size(cols, group_size, f"'{tensor}'")
    return INT4WeightFormat(group_size=group_size, symmetric=symmetric, observer=observer, sym_range=sym_range)


def validate_options(name: WeightFormatName, group_size: GroupSize, activations: str, observer: str = "minmax", sym_range: str = "auto") -> None:
    if observer == "mse" and name is not WeightFormatName.INT4:
        raise RecipeError(f"observer: mse searches INT4 group ranges; format {name.value} takes observer: minmax")
    if sym_range != "auto" and name is not WeightFormatName.INT4:
        raise RecipeError(f"sym_range chooses the symmetric INT4 grid; format {name.value} takes sym_range: auto")
    if isinstance(group_size, int) and group_size <= 0:
        raise RecipeError(f"group_size must be a positive integer, 'auto' or null (per channel), found {group_size}")
    if activations == "nvfp4" and name is not WeightFormatName.NVFP4:
        raise RecipeError(f"activations: nvfp4 (W4A4) needs format: nvfp4, found format: {name.value}")
    if activations in ("fp8", "fp8_dynamic") and name is not WeightFormatName.FP8:
        raise RecipeError(f"activations: {activations} (W8A8) needs format: fp8, found format: {name.value}")
