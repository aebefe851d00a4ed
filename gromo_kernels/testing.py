"""The accuracy harness: one tolerance table, float64 references built independently of the fast
paths (brute-force gathers, no F.unfold, no convolution routines), and spectrum-controlled PSD makers.

Every test of a statistic compares against the references here; every test of a solve builds its
inputs with :func:`random_psd`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .geometry import as_geometry
from .testing_solves import (
    SolveErrors,
    delta_errors,
    exact_added_neurons,
    exact_delta,
    float64_statistics,
    neuron_errors,
)

__all__ = [
    "Tolerance",
    "tolerance",
    "assert_close_to_reference",
    "round_reference",
    "random_orthogonal",
    "random_psd",
    "unfold_reference",
    "linear_input_cov_reference",
    "linear_input_grad_reference",
    "linear_cross_cov_reference",
    "grad_cov_reference",
    "conv2d_input_cov_reference",
    "conv2d_input_grad_reference",
    "conv2d_restricted_growth_stats_reference",
    "conv2d_full_growth_stats_reference",
    # The float64-from-data reference of the solves (testing_solves.py).
    "float64_statistics",
    "exact_delta",
    "exact_added_neurons",
    "SolveErrors",
    "delta_errors",
    "neuron_errors",
]

# ----------------------------------------------------------------------------------------------
# Tolerances
# ----------------------------------------------------------------------------------------------

# Unit roundoff of the accumulator.
_UNIT_ROUNDOFF = {torch.float64: 2.0**-53, torch.float32: 2.0**-24}

# Per mode: how many accumulator ulps one product may be off, relative to a reference computed on
# the SAME rounded operands (so tf32/bf16 measure accumulation error alone). tf32x3 drops the
# lo·lo term of its three-pass split: about 2^-21 per product against the unrounded fp32 inputs.
_MODE_FACTOR = {"ieee": 1.0, "tf32x3": 8.0, "tf32": 1.0, "bf16": 1.0}

# Constants of the table: |out − ref| ≤ atol·scale + rtol·|ref|.
_RTOL_ULPS = 64.0
_ATOL_ULPS_PER_TERM = 4.0


class Tolerance(NamedTuple):
    """``|out − ref| ≤ atol + rtol·|ref|`` element-wise."""

    rtol: float
    atol: float


# Tensor cores (the tf32 and bf16 dots on the GPU) add each MMA step's K products into the fp32
# accumulator truncating, not rounding: up to one ulp of the running sum per step, all of one
# sign, so the error grows with the steps of one accumulator's chain (its rows / K), not as √.
_MMA_K = {"tf32": 8, "bf16": 16}


def tolerance(precision, dtype: torch.dtype, reduction_length: int, *,
              tensor_core_chain: int | None = None) -> Tolerance:
    """The tolerance for a statistic reduced over ``reduction_length`` rows of unit-scale data.

    Args:
        precision: None, "ieee", "tf32x3", "tf32" or "bf16".
        dtype: the input dtype (fp64 accumulates in fp64, everything else in fp32).
        reduction_length: number of products summed per output entry (rows × taps).
        tensor_core_chain: rows summed into one accumulator by tensor cores (a GPU tf32/bf16 dot:
            the rows of one split), or None for IEEE accumulation (torch, the interpreter).
            Adds 2u · ⌈chain / K⌉ per term for the truncating accumulation (K = 8 tf32, 16 bf16).
    """
    mode = "ieee" if precision is None else precision
    if mode not in _MODE_FACTOR:
        raise ValueError(f"unknown precision {precision!r}")
    u = _UNIT_ROUNDOFF[torch.float64 if dtype == torch.float64 else torch.float32]
    f = _MODE_FACTOR[mode]
    per_term = _ATOL_ULPS_PER_TERM * u * f
    if tensor_core_chain is not None and mode in _MMA_K and dtype != torch.float64:
        per_term += 2 * u * math.ceil(min(tensor_core_chain, max(1, reduction_length)) / _MMA_K[mode])
    return Tolerance(rtol=_RTOL_ULPS * u * f, atol=per_term * max(1, reduction_length))


def assert_close_to_reference(out: torch.Tensor, ref: torch.Tensor, *, precision=None,
                              dtype: torch.dtype = torch.float32, reduction_length: int = 1,
                              scale: float = 1.0, name: str = "output",
                              tensor_core_chain: int | None = None) -> None:
    """Assert ``out`` matches the float64 ``ref`` within the table's tolerance.

    ``scale`` is the typical magnitude of one product (1 for unit-variance inputs);
    ``tensor_core_chain`` as in :func:`tolerance` (GPU tf32/bf16 dots).
    Raises AssertionError with the worst element, its error and the bound.
    """
    if tuple(out.shape) != tuple(ref.shape):
        raise AssertionError(f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError(f"{name}: contains NaN or Inf")
    tol = tolerance(precision, dtype, reduction_length, tensor_core_chain=tensor_core_chain)
    out64 = out.detach().to("cpu", torch.float64)
    ref64 = ref.detach().to("cpu", torch.float64)
    err = (out64 - ref64).abs()
    bound = tol.atol * scale + tol.rtol * ref64.abs()
    if err.numel() and bool((err > bound).any()):
        ratio = err / bound
        idx = int(ratio.flatten().argmax())
        raise AssertionError(
            f"{name}: max error/bound {float(ratio.flatten()[idx]):.3g} at flat index {idx}: "
            f"|{float(out64.flatten()[idx]):.9g} − {float(ref64.flatten()[idx]):.9g}| = "
            f"{float(err.flatten()[idx]):.3g} > {float(bound.flatten()[idx]):.3g} "
            f"(precision={precision}, dtype={dtype}, reduction_length={reduction_length})"
        )


def round_reference(t: torch.Tensor, precision) -> torch.Tensor:
    """Operands rounded as tensor cores would, computed with numpy bit arithmetic (independent of
    the library's torch rounding), returned in float64. tf32: nearest, ties away from zero."""
    mode = "ieee" if precision is None else precision
    if mode in ("ieee", "tf32x3"):
        return t.detach().to("cpu", torch.float64)
    if mode == "bf16":
        return t.detach().to("cpu", torch.float32).to(torch.bfloat16).to(torch.float64)
    if mode == "tf32":
        a = t.detach().to("cpu", torch.float32).numpy().astype(np.float32)
        bits = a.view(np.uint32).astype(np.uint64)
        bits = ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32)
        rounded = bits.view(np.float32)
        rounded = np.where(np.isfinite(a), rounded, a)
        return torch.from_numpy(rounded.astype(np.float64))
    raise ValueError(f"unknown precision {precision!r}")


# ----------------------------------------------------------------------------------------------
# Spectrum-controlled PSD matrices
# ----------------------------------------------------------------------------------------------


def random_orthogonal(d: int, *, batch_shape=(), generator: torch.Generator | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Haar-distributed orthogonal matrices ``(*batch_shape, d, d)`` (QR of a Gaussian, sign-fixed)."""
    g = torch.randn(*batch_shape, d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return (q * signs.unsqueeze(-2)).to(dtype)


def _spectrum(d: int, spectrum, cond: float, rank: int, generator) -> torch.Tensor:
    if isinstance(spectrum, torch.Tensor):
        lam = spectrum.to(torch.float64).flatten()
        if lam.numel() != d:
            raise ValueError(f"spectrum has {lam.numel()} values, expected d={d}")
        return lam
    if rank == 0:
        return torch.zeros(d, dtype=torch.float64)
    if spectrum == "geometric":
        lam = torch.logspace(0, -np.log10(cond), rank, dtype=torch.float64) if rank > 1 else torch.ones(1, dtype=torch.float64)
    elif spectrum == "linear":
        lam = torch.linspace(1, 1 / cond, rank, dtype=torch.float64)
    elif spectrum == "clustered":
        # Two tight clusters at 1 and 1/cond: relative gaps ~1e-10 inside each.
        jitter = 1e-10 * torch.rand(rank, generator=generator, dtype=torch.float64)
        lam = torch.where(torch.arange(rank) < (rank + 1) // 2, torch.ones(rank, dtype=torch.float64),
                          torch.full((rank,), 1 / cond, dtype=torch.float64)) * (1 + jitter)
    elif spectrum == "repeated":
        lam = torch.ones(rank, dtype=torch.float64)
        lam[rank // 2:] = 1 / cond
    else:
        raise ValueError(f"unknown spectrum {spectrum!r}")
    return torch.cat([lam, torch.zeros(d - rank, dtype=torch.float64)])


def random_psd(d: int, spectrum="geometric", *, cond: float = 1e2, rank: int | None = None,
               scale: float = 1.0, batch_shape=(), generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64, return_eig: bool = False):
    """A symmetric PSD matrix ``Q diag(λ) Qᵀ`` with a chosen spectrum.

    Args:
        d: size.
        spectrum: "geometric" (1 … 1/cond), "linear", "clustered" (two tight clusters), "repeated"
            (two exactly repeated values), or a 1-D tensor of d eigenvalues.
        cond: ratio of the largest to the smallest non-zero eigenvalue.
        rank: number of non-zero eigenvalues (default d); the rest are exactly zero.
        scale: multiplies every eigenvalue (scale sweeps test relative thresholds).
        batch_shape: leading batch dimensions.
        return_eig: also return (λ descending-as-built (d,), Q (…, d, d)).
    Returns:
        S (*batch_shape, d, d), symmetrised exactly, in ``dtype``; or (S, λ, Q) with ``return_eig``.
    """
    rank = d if rank is None else rank
    if not 0 <= rank <= d:
        raise ValueError(f"rank must be in [0, {d}], got {rank}")
    lam = _spectrum(d, spectrum, cond, rank, generator) * scale
    q = random_orthogonal(d, batch_shape=batch_shape, generator=generator)
    s = (q * lam) @ q.transpose(-1, -2)
    s = 0.5 * (s + s.transpose(-1, -2))
    s = s.to(dtype)
    if return_eig:
        return s, lam, q
    return s


# ----------------------------------------------------------------------------------------------
# float64 references for the statistics (brute-force index gathers)
# ----------------------------------------------------------------------------------------------


def _ones_row(t: torch.Tensor, dim: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = 1
    return torch.ones(shape, dtype=t.dtype, device=t.device)


def _with_bias(t: torch.Tensor, bias: bool, dim: int = -1) -> torch.Tensor:
    return torch.cat([t, _ones_row(t, dim)], dim=dim) if bias else t


def _flat_rows(t: torch.Tensor, precision) -> torch.Tensor:
    return round_reference(t, precision).reshape(int(np.prod(t.shape[:-1])), t.shape[-1])


def linear_input_cov_reference(x, *, bias=True, precision=None) -> torch.Tensor:
    """Σ x̃ x̃ᵀ over all leading dims, float64: (d+b, d+b)."""
    xb = _with_bias(_flat_rows(x, precision), bias)
    return xb.T @ xb


def linear_input_grad_reference(x, grad, *, bias=True, precision=None) -> torch.Tensor:
    """Σ x̃ dAᵀ, float64: (d+b, o)."""
    xb = _with_bias(_flat_rows(x, precision), bias)
    return xb.T @ _flat_rows(grad, precision)


def linear_cross_cov_reference(x_prev, x, *, bias_prev=True, bias=True, precision=None) -> torch.Tensor:
    """Σ x̃₋₂ x̃ᵀ, float64: (dp+bp, d+b)."""
    a = _with_bias(_flat_rows(x_prev, precision), bias_prev)
    b = _with_bias(_flat_rows(x, precision), bias)
    return a.T @ b


def grad_cov_reference(grad, *, channel_dim=-1, precision=None) -> torch.Tensor:
    """Σ dA dAᵀ over every non-channel position, float64: (o, o)."""
    g = round_reference(grad, precision).movedim(channel_dim, -1)
    g = g.reshape(int(np.prod(g.shape[:-1])), g.shape[-1])
    return g.T @ g


def unfold_reference(x: torch.Tensor, geometry, *, bias: bool = False, precision=None) -> torch.Tensor:
    """im2col by explicit index arithmetic, float64: (n, C·kh·kw + b, L).

    Feature ``c·kh·kw + i·kw + j``; positions row-major over the output grid; taps that read
    padding are 0; the bias row (ones everywhere) comes last.
    """
    g = as_geometry("geometry", geometry)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = g
    xr = round_reference(x, precision)
    n, c, h, w = xr.shape
    ho, wo = g.output_size(h, w)
    ho, wo = max(ho, 0), max(wo, 0)
    cols = torch.zeros(n, c, kh, kw, ho, wo, dtype=torch.float64)
    for i in range(kh):
        rows_idx = torch.arange(ho) * sh - ph + i * dh
        rvalid = (rows_idx >= 0) & (rows_idx < h)
        for j in range(kw):
            cols_idx = torch.arange(wo) * sw - pw + j * dw
            cvalid = (cols_idx >= 0) & (cols_idx < w)
            patch = xr[:, :, rows_idx.clamp(0, max(h - 1, 0))][:, :, :, cols_idx.clamp(0, max(w - 1, 0))] \
                if h > 0 and w > 0 else torch.zeros(n, c, ho, wo, dtype=torch.float64)
            mask = (rvalid[:, None] & cvalid[None, :]).to(torch.float64)
            cols[:, :, i, j] = patch * mask
    u = cols.reshape(n, c * kh * kw, ho * wo)
    return _with_bias(u, bias, dim=1)


def conv2d_input_cov_reference(x, geometry, *, bias=True, precision=None) -> torch.Tensor:
    """S = Σ_{i,l} U[i,:,l] U[i,:,l]ᵀ, float64: (D, D)."""
    u = unfold_reference(x, geometry, bias=bias, precision=precision)
    return torch.einsum("ial,ibl->ab", u, u)


def conv2d_input_grad_reference(x, grad, geometry, *, bias=True, precision=None) -> torch.Tensor:
    """M = Σ_{i,l} U[i,:,l] dA[i,:,l]ᵀ, float64: (D, C_out)."""
    u = unfold_reference(x, geometry, bias=bias, precision=precision)
    g = round_reference(grad, precision).flatten(2)
    return torch.einsum("ial,icl->ac", u, g)


def _prev_patches_image(x_prev, x, prev, bias_prev, precision) -> torch.Tensor:
    """The previous unfold laid out as an image (n, D_p, H, W) on the current input grid."""
    up = unfold_reference(x_prev, prev, bias=bias_prev, precision=precision)
    h, w = x.shape[-2:]
    if up.shape[-1] != h * w:
        raise ValueError(f"previous output grid has {up.shape[-1]} positions, x has {h}x{w}")
    return up.reshape(up.shape[0], up.shape[1], h, w)


class _RestrictedRef(NamedTuple):
    m_prev: torch.Tensor
    cross_cov: torch.Tensor


class _FullRef(NamedTuple):
    s_growth: torch.Tensor
    m_prev: torch.Tensor
    cross_cov: torch.Tensor


def conv2d_restricted_growth_stats_reference(x_prev, x, grad, *, prev, cur, bias_prev=True, bias=True,
                                             precision=None):
    """TINY, TMLR 2024 in float64: m_prev (D_p, C_out), cross_cov (D_p, D).

    Ũ_p[:, :, l] = previous patch vector at the pixel under the current centre tap of output l
    (0 where that pixel is padding, bias entry included).
    """
    cur = as_geometry("cur", cur)
    img = _prev_patches_image(x_prev, x, prev, bias_prev, precision)
    n, dp, h, w = img.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cur
    ho, wo = cur.output_size(h, w)
    r = torch.arange(ho) * sh - ph + (kh // 2) * dh
    c = torch.arange(wo) * sw - pw + (kw // 2) * dw
    valid = ((r >= 0) & (r < h))[:, None] & ((c >= 0) & (c < w))[None, :]
    centre = img[:, :, r.clamp(0, h - 1)][:, :, :, c.clamp(0, w - 1)] * valid.to(torch.float64)
    ut = centre.reshape(n, dp, ho * wo)
    u = unfold_reference(x, cur, bias=bias, precision=precision)
    g = round_reference(grad, precision).flatten(2)
    return _RestrictedRef(torch.einsum("ial,icl->ac", ut, g), torch.einsum("ial,idl->ad", ut, u))


def conv2d_full_growth_stats_reference(x_prev, x, grad, *, prev, cur, bias_prev=True, bias=True,
                                       precision=None):
    """TINY, TMLR 2024 in float64 through the explicit masked unfold B̂ (n, L, kk, D_p).

    s_growth (D_p, D_p), m_prev (D_p, C_out·kk) with column c·kk+e, cross_cov (kk, D_p, D).
    """
    cur = as_geometry("cur", cur)
    img = _prev_patches_image(x_prev, x, prev, bias_prev, precision)
    n, dp = img.shape[:2]
    kk = cur.kernel_area
    # Unfolding the previous patches with the current geometry gathers B̂: feature a·kk + e.
    patches = unfold_reference(img, cur, bias=False)
    bhat = patches.reshape(n, dp, kk, patches.shape[-1]).permute(0, 3, 2, 1)
    u = unfold_reference(x, cur, bias=bias, precision=precision)
    g = round_reference(grad, precision).flatten(2)
    c_out = g.shape[1]
    s_growth = torch.einsum("ilea,ileb->ab", bhat, bhat)
    m_prev = torch.einsum("ilea,icl->ace", bhat, g).reshape(dp, c_out * kk)
    cross = torch.einsum("ilea,idl->ead", bhat, u)
    return _FullRef(s_growth, m_prev, cross)
