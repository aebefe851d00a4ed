"""Reuse of PSD factorisations across solve calls, inside one ``factorization_cache()`` block.

A growth step factors every input covariance twice: S_l for layer l's optimal delta, and again as
the growth covariance of layer l+1's new neurons (for a linear pair it is the same matrix). The
cutoff-independent parts of a factorisation of the scaled S' = sym(S)/c — the Cholesky factor with
its extreme-eigenvalue estimates, and the eigendecomposition — are kept here per matrix while a
block is open, and reused by any later call on a *bit-identical* matrix of the same shape, dtype,
device and work dtype. Cutoffs (rtol, atol, numerical_threshold) are applied per call, so a delta
solve and a new-neuron solve with different thresholds share one entry.

A hit is confirmed with ``torch.equal`` against a private copy of the matrix, so a caller that
changes its tensor in place (or passes a fresh tensor with the same values, as GroMo's
``tensor_s()`` does) can never get a stale factor. Candidates are found by a fingerprint (three
O(d) sums per matrix, one host sync per call).

Memory: each entry owns its tensors (an fp64 entry for d = 1153: 21 MB with the Cholesky factor,
32 MB with the eigendecomposition as well). Entries beyond ``max_bytes`` are evicted, least recently
used first, and their memory is released (not pooled: a call still running may be using it). When a
block closes, the CPU buffers of its entries go back to the solves' shared buffer pool (buffers.py,
one budget for all threads), which the next block (the next growth step) takes them from: a fresh
50 MB tensor pays its page faults again, about as much as the Cholesky factorisation it would hold. A closed cache takes no new entries (a thread
or task that inherited the block's context stops caching when it closes).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import OrderedDict

import torch

from . import buffers

__all__ = ["FactorizationCache", "CacheEntry", "active_cache", "open_cache"]

# Only parts of at least this size live in pooled buffers: smaller ones come from the heap without
# page faults.
POOL_MIN_BYTES = buffers.MIN_POOLED_BYTES


class CacheEntry:
    """The factorisation parts of one matrix (in S' units, work dtype), owned by the entry.

    ``parts[(kind, rule)]`` with kind "cholesky": (chol (d, d), dead (d,) bool, ok () bool,
    λ_max estimate or bound (), λ_min estimate ()), or kind "eigh": (lam (d,) ascending, vecs
    (d, d)); ``rule`` is the scaling S' was made with (Jacobi for the precision floor, uniform for
    an explicit rtol).
    """

    __slots__ = ("matrix", "fingerprint", "parts", "buffers", "_cache")

    def __init__(self, cache: "FactorizationCache", matrix: torch.Tensor, fingerprint: tuple):
        self._cache = cache
        self.buffers: list[torch.Tensor] = []  # pooled CPU storage of the tensors below
        self.matrix = self._own(matrix)
        self.fingerprint = fingerprint
        self.parts: dict = {}

    def _own(self, part: torch.Tensor) -> torch.Tensor:
        """A copy of part that this entry owns (in a pooled buffer on CPU, for large parts)."""
        if part.device.type != "cpu" or part.dim() < 2 or part.numel() * part.element_size() < POOL_MIN_BYTES:
            return part.clone()
        flat = buffers.take(part.numel(), part.dtype)
        self.buffers.append(flat)
        if not part.is_contiguous() and part.mT.is_contiguous():
            # A column-major part (a Cholesky factor) keeps its layout: the solves read it as written.
            return flat[: part.numel()].view(part.mT.shape).copy_(part.mT).mT
        return flat[: part.numel()].view(part.shape).copy_(part)

    def nbytes(self) -> int:
        parts = [*self.buffers]
        pooled = {p.data_ptr() for p in self.buffers}
        held = [p for group in self.parts.values() for p in group]
        parts += [p for p in (self.matrix, *held) if p.data_ptr() not in pooled]
        return sum(p.numel() * p.element_size() for p in parts)

    @property
    def cholesky(self) -> tuple | None:
        """The Cholesky parts held (of either scaling rule), or None."""
        return next((v for (kind, _), v in self.parts.items() if kind == "cholesky"), None)

    def get(self, key) -> tuple | None:
        return self.parts.get(key)

    def set(self, key, parts: tuple) -> None:
        self.parts[key] = tuple(self._own(p) for p in parts)
        self._cache._grew()


def _fingerprints(s: torch.Tensor) -> list:
    """Three cheap sums per matrix of s (B, d, d) -> B tuples (one host sync)."""
    prints = torch.stack([s.diagonal(dim1=-2, dim2=-1).sum(dim=-1), s[:, 0, :].sum(dim=-1),
                          s[:, -1, :].sum(dim=-1)], dim=-1).to(torch.float64)
    return [tuple(row) for row in prints.tolist()]


class FactorizationCache:
    """Factorisation parts keyed by matrix content (see the module docstring).

    ``hits`` / ``misses`` count the matrices looked up, for tests and benchmarks.
    """

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.closed = False
        self._lock = threading.RLock()
        # id(entry) -> ((shape, dtype, device, work dtype), entry), most recently used last.
        self._entries: OrderedDict[int, tuple] = OrderedDict()

    def entries(self, s: torch.Tensor, work: torch.dtype) -> list[CacheEntry]:
        """One entry per matrix of s (B, d, d): the cached one where s[i] is bit-identical to a
        kept matrix, a new empty one (registered) otherwise. Never aliases s."""
        prints = _fingerprints(s)
        key = (tuple(s.shape[1:]), s.dtype, str(s.device), work)
        out = []
        with self._lock:
            for i, fp in enumerate(prints):
                found = None
                for entry_id, (entry_key, entry) in reversed(self._entries.items()):
                    if entry_key == key and entry.fingerprint == fp and torch.equal(entry.matrix, s[i]):
                        found = entry
                        self._entries.move_to_end(entry_id)
                        break
                if found is None:
                    found = CacheEntry(self, s[i], fp)
                    self._entries[id(found)] = (key, found)
                    self.misses += 1
                else:
                    self.hits += 1
                out.append(found)
            self._grew()
        return out

    def _grew(self) -> None:
        with self._lock:
            total = sum(entry.nbytes() for _, entry in self._entries.values())
            while len(self._entries) > 1 and total > self.max_bytes:
                _, (_, oldest) = self._entries.popitem(last=False)
                total -= oldest.nbytes()

    def nbytes(self) -> int:
        """Bytes held by the kept entries."""
        with self._lock:
            return sum(entry.nbytes() for _, entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        """Drop every entry, hand their CPU buffers to this thread's pool and take no new entries.
        Nothing may still be solving with this cache (the block that opened it has ended)."""
        with self._lock:
            self.closed = True
            entries = [entry for _, entry in self._entries.values()]
            self._entries.clear()
        buffers.give([buf for entry in entries for buf in entry.buffers])


_ACTIVE: contextvars.ContextVar[FactorizationCache | None] = contextvars.ContextVar(
    "gromo_kernels_factorization_cache", default=None)


def active_cache() -> FactorizationCache | None:
    """The cache of the open block in this context, or None (also once that block has closed)."""
    cache = _ACTIVE.get()
    return None if cache is None or cache.closed else cache


@contextlib.contextmanager
def open_cache(max_bytes: int):
    """Open a block; a nested block reuses the outer cache (and its max_bytes). Entries are dropped
    when the outermost block closes."""
    outer = active_cache()
    if outer is not None:
        yield outer
        return
    cache = FactorizationCache(max_bytes)
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)
        cache.close()
