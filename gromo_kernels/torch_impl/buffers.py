"""The solves' one CPU buffer policy: reusable buffers under one byte budget shared by all threads.

Why reuse at all: glibc serves blocks above 32 MB with a fresh mmap, so every new (5, 1153, 1153)
fp64 temporary pays its page faults again, which costs as much as the Cholesky factorisation
written into it. CUDA has torch's caching allocator and never uses this pool.

Two kinds of users, one accounting:

* *named workspaces* (:func:`workspace`): the scaled copy of S, its Cholesky factor. A thread keeps
  its workspace under a name until it asks for that name again (the previous one is then given
  back), so a solve loop reuses the same memory call after call;
* *owned buffers* (:func:`take` / :func:`give`): a ``factorization_cache()`` entry takes buffers for
  its factors and gives them back when its block closes, for the next block to take.

Every buffer the pool ever created counts against :func:`budget` until it is garbage collected
(idle, held by a thread, or owned by a cache entry alike). A request that would exceed the budget
first drops idle buffers, oldest first; if it still does not fit, it gets a plain tensor outside
the pool (freed with its last reference, exactly like ``torch.empty``). So the pool of all threads
together never holds more than the budget. The default budget is :data:`DEFAULT_BUDGET_BYTES`
(512 MiB); the environment variable ``GROMO_KERNELS_SOLVE_BUFFER_BYTES`` sets another at import
time, :func:`set_budget` at run time (0 disables pooling).
"""

from __future__ import annotations

import os
import threading
import weakref

import torch

__all__ = ["DEFAULT_BUDGET_BYTES", "budget", "set_budget", "pooled_bytes", "workspace", "take", "give",
           "usable_buffer", "clear"]

DEFAULT_BUDGET_BYTES = 512 * 2**20
# Smaller requests come from the heap without page faults: not worth pooling.
MIN_POOLED_BYTES = 2**18
# An idle buffer serves a request only if it is at most this many times larger (a small matrix must
# not pin a large buffer).
SLACK = 2

# Re-entrant: a finaliser (`_released`) can run inside a locked section when a dropped idle buffer
# loses its last reference there.
_LOCK = threading.RLock()
_STATE = {"budget": DEFAULT_BUDGET_BYTES, "alive": 0}
_IDLE: list[torch.Tensor] = []  # oldest first
_HELD = threading.local()  # .named: {(name, dtype): buffer}


def _budget_from_env() -> int:
    raw = os.environ.get("GROMO_KERNELS_SOLVE_BUFFER_BYTES")
    if raw is None:
        return DEFAULT_BUDGET_BYTES
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"GROMO_KERNELS_SOLVE_BUFFER_BYTES must be an integer number of bytes, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"GROMO_KERNELS_SOLVE_BUFFER_BYTES must be ≥ 0, got {value}")
    return value


_STATE["budget"] = _budget_from_env()


def budget() -> int:
    """The byte budget of the pool (all threads together)."""
    return _STATE["budget"]


def set_budget(nbytes: int) -> None:
    """Set the pool's byte budget (all threads together); idle buffers above it are dropped.

    Raises:
        TypeError, ValueError: nbytes is not an int ≥ 0.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes must be an int, got {type(nbytes).__name__}")
    if nbytes < 0:
        raise ValueError(f"nbytes must be ≥ 0, got {nbytes}")
    with _LOCK:
        _STATE["budget"] = nbytes
        _trim_idle(0)


def pooled_bytes() -> int:
    """Bytes of every live buffer the pool created (idle, held by threads or owned by caches)."""
    return _STATE["alive"]


def usable_buffer(buf: torch.Tensor) -> bool:
    """Whether a kept buffer may be written here: an inference tensor (made under
    ``torch.inference_mode``) cannot be updated in place outside inference mode."""
    return not buf.is_inference() or torch.is_inference_mode_enabled()


def _released(nbytes: int) -> None:
    with _LOCK:
        _STATE["alive"] -= nbytes


def _trim_idle(extra: int) -> None:
    """Drop idle buffers, oldest first, until ``extra`` more bytes fit the budget (lock held)."""
    while _IDLE and _STATE["alive"] + extra > _STATE["budget"]:
        buf = _IDLE.pop(0)
        # The finaliser runs when the last reference goes (here, unless a caller still views it).
        del buf


def _new(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A flat CPU buffer, counted in the pool when the budget allows (lock NOT held)."""
    nbytes = numel * dtype.itemsize
    with _LOCK:
        _trim_idle(nbytes)
        pooled = _STATE["alive"] + nbytes <= _STATE["budget"]
        if pooled:
            _STATE["alive"] += nbytes
    buf = torch.empty(numel, dtype=dtype)
    if pooled:
        weakref.finalize(buf, _released, nbytes)
        buf._gromo_pooled = True
    return buf


def take(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """A flat CPU buffer of numel…SLACK·numel elements (the smallest idle one that fits, or a new
    one); the caller owns it until it calls :func:`give`."""
    with _LOCK:
        fits = [i for i, b in enumerate(_IDLE)
                if b.dtype == dtype and numel <= b.numel() <= SLACK * numel and usable_buffer(b)]
        if fits:
            return _IDLE.pop(min(fits, key=lambda i: _IDLE[i].numel()))
    return _new(numel, dtype)


def give(buffers) -> None:
    """Hand buffers back to the pool (buffers made outside the pool are simply dropped)."""
    with _LOCK:
        for buf in buffers:
            if getattr(buf, "_gromo_pooled", False):
                _IDLE.append(buf)
        _trim_idle(0)


def workspace(name: str, shape: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` for internal use within one call (never returned to a
    caller): valid until this thread asks for ``name`` (with this dtype) again."""
    numel = 1
    for size in shape:
        numel *= size
    nbytes = numel * dtype.itemsize
    if device.type != "cpu" or nbytes < MIN_POOLED_BYTES:
        return torch.empty(shape, dtype=dtype, device=device)
    named = getattr(_HELD, "named", None)
    if named is None:
        named = _HELD.named = {}
    key = (name, dtype)
    buf = named.pop(key, None)
    if buf is None or not numel <= buf.numel() <= SLACK * numel or not usable_buffer(buf):
        if buf is not None:
            give([buf])
        buf = take(numel, dtype)
    named[key] = buf
    return buf[:numel].view(shape)


def clear() -> None:
    """Release this thread's named workspaces and every idle buffer of the pool."""
    held = getattr(_HELD, "named", None) or {}
    _HELD.named = {}
    held.clear()
    with _LOCK:
        _IDLE.clear()
