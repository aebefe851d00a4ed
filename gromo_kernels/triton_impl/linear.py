"""Linear-layer statistics on the Gram kernel (gram.py): S, M, P and E as blocks of ZᵀZ.

    S = Σ_r x̃ x̃ᵀ (d+b, d+b)    M = Σ_r x̃ dAᵀ (d+b, o)    P = Σ_r x̃₋₂ x̃ᵀ (dp+bp, d+b)    E = Σ_r dA dAᵀ (o, o)

A 2-D ``x (R, d)`` is the image ``(R, d, 1, 1)`` under a 1×1 kernel, so the conv machinery serves
unchanged and the bias is a virtual ones column (no concatenation, no copy). The launchers are thin:
check, view, call :func:`gram_triton`.
"""

from __future__ import annotations

import torch

from .._validation import check_ndim, check_same_device_dtype, check_same_leading
from ..geometry import POINTWISE
from .gram import Patches, check_launch, gram_triton, last_dim_contiguous

__all__ = ["linear_input_cov_triton", "linear_input_grad_triton", "linear_cross_cov_triton",
           "grad_cov_triton", "rows_as_image", "POINTWISE"]



def rows_as_image(name: str, t: torch.Tensor) -> torch.Tensor:
    """(R, d) -> the (R, d, 1, 1) view the Gram kernel reads; copied only if the last stride is not 1.

    Raises:
        ValueError: ``t`` is not 2-D (names it).
    """
    check_ndim(name, t, 2, "(rows, features)")
    return last_dim_contiguous(t)[:, :, None, None]


def _rows(x: torch.Tensor) -> tuple[int, int, int]:
    return (x.shape[0], 1, 1)


def linear_input_cov_triton(x: torch.Tensor, *, bias: bool, precision=None, chunk=None,
                            split_k: int | None = None) -> torch.Tensor:
    """S = Σ_r x̃_r x̃_rᵀ for x (R, d): (d+b, d+b), upper tiles only, mirrored once.

    Args:
        x: (R, d) float16/bfloat16/float32/float64, any strides.
        bias: append a ones column last.
        precision: "ieee", "tf32x3", "tf32" or "bf16".
        chunk: ignored (the kernel streams rows; no extra memory but its split-K partials).
        split_k: row splits (None = automatic); any value gives a deterministic result.
    Returns:
        (d+b, d+b) fp32 (fp64 for fp64 x).
    Raises:
        TypeError / RuntimeError / ValueError: see :func:`gram.check_launch`, :func:`rows_as_image`.
    """
    check_launch("linear_input_cov", x=x)
    xi = rows_as_image("x", x)
    seg = Patches(xi, POINTWISE, bias)
    return gram_triton((seg, None, None), _rows(x), (0, seg.width), precision=precision,
                       split_k=split_k)[0]


def linear_input_grad_triton(x: torch.Tensor, grad: torch.Tensor, *, bias: bool, precision=None,
                             chunk=None, split_k: int | None = None) -> torch.Tensor:
    """M = Σ_r x̃_r dA_rᵀ for x (R, d), grad (R, o): (d+b, o).

    Args / Returns / Raises: as :func:`linear_input_cov_triton`; ``grad`` has the rows of ``x``.
    """
    return _row_product("linear_input_grad", ("x", x, bias), ("grad", grad, False), precision, split_k)


def linear_cross_cov_triton(x_prev: torch.Tensor, x: torch.Tensor, *, bias_prev: bool, bias: bool,
                            precision=None, chunk=None, split_k: int | None = None) -> torch.Tensor:
    """P = Σ_r x̃₋₂,r x̃_rᵀ for x_prev (R, dp), x (R, d): (dp+bp, d+b).

    Args / Returns / Raises: as :func:`linear_input_cov_triton`.
    """
    return _row_product("linear_cross_cov", ("x_prev", x_prev, bias_prev), ("x", x, bias), precision,
                        split_k)


def _row_product(op: str, a, b, precision, split_k) -> torch.Tensor:
    """Σ_r ã_r b̃_rᵀ for operands (name, (R, ·) tensor, bias) a and b sharing their rows."""
    (a_name, a_t, a_bias), (b_name, b_t, b_bias) = a, b
    check_launch(op, **{a_name: a_t, b_name: b_t})
    left = Patches(rows_as_image(a_name, a_t), POINTWISE, a_bias)
    right = Patches(rows_as_image(b_name, b_t), POINTWISE, b_bias)
    check_same_leading(b_name, b_t, a_name, a_t, "width")
    check_same_device_dtype(**{a_name: a_t, b_name: b_t})
    return gram_triton((left, right, None), _rows(a_t), (0, left.width), (left.width, right.width),
                       precision=precision, split_k=split_k)[0]


def grad_cov_triton(grad: torch.Tensor, *, precision=None, chunk=None,
                    split_k: int | None = None) -> torch.Tensor:
    """E = Σ_r dA_r dA_rᵀ for grad (R, o): (o, o), upper tiles only, mirrored once.

    Args / Returns / Raises: as :func:`linear_input_cov_triton`.
    """
    check_launch("grad_cov", grad=grad)
    g = Patches(rows_as_image("grad", grad), POINTWISE, False)
    return gram_triton((g, None, None), _rows(grad), (0, g.width), precision=precision,
                       split_k=split_k)[0]

