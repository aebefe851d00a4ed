"""Argument checks of gromo_kernels, each rule and message written once.

The public layer (gromo_kernels.statistics), the Triton launchers and torch_impl import these; a
launcher adds only what its own kernel needs (last-dimension contiguity). Every message names the
argument and, for shapes, the shape it expected.
"""

from __future__ import annotations

import torch

from .geometry import Conv2dGeometry, as_geometry

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

LAYER_KINDS = ("linear", "conv2d", "conv2d_restricted", "conv2d_full")
STATISTIC_NAMES = ("s", "m", "e", "s_growth", "m_prev", "cross_cov")
GROWTH_NAMES = ("s_growth", "m_prev", "cross_cov")
NEEDS_GRAD = ("m", "e", "m_prev")
NEEDS_X = ("s", "m", "cross_cov")


# ----------------------------------------------------------------------------------------------
# Tensors and flags
# ----------------------------------------------------------------------------------------------


def check_floating(name: str, t, shape_hint: str = "") -> torch.Tensor:
    """A torch.Tensor of a floating dtype gromo_kernels computes in (TypeError otherwise)."""
    hint = f" {shape_hint}" if shape_hint else ""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor{hint}, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating tensor (float16, bfloat16, float32 or float64), got {t.dtype}"
        )
    return t


def check_ndim(name: str, t: torch.Tensor, ndim: int, shape_hint: str = "") -> None:
    """``t`` has exactly ``ndim`` dimensions (ValueError naming it)."""
    if t.ndim != ndim:
        hint = f" {shape_hint}" if shape_hint else ""
        raise ValueError(f"{name} must have {ndim} dimensions{hint}, got shape {tuple(t.shape)}")


def check_tensor(name: str, t, *, ndim: int | None = None, min_ndim: int | None = None,
                 shape_hint: str = "") -> torch.Tensor:
    """A floating tensor of the expected rank; TypeError for non-tensors/int/complex, ValueError for rank."""
    check_floating(name, t, shape_hint)
    if ndim is not None:
        check_ndim(name, t, ndim, shape_hint)
    if min_ndim is not None and t.ndim < min_ndim:
        hint = f" {shape_hint}" if shape_hint else ""
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s){hint}, got shape {tuple(t.shape)}"
        )
    return t


def check_same_device_dtype(**tensors: torch.Tensor | None) -> None:
    """All given tensors on one device with one dtype; ValueError/TypeError names the odd one out."""
    items = [(k, v) for k, v in tensors.items() if v is not None]
    if not items:
        return
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{name} is on {t.device} but {first_name} is on {first.device}")
        if t.dtype != first.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but {first_name} has dtype {first.dtype}")


def check_finite(name: str, t: torch.Tensor) -> None:
    """ValueError if ``t`` holds NaN or Inf (a host synchronisation: only where the caller asks)."""
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf")


def check_flag(name: str, value) -> bool:
    """A real bool (so ``bias=1`` or ``bias=None`` is caught)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


# ----------------------------------------------------------------------------------------------
# Geometries
# ----------------------------------------------------------------------------------------------


def check_geometry(name: str, value) -> Conv2dGeometry:
    """as_geometry with the argument name in every message."""
    try:
        return as_geometry(name, value)
    except (TypeError, ValueError) as err:
        msg = str(err)
        raise type(err)(msg if msg.startswith(name) else f"{name}: {msg}") from None


def conv_geometry(kernel_size, stride, padding, dilation) -> Conv2dGeometry:
    """The geometry of a conv given as a kernel size and its options, or as one Conv2dGeometry."""
    if isinstance(kernel_size, Conv2dGeometry):
        if (stride, padding, dilation) != (1, 0, 1):
            raise ValueError(
                "kernel_size is a Conv2dGeometry: give stride, padding and dilation inside it, "
                "not as separate arguments"
            )
        return check_geometry("kernel_size", kernel_size)
    try:
        return Conv2dGeometry(kernel_size, stride, padding, dilation).normalized()
    except (TypeError, ValueError) as err:
        raise type(err)(f"conv geometry: {err}") from None


# ----------------------------------------------------------------------------------------------
# Rows (linear) and images (conv)
# ----------------------------------------------------------------------------------------------


def check_rows(name: str, t, *, what: str) -> torch.Tensor:
    """(..., what): a floating tensor whose leading dimensions are rows; returned detached."""
    check_tensor(name, t, min_ndim=1, shape_hint=f"(..., {what})")
    return t.detach()


def check_same_leading(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor, what: str) -> None:
    """``t`` has ``ref``'s leading (batch) dimensions."""
    if tuple(t.shape[:-1]) != tuple(ref.shape[:-1]):
        expected = (*ref.shape[:-1], what)
        raise ValueError(
            f"{name} has leading (batch) dimensions {tuple(t.shape[:-1])} but {ref_name} has "
            f"{tuple(ref.shape[:-1])}; expected {name} of shape {expected}"
        )


def check_image(name: str, t, what: str) -> torch.Tensor:
    """(what) = (n, C, H, W) floating with a non-empty grid; returned detached."""
    check_tensor(name, t, ndim=4, shape_hint=f"({what})")
    if t.shape[2] == 0 or t.shape[3] == 0:
        raise ValueError(f"{name} must have a non-empty spatial grid ({what}), got shape {tuple(t.shape)}")
    return t.detach()


def output_grid(name: str, size: tuple[int, int], geometry: Conv2dGeometry,
                geometry_name: str) -> tuple[int, int]:
    """The output grid of ``geometry`` on ``name``'s grid ``size``; ValueError when it is empty."""
    ho, wo = geometry.output_size(*size)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{name} of spatial size {tuple(size)} is too small for {geometry_name} "
            f"(kernel {geometry.kernel_size}, stride {geometry.stride}, padding {geometry.padding}, "
            f"dilation {geometry.dilation}): output grid would be ({ho}, {wo})"
        )
    return ho, wo


def check_batch(name: str, batch: int, ref_name: str, ref_batch: int, expected: str) -> None:
    """``name``'s batch equals ``ref_name``'s."""
    if batch != ref_batch:
        raise ValueError(
            f"{name} has batch {batch} but {ref_name} has batch {ref_batch}; "
            f"expected {name} of shape {expected}"
        )


def check_grad_grid(grad: torch.Tensor, batch: int, ref_name: str, x_grid: tuple[int, int],
                    grid: tuple[int, int], geometry_name: str) -> None:
    """grad is (batch, C_out, *grid), ``grid`` the image of x's grid ``x_grid`` by the conv."""
    expected = f"({batch}, C_out, {grid[0]}, {grid[1]})"
    check_batch("grad", grad.shape[0], ref_name, batch, expected)
    if tuple(grad.shape[2:]) != tuple(grid):
        raise ValueError(
            f"grad has output grid {tuple(grad.shape[2:])} but {geometry_name} maps x's grid "
            f"{tuple(x_grid)} to {tuple(grid)}; expected grad of shape {expected}"
        )


def check_prev_grid(x_prev: torch.Tensor, prev: Conv2dGeometry, batch: int,
                    x_grid: tuple[int, int]) -> None:
    """The previous conv maps x_prev's grid to x's grid ``x_grid``; x_prev has x's ``batch``."""
    grid = output_grid("x_prev", x_prev.shape[2:], prev, "prev")
    expected = f"({x_prev.shape[0]}, C, {grid[0]}, {grid[1]})"
    check_batch("x", batch, "x_prev", x_prev.shape[0], expected)
    if tuple(x_grid) != grid:
        raise ValueError(
            f"x has grid {tuple(x_grid)} but the previous conv (prev) maps x_prev's grid "
            f"{tuple(x_prev.shape[2:])} to {grid}; expected x of shape {expected}"
        )


def check_channel_dim(grad: torch.Tensor, channel_dim) -> int:
    """An int indexing one of grad's dimensions."""
    if not isinstance(channel_dim, int) or isinstance(channel_dim, bool):
        raise TypeError(f"channel_dim must be an int, got {type(channel_dim).__name__}")
    if not -grad.ndim <= channel_dim < grad.ndim:
        raise ValueError(
            f"channel_dim={channel_dim} is out of range for grad of shape {tuple(grad.shape)} "
            f"({grad.ndim} dimensions)"
        )
    return channel_dim


# ----------------------------------------------------------------------------------------------
# Layer kinds and statistic names
# ----------------------------------------------------------------------------------------------


def require_prev(prev) -> None:
    """A conv growth call with x_prev names the previous conv's geometry."""
    if prev is None:
        raise ValueError("prev (the Conv2dGeometry of the previous conv) is required with x_prev")


def check_kind(kind) -> str:
    """One of LAYER_KINDS."""
    if kind not in LAYER_KINDS:
        raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
    return kind


def check_statistic_names(arg: str, kind: str, names, *, x, grad, x_prev) -> tuple[str, ...]:
    """``names`` (argument ``arg``) deduplicated, each known and computable from the operands given."""
    for key in names:
        if key not in STATISTIC_NAMES:
            raise ValueError(f"{arg}: unknown statistic {key!r}; known: {STATISTIC_NAMES}")
        if key in GROWTH_NAMES and kind == "conv2d":
            raise ValueError(
                f"{arg}: {key!r} needs a growth scheme; use kind='conv2d_restricted' or 'conv2d_full'"
            )
        if key in GROWTH_NAMES and x_prev is None:
            raise ValueError(f"{arg}: {key!r} needs x_prev (the previous layer's input)")
        if key in NEEDS_GRAD and grad is None:
            raise ValueError(f"{arg}: {key!r} needs grad")
        if key in NEEDS_X and x is None:
            raise ValueError(f"{arg}: {key!r} reads x (the layer input), but x is None")
    return tuple(dict.fromkeys(names))
