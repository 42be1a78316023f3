"""Speed and size of a backend: prefill and decode throughput, time to first token and
per output token (p50/p95 over repeated runs), peak memory, artifact bytes and bits per
weight.

One run: a random prompt of `prompt_len` tokens (seeded) is prefilled with
`backend.start` and the first token is taken greedily from its logits (TTFT = prefill +
that argmax); then `gen_len - 1` greedy `backend.step` calls produce the other tokens
(TPOT = their total time / (gen_len - 1)). The argmax's `.item()` synchronizes the
device, so times are wall-clock times of finished work.

Peak memory: on CUDA, `torch.cuda.max_memory_allocated` during the runs (tensors
allocated by torch, after a reset). On CPU, the process's resident-set high-water mark
(VmHWM of /proc/self/status), reset before the runs through /proc/self/clear_refs when
the kernel allows it; `memory_label` names which one was measured and `memory_scope`
says how. The RSS figure is the whole process: the weights, every other model the
process holds (a build's unquantized reference too), the interpreter and its libraries.

Bits per weight, one definition everywhere (build reports and `inferc inspect`):
8 * the bytes of the tensor data (codes, scales, zero points; file headers, metadata
and padding not counted) / the number of model weights. It is llama.cpp's BPW.
"""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inferc.runtime.backend import Backend


@dataclass(frozen=True)
class SpeedResult:
    backend: str
    prompt_len: int
    gen_len: int
    repeats: int
    prefill_tok_s: float  # median over repeats
    decode_tok_s: float  # median over repeats
    ttft_ms_p50: float
    ttft_ms_p95: float
    tpot_ms_p50: float
    tpot_ms_p95: float
    peak_memory_mb: float
    memory_scope: str  # what peak_memory_mb measures, in a sentence
    device: str
    memory_label: str = "peak process RSS"  # short name of what peak_memory_mb measures


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def _reset_rss_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _one_run(backend: Backend, prompt: torch.Tensor, gen_len: int, cuda: bool) -> tuple[float, float, float]:
    """-> (prefill seconds, ttft seconds, decode seconds for gen_len - 1 tokens)."""
    t0 = time.perf_counter()
    state, logits = backend.start(prompt)
    if cuda:
        torch.cuda.synchronize()
    t_prefill = time.perf_counter()
    token = int(logits[0].argmax())  # syncs the device
    t1 = time.perf_counter()
    for _ in range(gen_len - 1):
        token = int(backend.step(state, token)[0].argmax())
    t2 = time.perf_counter()
    return t_prefill - t0, t1 - t0, t2 - t1


def measure_speed(
    backend: Backend,
    prompt_len: int = 128,
    gen_len: int = 64,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
    device: str = "cpu",
) -> SpeedResult:
    """Time `repeats` prefill + greedy decode runs (after `warmup` untimed runs)."""
    if prompt_len < 1 or gen_len < 2 or repeats < 1 or warmup < 0:
        raise ValueError(f"need prompt_len >= 1, gen_len >= 2, repeats >= 1, warmup >= 0; got {prompt_len}, {gen_len}, {repeats}, {warmup}")
    gen = torch.Generator().manual_seed(seed)
    prompts = torch.randint(0, backend.vocab_size, (warmup + repeats, 1, prompt_len), generator=gen)
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    for i in range(warmup):
        _one_run(backend, prompts[i], gen_len, cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        label, scope = "peak CUDA memory allocated", "torch.cuda.max_memory_allocated during the timed runs"
    else:
        label = "peak process RSS"
        scope = ("process peak RSS (VmHWM) during the timed runs" if _reset_rss_peak()
                 else "process peak RSS (VmHWM) over the process lifetime (peak reset not permitted)")
    ttft, tpot, decode_rate, prefill_rate = [], [], [], []
    for i in range(warmup, warmup + repeats):
        p, t, d = _one_run(backend, prompts[i], gen_len, cuda)
        ttft.append(t)
        tpot.append(d / (gen_len - 1))
        prefill_rate.append(prompt_len / p)
        decode_rate.append((gen_len - 1) / d)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_peak_mb()
    return SpeedResult(
        backend=backend.name,
        prompt_len=prompt_len,
        gen_len=gen_len,
        repeats=repeats,
        prefill_tok_s=statistics.median(prefill_rate),
        decode_tok_s=statistics.median(decode_rate),
        ttft_ms_p50=1e3 * percentile(ttft, 50),
        ttft_ms_p95=1e3 * percentile(ttft, 95),
        tpot_ms_p50=1e3 * percentile(tpot, 50),
        tpot_ms_p95=1e3 * percentile(tpot, 95),
        peak_memory_mb=peak,
        memory_scope=scope,
        device=device,
        memory_label=label,
    )


def copy_bandwidth_gbs(mib: int = 512, repeats: int = 5) -> float:
    """This machine's memory bandwidth as a large numpy copy sees it: bytes read plus
    bytes written per second (GB/s, 1e9), the best of `repeats` copies of `mib` MiB."""
    src = np.ones(mib * 2**20 // 8, np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def artifact_size(paths: list[str | Path] | str | Path) -> int:
    """Total bytes of files (directories counted recursively)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    total = 0
    for p in map(Path, paths):
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.is_file():
            total += p.stat().st_size
        else:
            raise FileNotFoundError(f"artifact path '{p}' does not exist")
    return total


def tensor_data_bytes(files: list[Path]) -> int:
    """Bytes of the tensor data in .safetensors and .gguf files (headers and metadata not
    counted) and in ONNX external data files."""
    total = 0
    for f in map(Path, files):
        if f.suffix == ".gguf":
            from inferc.formats.gguf import read_gguf_summary

            total += sum(t.nbytes for t in read_gguf_summary(f).tensors)
        elif f.suffix == ".safetensors":
            from inferc.formats.hf.reader import safetensors_data_bytes

            total += safetensors_data_bytes(f)
        elif f.suffix == ".data":  # ONNX external data: raw tensor bytes
            total += f.stat().st_size
        else:
            raise ValueError(f"'{f}' is not a .safetensors or .gguf weight file")
    return total


def bits_per_weight(weight_bytes: int, n_params: int) -> float:
    """8 * bytes of the tensor data (codes, scales, zero points) / number of weights."""
    if n_params <= 0:
        raise ValueError(f"n_params must be positive, got {n_params}")
    return 8.0 * weight_bytes / n_params
