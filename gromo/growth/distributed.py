"""Data-parallel growth with torch.distributed: statistics are sums with sample counts, so reduce them.

Every GroMo statistic is a ``TensorStatistic`` holding a running sum ``_tensor`` and a sample count
``samples``; its value is ``_tensor / samples``. Workers that each accumulate
statistics on their own shard of the data therefore get the statistics of the union by summing
both the sums and the counts across workers — one ``all_reduce`` before the solves. Symmetric
statistics (S, S_growth, the Fisher E) travel as their upper triangles, halving the traffic.
:func:`sync_statistics` does this for every statistic of a container in one call.

The rest is the plumbing a data-parallel growth loop needs: :class:`Communicator` (rank, world size,
sum-reduction; a no-op in a single process), :func:`init_distributed` (reads torchrun's
environment; ``timeout`` bounds the rendezvous and every collective), :func:`shard` and
:func:`all_reduce_gradients` (sums of per-shard gradients). A collective that fails — a peer silent
for longer than the timeout, or gone — raises :class:`DistributedTimeout` naming this worker.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass

import torch
from torch import nn

# Statistics whose matrices are symmetric by construction (names of GroMo's attributes).
_SYMMETRIC_NAMES = ("_tensor_s", "tensor_s", "_tensor_s_growth", "previous_tensor_s", "covariance_loss_gradient")


DEFAULT_TIMEOUT = 300.0
# Test-only fault injection: the worker of this rank sleeps before its first statistics sync.
_STALL_RANK_VARIABLE, _STALL_SECONDS_VARIABLE = "GROMO_TEST_STALL_RANK", "GROMO_TEST_STALL_SECONDS"


class DistributedTimeout(RuntimeError):
    """A collective failed: a peer stalled past the timeout or left the run."""


class Communicator:
    """Sum-reductions over the workers of a process group; a single process is a group of one.

    Args:
        group: a torch.distributed process group, or None for the default group when the default
            group is initialised (otherwise the communicator is local: rank 0 of 1).
    """

    def __init__(self, group=None):
        import torch.distributed as dist

        self._dist = dist
        self.group = group
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank(group) if self.active else 0
        self.world_size = dist.get_world_size(group) if self.active else 1
        if self.world_size == 1:
            self.active = False

    def _collective(self, operation, *args, **kwargs):
        """Run a torch.distributed collective; a failure becomes one clear DistributedTimeout."""
        try:
            return operation(*args, **kwargs)
        except RuntimeError as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            raise DistributedTimeout(
                f"distributed: worker {self.rank} of {self.world_size}: a peer did not answer within the "
                f"timeout or left the run ({type(error).__name__}: {first_line})"
            ) from None

    def barrier(self) -> None:
        """Wait for every worker (bounded by the group's timeout)."""
        if self.active:
            self._collective(self._dist.barrier, group=self.group)

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes files and shows progress)."""
        return self.rank == 0

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over all workers, in place; returns it."""
        if self.active:
            self._collective(self._dist.all_reduce, tensor, op=self._dist.ReduceOp.SUM, group=self.group)
        return tensor

    def all_gather_object(self, obj):
        """List of ``obj`` from every worker, in rank order."""
        if not self.active:
            return [obj]
        gathered = [None] * self.world_size
        self._collective(self._dist.all_gather_object, gathered, obj, group=self.group)
        return gathered

    def sum_floats(self, *values: float) -> list[float]:
        """Sum Python floats across workers (float64)."""
        buffer = torch.tensor(values, dtype=torch.float64)
        if self.active and self._dist.get_backend(self.group) == "nccl":
            buffer = buffer.cuda()
        return self.all_reduce_sum(buffer).tolist()


def init_distributed(device: torch.device | str, timeout: float = DEFAULT_TIMEOUT) -> Communicator:
    """Join the process group described by torchrun's environment (WORLD_SIZE > 1), else stay local.

    Uses NCCL for CUDA devices and gloo otherwise. For CUDA, each worker takes the device
    ``cuda:LOCAL_RANK``. ``timeout`` (seconds) bounds the rendezvous and every later collective.

    Raises:
        RuntimeError: torch.distributed is not available in this torch build.
    """
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this torch build")
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            # NCCL binds each worker's communicator to the current device: one GPU per worker.
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        try:
            dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
        except RuntimeError as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:200]
            raise DistributedTimeout(f"distributed: joining the process group failed within {timeout:g} s ({first_line})") from None
    return Communicator()


def _stall_for_tests(comm: Communicator) -> None:
    """Sleep when the test-only variable names this worker's rank (a stalled peer)."""
    rank = os.environ.get(_STALL_RANK_VARIABLE)
    if rank is not None and comm.active and int(rank) == comm.rank:
        time.sleep(float(os.environ.get(_STALL_SECONDS_VARIABLE, "3600")))


def shard(indices: torch.Tensor, comm: Communicator) -> torch.Tensor:
    """This worker's share of ``indices``: every ``world_size``-th entry starting at ``rank``."""
    return indices[comm.rank :: comm.world_size]


def all_reduce_gradients(model: nn.Module, comm: Communicator) -> None:
    """Sum every parameter gradient across workers (one flat all_reduce); no-op in one process."""
    if not comm.active:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    comm.all_reduce_sum(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


@dataclass
class StatisticEntry:
    """A statistic found in a model: where it lives, the object, whether it is symmetric."""

    name: str
    statistic: object
    symmetric: bool


def _is_statistic(value) -> bool:
    return all(hasattr(value, attr) for attr in ("_tensor", "samples", "update", "reset"))


def collect_statistics(model: nn.Module) -> list[StatisticEntry]:
    """Every distinct TensorStatistic reachable from ``model``'s modules, in a rank-independent order.

    The order is that of ``model.named_modules()`` and, within a module, of sorted attribute names,
    so all workers holding the same architecture enumerate the same list. Statistics shared between
    layers (e.g. ``tensor_s_growth`` is the previous layer's ``tensor_s``) appear once.
    """
    seen: set[int] = set()
    entries: list[StatisticEntry] = []
    for module_name, module in model.named_modules():
        for attr in sorted(vars(module)):
            value = vars(module)[attr]
            if not _is_statistic(value) or id(value) in seen:
                continue
            seen.add(id(value))
            entries.append(StatisticEntry(f"{module_name}.{attr}".lstrip("."), value, attr in _SYMMETRIC_NAMES))
    return entries


def _pack(tensor: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """Flatten a statistic for transport: the upper triangle of a symmetric matrix, else everything."""
    if symmetric and tensor.dim() == 2 and tensor.shape[0] == tensor.shape[1]:
        rows, cols = torch.triu_indices(tensor.shape[0], tensor.shape[1], device=tensor.device)
        return tensor[rows, cols]
    return tensor.reshape(-1)


def _unpack(flat: torch.Tensor, shape: torch.Size, symmetric: bool) -> torch.Tensor:
    """Inverse of :func:`_pack` (mirrors the upper triangle of a symmetric matrix)."""
    if symmetric and len(shape) == 2 and shape[0] == shape[1]:
        out = flat.new_zeros(shape)
        rows, cols = torch.triu_indices(shape[0], shape[1], device=flat.device)
        out[rows, cols] = flat
        out[cols, rows] = flat
        return out
    return flat.reshape(shape)


def _packed_numel(shape: tuple[int, ...], symmetric: bool) -> int:
    if symmetric and len(shape) == 2 and shape[0] == shape[1]:
        return shape[0] * (shape[0] + 1) // 2
    numel = 1
    for size in shape:
        numel *= size
    return numel


def sync_statistics(model: nn.Module, comm: Communicator | None = None) -> int:
    """Sum the statistics of every layer of ``model`` over all workers (sums and sample counts).

    Afterwards each worker's statistics equal those one process would have accumulated on the
    union of the workers' batches (up to the order of floating-point additions: the transport and
    the reduction run in float64, so each entry is the correctly rounded sum of the workers' sums).
    A worker that accumulated no sample for a statistic contributes zeros. Symmetric statistics
    travel as upper triangles and are mirrored back. Call it after the last ``update_computation()``
    and before ``compute_optimal_updates()``; every worker must call it (it is a collective).

    Args:
        model: a container (or any module) holding GroMo statistics.
        comm: the communicator; None uses the default process group (no-op without one).

    Returns:
        The number of statistics synchronised.

    Raises:
        RuntimeError: workers disagree on the list of statistics or on a statistic's shape.
    """
    comm = comm or Communicator()
    entries = collect_statistics(model)
    if not comm.active:
        return len(entries)
    _stall_for_tests(comm)
    local_meta = [
        (e.name, None if e.statistic._tensor is None else tuple(e.statistic._tensor.shape)) for e in entries
    ]
    all_meta = comm.all_gather_object(local_meta)
    names = [name for name, _ in local_meta]
    shapes: list[tuple[int, ...] | None] = []
    for index, name in enumerate(names):
        found = set()
        for rank, meta in enumerate(all_meta):
            if len(meta) != len(names) or meta[index][0] != name:
                raise RuntimeError(f"sync_statistics: worker {rank} holds different statistics than worker {comm.rank}")
            if meta[index][1] is not None:
                found.add(meta[index][1])
        if len(found) > 1:
            raise RuntimeError(f"sync_statistics: workers disagree on the shape of {name}: {sorted(found)}")
        shapes.append(found.pop() if found else None)

    device, dtype = None, None
    for entry in entries:
        if entry.statistic._tensor is not None:
            device, dtype = entry.statistic._tensor.device, entry.statistic._tensor.dtype
            break
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if _uses_nccl(comm) else torch.device("cpu")
    parts: list[torch.Tensor] = []
    for entry, shape in zip(entries, shapes):
        if shape is None:
            continue
        tensor = entry.statistic._tensor
        if tensor is None:
            parts.append(torch.zeros(_packed_numel(shape, entry.symmetric), dtype=torch.float64, device=device))
        else:
            parts.append(_pack(tensor, entry.symmetric).to(device=device, dtype=torch.float64))
    counts = torch.tensor([float(e.statistic.samples) for e in entries], dtype=torch.float64, device=device)
    flat = torch.cat(parts + [counts])
    comm.all_reduce_sum(flat)

    offset = 0
    for entry, shape in zip(entries, shapes):
        if shape is None:
            continue
        numel = _packed_numel(shape, entry.symmetric)
        summed = _unpack(flat[offset : offset + numel], torch.Size(shape), entry.symmetric)
        offset += numel
        target_dtype = entry.statistic._tensor.dtype if entry.statistic._tensor is not None else dtype
        entry.statistic._tensor = summed.to(dtype=target_dtype or torch.float32)
    for entry, count in zip(entries, flat[offset:].tolist()):
        entry.statistic.samples = int(round(count))
    return len(entries)


def _uses_nccl(comm: Communicator) -> bool:
    return comm.active and comm._dist.get_backend(comm.group) == "nccl"
