"""solve_psd / psd_inv_sqrt judged like LAPACK and scipy judge solvers, against scipy.linalg in float64.

Inputs come from random_psd with a chosen spectrum (κ 1…1e12, exact rank deficiency, clustered and
repeated eigenvalues, d 1…600, scales 1e-20…1e20). Ratios (ε of the result's dtype):
    solve residual  ‖V_rᵀ(S X − M)‖ / (‖S‖‖X‖ d ε) < 30 on the retained subspace
    eigen           ‖S − VΛVᵀ‖ / (d‖S‖ε) < 60,  ‖I − VᵀV‖ / (d ε) < 60
    Penrose         the four identities of the pseudo-inverse, each as a ratio < 30
    subspaces       retained eigenvectors by angle against scipy.linalg.eigh
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import torch

import gromo_kernels as gk
from gromo_kernels.testing import random_psd
from gromo_kernels.torch_impl import linalg as impl

RESIDUAL_LIMIT = 30.0
EIGEN_LIMIT = 60.0


def _eps(dtype) -> float:
    return torch.finfo(dtype).eps


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _scipy_eigh(s: np.ndarray):
    lam, vecs = sla.eigh(s)
    return lam, vecs


def _cutoff(lam: np.ndarray, d: int, rtol: float, atol: float = 0.0) -> float:
    return max(atol, rtol * np.abs(lam).max()) if lam.size else atol


def _solve_checks(s: np.ndarray, m: np.ndarray, x: np.ndarray, eps: float, rtol: float, *, atol: float = 0.0):
    """Residual ratio on the robustly retained subspace (λ > 2·cutoff) and the size of X on the
    robustly dropped one (λ < cutoff/2), against scipy's eigenvectors of the float64 S."""
    d = s.shape[0]
    lam, vecs = _scipy_eigh(s)
    cut = _cutoff(lam, d, rtol, atol)
    hi, lo = vecs[:, lam > 2 * cut], vecs[:, lam < cut / 2]
    norm_s = np.linalg.norm(s, 2)
    norm_x = np.linalg.norm(x)
    residual = np.linalg.norm(hi.T @ (s @ x - m))
    ratio = residual / (norm_s * norm_x * d * eps) if norm_x > 0 else residual
    kept = lam[lam > 2 * cut]
    kappa_r = norm_s / kept.min() if kept.size else 1.0
    leak = np.linalg.norm(lo.T @ x) / max(norm_x, np.finfo(float).tiny)
    return ratio, leak, kappa_r


# ----------------------------------------------------------------------------------------------
# solve_psd against scipy: κ sweep, rank deficiency, clustered/repeated, sizes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 17, 64, 129])
@pytest.mark.parametrize("cond", [1.0, 1e2, 1e6, 1e12])
def test_solve_psd_kappa_sweep_fp64(d, cond, generator):
    s = random_psd(d, "geometric", cond=cond, generator=generator)
    m = torch.randn(d, 3, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m)
    assert out.x.dtype == torch.float64
    rtol = d * _eps(torch.float64)
    ratio, leak, kappa_r = _solve_checks(_np(s), _np(m), _np(out.x), _eps(torch.float64), rtol)
    assert ratio < RESIDUAL_LIMIT
    assert leak < RESIDUAL_LIMIT * d * _eps(torch.float64) * kappa_r
    ref = sla.pinvh(_np(s), atol=0.0, rtol=rtol) @ _np(m)
    err = np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref)
    assert err < 100 * d * _eps(torch.float64) * kappa_r
    lam = np.linalg.eigvalsh(_np(s))
    cut = _cutoff(lam, d, rtol)
    if not np.any(np.abs(lam - cut) < 0.5 * cut):
        assert int(out.rank) == int((lam > cut).sum())
    assert bool(out.used_pinv) == (int(out.rank) < d)


_RANK_CASES = [(sp, d, r) for sp in ("geometric", "linear", "clustered", "repeated")
               for d, r in ((9, 4), (64, 63), (64, 32))] + [("geometric", 200, 120), ("clustered", 200, 120)]


@pytest.mark.parametrize("spectrum,d,rank", _RANK_CASES)
def test_solve_psd_exact_rank_deficiency(spectrum, d, rank, generator):
    s = random_psd(d, spectrum, cond=1e4, rank=rank, generator=generator)
    m = torch.randn(d, 5, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m)
    assert int(out.rank) == rank
    assert bool(out.used_pinv)
    rtol = d * _eps(torch.float64)
    ratio, leak, kappa_r = _solve_checks(_np(s), _np(m), _np(out.x), _eps(torch.float64), rtol)
    assert ratio < RESIDUAL_LIMIT
    assert leak < RESIDUAL_LIMIT * d * _eps(torch.float64) * kappa_r
    ref = sla.pinvh(_np(s), atol=0.0, rtol=rtol) @ _np(m)
    assert np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref) < 100 * d * _eps(torch.float64) * kappa_r


def test_solve_psd_600_rank_deficient(generator):
    d, rank = 600, 520
    s = random_psd(d, "geometric", cond=1e6, rank=rank, generator=generator)
    m = torch.randn(d, 3, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m)
    assert int(out.rank) == rank
    rtol = d * _eps(torch.float64)
    ratio, leak, kappa_r = _solve_checks(_np(s), _np(m), _np(out.x), _eps(torch.float64), rtol)
    assert ratio < RESIDUAL_LIMIT
    assert leak < RESIDUAL_LIMIT * d * _eps(torch.float64) * kappa_r


@pytest.mark.parametrize("d", [65, 600])
def test_solve_psd_large_with_dead_units(d, generator):
    """Dead ReLUs: exactly zero rows/columns, deflated inside Cholesky (rank = live units)."""
    base = random_psd(d, "geometric", cond=1e3, generator=generator)
    dead = torch.zeros(d, dtype=torch.bool)
    dead[torch.randperm(d, generator=generator)[: d // 5]] = True
    s = base.masked_fill(dead[:, None] | dead[None, :], 0.0)
    m = torch.randn(d, 4, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m)
    assert int(out.rank) == d - int(dead.sum())
    assert bool(out.used_pinv)
    ref = sla.pinvh(_np(s)) @ _np(m)
    assert np.abs(_np(out.x)[dead.numpy()]).max() == 0.0
    assert np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref) < 1e3 * d * _eps(torch.float64)
    ratio, _, _ = _solve_checks(_np(s), _np(m), _np(out.x), _eps(torch.float64), d * _eps(torch.float64))
    assert ratio < RESIDUAL_LIMIT


@pytest.mark.parametrize("cond", [1e2, 1e5, 1e8, 1e12])
def test_solve_psd_fp32_statistics_cutoff_follows_arrival_dtype(cond, generator):
    """An fp32 S is solved in fp64 with an fp32 cutoff: its rounding noise is never inverted."""
    d = 48
    s64 = random_psd(d, "geometric", cond=cond, generator=generator)
    s32 = s64.float()
    m32 = torch.randn(d, 3, generator=generator).float()
    rtol = d * _eps(torch.float32)
    out = gk.solve_psd(s32, m32, rtol=rtol)  # the relative rule (the default floor: test_linalg_floor.py)
    assert out.x.dtype == torch.float32
    ratio, leak, kappa_r = _solve_checks(_np(s32), _np(m32), _np(out.x), _eps(torch.float32), rtol)
    assert ratio < RESIDUAL_LIMIT
    assert leak < RESIDUAL_LIMIT * d * _eps(torch.float32) * kappa_r
    # Against the fp64 truth of the unrounded S with the same cutoff: error of fp32 data only.
    ref = sla.pinvh(_np(s64), atol=0.0, rtol=rtol) @ _np(m32)
    err = np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref)
    assert err < 1e-2
    assert np.linalg.norm(_np(out.x)) < 2 * np.linalg.norm(ref)


# ----------------------------------------------------------------------------------------------
# Penrose identities, subspaces, eigen ratios
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,rank,cond", [(1, 1, 1.0), (12, 7, 1e3), (80, 80, 1e8), (150, 90, 1e6)])
def test_pseudo_inverse_penrose_identities(d, rank, cond, generator):
    s = random_psd(d, "geometric", cond=cond, rank=rank, generator=generator)
    x = gk.solve_psd(s, torch.eye(d, dtype=torch.float64)).x
    sn, xn = _np(s), _np(x)
    eps = _eps(torch.float64)
    ns, nx = np.linalg.norm(sn, 2), np.linalg.norm(xn, 2)
    assert np.linalg.norm(sn @ xn @ sn - sn, 2) / (ns * ns * nx * d * eps) < RESIDUAL_LIMIT
    assert np.linalg.norm(xn @ sn @ xn - xn, 2) / (nx * nx * ns * d * eps) < RESIDUAL_LIMIT
    assert np.linalg.norm(sn @ xn - (sn @ xn).T, 2) / (ns * nx * d * eps) < RESIDUAL_LIMIT
    assert np.linalg.norm(xn @ sn - (xn @ sn).T, 2) / (ns * nx * d * eps) < RESIDUAL_LIMIT


@pytest.mark.parametrize("spectrum,d,rank", [("geometric", 30, 20), ("clustered", 30, 20), ("repeated", 30, 20),
                                             ("clustered", 96, 70), ("geometric", 160, 120)])
def test_inv_sqrt_retained_subspace_by_angle(spectrum, d, rank, generator):
    s = random_psd(d, spectrum, cond=1e3, rank=rank, generator=generator)
    out = gk.psd_inv_sqrt(s)
    assert int(out.rank) == rank
    lam, vecs = _scipy_eigh(_np(s))
    kept = vecs[:, lam > d * _eps(torch.float64) * lam.max()]
    ours = sla.orth(_np(out.r))
    assert ours.shape[1] == rank
    gap = lam[lam > d * _eps(torch.float64) * lam.max()].min()
    angle = sla.subspace_angles(ours, kept).max()
    assert angle < 100 * d * _eps(torch.float64) * lam.max() / gap
    # R S R is the projector on the retained subspace; R² is the pseudo-inverse.
    r = _np(out.r)
    proj = kept @ kept.T
    kappa = lam.max() / gap
    assert np.linalg.norm(r @ _np(s) @ r - proj, 2) < 100 * d * _eps(torch.float64) * kappa
    ref = sla.pinvh(_np(s), atol=0.0, rtol=d * _eps(torch.float64))
    assert np.linalg.norm(r @ r - ref, 2) / np.linalg.norm(ref, 2) < 100 * d * _eps(torch.float64) * kappa


@pytest.mark.parametrize("spectrum,d", [(sp, d) for sp in ("geometric", "clustered", "repeated") for d in (1, 5, 64)]
                         + [("geometric", 300)])
def test_eigh_ratios(spectrum, d, generator):
    s = random_psd(d, spectrum, cond=1e10, rank=max(1, d - 3), generator=generator, batch_shape=(2,))
    c = impl.pow4_scale(s)
    lam, vecs = impl.eigh_psd_torch(s / c[:, None, None])
    for i in range(2):
        sp = _np(s[i]) / float(c[i])
        v, lm = _np(vecs[i]), _np(lam[i])
        eps = _eps(torch.float64)
        assert np.linalg.norm(sp - (v * lm) @ v.T) / (d * np.linalg.norm(sp) * eps) < EIGEN_LIMIT
        assert np.linalg.norm(np.eye(d) - v.T @ v) / (d * eps) < EIGEN_LIMIT
        ref = np.linalg.eigvalsh(sp)
        assert np.abs(lm - ref).max() < 10 * d * eps * np.abs(ref).max()


def test_eigh_falls_back_to_svd_when_eigh_fails(generator, monkeypatch):
    """GroMo #192 ('failed to converge'): per-element retry, then an SVD-based decomposition."""
    d = 40
    s = random_psd(d, "geometric", cond=1e4, rank=30, generator=generator, batch_shape=(3,))

    def failing_eigh(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge (simulated)")

    monkeypatch.setattr(torch.linalg, "eigh", failing_eigh)
    lam, vecs = impl.eigh_psd_torch(s)
    eps = _eps(torch.float64)
    for i in range(3):
        sn, v, lm = _np(s[i]), _np(vecs[i]), _np(lam[i])
        assert np.linalg.norm(sn - (v * lm) @ v.T) / (d * np.linalg.norm(sn) * eps) < EIGEN_LIMIT
        assert np.linalg.norm(np.eye(d) - v.T @ v) / (d * eps) < EIGEN_LIMIT
        assert np.all(np.diff(lm) >= 0)
    m = torch.randn(3, d, 2, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m, rtol=1e-10)
    assert out.rank.tolist() == [30, 30, 30]
    for i in range(3):
        ref = sla.pinvh(_np(s[i]), atol=0.0, rtol=1e-10) @ _np(m[i])
        assert np.linalg.norm(_np(out.x[i]) - ref) / np.linalg.norm(ref) < 1e-9


# ----------------------------------------------------------------------------------------------
# Scale sweep: relative cutoffs are scale-invariant
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_scale_sweep_rank_and_solution_invariant(dtype, generator):
    d = 40
    s = random_psd(d, "geometric", cond=1e3, rank=25, generator=generator)
    m = torch.randn(d, 3, generator=generator, dtype=torch.float64)
    base = gk.solve_psd(s.to(dtype), m.to(dtype))
    base_r = gk.psd_inv_sqrt(s.to(dtype))
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for exponent in (-20, -10, -3, 3, 10, 20):
        k = 10.0 ** exponent
        out = gk.solve_psd((s * k).to(dtype), m.to(dtype))
        assert int(out.rank) == int(base.rank) == 25
        assert bool(out.used_pinv)
        x_rescaled = out.x.double() * k
        assert torch.isfinite(out.x).all()
        assert float((x_rescaled - base.x.double()).norm() / base.x.double().norm()) < tol
        r = gk.psd_inv_sqrt((s * k).to(dtype))
        assert int(r.rank) == int(base_r.rank) == 25
        assert float((r.r.double() * math.sqrt(k) - base_r.r.double()).norm() / base_r.r.double().norm()) < tol


@pytest.mark.parametrize("exponent", [-20, 0, 20])
def test_scale_sweep_fp32_fast_path_matches_scipy(exponent, generator):
    """fp32 work dtype at extreme scales: power-of-4 scaling keeps fp32 in range."""
    d = 30
    s = random_psd(d, "geometric", cond=1e2, scale=10.0 ** exponent, generator=generator)
    m = torch.randn(d, 2, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s.float(), m.float(), dtype=torch.float32)
    ratio, _, _ = _solve_checks(_np(s.float()), _np(m.float()), _np(out.x), _eps(torch.float32),
                                d * _eps(torch.float32))
    assert ratio < RESIDUAL_LIMIT
    ref = np.linalg.solve(_np(s.float()), _np(m.float()))
    assert np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref) < 1e-4


def test_fp32_near_its_maximum_is_symmetrised_without_overflow(generator):
    """Entries near fp32's maximum with a one-ulp asymmetry: S + Sᵀ would overflow, so S is scaled
    before it is symmetrised and the fp32 path answers itself (no non-finite result to escalate)."""
    from gromo_kernels.torch_impl import linalg as torch_linalg

    s = random_psd(6, "geometric", cond=10.0, generator=generator)
    s = (s / s.abs().max() * 3e38).float()
    s[0, 1] = torch.nextafter(s[0, 1], torch.tensor(float("inf")))
    sp, c = torch_linalg.scaled_symmetric(s[None], torch.float32)
    assert bool(torch.isfinite(sp).all()) and torch.equal(sp, sp.mT) and float(c) > 1e38
    m = torch.randn(6, 2, generator=generator) * 1e38
    out = gk.solve_psd(s, m, dtype=torch.float32)
    ref = np.linalg.solve(0.5 * (_np(s) + _np(s).T), _np(m))
    assert np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref) < 1e-5


# ----------------------------------------------------------------------------------------------
# Batched = looped, mixed Cholesky / eigh batches
# ----------------------------------------------------------------------------------------------


def test_batched_equals_looped_with_mixed_paths(generator):
    d = 24
    mats = [random_psd(d, "geometric", cond=c, rank=r, generator=generator)
            for c, r in [(1e2, 24), (1e4, 10), (1e14, 24), (1.0, 24), (1e3, 23), (1e6, 1)]]
    s = torch.stack(mats).reshape(2, 3, d, d)
    m = torch.randn(2, 3, d, 4, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m)
    inv = gk.psd_inv_sqrt(s)
    for i in range(2):
        for j in range(3):
            one = gk.solve_psd(s[i, j], m[i, j])
            # Batched and single LAPACK calls may block differently: rounding-level differences only.
            assert float((out.x[i, j] - one.x).norm() / one.x.norm()) < 1e-10
            assert int(out.rank[i, j]) == int(one.rank)
            assert bool(out.used_pinv[i, j]) == bool(one.used_pinv)
            one_r = gk.psd_inv_sqrt(s[i, j])
            assert float((inv.r[i, j] - one_r.r).norm() / one_r.r.norm()) < 1e-10
    assert out.rank.flatten().tolist()[:2] == [24, 10]
    assert int(out.rank.flatten()[5]) == 1


def test_non_contiguous_inputs_are_not_modified(generator):
    d = 10
    s = random_psd(d, cond=1e2, generator=generator, batch_shape=(3,))
    s_t = s.transpose(0, 0)[::2]  # strided view over the batch
    m = torch.randn(d, 6, generator=generator, dtype=torch.float64)[:, ::2].expand(2, d, 3)
    before = s_t.clone(), m.clone()
    out = gk.solve_psd(s_t, m)
    assert torch.equal(s_t, before[0]) and torch.equal(m, before[1])
    ref = torch.linalg.solve(s_t, m)
    torch.testing.assert_close(out.x, ref, rtol=1e-10, atol=0)


# ----------------------------------------------------------------------------------------------
# fp32 with escalation
# ----------------------------------------------------------------------------------------------


def test_fp32_well_conditioned_stays_fp32_and_meets_fp32_ratios(generator):
    d = 64
    s = random_psd(d, "geometric", cond=1e2, generator=generator, batch_shape=(4,)).float()
    m = torch.randn(4, d, 3, generator=generator).float()
    atol = torch.zeros(4, dtype=torch.float32)
    rtol = torch.full((4,), d * _eps(torch.float32))
    out = impl.solve_psd_torch(s, m, atol=atol, rtol=rtol, work_dtype=torch.float32, out_dtype=torch.float32)
    assert not bool(out.escalated.any())
    for i in range(4):
        ratio, _, _ = _solve_checks(_np(s[i]), _np(m[i]), _np(out.x[i]), _eps(torch.float32), float(rtol[i]))
        assert ratio < RESIDUAL_LIMIT


def test_fp32_escalates_what_fp32_cannot_resolve(generator):
    """fp64 statistics with κ = 1e10 asked in fp32: those elements are re-solved in fp64 and meet the
    fp64 ratios; a well-conditioned neighbour stays in fp32."""
    d = 40
    s = torch.stack([random_psd(d, "geometric", cond=1e10, generator=generator),
                     random_psd(d, "geometric", cond=10.0, generator=generator),
                     random_psd(d, "geometric", cond=1e6, rank=30, generator=generator)])
    m = torch.randn(3, d, 2, generator=generator, dtype=torch.float64)
    rtol = torch.full((3,), d * _eps(torch.float64), dtype=torch.float64)
    out = impl.solve_psd_torch(s, m, atol=torch.zeros(3, dtype=torch.float64), rtol=rtol,
                               work_dtype=torch.float32, out_dtype=torch.float64)
    assert out.escalated.tolist() == [True, False, True]
    assert out.rank.tolist() == [d, d, 30]
    for i in (0, 2):
        ratio, _, _ = _solve_checks(_np(s[i]), _np(m[i]), _np(out.x[i]), _eps(torch.float64), float(rtol[i]))
        assert ratio < RESIDUAL_LIMIT
        ref = sla.pinvh(_np(s[i]), atol=0.0, rtol=float(rtol[i])) @ _np(m[i])
        assert np.linalg.norm(_np(out.x[i]) - ref) / np.linalg.norm(ref) < 1e-4
    ratio, _, _ = _solve_checks(_np(s[1]), _np(m[1]), _np(out.x[1]), _eps(torch.float32), float(rtol[1]))
    assert ratio < RESIDUAL_LIMIT
    public = gk.solve_psd(s, m, dtype=torch.float32, rtol=rtol)
    torch.testing.assert_close(public.x, out.x, rtol=0, atol=0)


def test_fp32_statistics_near_cutoff_escalate(generator):
    """fp32 statistics whose kept spectrum reaches fp32's resolution band go to fp64 and then agree
    with the fp64 solve of the same fp32 data."""
    d = 48
    s = torch.stack([random_psd(d, "geometric", cond=c, generator=generator) for c in (1e6, 1e8, 30.0)]).float()
    m = torch.randn(3, d, 2, generator=generator).float()
    rtol = torch.full((3,), d * _eps(torch.float32))
    out = impl.solve_psd_torch(s, m, atol=torch.zeros(3), rtol=rtol, work_dtype=torch.float32,
                               out_dtype=torch.float32)
    assert out.escalated.tolist() == [True, True, False]
    ref = gk.solve_psd(s, m, rtol=rtol)
    torch.testing.assert_close(out.x[:2], ref.x[:2], rtol=0, atol=0)
    err = float((out.x[2].double() - ref.x[2].double()).norm() / ref.x[2].double().norm())
    assert err < 1e-4


def test_fp32_residual_failure_is_escalated(generator, monkeypatch):
    """A corrupted fp32 solve fails its residual check and is replaced by the fp64 answer."""
    d = 16
    s = random_psd(d, "geometric", cond=10.0, generator=generator, batch_shape=(2,)).float()
    m = torch.randn(2, d, 2, generator=generator).float()
    real = impl.PsdFactor.whiten_t

    def corrupted(self, z, **options):
        out = real(self, z, **options)
        if out.dtype == torch.float32:
            out = out.clone()
            out[0, 0] += 1e-2 * out[0].abs().max()
        return out

    monkeypatch.setattr(impl.PsdFactor, "whiten_t", corrupted)
    out = impl.solve_psd_torch(s, m, atol=torch.zeros(2), rtol=torch.full((2,), d * _eps(torch.float32)),
                               work_dtype=torch.float32, out_dtype=torch.float32)
    assert out.escalated.tolist() == [True, False]
    for i in range(2):
        ratio, _, _ = _solve_checks(_np(s[i]), _np(m[i]), _np(out.x[i]), _eps(torch.float32), 0.0)
        assert ratio < RESIDUAL_LIMIT


def test_fp32_inv_sqrt_escalation(generator):
    d = 32
    s = torch.stack([random_psd(d, "geometric", cond=1e9, generator=generator),
                     random_psd(d, "geometric", cond=5.0, generator=generator)])
    out = impl.psd_inv_sqrt_torch(s, atol=torch.zeros(2, dtype=torch.float64),
                                  rtol=torch.full((2,), d * _eps(torch.float64), dtype=torch.float64),
                                  work_dtype=torch.float32, out_dtype=torch.float64)
    assert out.escalated.tolist() == [True, False]
    ref = gk.psd_inv_sqrt(s, rtol=d * _eps(torch.float64))
    torch.testing.assert_close(out.r[0], ref.r[0], rtol=0, atol=0)
    assert float((out.r[1] - ref.r[1]).norm() / ref.r[1].norm()) < 1e-5


# ----------------------------------------------------------------------------------------------
# Thresholds
# ----------------------------------------------------------------------------------------------


def test_psd_inv_sqrt_thresholds_strict_and_gromo_rule(generator):
    d = 7
    lam = torch.tensor([2.0, 1.0, 1e-3, 1.1e-6, 0.9e-6, 1e-9, 0.0], dtype=torch.float64)
    s, _, q = random_psd(d, lam, generator=generator, return_eig=True)
    assert int(gk.psd_inv_sqrt(s, threshold=1e-6, rtol=0.0).rank) == 4  # GroMo: λ > 1e-6
    assert int(gk.psd_inv_sqrt(s, threshold=0.0, rtol=1e-4).rank) == 3
    assert int(gk.psd_inv_sqrt(s, threshold=0.0, rtol=1e-12).rank) == 6
    assert int(gk.psd_inv_sqrt(s).rank) == 6  # default rtol = 7·ε₆₄
    r = gk.psd_inv_sqrt(s, threshold=1e-6, rtol=0.0).r
    expected = (q[:, :4] * lam[:4].rsqrt()) @ q[:, :4].T
    torch.testing.assert_close(r, expected, rtol=1e-8, atol=1e-8 * float(expected.abs().max()))
    # Strict: an eigenvalue exactly at the threshold is dropped.
    diag = torch.diag(torch.tensor([1.0, 0.25, 0.0625], dtype=torch.float64))
    assert int(gk.psd_inv_sqrt(diag, threshold=0.25, rtol=0.0).rank) == 1
    assert int(gk.psd_inv_sqrt(diag, threshold=0.0, rtol=0.0625).rank) == 2


def test_per_element_threshold_tensors(generator):
    d = 8
    lam = torch.logspace(0, -7, d, dtype=torch.float64)
    s = random_psd(d, lam, generator=generator, batch_shape=(3,))
    m = torch.randn(3, d, 1, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m, rtol=torch.tensor([1e-12, 3e-4, 0.5e-1], dtype=torch.float64))
    assert out.rank.tolist() == [8, 4, 2]
    assert out.used_pinv.tolist() == [False, True, True]
    out_abs = gk.solve_psd(s, m, rtol=0.0, atol=2e-3)
    assert out_abs.rank.tolist() == [3, 3, 3]


def test_indefinite_noise_is_dropped_never_negative(generator):
    d = 20
    lam = torch.cat([torch.logspace(0, -2, 15, dtype=torch.float64), torch.full((5,), -1e-9, dtype=torch.float64)])
    s = random_psd(d, lam, generator=generator)
    m = torch.randn(d, 3, generator=generator, dtype=torch.float64)
    out = gk.solve_psd(s, m, rtol=0.0)
    assert int(out.rank) == 15
    decrease = float(torch.trace(m.T @ out.x))
    assert decrease > 0


# ----------------------------------------------------------------------------------------------
# Empty inputs and bad input
# ----------------------------------------------------------------------------------------------


def test_empty_batches_and_zero_sizes():
    out = gk.solve_psd(torch.zeros(0, 4, 4), torch.zeros(0, 4, 2))
    assert out.x.shape == (0, 4, 2) and out.rank.shape == (0,) and out.used_pinv.shape == (0,)
    out = gk.solve_psd(torch.zeros(3, 0, 0, dtype=torch.float64), torch.zeros(3, 0, 5, dtype=torch.float64))
    assert out.x.shape == (3, 0, 5) and out.rank.tolist() == [0, 0, 0]
    s = random_psd(5, cond=10.0, generator=torch.Generator().manual_seed(0))
    out = gk.solve_psd(s, torch.zeros(5, 0, dtype=torch.float64))
    assert out.x.shape == (5, 0) and int(out.rank) == 5
    r = gk.psd_inv_sqrt(torch.zeros(2, 0, 0))
    assert r.r.shape == (2, 0, 0) and r.rank.tolist() == [0, 0]
    assert gk.psd_inv_sqrt(torch.zeros(0, 3, 3)).r.shape == (0, 3, 3)


def test_zero_matrix_has_rank_zero_and_zero_solution(generator):
    out = gk.solve_psd(torch.zeros(4, 4), torch.randn(4, 2, generator=generator))
    assert int(out.rank) == 0 and bool(out.used_pinv)
    assert torch.equal(out.x, torch.zeros(4, 2))


def _spd(d=4, batch=()):
    return random_psd(d, cond=10.0, generator=torch.Generator().manual_seed(1), batch_shape=batch)


@pytest.mark.parametrize("bad,name", [("S", "S"), ("M", "M")])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_solve_psd_rejects_non_finite(bad, name, value):
    s, m = _spd(), torch.ones(4, 2, dtype=torch.float64)
    if bad == "S":
        s = s.clone()
        s[1, 1] = value
    else:
        m = m.clone()
        m[2, 0] = value
    with pytest.raises(ValueError, match=name):
        gk.solve_psd(s, m)


def test_solve_psd_check_finite_false_skips_the_check():
    s, m = _spd(), torch.ones(4, 2, dtype=torch.float64)
    m[0, 0] = float("nan")
    out = gk.solve_psd(s, m, check_finite=False)
    assert out.x.shape == (4, 2)


def test_solve_psd_bad_shapes_and_types():
    s, m = _spd(), torch.ones(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="S must be square"):
        gk.solve_psd(torch.ones(4, 3, dtype=torch.float64), m)
    with pytest.raises(ValueError, match="M must have d = 4 rows"):
        gk.solve_psd(s, torch.ones(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="M has batch dimensions"):
        gk.solve_psd(_spd(batch=(2,)), torch.ones(3, 4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="S must have at least 2"):
        gk.solve_psd(torch.ones(4, dtype=torch.float64), m)
    with pytest.raises(TypeError, match="S must be a floating tensor"):
        gk.solve_psd(torch.eye(4, dtype=torch.int64), m)
    with pytest.raises(TypeError, match="M must be a floating tensor"):
        gk.solve_psd(s, torch.ones(4, 2, dtype=torch.int32))
    with pytest.raises(TypeError, match="M has dtype"):
        gk.solve_psd(s, m.float())
    with pytest.raises(TypeError, match="S must be a torch.Tensor"):
        gk.solve_psd(_np(s), m)
    with pytest.raises(ValueError, match="dtype"):
        gk.solve_psd(s, m, dtype=torch.float16)
    with pytest.raises(TypeError, match="dtype"):
        gk.solve_psd(s, m, dtype="float32")
    with pytest.raises(ValueError, match="rtol"):
        gk.solve_psd(s, m, rtol=-1.0)
    with pytest.raises(ValueError, match="atol"):
        gk.solve_psd(s, m, atol=float("nan"))
    with pytest.raises(ValueError, match="rtol"):
        gk.solve_psd(s, m, rtol=torch.tensor(-1.0))
    with pytest.raises(TypeError, match="check_finite"):
        gk.solve_psd(s, m, check_finite=1)
    with pytest.raises(ValueError, match="threshold"):
        gk.psd_inv_sqrt(s, threshold=-1e-6)
    with pytest.raises(ValueError, match="S must be square"):
        gk.psd_inv_sqrt(torch.ones(2, 3))


def test_asymmetry_rounding_warns_large_raises(generator):
    d = 8
    s = random_psd(d, cond=10.0, generator=generator).float()
    m = torch.randn(d, 2, generator=generator)
    product_rounding = s.clone()
    product_rounding[0, 3] += 16 * _eps(torch.float32) * float(s.abs().max())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = gk.solve_psd(product_rounding, m)
    sym = 0.5 * (product_rounding + product_rounding.T)
    torch.testing.assert_close(quiet.x, gk.solve_psd(sym, m).x, rtol=1e-5, atol=0)
    noisy = s.clone()
    noisy[0, 3] += 1e3 * _eps(torch.float32) * float(s.abs().max())
    with pytest.warns(UserWarning, match="S is not exactly symmetric"):
        out = gk.solve_psd(noisy, m)
    ref = gk.solve_psd(0.5 * (noisy + noisy.T), m)
    torch.testing.assert_close(out.x, ref.x, rtol=1e-5, atol=0)
    broken = s.clone()
    broken[0, 3] += 0.1 * float(s.abs().max())
    with pytest.raises(ValueError, match="S is not symmetric"):
        gk.solve_psd(broken, m)
    with pytest.raises(ValueError, match=r"S \(batch element \(1,\)\) is not symmetric"):
        gk.psd_inv_sqrt(torch.stack([s, broken]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gk.solve_psd(s, m)  # exactly symmetric: silent


def test_half_precision_statistics(generator):
    d = 12
    s = random_psd(d, cond=10.0, generator=generator)
    m = torch.randn(d, 2, generator=generator, dtype=torch.float64)
    for dt in (torch.float16, torch.bfloat16):
        sh = 0.5 * (s.to(dt) + s.to(dt).T)
        out = gk.solve_psd(sh, m.to(dt))
        assert out.x.dtype == torch.float32
        ref = np.linalg.solve(_np(sh), _np(m.to(dt)))
        assert np.linalg.norm(_np(out.x) - ref) / np.linalg.norm(ref) < 1e-5


# ----------------------------------------------------------------------------------------------
# CPU fast paths: large asymmetric inputs, reused workspaces, deferred pseudo-inverses
# ----------------------------------------------------------------------------------------------


def _screen_outcome(items, thresholds, check_finite):
    """(returned value, warning texts, error text) of one screen call."""
    from gromo_kernels import _solve_args

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = _solve_args.screen(items, thresholds, check_finite=check_finite,
                                       element_name=_solve_args.batched_name((len(items[0][1]),)))
            error = None
        except ValueError as exc:
            value, error = None, str(exc)
    return value, [str(w.message) for w in caught], error


def test_screen_fast_accept_gives_the_full_screens_outcome(generator, monkeypatch):
    """On CPU the screen first tries two whole-tensor tests per argument (a finite sum, S equal to
    Sᵀ); every outcome — value, warnings, errors — is the per-element screen's."""
    from gromo_kernels import _solve_args

    s = random_psd(7, cond=1e3, generator=generator, batch_shape=(3,)).float()
    m = torch.randn(3, 7, 2, generator=generator)
    rounding = s.clone()
    rounding[1, 0, 4] += 8 * _eps(torch.float32) * float(s[1].abs().max())
    noisy = s.clone()
    noisy[2, 0, 4] += 1e3 * _eps(torch.float32) * float(s[2].abs().max())
    broken = s.clone()
    broken[0, 0, 4] += 1.0
    huge = s / s.abs().amax() * 3e38  # finite, but its sum overflows
    with_nan, with_inf = m.clone(), s.clone()
    with_nan[2, 3, 1] = float("nan")
    with_inf[1, 2, 2] = float("inf")
    cases = [
        ([("S", s, True), ("M", m, False)], [], True),
        ([("S", rounding, True), ("M", m, False)], [], True),
        ([("S", noisy, True), ("M", m, False)], [], True),
        ([("S", broken, True)], [], True),
        ([("S", huge, True), ("M", m, False)], [], True),
        ([("S", s, True), ("M", with_nan, False)], [], True),
        ([("S", with_inf, True)], [], True),
        ([("S", with_inf, True), ("M", with_nan, False)], [], False),
        ([("S", s, True)], [("rtol", torch.tensor([0.1, -1.0, 0.2]))], True),
        ([("S", s, True)], [("rtol", torch.tensor([0.1, 0.0, 0.2]))], True),
        ([("S", s, True), ("E", None, True)], [("atol", 0.5)], True),
    ]
    fast = [_screen_outcome(*case) for case in cases]
    monkeypatch.setattr(_solve_args, "_plainly_valid", lambda *args: False)
    full = [_screen_outcome(*case) for case in cases]
    assert fast == full
    assert [value for value, _, _ in fast] == [True, False, False, None, True, None, None, True, None, True, True]
    assert sum(bool(texts) for _, texts, _ in fast) == 1  # the rounding-sized noise warns
    assert "batch element (1,)" in fast[6][2] and "batch element (2,)" in fast[5][2]


def test_float_thresholds_act_at_their_rounding_to_the_statistics_dtype():
    """A float threshold is rounded to the accumulate dtype of S, as a tensor threshold is: both cut
    an eigenvalue lying between 1e-3 and its float32 rounding alike, and both are refused when that
    rounding overflows. A threshold beyond only the work dtype's range cuts everything."""
    s = torch.diag(torch.tensor([3.0, 3.00000007e-3, 1.0]))  # λ/λ_max = 1.0000000087e-3
    m = torch.ones(3, 1)
    for dtype in (None, torch.float32):
        by_float = gk.solve_psd(s, m, rtol=1e-3, dtype=dtype)
        by_tensor = gk.solve_psd(s, m, rtol=torch.tensor(1e-3), dtype=dtype)
        assert by_float.rank.item() == by_tensor.rank.item() == 2
        torch.testing.assert_close(by_float.x, by_tensor.x, rtol=0, atol=0)
    s64 = random_psd(4, cond=10.0, generator=torch.Generator().manual_seed(2))
    m64 = torch.ones(4, 1, dtype=torch.float64)
    assert gk.solve_psd(s64, m64, rtol=1e39, dtype=torch.float32).rank.item() == 0
    for threshold in (1e39, torch.tensor(1e39, dtype=torch.float64)):
        with pytest.raises(ValueError, match="atol must be finite and non-negative"):
            gk.solve_psd(s64.float(), m64.float(), atol=threshold)
    with pytest.raises(ValueError, match="numerical_threshold must be finite and non-negative"):
        gk.optimal_added_neurons(s64.float(), m64.float(), numerical_threshold=1e39)
    # numerical_threshold too acts at its float32 rounding on float32 statistics.
    x = 1.0247124135873607e-06
    rounded = float(torch.tensor(x, dtype=torch.float32))
    s_edge = torch.diag(torch.tensor([1.0, rounded, 0.5]))
    n = torch.ones(3, 2)
    by_value = gk.optimal_added_neurons(s_edge, n, numerical_threshold=x, rtol=0.0)
    by_rounding = gk.optimal_added_neurons(s_edge, n, numerical_threshold=rounded, rtol=0.0)
    assert torch.equal(by_value.alpha, by_rounding.alpha) and torch.equal(by_value.omega, by_rounding.omega)


def test_max_abs_small_and_large_paths_agree(generator):
    """max|a| per element: one inf-norm call up to _NORM_MAX_ABS_NUMEL entries, amax/amin above,
    with the same values, NaN and Inf included."""
    from gromo_kernels.torch_impl import scaling

    for numel in (12, scaling._NORM_MAX_ABS_NUMEL + 1):
        a = torch.randn(4, numel, generator=generator, dtype=torch.float64)
        a[1, 3] = float("nan")
        a[2, 5] = -float("inf")
        a[3] = -a[3].abs()
        expected = torch.stack([row.abs().max() if not row.isnan().any() else row.new_tensor(float("nan"))
                                for row in a])
        torch.testing.assert_close(scaling.max_abs(a), expected, equal_nan=True, rtol=0, atol=0)


def test_factor_records_default_where_no_path_set_them(generator):
    """A PsdFactor's per-element records (rank, λ bounds, cutoff, path flags) read their defaults
    where no path wrote them: on an all-Cholesky batch, an all-eigh batch and a split one."""
    from gromo_kernels.torch_impl import scaling

    d = 10
    well = random_psd(d, "geometric", cond=1e2, generator=generator)
    deficient = random_psd(d, "geometric", cond=1e2, rank=d - 4, generator=generator)
    for batch, cholesky in (([well, well], [True, True]), ([deficient], [False]), ([deficient, well], [False, True])):
        sp, r = scaling.scale_psd(torch.stack(batch), torch.float64, jacobi=True)
        f = impl.factor_psd_torch(sp, atol=None, rtol=None, floor=1e-10, r=r)
        chol = torch.tensor(cholesky)
        assert f.used_eigh.tolist() == (~chol).tolist()
        assert f.deferred.tolist() == [False] * len(batch)
        assert f.rank.tolist() == [d if c else d - 4 for c in cholesky]
        assert torch.isinf(f.lam_min_kept[chol]).all() and torch.isfinite(f.lam_min_kept[~chol]).all()
        assert (f.cutoff == 1e-10).all() and (f.lam_max > 0).all() and (f.lam_min[chol] > 0).all()
    deferred = impl.factor_psd_torch(scaling.scale_psd(torch.stack([deficient, well]), torch.float64, jacobi=True)[0],
                                     atol=None, rtol=None, floor=1e-10, r=r, defer_eigh=True)
    assert deferred.deferred.tolist() == [True, False] and deferred.used_eigh.tolist() == [False, False]


def test_large_rounding_asymmetric_input_is_symmetrised(generator):
    """d ≥ 256 takes the per-matrix transpose path for the check and the symmetrisation."""
    d = 260
    s = random_psd(d, "geometric", cond=1e3, rank=200, generator=generator, batch_shape=(2,))
    noise = 1e-14 * torch.randn(2, d, d, generator=generator, dtype=torch.float64)
    noisy = s + noise
    m = torch.randn(2, d, 3, generator=generator, dtype=torch.float64)
    with pytest.warns(UserWarning, match=r"S \(batch element"):
        out = gk.solve_psd(noisy, m)
    ref = gk.solve_psd(0.5 * (noisy + noisy.mT), m)
    assert out.rank.tolist() == ref.rank.tolist()
    assert float((out.x - ref.x).norm() / ref.x.norm()) < 1e-10
    assert impl.asymmetry(noisy).tolist() == impl.max_abs(noisy - noisy.mT).tolist()


def test_workspaces_do_not_leak_between_calls(generator):
    """Reused buffers: interleaved calls with different shapes and dtypes give the same answers."""
    a = random_psd(300, "geometric", cond=1e2, generator=generator, batch_shape=(2,))
    b = random_psd(40, "geometric", cond=1e2, rank=30, generator=generator, batch_shape=(3,))
    ma = torch.randn(2, 300, 2, generator=generator, dtype=torch.float64)
    mb = torch.randn(3, 40, 2, generator=generator, dtype=torch.float64)
    first_a = gk.solve_psd(a, ma).x.clone()
    first_b = gk.optimal_delta(b, mb, E=random_psd(2, cond=3.0, generator=generator, batch_shape=(3,))).delta.clone()
    gk.solve_psd(b.float(), mb.float(), dtype=torch.float32)
    again_a = gk.solve_psd(a, ma).x
    assert torch.equal(first_a, again_a)
    impl.clear_workspace()
    assert torch.equal(gk.solve_psd(a, ma).x, first_a)
    assert torch.isfinite(first_b).all()


def test_fp32_mode_sends_pseudo_inverse_elements_to_fp64(generator):
    """dtype=float32: rank-deficient elements skip the fp32 eigh and equal the fp64 solve exactly."""
    d = 30
    s = torch.stack([random_psd(d, "geometric", cond=1e2, rank=20, generator=generator),
                     random_psd(d, "geometric", cond=1e2, generator=generator)]).float()
    m = torch.randn(2, d, 3, generator=generator).float()
    out = impl.optimal_delta_torch(s, m, None, atol_s=torch.zeros(2), rtol_s=torch.full((2,), d * _eps(torch.float32)),
                                   atol_e=None, rtol_e=None, force_pinv=False, work_dtype=torch.float32,
                                   out_dtype=torch.float32)
    assert out.escalated.tolist() == [True, False]
    ref = gk.optimal_delta(s, m, rtol=d * _eps(torch.float32))
    torch.testing.assert_close(out.delta[0], ref.delta[0], rtol=0, atol=0)
    assert float((out.delta[1] - ref.delta[1]).norm() / ref.delta[1].norm()) < 1e-5


def test_whitening_writes_only_into_scratch_it_is_given(generator):
    """W and Wᵀ leave their argument as it was (the in-place triangular solves work on copies),
    except ``whiten_t(z, overwrite=True)``, which gives the same values — on a batch split between
    the Cholesky path (one element with a dead unit) and the eigh path (a rank-deficient element)."""
    from gromo_kernels.torch_impl import scaling

    d = 12
    full = random_psd(d, "geometric", cond=1e2, generator=generator)
    full[0, :] = 0
    full[:, 0] = 0
    deficient = random_psd(d, "geometric", cond=1e2, rank=d - 3, generator=generator)
    s = torch.stack([full, deficient])
    sp, r = scaling.scale_psd(s, torch.float64, jacobi=True)
    f = impl.factor_psd_torch(sp, atol=None, rtol=None, floor=1e-6, r=r)
    assert f.chol is not None and f.vecs is not None  # both paths
    y = torch.randn(2, d, 5, generator=generator, dtype=torch.float64)
    before = y.clone()
    white = f.whiten(y)
    back = f.whiten_t(white)
    assert torch.equal(y, before)
    scratch = white.clone()
    torch.testing.assert_close(f.whiten_t(scratch, overwrite=True), back, rtol=0, atol=0)
    # Wᵀ W is the pseudo-inverse of S' on its kept directions.
    torch.testing.assert_close(back[0], torch.linalg.pinv(sp[0]) @ y[0], rtol=1e-10, atol=1e-10)
