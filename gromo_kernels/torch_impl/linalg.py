"""Batched, mixed-precision PSD solves on the PyTorch path (CPU and CUDA): the four drivers.

Every driver works on a flattened batch ``(B, d, d)`` that the public layer has validated (finite,
symmetric up to rounding), scales it (scaling.py), factors it (factorization.py: the precision
floor, or an explicit relative cutoff) and applies the factor:

    solve     X = S⁺M = R·WᵀW·R·M
    inv sqrt  S^{+1/2} (the symmetric square root of that pseudo-inverse)
    delta     Δ = E⁺(S⁺M)ᵀ and tr(MΔ) = ‖W_S·R_S M R_E·W_Eᵀ‖²  (a sum of squares: never negative)
    neurons   SVD of P = W_S·R_S N R_E·W_Eᵀ (top k only, with ``max_neurons``: singular.py)

Mixed precision: with fp32 work only the Cholesky path runs in fp32; an element that needs the
pseudo-inverse is solved in fp64 directly (an fp32 eigh near the cutoff is measured 10–400× less
accurate than fp64 on the same data). Every element is also checked afterwards and redone in fp64
when it fails (:func:`_with_fp64_escalation`, the one place that does it) — non-finite results; a
LAPACK-style residual ratio ‖V_rᵀ(S'X' − M')‖ / (‖S'‖‖X'‖ d ε) ≥ 30 on the retained subspace;
a kept eigenvalue within 8× of fp32's resolution d·ε₃₂·‖S'‖; or a requested cutoff below that
resolution with a spectrum reaching it (see PsdFactor.unresolved_in_fp32).

Host synchronisations (threshold tensors stay on the device): one per factorisation to split the
batch between the Cholesky and eigh paths, one for the escalation mask in fp32 mode, one every
other step of a top-k iteration, and in the public layer one for validation and one for the
kept-neuron counts.
Inside a ``factorization_cache()`` block (factor_cache.py), one more per factorisation for the
matrix fingerprints and one per candidate entry compared; factors found there are applied element
by element instead of batched. CPU temporaries come from buffers.py; nothing returned to a caller
ever aliases them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import buffers
from .factorization import PsdFactor, eigh_psd_torch, factor_psd_torch
from .scaling import asymmetry, max_abs, pow2_scale, pow4_scale, scale_psd, scaled, scaled_rhs, scaled_symmetric
from .singular import singular_triplets

__all__ = [
    "PsdFactor",
    "factor_psd_torch",
    "eigh_psd_torch",
    "pow4_scale",
    "pow2_scale",
    "max_abs",
    "asymmetry",
    "scaled",
    "scaled_symmetric",
    "clear_workspace",
    "set_buffer_budget",
    "solve_psd_torch",
    "psd_inv_sqrt_torch",
    "optimal_delta_torch",
    "optimal_added_neurons_torch",
    "SolveOut",
    "InvSqrtOut",
    "DeltaOut",
    "AddedOut",
]

# LAPACK-style residual ratio above which an fp32 solve is redone in fp64.
RESIDUAL_LIMIT = 30.0
F64 = torch.float64


def clear_workspace() -> None:
    """Free this thread's reusable solve buffers and every idle buffer of the shared pool."""
    buffers.clear()


def set_buffer_budget(nbytes: int) -> None:
    """Bytes the solves' CPU buffer pool may hold, all threads together (default 512 MiB, or the
    environment variable ``GROMO_KERNELS_SOLVE_BUFFER_BYTES``; 0 disables pooling)."""
    buffers.set_budget(nbytes)


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


class Rule(NamedTuple):
    """Which eigen-directions a solve keeps. ``rtol`` a float or (B,) tensor: the relative rule
    (uniform scaling, cutoff max(atol, rtol·‖S‖₂)); ``rtol`` None: the precision floor (Jacobi
    scaling, ``floor`` = FLOOR_ULPS·ε of the arrival dtype, ``atol`` an absolute threshold on λ(S)).
    ``atol`` a float or (B,) tensor."""

    atol: torch.Tensor | float
    rtol: torch.Tensor | float | None
    floor: float

    @property
    def jacobi(self) -> bool:
        return self.rtol is None

    def select(self, idx) -> Rule:
        return Rule(_select_input(self.atol, idx), _select_input(self.rtol, idx), self.floor)


def _factor(s, rule: Rule, work, *, name="S", exact, force_eigh=False, defer_eigh=False):
    """Scale and factor s (B, d, d) under ``rule``: -> (PsdFactor, S', r (B, d) float64)."""
    sp, r = scale_psd(s, work, jacobi=rule.jacobi, name=name, exactly_symmetric=exact)
    if rule.jacobi:
        f = factor_psd_torch(sp, atol=None, rtol=None, floor=rule.floor, r=r, atol_true=rule.atol,
                             force_eigh=force_eigh, defer_eigh=defer_eigh, name=name, source=s)
    else:
        f = factor_psd_torch(sp, atol=rule.atol * r[:, 0] ** 2, rtol=rule.rtol, force_eigh=force_eigh,
                             defer_eigh=defer_eigh, name=name, source=s)
    return f, sp, r


def _select_input(t, idx):
    if isinstance(t, torch.Tensor):
        return t[idx]
    if isinstance(t, Rule):
        return t.select(idx)
    return t


def _with_fp64_escalation(core, inputs: tuple, work: torch.dtype, **options):
    """Run ``core(*inputs, work=work, check=fp32?, **options) -> (outputs, bad)`` and redo the
    batch elements flagged ``bad`` in fp64, scattering them into the outputs. Returns (outputs,
    escalated (B,) bool). The only place where fp32 work hands elements to fp64."""
    check = work == torch.float32
    outputs, bad = core(*inputs, work=work, check=check, **options)
    outputs = list(outputs)
    if bad is None:
        return outputs, torch.zeros(inputs[0].shape[0] if inputs[0] is not None else inputs[1].shape[0],
                                    dtype=torch.bool, device=outputs[0].device)
    idx = bad.nonzero().squeeze(1)  # host sync: which elements fp32 could not be trusted with
    if idx.numel():
        sub, _ = core(*[_select_input(t, idx) for t in inputs], work=F64, check=False, **options)
        for out, new in zip(outputs, sub):
            out[idx] = new.to(out.dtype)
    return outputs, bad


def _finite_rows(*tensors: torch.Tensor) -> torch.Tensor:
    """(B,) bool: every entry of every (B, ...) tensor is finite."""
    ok = None
    for t in tensors:
        fin = torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=-1)
        ok = fin if ok is None else ok & fin
    return ok


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den with 0/0 = 0 and x/0 = inf."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.where(num > 0, torch.full_like(num, float("inf")), num * 0))


def _residual_ratio(sp, xp, mp, f: PsdFactor) -> torch.Tensor:
    """‖V_rᵀ(S' X' − M')‖_F / (‖S'‖_F ‖X'‖_F d ε) per element (the retained-subspace residual)."""
    r = f.project_kept(sp @ xp - mp)
    num = torch.linalg.vector_norm(r, dim=(-2, -1))
    den = torch.linalg.matrix_norm(sp) * torch.linalg.vector_norm(xp, dim=(-2, -1)) * f.d * _eps(sp.dtype)
    return _ratio(num, den)


def _back(t: torch.Tensor, scale: torch.Tensor, rows=None, cols=None) -> torch.Tensor:
    """t (B, m, n) in float64 times a per-element scale (B,), row factors (B, m), column factors (B, n)."""
    out = t.to(F64) * scale[:, None, None]  # a fresh tensor: the factors below apply in place
    if rows is not None:
        out.mul_(rows[:, :, None])
    if cols is not None:
        out.mul_(cols[:, None, :])
    return out


# ----------------------------------------------------------------------------------------------
# solve
# ----------------------------------------------------------------------------------------------


class SolveOut(NamedTuple):
    x: torch.Tensor
    rank: torch.Tensor
    used_pinv: torch.Tensor
    escalated: torch.Tensor


def _solve_core(s, m, rule, *, work, out_dtype, check, exact):
    f, sp, r = _factor(s, rule, work, exact=exact, defer_eigh=check)
    mp, mscale = scaled_rhs(m, r, None, work)
    xp = f.whiten_t(f.whiten(mp), overwrite=True)
    x = _back(xp, mscale, rows=r).to(out_dtype)
    bad = None
    if check:
        bad = f.deferred | ~_finite_rows(xp) | f.unresolved_in_fp32() | (
            _residual_ratio(sp, xp, mp, f) > RESIDUAL_LIMIT)
    return (x, f.rank, f.rank < s.shape[-1]), bad


def solve_psd_torch(s, m, *, atol, rtol, floor=0.0, work_dtype, out_dtype, exactly_symmetric=False) -> SolveOut:
    """X = S⁺M: s (B, d, d) symmetric, m (B, d, k) -> SolveOut.

    s and m arrive in their accumulate dtype; atol a float or (B,); rtol a float, (B,) or None (the
    precision floor). ``escalated`` marks the elements an fp32 solve handed to fp64.
    """
    (x, rank, used), escalated = _with_fp64_escalation(
        _solve_core, (s, m, Rule(atol, rtol, floor)), work_dtype, out_dtype=out_dtype, exact=exactly_symmetric)
    return SolveOut(x, rank, used, escalated)


# ----------------------------------------------------------------------------------------------
# inverse square root
# ----------------------------------------------------------------------------------------------


class InvSqrtOut(NamedTuple):
    r: torch.Tensor
    rank: torch.Tensor
    escalated: torch.Tensor


def _inv_sqrt_core(s, rule, *, work, out_dtype, check, exact):
    f, _, r = _factor(s, rule, work, exact=exact, force_eigh=True)
    if rule.jacobi:
        out = f.sqrt_pinv_scaled(r)
        rp = out
    else:
        rp = f.sqrt_pinv()
        out = _back(rp, r[:, 0])
    bad = None
    if check:
        bad = ~_finite_rows(rp) | f.unresolved_in_fp32()
    return (out.to(out_dtype), f.rank), bad


def psd_inv_sqrt_torch(s, *, atol, rtol, floor=0.0, work_dtype, out_dtype, exactly_symmetric=False) -> InvSqrtOut:
    """S^{+1/2}, symmetric, over the kept eigen-directions: s (B, d, d) -> InvSqrtOut."""
    (r, rank), escalated = _with_fp64_escalation(
        _inv_sqrt_core, (s, Rule(atol, rtol, floor)), work_dtype, out_dtype=out_dtype, exact=exactly_symmetric)
    return InvSqrtOut(r, rank, escalated)


# ----------------------------------------------------------------------------------------------
# optimal delta
# ----------------------------------------------------------------------------------------------


class DeltaOut(NamedTuple):
    delta: torch.Tensor
    decrease: torch.Tensor
    used_pinv: torch.Tensor
    escalated: torch.Tensor


def _delta_core(s, m, e, rule_s, rule_e, *, force_pinv, work, out_dtype, check, exact):
    dim, o = s.shape[-1], m.shape[-1]
    fs, sp, r_s = _factor(s, rule_s, work, exact=exact, force_eigh=force_pinv, defer_eigh=check)
    used = fs.rank < dim
    bad = None
    if e is None:
        mp, mscale = scaled_rhs(m, r_s, None, work)
        y = fs.whiten(mp)  # W_S M'   (B, D, o)
        # What is read of y (the decrease, its finiteness) is read before Wᵀ overwrites it.
        y_norm = torch.linalg.vector_norm(y, dim=(-2, -1))
        deltap_t = fs.whiten_t(y, overwrite=True)  # S'⁺ M'  (B, D, o)
        delta = _back(deltap_t.mT, mscale, cols=r_s)
        if check:
            bad = fs.deferred | ~_finite_rows(deltap_t) | ~torch.isfinite(y_norm) | (
                fs.unresolved_in_fp32() | (_residual_ratio(sp, deltap_t, mp, fs) > RESIDUAL_LIMIT))
    else:
        fe, _, r_e = _factor(e, rule_e, work, name="E", exact=exact, force_eigh=force_pinv, defer_eigh=check)
        mp, mscale = scaled_rhs(m, r_s, r_e, work)
        y1 = fs.whiten(mp)
        y = fe.whiten(y1.mT).mT  # W_S M' W_Eᵀ
        y_norm = torch.linalg.vector_norm(y, dim=(-2, -1))
        z = fs.whiten_t(y)  # W_Sᵀ W_S M' W_Eᵀ
        deltap = fe.whiten_t(z.mT)  # W_Eᵀ W_E M'ᵀ W_Sᵀ W_S = E'⁺ (S'⁺ M')ᵀ   (B, o, D)
        delta = _back(deltap, mscale, rows=r_e, cols=r_s)
        used = used | (fe.rank < o)
        if check:
            # The S residual is checked on M' scaled by R_S·R_E; its column scaling does not matter.
            xs = fs.whiten_t(y1)
            bad = fs.deferred | fe.deferred | ~_finite_rows(deltap, y) | fs.unresolved_in_fp32() | (
                fe.unresolved_in_fp32() | (_residual_ratio(sp, xs, mp, fs) > RESIDUAL_LIMIT))
    # tr(M·Δ) = ‖W_S M W_Eᵀ‖²: a sum of squares, never negative.
    decrease = (y_norm.to(F64) ** 2 * mscale ** 2).to(out_dtype)
    return (delta.to(out_dtype), decrease, used), bad


def optimal_delta_torch(s, m, e, *, atol_s, rtol_s, atol_e, rtol_e, force_pinv, work_dtype,
                        out_dtype, floor=0.0, exactly_symmetric=False) -> DeltaOut:
    """Δ = E⁺ (S⁺ M)ᵀ (o, D) and tr(M Δ): s (B, D, D), m (B, D, o), e (B, o, o) or None -> DeltaOut.

    rtol_s / rtol_e None selects the precision floor (``floor``) for S / E."""
    (delta, decrease, used), escalated = _with_fp64_escalation(
        _delta_core, (s, m, e, Rule(atol_s, rtol_s, floor), Rule(atol_e, rtol_e, floor)), work_dtype,
        force_pinv=force_pinv, out_dtype=out_dtype, exact=exactly_symmetric)
    return DeltaOut(delta, decrease, used, escalated)


# ----------------------------------------------------------------------------------------------
# new neurons
# ----------------------------------------------------------------------------------------------


class AddedOut(NamedTuple):
    """Padded to k_max (min(s, t), or the top-k block): alpha (B, k_max, s), omega (B, t, k_max),
    sigma (B, k_max); count (B,) kept neurons per element (a prefix); escalated (B,)."""

    alpha: torch.Tensor
    omega: torch.Tensor
    sigma: torch.Tensor
    count: torch.Tensor
    escalated: torch.Tensor


def _column_sign(a: torch.Tensor) -> torch.Tensor:
    """Sign of the largest-magnitude entry of each column: a (B, n, k) -> (B, k) in {−1, 0, 1}
    (the first such entry on ties; 0 for an all-zero column)."""
    if a.shape[-2] == 0:
        return torch.zeros(a.shape[0], a.shape[-1], dtype=a.dtype, device=a.device)
    idx = a.abs().argmax(dim=-2, keepdim=True)
    return torch.sign(a.gather(-2, idx)).squeeze(-2)


def _added_core(s, n, e, rule_s, rule_e, *, statistical_threshold, max_neurons, ignore_singular_values,
                alpha_zero, omega_zero, work, out_dtype, check, exact):
    big = n.shape[0]
    fs = fe = None
    r_s = r_e = None
    if s is not None:
        fs, _, r_s = _factor(s, rule_s, work, exact=exact, defer_eigh=check)
    if e is not None:
        fe, _, r_e = _factor(e, rule_e, work, name="E", exact=exact, defer_eigh=check)
    p, pscale = scaled_rhs(n, r_s, r_e, work)
    if fs is not None:
        p = fs.whiten(p)  # W_S N'
    if fe is not None:
        p = fe.whiten(p.mT).mT  # W_S N' W_Eᵀ
    u, sig, vh = singular_triplets(p, max_neurons)
    # α direction R_S W_Sᵀ U (s, k) and ω direction R_E W_Eᵀ V (t, k), in true units.
    a_dir = u.to(F64) if fs is None else fs.whiten_t(u).to(F64) * r_s[:, :, None]
    w_dir = vh.mT.to(F64) if fe is None else fe.whiten_t(vh.mT).to(F64) * r_e[:, :, None]
    sigma = sig.to(F64) * pscale[:, None]
    k_max = sigma.shape[-1]
    if k_max:
        threshold = sigma[:, 0].clamp_max(statistical_threshold)
        count = (sigma >= threshold[:, None]).sum(dim=-1)
    else:
        count = torch.zeros(big, dtype=torch.int64, device=n.device)
    if max_neurons is not None:
        count = count.clamp_max(max_neurons)
    # Deterministic sign per singular pair: largest-magnitude entry of α's direction positive
    # (of ω's when alpha_zero, since α is then identically 0); the other vector as fallback.
    first, second = (w_dir, a_dir) if alpha_zero else (a_dir, w_dir)
    sign = _column_sign(first)
    sign = torch.where(sign == 0, _column_sign(second), sign)
    sign = torch.where(sign == 0, 1.0, sign)
    root = torch.ones_like(sigma) if ignore_singular_values else sigma.abs().sqrt()
    scale = (sign * root).unsqueeze(-2)
    alpha = (a_dir * scale).mT
    omega = w_dir * scale
    if alpha_zero:
        alpha = torch.zeros_like(alpha)
    if omega_zero:
        omega = torch.zeros_like(omega)
    bad = None
    if check:
        bad = ~_finite_rows(alpha, omega, sigma)
        if fs is not None:
            bad = bad | fs.deferred | fs.unresolved_in_fp32()
        if fe is not None:
            bad = bad | fe.deferred | fe.unresolved_in_fp32()
    return (alpha.to(out_dtype), omega.to(out_dtype), sigma.to(out_dtype), count), bad


def optimal_added_neurons_torch(s, n, e, *, atol, rtol_s, rtol_e, statistical_threshold, max_neurons,
                                ignore_singular_values, alpha_zero, omega_zero, work_dtype,
                                out_dtype, floor=0.0, exactly_symmetric=False) -> AddedOut:
    """TINY / GradMax neurons on a batch: s (B, s, s) or None, n (B, s, t), e (B, t, t) or None -> AddedOut.

    P = S^{+1/2} N E^{+1/2} (computed as W_S R_S N R_E W_Eᵀ: same singular values and vectors up to
    the orthogonal factor that cancels in α, ω); keep σ ≥ min(statistical_threshold, σ_max), at most
    ``max_neurons`` (then only the top triplets are computed); α = S^{+1/2} U r, ω = r Vᵀ E^{+1/2},
    r = √σ or 1. ``atol`` (a float or (B,)) is the absolute threshold on the eigenvalues of S and E;
    rtol_s / rtol_e (floats or (B,)) None select the precision floor.
    """
    (alpha, omega, sigma, count), escalated = _with_fp64_escalation(
        _added_core, (s, n, e, Rule(atol, rtol_s, floor), Rule(atol, rtol_e, floor)), work_dtype,
        statistical_threshold=statistical_threshold, max_neurons=max_neurons,
        ignore_singular_values=ignore_singular_values, alpha_zero=alpha_zero, omega_zero=omega_zero,
        out_dtype=out_dtype, exact=exactly_symmetric)
    return AddedOut(alpha, omega, sigma, count, escalated)
