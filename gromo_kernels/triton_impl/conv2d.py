"""Conv2d statistics with the im2col done inside the Gram kernel (gram.py): no unfold tensor.

    S = Σ_{i,l} U[i,:,l] U[i,:,l]ᵀ (D, D)      M = Σ_{i,l} U[i,:,l] dA[i,:,l]ᵀ (D, C_out)

``U`` (n, D = C·kh·kw + b, L) is the unfold of the raw NCHW input: each tile is gathered by index
arithmetic and masks (zero padding, stride, dilation, rectangular kernels), the bias is a virtual
ones row. The gradient is the 1×1 "unfold" of the (n, C_out, H_o, W_o) image. Reading x once per
tile pair replaces GroMo's three materialised unfolds.
"""

from __future__ import annotations

import torch

from .._validation import check_grad_grid, check_ndim, output_grid
from ..geometry import POINTWISE, as_geometry
from .gram import Patches, check_launch, gram_triton, last_dim_contiguous

__all__ = ["conv2d_input_cov_triton", "conv2d_input_grad_triton", "image"]


def image(name: str, t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor as the kernel reads it: copied only when the last stride is not 1.

    Raises:
        ValueError: ``t`` is not 4-D (names it).
    """
    check_ndim(name, t, 4, "(n, C, H, W)")
    return last_dim_contiguous(t)


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
    ho, wo = output_grid("x", x.shape[2:], geometry, "the convolution")
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
    ho, wo = output_grid("x", x.shape[2:], geometry, "the convolution")
    check_grad_grid(grad, x.shape[0], "x", x.shape[2:], (ho, wo), "the convolution")
    a = Patches(x, geometry, bias)
    g = Patches(grad, POINTWISE, False)
    return gram_triton((a, g, None), (x.shape[0], ho, wo), (0, a.width), (a.width, g.width),
                       precision=precision, split_k=split_k)[0]

