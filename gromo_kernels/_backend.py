"""Which backend serves a call: is triton importable, is its interpreter on, what did the caller ask for.

Nothing here touches a device at import time; every query is lazy.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from collections.abc import Iterator

import torch

BACKENDS = ("auto", "torch", "triton")
ENV_BACKEND = "GROMO_KERNELS_BACKEND"
# The backend a ``use_backend`` block forces for "auto" calls (None: no block, the environment decides).
_FORCED_BACKEND: contextvars.ContextVar[str | None] = contextvars.ContextVar("gromo_kernels_backend", default=None)


def unknown_backend(name: object) -> ValueError:
    """The error for a backend name that is not one of :data:`BACKENDS`."""
    return ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Within the block, calls made with ``backend="auto"`` use ``name`` ("torch" or "triton").

    ``use_backend("auto")`` restores automatic choice inside an outer block. The block takes
    precedence over ``GROMO_KERNELS_BACKEND``; it is local to the thread / context that opened it.

    Raises:
        ValueError: unknown backend name.
    """
    if name not in BACKENDS:
        raise unknown_backend(name)
    token = _FORCED_BACKEND.set(name)
    try:
        yield
    finally:
        _FORCED_BACKEND.reset(token)


def forced_backend() -> str | None:
    """"torch" or "triton" when a ``use_backend`` block or ``GROMO_KERNELS_BACKEND`` forces one, else None.

    Raises:
        ValueError: the environment variable names an unknown backend.
    """
    block = _FORCED_BACKEND.get()
    if block is not None:
        return None if block == "auto" else block
    forced = os.environ.get(ENV_BACKEND, "").strip()
    if forced and forced not in ("torch", "triton"):
        raise ValueError(f"{ENV_BACKEND} must be 'torch' or 'triton', got {forced!r}")
    return forced or None


@functools.lru_cache(maxsize=1)
def triton_importable() -> bool:
    """True when the ``triton`` package can be imported (checked once, without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_enabled() -> bool:
    """True when ``TRITON_INTERPRET=1``: triton kernels then run on CPU tensors (slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backend(backend: str, *tensors: torch.Tensor) -> str:
    """Return ``"torch"`` or ``"triton"`` for a call on ``tensors`` (per statistic: gromo_kernels._dispatch).

    ``"auto"`` takes triton for CUDA tensors when triton imports, torch otherwise; a ``use_backend``
    block, else the environment variable ``GROMO_KERNELS_BACKEND``, replaces ``"auto"``. An explicit ``"triton"``
    that cannot run raises: nothing ever falls back silently.

    Raises:
        ValueError: unknown backend name.
        RuntimeError: triton requested but not importable, or CPU tensors without the interpreter.
    """
    if backend not in BACKENDS:
        raise unknown_backend(backend)
    if backend == "auto":
        forced = forced_backend()
        if forced is not None:
            backend = forced
        else:
            on_cuda = any(t is not None and t.is_cuda for t in tensors)
            return "triton" if on_cuda and triton_importable() else "torch"
    if backend == "triton":
        if not triton_importable():
            raise RuntimeError("backend='triton' was requested but triton is not installed")
        on_cpu = [t for t in tensors if t is not None and not t.is_cuda]
        if on_cpu and not interpreter_enabled():
            raise RuntimeError(
                "backend='triton' needs CUDA tensors, or TRITON_INTERPRET=1 set before triton is "
                f"imported to run on {on_cpu[0].device} tensors"
            )
    return backend
