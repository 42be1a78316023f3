"""compressed-tensors 0.20.0 layout of quantized linears (what vLLM, SGLang and
transformers load), both directions: IR -> tensors + config, and back.

Per linear module `m` the checkpoint holds, besides `m.bias`:
  float-quantized (FP8):  m.weight float8_e4m3fn [out, in], m.weight_scale float32 [1] or
                          [out, 1], m.input_scale float32 [1] (static activations only).
  pack-quantized (INT4):  m.weight_packed int32 [out, ceil(in / 8)], word k holding columns
                          8k..8k+7 as unsigned nibbles from bit 0 up (symmetric codes + 8),
                          m.weight_scale [out, in / g] or [out, 1], m.weight_shape int64 [2],
                          m.weight_zero_point int32 [ceil(out / 8), groups] (asymmetric: the
                          same nibble packing along the output dimension), m.weight_g_idx int32
                          [in] (act-order; see `CT_ACTORDER_GROUP`).
  nvfp4-pack-quantized:   m.weight_packed uint8 [out, in / 2] (even column in the low nibble),
                          m.weight_scale float8_e4m3fn [out, in / 16], m.weight_global_scale
                          float32 [1] = 1 / global_scale, m.input_global_scale float32 [1]
                          (W4A4) = 1 / activation global_scale.
"""

from __future__ import annotations

import json
import re
from typing import Any

import torch

from inferc.core.errors import CheckpointError, UnsupportedError
from inferc.core.ir.quant import ActivationQuant, Granularity, QuantFormat, QuantizedWeight
from inferc.formats.hf import constants as C
from inferc.core.numerics.packing import pack_nibbles, pack_nibbles_int32, unpack_nibbles, unpack_nibbles_int32

Scheme = dict[str, Any]  # {"weights": args, "input_activations": args | None, "format": str}


# ---- bit packing -------------------------------------------------------------------------


def reciprocal_scale(x: torch.Tensor) -> torch.Tensor:
    """float32 1/x, nudged by one ulp where that makes `1 / result` give back x exactly,
    so a global scale survives compressed-tensors' reciprocal convention bit for bit."""
    x = x.float().reshape(())
    one = torch.ones((), dtype=torch.float32)
    r = one / x
    for cand in (r, torch.nextafter(r, r * 2), torch.nextafter(r, r * 0)):
        if torch.equal(one / cand, x):
            return cand
    return r


def _trivial_g_idx(g_idx: torch.Tensor, group_size: int | None) -> bool:
    if group_size is None:
        return False
    expected = torch.arange(g_idx.numel(), dtype=torch.int64) // group_size
    return torch.equal(g_idx.to(torch.int64), expected)


# ---- scheme of one linear ----------------------------------------------------------------


def _args(num_bits: int, type_: str, strategy: str, group_size: int | None = None, symmetric: bool = True,
          dynamic: bool | str = False, **extra: Any) -> dict[str, Any]:
    return {"num_bits": num_bits, "type": type_, "symmetric": symmetric, "group_size": group_size,
            "strategy": strategy, "dynamic": dynamic, **extra}


def _activation_args(act: ActivationQuant | None, name: str) -> dict[str, Any] | None:
    if act is None:
        return None
    if act.format is QuantFormat.FP8_E4M3:
        if act.dynamic:
            strategy = C.CT_STRATEGY_TOKEN if act.granularity is Granularity.TOKEN else C.CT_STRATEGY_TENSOR
            return _args(8, C.CT_TYPE_FLOAT, strategy, dynamic=True)
        if act.scale is None:
            raise UnsupportedError(f"'{name}': static FP8 activations need a calibrated scale; run calibration first")
        return _args(8, C.CT_TYPE_FLOAT, C.CT_STRATEGY_TENSOR)
    if act.format is QuantFormat.NVFP4:
        if act.global_scale is None:
            raise UnsupportedError(f"'{name}': NVFP4 activations need a calibrated global_scale; run calibration first")
        return _args(4, C.CT_TYPE_FLOAT, C.CT_STRATEGY_TENSOR_GROUP, C.NVFP4_BLOCK_SIZE, dynamic=C.CT_DYNAMIC_LOCAL,
                     scale_dtype=C.CT_SCALE_DTYPE_FP8)
    raise UnsupportedError(f"'{name}': activations in {act.format.value} have no compressed-tensors export; supported: fp8_e4m3, nvfp4")


def scheme_for(name: str, qw: QuantizedWeight, act: ActivationQuant | None) -> Scheme:
    """The compressed-tensors scheme (weights, input_activations, format) of one linear."""
    if qw.format is QuantFormat.FP8_E4M3:
        strategy = C.CT_STRATEGY_CHANNEL if qw.granularity is Granularity.CHANNEL else C.CT_STRATEGY_TENSOR
        weights, fmt = _args(8, C.CT_TYPE_FLOAT, strategy), C.CT_FORMAT_FLOAT
        if act is not None and act.format is not QuantFormat.FP8_E4M3:
            raise UnsupportedError(f"'{name}': FP8 weights with {act.format.value} activations have no compressed-tensors scheme")
    elif qw.format is QuantFormat.INT4:
        if act is not None:
            raise UnsupportedError(
                f"'{name}': INT4 weights with quantized activations have no pack-quantized scheme; export W4A16 (no activation quantization)"
            )
        if qw.granularity is Granularity.CHANNEL:
            weights = _args(4, C.CT_TYPE_INT, C.CT_STRATEGY_CHANNEL, symmetric=qw.symmetric)
        else:
            weights = _args(4, C.CT_TYPE_INT, C.CT_STRATEGY_GROUP, qw.group_size, symmetric=qw.symmetric)
        if qw.g_idx is not None and not _trivial_g_idx(qw.g_idx, qw.group_size):
            weights["actorder"] = C.CT_ACTORDER_GROUP
        fmt = C.CT_FORMAT_PACK
    elif qw.format is QuantFormat.NVFP4:
        weights = _args(4, C.CT_TYPE_FLOAT, C.CT_STRATEGY_TENSOR_GROUP, C.NVFP4_BLOCK_SIZE, scale_dtype=C.CT_SCALE_DTYPE_FP8)
        fmt = C.CT_FORMAT_NVFP4
        if act is not None and act.format is not QuantFormat.NVFP4:
            raise UnsupportedError(f"'{name}': NVFP4 weights with {act.format.value} activations have no compressed-tensors scheme")
    else:
        raise UnsupportedError(
            f"'{name}' is quantized as {qw.format.value}, which has no compressed-tensors export; supported: fp8_e4m3, int4, nvfp4"
        )
    return {"weights": weights, "input_activations": _activation_args(act, name), "format": fmt}


def scheme_key(scheme: Scheme) -> str:
    return json.dumps(scheme, sort_keys=True)


# ---- tensors of one linear ---------------------------------------------------------------


def encode_linear(qw: QuantizedWeight, act: ActivationQuant | None) -> dict[str, torch.Tensor]:
    """Checkpoint tensors of one quantized linear, by local name (weight_packed, ...)."""
    out: dict[str, torch.Tensor] = {}
    if qw.format is QuantFormat.FP8_E4M3:
        out[C.CT_WEIGHT] = qw.data.to(torch.float8_e4m3fn)
        scale = qw.scale.float()
        out[C.CT_WEIGHT_SCALE] = scale.reshape(1) if qw.granularity is Granularity.TENSOR else scale.reshape(qw.shape[0], 1)
    elif qw.format is QuantFormat.INT4:
        offset = C.CT_INT4_PACK_OFFSET if qw.symmetric else 0
        out[C.CT_WEIGHT_PACKED] = pack_nibbles_int32(qw.data.to(torch.int16) + offset)
        out[C.CT_WEIGHT_SCALE] = qw.scale.float().reshape(qw.shape[0], -1)
        out[C.CT_WEIGHT_SHAPE] = torch.tensor(qw.shape, dtype=torch.int64)
        if not qw.symmetric:
            zp = qw.zero_point.to(torch.int16).reshape(qw.shape[0], -1)  # [out, groups] in 0..15
            out[C.CT_WEIGHT_ZERO_POINT] = pack_nibbles_int32(zp.t().contiguous()).t().contiguous()
        if qw.g_idx is not None and not _trivial_g_idx(qw.g_idx, qw.group_size):
            out[C.CT_WEIGHT_G_IDX] = qw.g_idx.to(torch.int32)
    elif qw.format is QuantFormat.NVFP4:
        out[C.CT_WEIGHT_PACKED] = pack_nibbles(qw.data)
        out[C.CT_WEIGHT_SCALE] = qw.scale.to(torch.float8_e4m3fn)
        out[C.CT_WEIGHT_GLOBAL_SCALE] = reciprocal_scale(qw.global_scale).reshape(1)
    if act is not None and not act.dynamic and act.format is QuantFormat.FP8_E4M3:
        out[C.CT_INPUT_SCALE] = act.scale.float().reshape(1)
    if act is not None and act.format is QuantFormat.NVFP4:
        out[C.CT_INPUT_GLOBAL_SCALE] = reciprocal_scale(act.global_scale).reshape(1)
    return out


def _need(tensors: dict[str, torch.Tensor], key: str, name: str) -> torch.Tensor:
    if key not in tensors:
        raise CheckpointError(f"quantized linear '{name}' has no '{name}.{key}' tensor; the checkpoint is incomplete")
    return tensors[key]


def _check_shape(t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise CheckpointError(f"'{what}' has shape {list(t.shape)} but config.json implies {list(shape)}")


def _decode_activation(args: dict[str, Any] | None, tensors: dict[str, torch.Tensor], name: str) -> ActivationQuant | None:
    if args is None:
        return None
    kind = (args.get("type"), args.get("num_bits"))
    dynamic = args.get("dynamic", False)
    if kind == (C.CT_TYPE_FLOAT, 8):
        if dynamic is True:
            gran = Granularity.TOKEN if args.get("strategy") == C.CT_STRATEGY_TOKEN else Granularity.TENSOR
            return ActivationQuant(QuantFormat.FP8_E4M3, gran, dynamic=True)
        if args.get("strategy", C.CT_STRATEGY_TENSOR) != C.CT_STRATEGY_TENSOR:
            raise UnsupportedError(f"'{name}': static FP8 activations with strategy '{args.get('strategy')}' are not supported; supported: tensor")
        scale = _need(tensors, C.CT_INPUT_SCALE, name).float().reshape(())
        return ActivationQuant(QuantFormat.FP8_E4M3, Granularity.TENSOR, dynamic=False, scale=scale)
    if kind == (C.CT_TYPE_FLOAT, 4) and args.get("strategy") == C.CT_STRATEGY_TENSOR_GROUP:
        inv = _need(tensors, C.CT_INPUT_GLOBAL_SCALE, name).float().reshape(())
        return ActivationQuant(QuantFormat.NVFP4, Granularity.BLOCK, dynamic=True, global_scale=torch.ones(()) / inv)
    raise UnsupportedError(f"'{name}': input activations {args} are not supported; supported: FP8 (static tensor, dynamic token/tensor), NVFP4")


def decode_linear(
    name: str, scheme: Scheme, tensors: dict[str, torch.Tensor], shape: tuple[int, int]
) -> tuple[QuantizedWeight, ActivationQuant | None]:
    """One linear's checkpoint tensors (local names) back into IR annotations; `shape` is
    the [out, in] the config implies, checked against every tensor."""
    w = scheme["weights"]
    out_f, in_f = shape
    kind = (w.get("type"), w.get("num_bits"))
    strategy = w.get("strategy")
    if kind == (C.CT_TYPE_FLOAT, 8):
        data = _need(tensors, C.CT_WEIGHT, name)
        _check_shape(data, shape, f"{name}.weight")
        if data.dtype is not torch.float8_e4m3fn:
            raise UnsupportedError(f"'{name}.weight' is {data.dtype}, expected float8_e4m3fn for an FP8 scheme")
        scale = _need(tensors, C.CT_WEIGHT_SCALE, name).float()
        if strategy == C.CT_STRATEGY_CHANNEL:
            _check_shape(scale.reshape(-1), (out_f,), f"{name}.weight_scale")
            qw = QuantizedWeight(QuantFormat.FP8_E4M3, shape, data, Granularity.CHANNEL, scale=scale.reshape(out_f, 1), bits=8)
        elif strategy == C.CT_STRATEGY_TENSOR:
            _check_shape(scale.reshape(-1), (1,), f"{name}.weight_scale")
            qw = QuantizedWeight(QuantFormat.FP8_E4M3, shape, data, Granularity.TENSOR, scale=scale.reshape(()), bits=8)
        else:
            raise UnsupportedError(f"'{name}': FP8 weights with strategy '{strategy}' are not supported; supported: tensor, channel")
    elif kind == (C.CT_TYPE_INT, 4):
        qw = _decode_int4(name, w, tensors, shape)
    elif kind == (C.CT_TYPE_FLOAT, 4) and w.get("group_size") == C.NVFP4_BLOCK_SIZE:
        packed = _need(tensors, C.CT_WEIGHT_PACKED, name)
        _check_shape(packed, (out_f, in_f // 2), f"{name}.weight_packed")
        scale = _need(tensors, C.CT_WEIGHT_SCALE, name).to(torch.float8_e4m3fn)
        _check_shape(scale, (out_f, in_f // C.NVFP4_BLOCK_SIZE), f"{name}.weight_scale")
        inv = _need(tensors, C.CT_WEIGHT_GLOBAL_SCALE, name).float().reshape(())
        qw = QuantizedWeight(QuantFormat.NVFP4, shape, unpack_nibbles(packed), Granularity.BLOCK, scale=scale,
                             group_size=C.NVFP4_BLOCK_SIZE, global_scale=torch.ones(()) / inv, bits=4)
    else:
        raise UnsupportedError(f"'{name}': weight scheme {w} is not supported; supported: FP8, INT4 (pack-quantized), NVFP4")
    return qw, _decode_activation(scheme.get("input_activations"), tensors, name)


def _decode_int4(name: str, w: dict[str, Any], tensors: dict[str, torch.Tensor], shape: tuple[int, int]) -> QuantizedWeight:
    out_f, in_f = shape
    packed = _need(tensors, C.CT_WEIGHT_PACKED, name)
    _check_shape(packed, (out_f, -(-in_f // 8)), f"{name}.weight_packed")
    if C.CT_WEIGHT_SHAPE in tensors:
        if tuple(tensors[C.CT_WEIGHT_SHAPE].tolist()) != tuple(shape):
            raise CheckpointError(f"'{name}.weight_shape' holds {tensors[C.CT_WEIGHT_SHAPE].tolist()} but config.json implies {list(shape)}")
    symmetric = bool(w.get("symmetric", True))
    nibbles = unpack_nibbles_int32(packed, in_f).to(torch.int8)
    codes = nibbles - C.CT_INT4_PACK_OFFSET if symmetric else nibbles
    if w.get("strategy") == C.CT_STRATEGY_CHANNEL:
        gran, group_size, groups = Granularity.CHANNEL, None, 1
    elif w.get("strategy") == C.CT_STRATEGY_GROUP:
        gran, group_size = Granularity.GROUP, int(w["group_size"])
        groups = -(-in_f // group_size)
    else:
        raise UnsupportedError(f"'{name}': INT4 strategy '{w.get('strategy')}' is not supported; supported: group, channel")
    scale = _need(tensors, C.CT_WEIGHT_SCALE, name).float()
    _check_shape(scale, (out_f, groups), f"{name}.weight_scale")
    zero = None
    if not symmetric:
        zp_packed = _need(tensors, C.CT_WEIGHT_ZERO_POINT, name)
        zero = unpack_nibbles_int32(zp_packed.t().contiguous(), out_f).t().contiguous().to(torch.int8)
    g_idx = tensors.get(C.CT_WEIGHT_G_IDX)
    if g_idx is not None:
        _check_shape(g_idx, (in_f,), f"{name}.weight_g_idx")
        g_idx = g_idx.to(torch.int32)
    return QuantizedWeight(QuantFormat.INT4, shape, codes, gran, scale=scale, zero_point=zero, group_size=group_size,
                           g_idx=g_idx, symmetric=symmetric, bits=4)


# ---- the quantization_config of config.json ----------------------------------------------


def build_quantization_config(schemes: dict[str, Scheme], ignore: list[str]) -> dict[str, Any]:
    """config.json's quantization_config; `schemes` maps module name -> scheme. One scheme
    targets every Linear (minus `ignore`); several get one group each, by module name."""
    by_key: dict[str, tuple[Scheme, list[str]]] = {}
    for module, scheme in schemes.items():
        by_key.setdefault(scheme_key(scheme), (scheme, []))[1].append(module)
    groups: dict[str, Any] = {}
    single = len(by_key) == 1
    for i, (scheme, modules) in enumerate(by_key.values()):
        groups[f"group_{i}"] = {
            "targets": [C.CT_TARGET_LINEAR] if single else sorted(modules),
            "weights": scheme["weights"],
            "input_activations": scheme["input_activations"],
            "output_activations": None,
            "format": scheme["format"],
        }
    formats = {s["format"] for s, _ in by_key.values()}
    top_format = formats.pop() if len(formats) == 1 else (C.CT_FORMAT_MIXED if formats else C.CT_FORMAT_DENSE)
    return {
        "config_groups": groups,
        "format": top_format,
        "global_compression_ratio": None,
        "ignore": sorted(ignore),
        "kv_cache_scheme": None,
        "quant_method": C.CT_QUANT_METHOD,
        "quantization_status": C.CT_STATUS_COMPRESSED,
        "sparsity_config": {},
        "transform_config": {},
        "version": C.CT_VERSION,
    }


def _matches(module: str, target: str) -> bool:
    if target.startswith(C.CT_REGEX_PREFIX):
        return re.match(target[len(C.CT_REGEX_PREFIX):], module) is not None
    return target == module or target == C.CT_TARGET_LINEAR  # every module we map is a Linear


def resolve_schemes(qcfg: dict[str, Any], modules: list[str]) -> dict[str, Scheme]:
    """module -> scheme for the linear modules a quantization_config quantizes (exact
    names win over regexes, which win over the class target, as compressed-tensors does)."""
    status = qcfg.get("quantization_status", C.CT_STATUS_COMPRESSED)
    if status != C.CT_STATUS_COMPRESSED:
        raise UnsupportedError(
            f"compressed-tensors checkpoint has quantization_status '{status}'; only '{C.CT_STATUS_COMPRESSED}' checkpoints are supported"
        )
    top_format = qcfg.get("format")
    ignore = qcfg.get("ignore") or []
    groups = qcfg.get("config_groups") or {}
    chosen: dict[str, Scheme] = {}
    for module in modules:
        if any(_matches(module, t) for t in ignore):
            continue
        best: tuple[int, Scheme] | None = None
        for group in groups.values():
            for target in group.get("targets", []):
                if not _matches(module, target):
                    continue
                rank = 0 if target == module else (1 if target.startswith(C.CT_REGEX_PREFIX) else 2)
                if best is None or rank < best[0]:
                    fmt = group.get("format") or top_format
                    best = (rank, {"weights": group.get("weights"), "input_activations": group.get("input_activations"), "format": fmt})
        if best is not None and best[1]["weights"] is not None:
            chosen[module] = best[1]
    return chosen
