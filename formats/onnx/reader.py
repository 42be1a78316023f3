"""What an ONNX file holds, for `inferc inspect`: operators, opsets, initializer types,
and bits per weight (MatMulNBits counts K * N weights for its packed bytes and scales)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from inferc.core.errors import FormatError, require


@dataclass
class OnnxSummary:
    opsets: dict[str, int]
    op_counts: dict[str, int]
    initializer_types: dict[str, int]  # element type -> count
    weight_bytes: int  # every initializer
    matmul_bytes: int  # initializers the matrix products read (all of them, every decoded token)
    n_weights: int  # logical weights those bytes stand for
    metadata: dict[str, str]

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.weight_bytes / max(self.n_weights, 1)


def read_onnx_summary(path: Path) -> OnnxSummary:
    onnx = require("onnx", "onnx", "reading ONNX", "pip install 'inferc[onnx]'")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  protobuf raises its own DecodeError
        raise FormatError(f"'{path}' does not parse as ONNX: {exc}") from exc
    g = model.graph
    nbits = {n.input[1]: next(a.i for a in n.attribute if a.name == "K") * next(a.i for a in n.attribute if a.name == "N")
             for n in g.node if n.op_type == "MatMulNBits"}
    quant_aux = {n.input[k] for n in g.node if n.op_type == "MatMulNBits" for k in range(2, len(n.input)) if n.input[k]}
    transposed = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Transpose"}  # a tied head read transposed
    read = {transposed.get(i, i) for n in g.node if n.op_type in ("MatMul", "MatMulNBits", "Gemm") for i in n.input}
    types: Counter[str] = Counter()
    nbytes = count = matmul = 0
    for t in g.initializer:
        types[onnx.TensorProto.DataType.Name(t.data_type)] += 1
        numel = 1
        for d in t.dims:
            numel *= d
        ext = {e.key: e.value for e in t.external_data}
        size = int(ext["length"]) if "length" in ext else len(t.SerializeToString())
        nbytes += size
        matmul += size if t.name in read else 0
        count += nbits.get(t.name, 0 if t.name in quant_aux else numel)
    return OnnxSummary(
        opsets={o.domain or "ai.onnx": o.version for o in model.opset_import},
        op_counts=dict(Counter(n.op_type for n in g.node).most_common()),
        initializer_types=dict(types), weight_bytes=nbytes, matmul_bytes=matmul, n_weights=count,
        metadata={p.key: p.value for p in model.metadata_props},
    )
