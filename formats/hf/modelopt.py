"""ModelOpt's unified Hugging Face layout (what TensorRT-LLM loads), both directions.

Per linear module `m`, following `modelopt.torch.export` (unified_export_hf, quant_utils):
  FP8:                       m.weight float8_e4m3fn [out, in], m.weight_scale float32 [],
                             m.input_scale float32 [] (static per-tensor activations).
  FP8_PER_CHANNEL_PER_TOKEN: m.weight float8_e4m3fn, m.weight_scale float32 [out]; inputs
                             quantized per token at run time (no input_scale).
  W4A16_AWQ:                 m.weight uint8 [out / 2, in]: output rows 2k and 2k+1 share a
                             byte (row 2k in the low nibble), codes signed two's complement;
                             m.weight_scale float32 [out, in / g]; m.pre_quant_scale [in]
                             (AWQ's input scaling; ones, as inferc folds it into the weights).
  NVFP4:                     m.weight uint8 [out, in / 2] (even column in the low nibble),
                             m.weight_scale float8_e4m3fn [out, in / 16], m.weight_scale_2
                             float32 [] (amax / (6 * 448)), m.input_scale float32 [] (same for
                             the activations: W4A4).
The same scale conventions as the IR (dequantized = code * scale [* scale_2]), so nothing is
inverted here, unlike compressed-tensors.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from inferc.core.errors import CheckpointError, UnsupportedError
from inferc.core.ir.quant import ActivationQuant, Granularity, QuantFormat, QuantizedWeight
from inferc.formats.hf import constants as C
from inferc.core.numerics.packing import nibbles_to_signed, pack_nibbles, signed_to_nibbles, unpack_nibbles

LayerConfig = dict[str, Any]  # {"quant_algo": ..., "group_size": ..., ...}

SUPPORTED = "FP8 (per-tensor weights + static activations), FP8_PER_CHANNEL_PER_TOKEN (dynamic per-token activations), " \
    "W4A16_AWQ (symmetric group-wise INT4, no act-order), NVFP4 (W4A4)"


def _unsupported(name: str, what: str) -> UnsupportedError:
    return UnsupportedError(f"'{name}': {what} has no ModelOpt (TensorRT-LLM) layout; supported: {SUPPORTED}; use layout='compressed-tensors'")


def layer_config_for(name: str, qw: QuantizedWeight, act: ActivationQuant | None) -> LayerConfig:
    """ModelOpt's per-layer quant config (as in hf_quant_config.json) for one linear."""
    if qw.format is QuantFormat.FP8_E4M3:
        if act is None or act.format is not QuantFormat.FP8_E4M3:
            raise _unsupported(name, "FP8 weights without FP8 activations")
        if not act.dynamic and qw.granularity is Granularity.TENSOR:
            return {"quant_algo": C.MO_ALGO_FP8}
        if act.dynamic and act.granularity is Granularity.TOKEN:
            return {"quant_algo": C.MO_ALGO_FP8_PC_PT}  # a per-tensor weight scale is written per channel
        raise _unsupported(name, f"FP8 with {qw.granularity.value} weight scales and {'dynamic' if act.dynamic else 'static'} "
                           f"{act.granularity.value} activations")
    if qw.format is QuantFormat.INT4:
        if act is not None:
            raise _unsupported(name, "INT4 weights with quantized activations")
        if not qw.symmetric:
            raise _unsupported(name, "asymmetric INT4 (ModelOpt writes has_zero_point: false)")
        if qw.granularity is not Granularity.GROUP or qw.g_idx is not None:
            raise _unsupported(name, "INT4 without plain group-wise scales (per-channel or act-order)")
        if qw.shape[0] % 2:
            raise _unsupported(name, f"INT4 with an odd output dimension {qw.shape[0]}")
        return {"quant_algo": C.MO_ALGO_W4A16_AWQ, "group_size": qw.group_size, "has_zero_point": False, "pre_quant_scale": True}
    if qw.format is QuantFormat.NVFP4:
        if act is None or act.format is not QuantFormat.NVFP4:
            raise _unsupported(name, "NVFP4 weights without NVFP4 activations (W4A16)")
        return {"quant_algo": C.MO_ALGO_NVFP4, "group_size": C.NVFP4_BLOCK_SIZE}
    raise _unsupported(name, f"{qw.format.value} weights")


def pack_int4_rows(codes: torch.Tensor) -> torch.Tensor:
    """Signed INT4 codes int8 [out, in] -> uint8 [out / 2, in], row 2k in the low nibble."""
    return pack_nibbles(signed_to_nibbles(codes), dim=0)


def unpack_int4_rows(packed: torch.Tensor) -> torch.Tensor:
    return nibbles_to_signed(unpack_nibbles(packed, dim=0))


def encode_linear(qw: QuantizedWeight, act: ActivationQuant | None, cfg: LayerConfig) -> dict[str, torch.Tensor]:
    algo = cfg["quant_algo"]
    out: dict[str, torch.Tensor] = {}
    if algo in (C.MO_ALGO_FP8, C.MO_ALGO_FP8_PC_PT):
        out[C.MO_WEIGHT] = qw.data.to(torch.float8_e4m3fn)
        scale = qw.scale.float()
        out[C.MO_WEIGHT_SCALE] = scale.reshape(()) if algo == C.MO_ALGO_FP8 else scale.reshape(-1).expand(qw.shape[0]).contiguous()
        if algo == C.MO_ALGO_FP8:
            out[C.MO_INPUT_SCALE] = act.scale.float().reshape(())
    elif algo == C.MO_ALGO_W4A16_AWQ:
        out[C.MO_WEIGHT] = pack_int4_rows(qw.data)
        out[C.MO_WEIGHT_SCALE] = qw.scale.float()
        out[C.MO_PRE_QUANT_SCALE] = torch.ones(qw.shape[1], dtype=torch.bfloat16)
    elif algo == C.MO_ALGO_NVFP4:
        out[C.MO_WEIGHT] = pack_nibbles(qw.data)
        out[C.MO_WEIGHT_SCALE] = qw.scale.to(torch.float8_e4m3fn)
        out[C.MO_WEIGHT_SCALE_2] = qw.global_scale.float().reshape(())
        out[C.MO_INPUT_SCALE] = act.global_scale.float().reshape(())
    else:
        raise AssertionError(algo)
    return out


def hf_quant_config(layer_configs: dict[str, LayerConfig], excluded: list[str]) -> dict[str, Any]:
    """hf_quant_config.json: one algorithm with exclude_modules, or MIXED_PRECISION with
    quantized_layers, as ModelOpt's get_quant_config writes it."""
    quant: dict[str, Any] = {"quant_algo": None, "kv_cache_quant_algo": None}
    distinct = {tuple(sorted(c.items())) for c in layer_configs.values()}
    if len(distinct) == 1:
        quant.update(next(iter(layer_configs.values())))
        quant["exclude_modules"] = sorted(excluded)
    elif distinct:
        quant["quant_algo"] = C.MO_ALGO_MIXED
        quant["quantized_layers"] = {m: layer_configs[m] for m in sorted(layer_configs)}
    return {"producer": dict(C.MODELOPT_PRODUCER), "quantization": quant}


def config_json_quantization(hf_cfg: dict[str, Any]) -> dict[str, Any]:
    """config.json's quantization_config, as ModelOpt's convert_hf_quant_config_format
    derives it from hf_quant_config.json."""
    quant = hf_cfg["quantization"]
    algo = quant.get("quant_algo")
    out: dict[str, Any] = {}
    if algo == C.MO_ALGO_FP8:
        args = {"dynamic": False, "num_bits": 8, "type": "float"}
        out["config_groups"] = {"group_0": {"input_activations": dict(args), "weights": dict(args), "targets": ["Linear"]}}
    elif algo == C.MO_ALGO_NVFP4:
        gs = quant.get("group_size", C.NVFP4_BLOCK_SIZE)
        args = {"dynamic": False, "num_bits": 4, "type": "float", "group_size": gs}
        out["config_groups"] = {"group_0": {"input_activations": dict(args), "weights": dict(args), "targets": ["Linear"]}}
    out["ignore"] = quant.get("exclude_modules") or []
    if algo:
        out["quant_algo"] = algo
    out["producer"] = hf_cfg["producer"]
    out[C.QUANT_METHOD] = C.MODELOPT_QUANT_METHOD
    return out


# ---- reading -----------------------------------------------------------------------------


def resolve_layers(quant: dict[str, Any], modules: list[str]) -> dict[str, LayerConfig]:
    """module -> layer config for the quantized linears of a ModelOpt quantization section."""
    algo = quant.get("quant_algo")
    if algo == C.MO_ALGO_MIXED:
        layers = quant.get("quantized_layers") or {}
        return {m: layers[m] for m in modules if m in layers}
    if not algo:
        return {}
    excluded = quant.get("exclude_modules") or []
    layer = {k: v for k, v in quant.items() if k not in ("exclude_modules", "kv_cache_quant_algo", "quantized_layers")}
    return {m: layer for m in modules if not any(fnmatch.fnmatchcase(m, pat) for pat in excluded)}


def _need(tensors: dict[str, torch.Tensor], key: str, name: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"quantized linear '{name}' has no '{name}.{key}' tensor; the checkpoint is incomplete")
    return tensors[key]


def _check(t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise CheckpointError(f"'{what}' has shape {list(t.shape)} but config.json implies {list(shape)}")


def decode_linear(
    name: str, cfg: LayerConfig, tensors: dict[str, torch.Tensor], shape: tuple[int, int]
) -> tuple[QuantizedWeight, ActivationQuant | None]:
    algo = cfg.get("quant_algo")
    out_f, in_f = shape
    if algo in (C.MO_ALGO_FP8, C.MO_ALGO_FP8_PC_PT):
        data = _need(tensors, C.MO_WEIGHT, name)
        _check(data, shape, f"{name}.weight")
        if data.dtype is not torch.float8_e4m3fn:
            raise UnsupportedError(f"'{name}.weight' is {data.dtype}, expected float8_e4m3fn for {algo}")
        scale = _need(tensors, C.MO_WEIGHT_SCALE, name).float()
        if scale.numel() == 1 and algo == C.MO_ALGO_FP8:
            qw = QuantizedWeight(QuantFormat.FP8_E4M3, shape, data, Granularity.TENSOR, scale=scale.reshape(()), bits=8)
            act = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False,
                                  scale=_need(tensors, C.MO_INPUT_SCALE, name).float().reshape(()))
        else:
            _check(scale.reshape(-1), (out_f,), f"{name}.weight_scale")
            qw = QuantizedWeight(QuantFormat.FP8_E4M3, shape, data, Granularity.CHANNEL, scale=scale.reshape(out_f, 1), bits=8)
            act = ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TOKEN, dynamic=True)
        return qw, act
    if algo == C.MO_ALGO_W4A16_AWQ:
        packed = _need(tensors, C.MO_WEIGHT, name)
        _check(packed, (out_f // 2, in_f), f"{name}.weight")
        gs = int(cfg["group_size"])
        scale = _need(tensors, C.MO_WEIGHT_SCALE, name).float()
        _check(scale, (out_f, in_f // gs), f"{name}.weight_scale")
        pqs = tensors.get(C.MO_PRE_QUANT_SCALE)
        if pqs is not None and not torch.all(pqs.float() == 1):
            raise UnsupportedError(
                f"'{name}' has an AWQ pre_quant_scale that is not all ones; inferc keeps AWQ scales folded into the "
                "preceding layer and cannot represent a separate input scaling"
            )
        qw = QuantizedWeight(QuantFormat.INT4, shape, unpack_int4_rows(packed), Granularity.GROUP, scale=scale,
                             group_size=gs, symmetric=True, bits=4, algorithm="awq")
        return qw, None
    if algo == C.MO_ALGO_NVFP4:
        packed = _need(tensors, C.MO_WEIGHT, name)
        _check(packed, (out_f, in_f // 2), f"{name}.weight")
        scale = _need(tensors, C.MO_WEIGHT_SCALE, name).to(torch.float8_e4m3fn)
        _check(scale, (out_f, in_f // C.NVFP4_BLOCK_SIZE), f"{name}.weight_scale")
        qw = QuantizedWeight(QuantFormat.NVFP4, shape, unpack_nibbles(packed), Granularity.BLOCK, scale=scale,
                             group_size=C.NVFP4_BLOCK_SIZE, global_scale=_need(tensors, C.MO_WEIGHT_SCALE_2, name).float().reshape(()),
                             bits=4)
        act = None
        if C.MO_INPUT_SCALE in tensors:
            act = ActivationQuant(QuantFormat.NVFP4, Granularity.BLOCK, dynamic=True,
                                  global_scale=tensors[C.MO_INPUT_SCALE].float().reshape(()))
        return qw, act
    raise UnsupportedError(f"'{name}': ModelOpt quant_algo '{algo}' is not supported; supported: {SUPPORTED}")
