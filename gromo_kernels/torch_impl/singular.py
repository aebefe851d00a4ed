"""Leading singular triplets of a batch of matrices: the full SVD, or only the top k with a checked
block Krylov method (the new-neuron solve keeps at most ``max_neurons`` of them).

Top k: with a block of l = k + max(k, 8) fixed probe vectors Ω, an orthonormal basis
Q = [Q₀, Q₁, …] of the Krylov space span[PΩ, (PPᵀ)PΩ, …, (PPᵀ)^q PΩ], each block made from the
image Z_j = PPᵀQ_j of the last one, orthogonal to the earlier blocks (block Gram–Schmidt). The
images are kept, so the Rayleigh–Ritz matrix QᵀPPᵀQ = QᵀZ is one small product; its top l
eigenvectors W give u = QW and σv = Pᵀu (so Pᵀu = σv exactly), and the residual
ρ_i = ‖P v_i − σ_i u_i‖ bounds the error: |σ̃_i − σ_i| ≤ ρ_i, and the angle of a singular vector
≤ ρ_i / gap_i. A Krylov space converges like a Chebyshev polynomial in the spectral gap, so even a
flat spectrum (σ_{k+1}/σ_k ≈ 0.9, typical of a projected gradient) needs only a few blocks, where a
plain subspace iteration needs dozens. Accepted once ρ_i ≤ TOPK_RTOL·σ_1 for the k wanted triplets
(TOPK_RTOL_ULPS·ε in float32, which cannot reach TOPK_RTOL); otherwise the space grows by
TOPK_BLOCKS/2 blocks a try, up to TOPK_MAX_FRACTION of min(s, t), and an element still not
converged is decomposed by the full SVD instead.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["singular_triplets", "TOPK_RTOL", "TOPK_RTOL_ULPS", "TOPK_BLOCKS", "uses_top_k"]

# Residual ρ_i / σ_1 accepted for a wanted triplet: σ to ρ, singular subspaces to ρ/gap (far below
# the rounding of fp32 statistics).
TOPK_RTOL = 1e-7
# In float32 the residuals level off near 10·ε₃₂·σ₁, above TOPK_RTOL: there the check is
# TOPK_RTOL_ULPS·ε₃₂ (the triplets are then as exact as float32 holds them).
TOPK_RTOL_ULPS = 64
# Krylov blocks after the start block on the first try (grown by half as many on each failed
# residual check): 11 blocks of 16 converge the top 8 of a flat spectrum (σ₉/σ₈ ≈ 0.98) in one try,
# where a failed try costs an eigendecomposition of the space.
TOPK_BLOCKS = 10
# The Krylov space stays within this fraction of min(s, t); top-k is used only where at least
# TOPK_MIN_BLOCKS blocks fit (a smaller matrix goes to the full SVD).
TOPK_MAX_FRACTION = 0.5
TOPK_MIN_BLOCKS = 9
TOPK_MIN_SIZE = 96
# Gram–Schmidt passes after the first, at most, for one Krylov block.
REORTHOGONALISATIONS = 3


@functools.lru_cache(maxsize=32)
def _probe(n: int, l: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Fixed pseudo-random probes (n, l): deterministic results, no global RNG."""
    g = torch.Generator().manual_seed(0x70CC + n * 31 + l)
    return torch.randn(n, l, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)


def _orth(y: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(y).Q


def _block(k: int, n_min: int) -> int:
    return min(n_min, k + max(k, 8))


def _max_blocks(l: int, n_min: int) -> int:
    return max(1, int(TOPK_MAX_FRACTION * n_min) // l)


def uses_top_k(k: int | None, s_dim: int, t_dim: int) -> bool:
    """Whether ``singular_triplets`` takes the iterative path for these sizes."""
    n_min = min(s_dim, t_dim)
    return (k is not None and k > 0 and n_min >= TOPK_MIN_SIZE
            and _max_blocks(_block(k, n_min), n_min) >= TOPK_MIN_BLOCKS)


def _residual_tolerance(dtype: torch.dtype) -> float:
    """ρ_i / σ_1 accepted in ``dtype``: TOPK_RTOL, unless ``dtype`` cannot reach it (TOPK_RTOL_ULPS·ε)."""
    return max(TOPK_RTOL, TOPK_RTOL_ULPS * torch.finfo(dtype).eps)


def _orthonormal_block(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """orth(z) (B, s, l), orthogonal to the orthonormal columns of q (B, s, m).

    Project and orthonormalise, then again until no column lost more than half its norm to the
    projection ("twice is enough", checked): once the Krylov space stops growing (P of low rank), a
    block is rounding noise lying mostly inside span(q), and orthonormalising what is left of it
    magnifies its remaining q-components.
    """
    y = _orth(z - q @ (q.mT @ z))
    for _ in range(REORTHOGONALISATIONS):
        r = y - q @ (q.mT @ y)
        y = _orth(r)
        if bool((torch.linalg.vector_norm(r, dim=-2) >= 0.5).all()):  # host sync per block
            break
    return y


def singular_triplets(p: torch.Tensor, k: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u (B, s, r), σ (B, r) descending, vh (B, r, t) of p (B, s, t): all r = min(s, t) triplets
    (``k`` None or too large for the iteration to pay), else the top l ≥ k (r = l)."""
    b, s_dim, t_dim = p.shape
    if not uses_top_k(k, s_dim, t_dim):
        return torch.linalg.svd(p, full_matrices=False)
    n_min = min(s_dim, t_dim)
    l = _block(k, n_min)
    # Q and Z = PPᵀQ fill these block by block; a failed try keeps its blocks and appends.
    q = torch.empty(b, s_dim, l * _max_blocks(l, n_min), dtype=p.dtype, device=p.device)
    z = torch.empty_like(q)
    q[..., :l] = _orth(p @ _probe(t_dim, l, p.dtype, p.device).expand(b, t_dim, l))
    z[..., :l] = p @ (p.mT @ q[..., :l])
    m = l
    target = l * min(TOPK_BLOCKS + 1, q.shape[-1] // l)
    rtol = _residual_tolerance(p.dtype)
    while True:
        while m < target:
            q[..., m:m + l] = _orthonormal_block(z[..., m - l:m], q[..., :m])
            z[..., m:m + l] = p @ (p.mT @ q[..., m:m + l])
            m += l
        u, sig, vh, rho = _rayleigh_ritz(p, q[..., :m], z[..., :m], l)
        converged = (rho[:, :k] <= rtol * sig[:, :1]).all(dim=-1)
        if bool(converged.all()):  # host sync per try
            return u, sig, vh
        if m == q.shape[-1]:
            break
        target = min(m + l * (TOPK_BLOCKS // 2), q.shape[-1])
    idx = (~converged).nonzero().squeeze(1)
    fu, fs, fvh = torch.linalg.svd(p[idx], full_matrices=False)
    u[idx], sig[idx], vh[idx] = fu[..., :l], fs[..., :l], fvh[..., :l, :]
    return u, sig, vh


def _rayleigh_ritz(p: torch.Tensor, q: torch.Tensor, z: torch.Tensor, l: int):
    """The top l triplets of p on the column space of the orthonormal q (B, s, m), given
    z = PPᵀq, and their residuals ρ (B, l).

    The eigh of the (m × m) matrix QᵀPPᵀQ = Qᵀz: several times faster than LAPACK's SVD of QᵀP at
    these shapes. Squaring costs accuracy only for σ_i ≲ 1e-4·σ₁, and ρ is computed from the
    triplets themselves, so such a loss can only fail the check (never pass it). Only the l kept
    triplets are formed (the other m − l directions only enlarge the space).
    """
    gram = q.mT @ z
    _, w = torch.linalg.eigh(0.5 * (gram + gram.mT))
    u = q @ w.flip(-1)[..., :l]
    rows = u.mT @ p  # σ_i v_iᵀ
    sig = torch.linalg.vector_norm(rows, dim=-1)
    tiny = torch.finfo(p.dtype).tiny
    vh = rows / sig.clamp_min(tiny).unsqueeze(-1)
    rho = torch.linalg.vector_norm(p @ vh.mT - u * sig.unsqueeze(-2), dim=-2)
    return u, sig, vh, rho
