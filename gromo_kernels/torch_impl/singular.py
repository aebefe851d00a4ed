"""Leading singular triplets of a batch of matrices: the full SVD, or only the top k with a checked
block subspace iteration (the new-neuron solve keeps at most ``max_neurons`` of them).

Top k: a block of l = k + max(k, 8) fixed probe vectors is iterated, Y ← P·orth(Pᵀ·orth(Y)), then
a Rayleigh–Ritz step (the SVD of the small l × t matrix QᵀP) gives triplets with Pᵀu = σv exactly
and a residual ρ_i = ‖P v_i − σ_i u_i‖ that bounds the error: |σ̃_i − σ_i| ≤ ρ_i, and the angle of a
singular vector ≤ ρ_i / gap_i. Iteration stops once ρ_i ≤ TOPK_RTOL·σ_i for the k wanted triplets
(checked every other step); an element that has not converged after TOPK_MAX_ITERATIONS steps is
decomposed by the full SVD instead. Each step costs two (s × t) by (t × l) products, against the
O(s·t·min(s, t)) of a full SVD.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["singular_triplets", "TOPK_RTOL", "TOPK_MAX_ITERATIONS"]

# Residual ρ_i / σ_i accepted for a wanted triplet: results agree with a full fp64 SVD to ~1e-10.
TOPK_RTOL = 1e-11
TOPK_MAX_ITERATIONS = 60
# Top-k is worth it only when the block is small against min(s, t).
TOPK_MAX_FRACTION = 0.25


@functools.lru_cache(maxsize=32)
def _probe(n: int, l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Fixed pseudo-random probes (n, l): deterministic results, no global RNG."""
    g = torch.Generator().manual_seed(0x70CC + n * 31 + l)
    return torch.randn(n, l, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def _orth(y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(y).Q


def _block(k: int, n_min: int) -> int:
    return min(n_min, k + max(k, 8))


def uses_top_k(k: int | None, s_dim: int, t_dim: int) -> bool:
    """Whether ``singular_triplets`` takes the iterative path for these sizes."""
    return k is not None and k > 0 and _block(k, min(s_dim, t_dim)) <= TOPK_MAX_FRACTION * min(s_dim, t_dim)


def singular_triplets(p: torch.Tensor, k: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u (B, s, r), σ (B, r) descending, vh (B, r, t) of p (B, s, t): all r = min(s, t) triplets
    (``k`` None or too large for the iteration to pay), else at least the top ``k`` (r = block)."""
    b, s_dim, t_dim = p.shape
    if not uses_top_k(k, s_dim, t_dim):
        return torch.linalg.svd(p, full_matrices=False)
    l = _block(k, min(s_dim, t_dim))
    y = p @ _probe(t_dim, l, p.dtype, p.device).expand(b, t_dim, l)
    converged = torch.zeros(b, dtype=torch.bool, device=p.device)
    for step in range(TOPK_MAX_ITERATIONS):
        q = _orth(y)
        z = _orth(p.mT @ q)
        y = p @ z
        if step % 2 == 1:
            u, sig, vh, rho = _rayleigh_ritz(p, _orth(y))
            converged = (rho[:, :k] <= TOPK_RTOL * sig[:, :k]).all(dim=-1)
            if bool(converged.all()):  # host sync every other step
                return u, sig, vh
    u, sig, vh, _ = _rayleigh_ritz(p, _orth(y))
    idx = (~converged).nonzero().squeeze(1)
    fu, fs, fvh = torch.linalg.svd(p[idx], full_matrices=False)
    u, sig, vh = u.clone(), sig.clone(), vh.clone()
    u[idx], sig[idx], vh[idx] = fu[..., :l], fs[..., :l], fvh[..., :l, :]
    return u, sig, vh


def _rayleigh_ritz(p: torch.Tensor, q: torch.Tensor):
    """Triplets of p on the column space of q (B, s, l), and their residuals ρ (B, l)."""
    small = q.mT @ p  # (B, l, t)
    ub, sig, vh = torch.linalg.svd(small, full_matrices=False)
    u = q @ ub
    rho = torch.linalg.vector_norm(p @ vh.mT - u * sig.unsqueeze(-2), dim=-2)
    return u, sig, vh, rho
