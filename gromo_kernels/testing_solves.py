"""The float64-from-data reference for solves: the statistics of the very same fp32/bf16 inputs and
gradients accumulated again in float64 (through the same public functions, on upcast tensors) and
solved exactly, and the error measures the solves are judged by.

Why not compare with a float64 solve of the fp32 statistics: that reproduces the fp32 rounding of S
(inverting its noise looks "exact"). Here the truth is what exact arithmetic on the same data gives,
so a solve is judged by how much of the statistics' rounding it lets through.

"Exact" solves run in float64 with scipy-free dense algebra: the pseudo-inverse over eigenvalues
above d·ε₆₄·λ_max (float64 rounding of the float64 statistics, 1e9× below fp32 noise).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["float64_statistics", "exact_delta", "exact_added_neurons", "SolveErrors", "delta_errors",
           "neuron_errors"]

F64 = torch.float64


def float64_statistics(fn, *tensors: torch.Tensor, **kwargs):
    """``fn(*tensors upcast to float64, **kwargs)``: the statistic of the same data in float64.

    Example: ``float64_statistics(gk.linear_input_cov, x)`` for x (n, d) fp32 or bf16.
    """
    return fn(*[t.detach().to(F64) if isinstance(t, torch.Tensor) else t for t in tensors], **kwargs)


def _pinv_parts(s: torch.Tensor):
    """Eigenpairs of sym(s) (d, d) kept above d·ε₆₄·λ_max: (λ (r,), V (d, r))."""
    s = 0.5 * (s.to(F64) + s.to(F64).T)
    lam, vecs = torch.linalg.eigh(s)
    cutoff = s.shape[-1] * torch.finfo(F64).eps * float(lam.abs().max()) if lam.numel() else 0.0
    keep = lam > cutoff
    return lam[keep], vecs[:, keep]


def exact_delta(s: torch.Tensor, m: torch.Tensor, e: torch.Tensor | None = None):
    """Δ* (o, D) = E⁺(S⁺M)ᵀ and tr(MΔ*) of float64 statistics S (D, D), M (D, o), E (o, o) or None."""
    lam, vecs = _pinv_parts(s)
    x = vecs @ ((vecs.T @ m.to(F64)) / lam[:, None])
    delta = x.T
    if e is not None:
        lam_e, vecs_e = _pinv_parts(e)
        delta = vecs_e @ ((vecs_e.T @ delta) / lam_e[:, None])
    return delta, torch.trace(m.to(F64) @ delta)


def exact_added_neurons(s: torch.Tensor | None, n: torch.Tensor, k: int):
    """Top-k new neurons of float64 statistics: α (k, s) = (S^{+1/2}U√σ)ᵀ and σ (k,) from the SVD of
    P = S^{+1/2}N; S None is the identity."""
    n = n.to(F64)
    if s is None:
        root = torch.eye(n.shape[0], dtype=F64)
    else:
        lam, vecs = _pinv_parts(s)
        root = (vecs * lam.rsqrt()) @ vecs.T
    u, sigma, _ = torch.linalg.svd(root @ n, full_matrices=False)
    k = min(k, sigma.numel())
    alpha = (root @ u[:, :k] * sigma[:k].sqrt()).T
    return alpha, sigma[:k]


class SolveErrors(NamedTuple):
    """Relative errors against the truth (NaN where not measured)."""

    delta: float
    decrease: float
    sigma: float
    subspace: float


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    den = float(b.to(F64).norm())
    num = float((a.to(F64) - b.to(F64)).norm())
    return num / den if den > 0 else num


def delta_errors(delta: torch.Tensor, decrease: torch.Tensor, truth) -> SolveErrors:
    """‖Δ − Δ*‖/‖Δ*‖ and |d − d*|/|d*| for a solve's (delta, decrease) against exact_delta's."""
    t_delta, t_dec = truth
    return SolveErrors(_rel(delta, t_delta), abs(float(decrease) - float(t_dec)) / abs(float(t_dec)),
                       float("nan"), float("nan"))


def neuron_errors(alpha: torch.Tensor, sigma: torch.Tensor, truth) -> SolveErrors:
    """max_i |σ_i − σ*_i|/σ*_i and sin of the largest principal angle between the row spaces of α
    and α* (the subspace the new neurons read from), over the k* neurons of the truth."""
    t_alpha, t_sigma = truth
    k = t_sigma.numel()
    sig = sigma.to(F64)[:k]
    sigma_err = float(((sig - t_sigma).abs() / t_sigma.abs()).max()) if k else 0.0
    qa = torch.linalg.qr(alpha.to(F64)[:k].T).Q
    qt = torch.linalg.qr(t_alpha.T).Q
    cosines = torch.linalg.svdvals(qa.T @ qt).clamp(max=1.0)
    sine = float((1 - cosines.min() ** 2).clamp_min(0).sqrt()) if k else 0.0
    return SolveErrors(float("nan"), float("nan"), sigma_err, sine)
