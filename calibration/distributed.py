"""Calibration over several processes: the calibration set sharded over ranks, the
statistics reduced so that every rank quantizes from the same numbers.

The calibration set is cut into `shards` contiguous slices of sequences (`shard_bounds`);
rank r owns a contiguous run of shards (`owned_shards`) and walks the model on those
sequences only, in batches that never cross a shard. How each kind of statistic is
combined:

    sums (channel |x| and x^2, GPTQ's X^T X, AWQ's squared errors per grid point)
        summed per shard in float32 on the shard's owner; the shard partials are then
        added in shard order in float64 (`Reducer.fold`): rank 0 folds its shards and
        passes the running sum to rank 1, which folds its own, ...; the last rank
        broadcasts the total
    maxima (activation amax)     all-reduced with max: exact in any order
    counts (tokens)              integers, summed

The single-process `Reducer` folds the same shard partials in the same order, so a
build on any number of ranks up to `shards` computes bit-identical statistics to a
build in one process, provided each batch's arithmetic is the same (same device type,
torch build and thread count). Passes and walks call a Reducer; only `TorchReducer`
touches torch.distributed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch

from inferc.calibration.dataset import CalibrationSet
from inferc.core.errors import CalibrationError, DistributedError

DEFAULT_SHARDS = 8
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Batch:
    """A batch of calibration sequences: the shard it belongs to and the index of its
    first sequence in the whole calibration set."""

    shard: int
    first: int
    tokens: torch.Tensor  # [b, seq_len] int64


def shard_bounds(num_sequences: int, shards: int) -> list[tuple[int, int]]:
    """[start, stop) sequence ranges of min(shards, num_sequences) near-equal shards."""
    n = max(1, min(shards, num_sequences))
    return [(k * num_sequences // n, (k + 1) * num_sequences // n) for k in range(n)]


def owned_shards(num_shards: int, rank: int, world_size: int) -> range:
    """The contiguous run of shards rank `rank` of `world_size` walks."""
    if world_size > num_shards:
        raise CalibrationError(
            f"{world_size} ranks but the calibration set has only {num_shards} shard(s); "
            "raise calibration.shards (and num_sequences) to at least the number of ranks, or use fewer ranks"
        )
    return range(rank * num_shards // world_size, (rank + 1) * num_shards // world_size)


class Reducer:
    """Statistics reduction for one process (the whole calibration set is local); the
    base of `TorchReducer`, which overrides the collectives."""

    rank: int = 0
    world_size: int = 1

    def __init__(self, shards: int = DEFAULT_SHARDS) -> None:
        if shards < 1:
            raise CalibrationError(f"calibration.shards must be at least 1, found {shards}")
        self.shards = shards

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def batches(self, calib: CalibrationSet, batch_size: int) -> list[Batch]:
        """This rank's batches, in shard order; none crosses a shard boundary."""
        bounds = shard_bounds(calib.num_sequences, self.shards)
        out = []
        for k in owned_shards(len(bounds), self.rank, self.world_size):
            start, stop = bounds[k]
            for i in range(start, stop, batch_size):
                out.append(Batch(k, i, calib.tokens[i : min(i + batch_size, stop)]))
        return out

    def fold(self, partials: Iterable[torch.Tensor]) -> torch.Tensor:
        """The sum, over every shard in shard order, of per-shard partial sums; `partials`
        are this rank's, in shard order (float32 or float64). Returns float64."""
        total = None
        for p in partials:
            total = p.double().clone() if total is None else total.add_(p.double())
        assert total is not None, "a rank folds at least one shard"
        return total

    def max(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def total(self, counts: torch.Tensor) -> torch.Tensor:
        """Integer counts (int64) summed over ranks."""
        return counts

    def broadcast_calibration(self, calib: CalibrationSet | None) -> CalibrationSet:
        assert calib is not None
        return calib

    def agree(self, digest: str, what: str) -> None:
        """Raise unless every rank computed the same `digest` of `what`."""

    def close(self) -> None:
        pass


class TorchReducer(Reducer):
    """Reduction over a torch.distributed process group (gloo for CPU tensors, NCCL on
    GPUs). Every collective runs under the group's timeout; a failure, a dead peer or a
    timeout raises DistributedError."""

    def __init__(self, shards: int, backend: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(shards)
        import torch.distributed as dist

        self._dist = dist
        self.timeout_s = timeout_s
        self.backend = backend
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend == "nccl":
            torch.cuda.set_device(self.local_rank)
        self._device = torch.device("cuda", self.local_rank) if backend == "nccl" else torch.device("cpu")
        self._call("joining the process group",
                   lambda: dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s)))
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def _call(self, what: str, fn):
        try:
            return fn()
        except RuntimeError as exc:  # DistBackendError, gloo/NCCL errors and timeouts are RuntimeErrors
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            first = re.sub(r"^\[[^\]]*\]\s*", "", text)  # gloo's "[.../pair.cc:553] " source location
            raise DistributedError(
                f"rank {getattr(self, 'rank', '?')}: {what} failed ({first[:200]}); another rank died, failed or hung "
                f"past the {self.timeout_s:g} s timeout; no artifact was written"
            ) from exc

    def _on(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self._device).contiguous()

    def fold(self, partials: Iterable[torch.Tensor]) -> torch.Tensor:
        own = list(partials)  # computed before the hand-off, so ranks compute in parallel
        assert own, "a rank folds at least one shard"
        dist, r, n = self._dist, self.rank, self.world_size

        def chain() -> torch.Tensor:
            total = self._on(torch.empty(own[0].shape, dtype=torch.float64))
            if r > 0:
                dist.recv(total, src=r - 1)
            else:
                total.copy_(own[0].double())
            for p in own[1 if r == 0 else 0 :]:
                total.add_(self._on(p.double()))
            if r < n - 1:
                dist.send(total, dst=r + 1)
            dist.broadcast(total, src=n - 1)
            return total.cpu()

        return self._call("summing shard statistics", chain)

    def max(self, t: torch.Tensor) -> torch.Tensor:
        buf = self._on(t.clone())
        self._call("taking a maximum", lambda: self._dist.all_reduce(buf, op=self._dist.ReduceOp.MAX))
        return buf.to(t.device)

    def total(self, counts: torch.Tensor) -> torch.Tensor:
        buf = self._on(counts.clone())
        self._call("summing counts", lambda: self._dist.all_reduce(buf))
        return buf.cpu()

    def broadcast_calibration(self, calib: CalibrationSet | None) -> CalibrationSet:
        """Rank 0's calibration set, on every rank (the others pass None)."""
        meta = [(tuple(calib.tokens.shape), calib.source) if calib is not None else None]
        self._call("sharing the calibration set", lambda: self._dist.broadcast_object_list(meta, src=0))
        shape, source = meta[0]
        tokens = self._on(calib.tokens if calib is not None else torch.empty(shape, dtype=torch.int64))
        self._call("sharing the calibration set", lambda: self._dist.broadcast(tokens, src=0))
        return CalibrationSet(tokens=tokens.cpu(), source=source)

    def agree(self, digest: str, what: str) -> None:
        digests: list[str | None] = [None] * self.world_size
        self._call(f"comparing {what}", lambda: self._dist.all_gather_object(digests, digest))
        if len(set(digests)) != 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistributedError(f"ranks {odd} computed a different {what} from rank 0; the build is not reproducible across ranks")

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun (or `inferc build --distributed`)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def reducer_from_env(shards: int, device: str, timeout_s: float) -> Reducer:
    """A TorchReducer when launched by torchrun, else the single-process Reducer."""
    if not launched_by_torchrun():
        return Reducer(shards)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    return TorchReducer(shards, backend, timeout_s)


def per_shard(batches: list[Batch], values: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Per-shard sums (float32, batch order) of per-batch values, one per shard in order."""
    current, acc = None, None
    for b, v in zip(batches, values):
        if b.shard != current:
            if acc is not None:
                yield acc
            current, acc = b.shard, v.clone()
        else:
            acc = acc.add_(v)
    if acc is not None:
        yield acc

