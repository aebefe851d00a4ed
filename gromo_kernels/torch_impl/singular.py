"""Leading singular triplets of a batch of matrices: the full SVD, or only the top k with a checked
block Krylov method (the new-neuron solve keeps at most ``max_neurons`` of them).

Top k: with a block of l = k + max(k, 8) fixed probe vectors Ω, the Krylov basis
Q = orth[PΩ, (PPᵀ)PΩ, …, (PPᵀ)^q PΩ] (each block orthonormalised as it is made), then a
Rayleigh–Ritz step (the SVD of the small QᵀP) gives triplets with Pᵀu = σv exactly and a residual
ρ_i = ‖P v_i − σ_i u_i‖ that bounds the error: |σ̃_i − σ_i| ≤ ρ_i, and the angle of a singular
vector ≤ ρ_i / gap_i. A Krylov space converges like a Chebyshev polynomial in the spectral gap, so
even a flat spectrum (σ_{k+1}/σ_k ≈ 0.9, typical of a projected gradient) needs only a few blocks,
where a plain subspace iteration needs dozens. Accepted once ρ_i ≤ TOPK_RTOL·σ_1 for the k wanted
triplets (TOPK_RTOL_ULPS·ε in float32, which cannot reach TOPK_RTOL); otherwise the space grows by
the blocks that the residual's decay so far says are missing (1 to TOPK_MAX_ADDED_BLOCKS a try;
in float32, whose residuals stall near the tolerance, always the maximum), up to half of
min(s, t), and an element still not converged — or not expected to converge in that room — is
decomposed by the full SVD instead.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["singular_triplets", "TOPK_RTOL", "TOPK_RTOL_ULPS", "TOPK_BLOCKS", "uses_top_k"]

# Residual ρ_i / σ_1 accepted for a wanted triplet: σ to ρ, singular subspaces to ρ/gap (far below
# the rounding of fp32 statistics).
TOPK_RTOL = 1e-7
# In float32 the residuals level off near 10·ε₃₂·σ₁, above TOPK_RTOL: there the check is
# TOPK_RTOL_ULPS·ε₃₂ (the triplets are then as exact as float32 holds them).
TOPK_RTOL_ULPS = 64
# Krylov blocks of the first try after the start block (trained Linear layers need 10–13 blocks of
# k + max(k, 8) columns in all to reach TOPK_RTOL, trained conv layers 6–10: bench/topk_convergence.py).
TOPK_BLOCKS = 8
# A failed try adds the blocks the residual's decay so far says are still missing (after a second
# failure at least twice the step before), at most TOPK_MAX_ADDED_BLOCKS, and none, the full SVD
# answering, when they would not fit; in float32 always TOPK_MAX_ADDED_BLOCKS.
TOPK_MAX_ADDED_BLOCKS = 4
# How much faster (in log residual per block) the next blocks converge than the average since the
# start: measured 1.7–2.0× on six trained Linear layers (bench/topk_convergence.py); 1.1–1.3× on
# conv layers, which mostly converge within the first try.
LATE_RATE_FACTOR = 2.0
# Top-k is worth it only when the first Krylov space is small against min(s, t).
TOPK_MAX_FRACTION = 0.5
TOPK_MIN_SIZE = 96


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
    n_min = min(s_dim, t_dim)
    return (k is not None and k > 0 and n_min >= TOPK_MIN_SIZE
            and _block(k, n_min) * (TOPK_BLOCKS + 1) <= TOPK_MAX_FRACTION * n_min)


def _residual_tolerance(dtype: torch.dtype) -> float:
    """ρ_i / σ_1 accepted in ``dtype``: TOPK_RTOL, unless ``dtype`` cannot reach it (TOPK_RTOL_ULPS·ε)."""
    return max(TOPK_RTOL, TOPK_RTOL_ULPS * torch.finfo(dtype).eps)


def _blocks_to_add(history: list[tuple[int, float]], rtol: float) -> int | None:
    """Blocks the next try needs (≥ 1), ``history`` holding (blocks, worst residual ρ/σ₁) of the
    failed tries so far; None where that cannot be told (no decay seen).

    After the first try: the residual of the start block is O(1), and a Krylov space converges
    faster as it grows (its polynomials separate the wanted triplets better), so the next blocks
    cut the residual about LATE_RATE_FACTOR times as fast (in logarithm) as the average since the
    start. After later tries: the rate seen between the last two. An estimate too short costs one
    more try; after one the caller adds at least twice its last step.
    """
    n_blocks, residual = history[-1]
    if not 0.0 < rtol < residual < 1.0 or n_blocks < 2:
        return None
    if len(history) == 1:
        per_block = LATE_RATE_FACTOR * -math.log(residual) / (n_blocks - 1)
    else:
        previous_blocks, previous = history[-2]
        per_block = math.log(previous / residual) / (n_blocks - previous_blocks)
        if not per_block > 0.0:
            return None
    return max(1, math.ceil(math.log(residual / rtol) / per_block))


def _extend_krylov(p: torch.Tensor, blocks: list[torch.Tensor], count: int) -> None:
    """Append ``count`` blocks orth((PPᵀ) y) to the Krylov blocks, continuing from the last one."""
    y = blocks[-1]
    for _ in range(count):
        y = _orth(p @ (p.mT @ y))
        blocks.append(y)


def singular_triplets(p: torch.Tensor, k: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u (B, s, r), σ (B, r) descending, vh (B, r, t) of p (B, s, t): all r = min(s, t) triplets
    (``k`` None or too large for the iteration to pay), else the top l ≥ k (r = l)."""
    b, s_dim, t_dim = p.shape
    if not uses_top_k(k, s_dim, t_dim):
        return torch.linalg.svd(p, full_matrices=False)
    n_min = min(s_dim, t_dim)
    l = _block(k, n_min)
    # A failed try keeps its blocks, basis and products: the next one only appends.
    blocks = [_orth(p @ _probe(t_dim, l, p.dtype, p.device).expand(b, t_dim, l))]
    _extend_krylov(p, blocks, TOPK_BLOCKS)
    rtol = _residual_tolerance(p.dtype)
    # Where the dtype's rounding sets the tolerance (float32), the residual stalls near it and its
    # decay says nothing about the blocks missing: the space then grows by the fixed maximum.
    predictable = rtol == TOPK_RTOL
    space = _RitzSpace(p, torch.cat(blocks, dim=-1))
    history, added = [], 0
    while True:
        u, sig, vh, rho = space.rayleigh_ritz(l)
        relative = (rho[:, :k] / sig[:, :1].clamp_min(torch.finfo(p.dtype).tiny)).amax(dim=-1)
        converged = (rho[:, :k] <= rtol * sig[:, :1]).all(dim=-1)
        if bool(converged.all()):  # host sync per try
            return u, sig, vh
        room = int(TOPK_MAX_FRACTION * n_min) // l - len(blocks)
        needed = None
        if predictable:
            history.append((len(blocks), float(relative[~converged].amax())))  # host sync on a failed try
            needed = _blocks_to_add(history, rtol)
        if needed is None:
            needed = TOPK_MAX_ADDED_BLOCKS
        if needed > room:
            break  # not expected to converge in the room left: the full SVD now, not after more tries
        # A prediction that fell short once is not trusted to the block: at least twice the last step.
        added = min(max(needed, 2 * added), TOPK_MAX_ADDED_BLOCKS, room)
        _extend_krylov(p, blocks, added)
        space.extend(torch.cat(blocks[-added:], dim=-1))
    idx = (~converged).nonzero().squeeze(1)
    fu, fs, fvh = torch.linalg.svd(p[idx], full_matrices=False)
    u, sig, vh = u.clone(), sig.clone(), vh.clone()
    u[idx], sig[idx], vh[idx] = fu[..., :l], fs[..., :l], fvh[..., :l, :]
    return u, sig, vh


class _RitzSpace:
    """The orthonormal basis Q (B, s, m) of the Householder QR of the Krylov blocks of p (B, s, t),
    grown try by try, with the Rayleigh–Ritz products QᵀP (B, m, t) and their Gram matrix (B, m, m)
    kept: a try after a failed one computes only what the appended blocks add.

    Householder QR factors columns left to right, so the QR of [blocks, new] extends that of the
    blocks: their reflectors applied to ``new`` (ormqr), the rows below m of the result factored,
    and the new columns of Q those reflectors applied to that factor's Q. That is a Householder QR
    of all the blocks, computed at the price of the new columns; as with any QR, the columns made
    from nearly dependent blocks are as orthonormal as the others, whatever rounding they hold.
    """

    def __init__(self, p: torch.Tensor, blocks: torch.Tensor):
        self.p = p
        self.reflectors, self.tau = torch.geqrf(blocks)
        self.q = torch.linalg.householder_product(self.reflectors, self.tau)
        self.small = self.q.mT @ p
        self.gram = self.small @ self.small.mT

    def extend(self, new: torch.Tensor) -> None:
        """Append the columns of ``new`` (B, s, c) to the basis."""
        m = self.q.shape[-1]
        projected = torch.ormqr(self.reflectors, self.tau, new, left=True, transpose=True)
        trailing, tau = torch.geqrf(projected[..., m:, :])
        embedded = torch.cat([torch.zeros_like(projected[..., :m, :]),
                              torch.linalg.householder_product(trailing, tau)], dim=-2)
        q_new = torch.ormqr(self.reflectors, self.tau, embedded, left=True, transpose=False)
        self.reflectors = torch.cat([self.reflectors, torch.cat([projected[..., :m, :], trailing], dim=-2)], dim=-1)
        self.tau = torch.cat([self.tau, tau], dim=-1)
        small_new = q_new.mT @ self.p
        cross = self.small @ small_new.mT
        self.gram = torch.cat([torch.cat([self.gram, cross], dim=-1),
                               torch.cat([cross.mT, small_new @ small_new.mT], dim=-1)], dim=-2)
        self.q = torch.cat([self.q, q_new], dim=-1)
        self.small = torch.cat([self.small, small_new], dim=-2)

    def rayleigh_ritz(self, l: int):
        """The top l triplets of p on the space, and their residuals ρ (B, l).

        The small SVD of QᵀP (m × t) through the eigh of its (m × m) Gram matrix: several times
        faster than LAPACK's SVD at these shapes. Squaring costs accuracy only for σ_i ≲ 1e-4·σ₁,
        and ρ is computed from the triplets themselves, so such a loss can only fail the check
        (never pass it). Only the l kept triplets are formed (the other m − l directions only
        enlarge the space).
        """
        _, ub = torch.linalg.eigh(self.gram)
        ub = ub.flip(-1)[..., :l]
        rows = ub.mT @ self.small  # σ_i v_iᵀ
        sig = torch.linalg.vector_norm(rows, dim=-1)
        tiny = torch.finfo(self.p.dtype).tiny
        vh = rows / sig.clamp_min(tiny).unsqueeze(-1)
        u = self.q @ ub
        rho = torch.linalg.vector_norm(self.p @ vh.mT - u * sig.unsqueeze(-2), dim=-2)
        return u, sig, vh, rho
