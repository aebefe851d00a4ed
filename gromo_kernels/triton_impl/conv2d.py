"""Conv2d statistics with the im2col done inside the Gram kernel (gram.py): no unfold tensor.

    S = Σ_{i,l} U[i,:,l] U[i,:,l]ᵀ (D, D)      M = Σ_{i,l} U[i,:,l] dA[i,:,l]ᵀ (D, C_out)

``U`` (n, D = C·kh·kw + b, L) is the unfold of the raw NCHW input: each tile is gathered by index
arithmetic and masks (zero padding, stride, dilation, rectangular kernels), the bias is a virtual
ones row. The gradient is the 1×1 "unfold" of the (n, C_out, H_o, W_o) image. Reading x once per
tile pair replaces GroMo's three materialised unfolds.
"""

from __future__ import annotations

import torch

from ..geometry import Conv2dGeometry, as_geometry
from .gram import Patches, check_launch, gram_triton
from .linear import POINTWISE

__all__ = ["conv2d_input_cov_triton", "conv2d_input_grad_triton", "image", "output_grid"]


def image(name: str, t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor as the kernel reads it: copied only when the last stride is not 1.

    Raises:
        ValueError: ``t`` is not 4-D (names it).
    """
    if t.ndim != 4:
        raise ValueError(f"{name} must be 4-D (n, C, H, W), got shape {tuple(t.shape)}")
    if t.stride(3) != 1 and t.shape[3] > 1:
        t = t.contiguous()
    return t


def output_grid(name: str, x: torch.Tensor, geometry: Conv2dGeometry) -> tuple[int, int]:
    """(H_o, W_o) of ``geometry`` on x; ValueError naming ``name`` when it is empty."""
    ho, wo = geometry.output_size(x.shape[2], x.shape[3])
    if ho <= 0 or wo <= 0:
        raise ValueError(f"{name}: the kernel does not fit: output grid {ho}x{wo} for input "
                         f"{tuple(x.shape[2:])} and {geometry}")
    return ho, wo


def conv2d_input_cov_triton(x: torch.Tensor, geometry, *, bias: bool, precision=None, chunk=None,
                            split_k: int | None = None) -> torch.Tensor:
    """S = Σ_{i,l} ũ_{i,l} ũ_{i,l}ᵀ for x (n, C, H, W): (D, D), D = C·kh·kw + b.

    Args:
        x: (n, C, H, W) float16/bfloat16/float32/float64, any strides.
        geometry: Conv2dGeometry (or kernel size) of the conv reading x.
        bias: append the ones row last.
        precision: "ieee", "tf32x3", "tf32" or "bf16".
        chunk: ignored (the kernel never materialises the unfold).
        split_k: row splits (None = automatic); any value gives a deterministic result.
    Returns:
        (D, D) fp32 (fp64 for fp64 x); only tiles on or above the diagonal computed, mirrored once.
    Raises:
        TypeError: dtype. RuntimeError: CPU tensor without the interpreter. ValueError: shapes.
    """
    check_launch("conv2d_input_cov", x=x)
    geometry = as_geometry("geometry", geometry)
    x = image("x", x)
    ho, wo = output_grid("x", x, geometry)
    seg = Patches(x, geometry, bias)
    return gram_triton((seg, None, None), (x.shape[0], ho, wo), (0, seg.width), precision=precision,
                       split_k=split_k)[0]


def conv2d_input_grad_triton(x: torch.Tensor, grad: torch.Tensor, geometry, *, bias: bool,
                             precision=None, chunk=None, split_k: int | None = None) -> torch.Tensor:
    """M = Σ_{i,l} ũ_{i,l} dA_{i,:,l}ᵀ for x (n, C, H, W), grad (n, C_out, H_o, W_o): (D, C_out).

    Args / Returns / Raises: as :func:`conv2d_input_cov_triton`; grad is on the conv's output grid.
    """
    check_launch("conv2d_input_grad", x=x, grad=grad)
    geometry = as_geometry("geometry", geometry)
    x = image("x", x)
    grad = image("grad", grad)
    ho, wo = output_grid("x", x, geometry)
    check_grad(grad, x.shape[0], (ho, wo))
    a = Patches(x, geometry, bias)
    g = Patches(grad, POINTWISE, False)
    return gram_triton((a, g, None), (x.shape[0], ho, wo), (0, a.width), (a.width, g.width),
                       precision=precision, split_k=split_k)[0]


def check_grad(grad: torch.Tensor, n: int, grid: tuple[int, int]) -> None:
    """grad must be (n, C_out, H_o, W_o) on the conv's output grid (ValueError naming grad)."""
    if grad.shape[0] != n or tuple(grad.shape[2:]) != tuple(grid):
        raise ValueError(f"grad must have shape (n={n}, C_out, {grid[0]}, {grid[1]}), "
                         f"got {tuple(grad.shape)}")
