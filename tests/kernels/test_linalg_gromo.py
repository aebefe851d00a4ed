"""optimal_delta / optimal_added_neurons: GroMo agreement, GroMo's failure cases, batching, grouping.

The GroMo transcription (bench/gromo_style_solves.py, written from TINY, TMLR 2024) is
the reference: run in float64 on well-conditioned inputs it must equal ours to 1e-10 (fp64) / 1e-5
(our fp32 path); run in float32 (GroMo's default) on the failure cases it misbehaves and ours does not.
"""

from __future__ import annotations

import importlib.util
import pathlib
import warnings

import pytest
import scipy.linalg as sla
import torch

import gromo_kernels as gk
from gromo_kernels.testing import random_psd

_BASELINE = pathlib.Path(__file__).resolve().parents[2] / "bench" / "gromo_style_solves.py"
_spec = importlib.util.spec_from_file_location("gromo_style_solves", _BASELINE)
gromo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gromo)

F64 = torch.float64


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm()) if float(b.norm()) > 0 else float(a.norm())


def _gromo_delta(s, m, e=None, dtype=F64, force=False):
    events = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        delta, dec = gromo.gromo_optimal_delta(s, m, dtype=dtype, force_pseudo_inverse=force, E=e, events=events)
    return delta, dec, events


def _fix_signs(alpha, omega, *, on_omega=False):
    """Our convention applied to any (α (k, s), ω (t, k)): largest-|·| entry of α's row positive
    (of ω's column with on_omega)."""
    ref = omega.T if on_omega else alpha
    if ref.shape[1] == 0:
        return alpha, omega
    idx = ref.abs().argmax(dim=1, keepdim=True)
    sign = torch.sign(ref.gather(1, idx)).squeeze(1)
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return alpha * sign[:, None], omega * sign[None, :]


def _gromo_added(s, n, dtype=F64, **kw):
    events = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, w, sg = gromo.gromo_compute_optimal_added_parameters(s, n, dtype=dtype, events=events, **kw)
    return a, w, sg, events


def _fp32_sums(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """aᵀb accumulated row by row in float32, (n, p), (n, q) -> (p, q). Elementwise IEEE operations
    round the same way on every CPU; a BLAS product's rounding (hence the noise a test relies on)
    depends on the CPU's kernel."""
    a, b = a.float(), b.float()
    total = torch.zeros(a.shape[1], b.shape[1])
    for row_a, row_b in zip(a, b):
        total += row_a[:, None] * row_b[None, :]
    return total


def _layer_stats(n_rows, d, o, generator, *, dead=0, duplicate=False, simplex=False):
    """Realistic sums-then-means statistics of one linear layer: S = x̃ᵀx̃/n, M = x̃ᵀg/n (float64)."""
    x = torch.relu(torch.randn(n_rows, d, generator=generator, dtype=F64))
    if simplex:
        x = torch.rand(n_rows, d, generator=generator, dtype=F64)
        x = x / x.sum(dim=1, keepdim=True)
    if dead:
        x[:, :dead] = 0
    if duplicate:
        x[:, 1] = 3 * x[:, 0]
    xt = torch.cat([x, torch.ones(n_rows, 1, dtype=F64)], dim=1)
    g = torch.randn(n_rows, o, generator=generator, dtype=F64)
    return xt, g


# ----------------------------------------------------------------------------------------------
# GroMo agreement on well-conditioned inputs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim,o", [(1, 1), (5, 3), (33, 10), (129, 64)])
@pytest.mark.parametrize("fisher", [False, True])
@pytest.mark.parametrize("force", [False, True])
def test_optimal_delta_equals_gromo_fp64(dim, o, fisher, force, generator):
    s = random_psd(dim, "geometric", cond=1e2, generator=generator)
    m = torch.randn(dim, o, generator=generator, dtype=F64)
    e = random_psd(o, "linear", cond=10.0, generator=generator) if fisher else None
    ref_delta, ref_dec, events = _gromo_delta(s, m, e, force=force)
    assert events == []
    out = gk.optimal_delta(s, m, E=e, force_pinv=force)
    assert out.delta.shape == (o, dim) and out.decrease.shape == ()
    assert _rel(out.delta, ref_delta) < 1e-10
    assert abs(float(out.decrease) - float(ref_dec)) < 1e-10 * abs(float(ref_dec))
    assert not bool(out.used_pinv)


@pytest.mark.parametrize("fisher", [False, True])
def test_optimal_delta_fp32_path_equals_gromo_fp64_transcription(fisher, generator):
    dim, o = 65, 16
    s = random_psd(dim, "geometric", cond=1e2, generator=generator).float()
    m = torch.randn(dim, o, generator=generator).float()
    e = random_psd(o, "linear", cond=10.0, generator=generator).float() if fisher else None
    ref_delta, ref_dec, _ = _gromo_delta(s.double(), m.double(), None if e is None else e.double())
    out = gk.optimal_delta(s, m, E=e, dtype=torch.float32)
    assert out.delta.dtype == torch.float32
    assert _rel(out.delta, ref_delta) < 1e-5
    assert abs(float(out.decrease) - float(ref_dec)) < 1e-5 * float(ref_dec)


_ADDED_CASES = [
    dict(),  # TINY with GroMo's defaults
    dict(max_neurons=3),
    dict(max_neurons=0),
    dict(ignore_singular_values=True),
    dict(omega_zero=True),
    dict(statistical_threshold=1.0),
    dict(use_e=True),
    dict(s_none=True, alpha_zero=True, ignore_singular_values=True),  # GradMax preset
    dict(use_e=True, max_neurons=2, alpha_zero=True),
]


@pytest.mark.parametrize("case", _ADDED_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "tiny")
@pytest.mark.parametrize("s_dim,t_dim", [(17, 9), (40, 64)])
def test_optimal_added_neurons_equals_gromo_fp64(case, s_dim, t_dim, generator):
    case = dict(case)
    use_e, s_none = case.pop("use_e", False), case.pop("s_none", False)
    s = None if s_none else random_psd(s_dim, "geometric", cond=1e2, generator=generator)
    n = torch.randn(s_dim, t_dim, generator=generator, dtype=F64)
    e = random_psd(t_dim, "linear", cond=10.0, generator=generator) if use_e else None
    gkw = {("maximum_added_neurons" if k == "max_neurons" else k): v for k, v in case.items()}
    ra, rw, rs, events = _gromo_added(s, n, matrix_covariance_loss_gradient=e, **gkw)
    assert events == []
    out = gk.optimal_added_neurons(s, n, E=e, **case)
    k = rs.shape[0]
    assert out.alpha.shape == (k, s_dim) and out.omega.shape == (t_dim, k) and out.sigma.shape == (k,)
    assert k == (0 if case.get("max_neurons") == 0 else k) and (k > 0 or case.get("max_neurons") == 0)
    ra, rw = _fix_signs(ra, rw, on_omega=case.get("alpha_zero", False))
    if k:
        torch.testing.assert_close(out.sigma, rs, rtol=1e-10, atol=0)
        if not case.get("alpha_zero"):
            assert _rel(out.alpha, ra) < 1e-10
        else:
            assert float(out.alpha.abs().max()) == 0.0
        if not case.get("omega_zero"):
            assert _rel(out.omega, rw) < 1e-10
        else:
            assert float(out.omega.abs().max()) == 0.0


def test_optimal_added_neurons_fp32_path_equals_gromo_fp64_transcription(generator):
    s = random_psd(33, "geometric", cond=1e2, generator=generator).float()
    n = torch.randn(33, 20, generator=generator).float()
    e = random_psd(20, "linear", cond=10.0, generator=generator).float()
    ra, rw, rs, _ = _gromo_added(s.double(), n.double(), matrix_covariance_loss_gradient=e.double())
    ra, rw = _fix_signs(ra, rw)
    out = gk.optimal_added_neurons(s, n, E=e, dtype=torch.float32)
    assert out.alpha.dtype == torch.float32
    assert out.sigma.shape == rs.shape
    assert _rel(out.sigma, rs) < 1e-5
    assert _rel(out.alpha, ra) < 1e-5
    assert _rel(out.omega, rw) < 1e-5


def test_gromo_exact_absolute_rule_with_rtol_zero(generator):
    """rtol=0.0 reproduces GroMo's absolute λ > numerical_threshold; the default (relative) rule
    differs only in dropping directions below d·ε·λ_max."""
    lam = torch.tensor([1.0, 0.5, 1e-3, 1e-5, 1e-9, 1e-10], dtype=F64)
    s = random_psd(6, lam, generator=generator)
    n = torch.randn(6, 4, generator=generator, dtype=F64)
    ra, rw, rs, _ = _gromo_added(s, n, numerical_threshold=1e-11)
    ra, rw = _fix_signs(ra, rw)
    out = gk.optimal_added_neurons(s, n, numerical_threshold=1e-11, rtol=0.0)
    # The 1e-10 eigenvalue carries a relative error ~ε/1e-10 in any fp64 eigensolver.
    assert _rel(out.sigma, rs) < 1e-5 and _rel(out.alpha, ra) < 1e-5 and _rel(out.omega, rw) < 1e-5
    ra, rw, rs, _ = _gromo_added(s, n, numerical_threshold=2e-9)
    ra, rw = _fix_signs(ra, rw)
    relative = gk.optimal_added_neurons(s, n, numerical_threshold=0.0, rtol=2e-9)
    assert _rel(relative.sigma, rs) < 1e-8 and _rel(relative.alpha, ra) < 1e-8


# ----------------------------------------------------------------------------------------------
# Sign convention
# ----------------------------------------------------------------------------------------------


def test_sign_convention_is_deterministic(generator):
    s = random_psd(12, "geometric", cond=1e2, generator=generator)
    n = torch.randn(12, 7, generator=generator, dtype=F64)
    a = gk.optimal_added_neurons(s, n, statistical_threshold=0.0)
    b = gk.optimal_added_neurons(s, -n, statistical_threshold=0.0)
    rows = torch.arange(a.alpha.shape[0])
    assert bool((a.alpha[rows, a.alpha.abs().argmax(dim=1)] > 0).all())
    torch.testing.assert_close(b.alpha, a.alpha, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(b.omega, -a.omega, rtol=1e-12, atol=1e-13)
    z = gk.optimal_added_neurons(s, n, alpha_zero=True, statistical_threshold=0.0)
    cols = torch.arange(z.omega.shape[1])
    assert bool((z.omega[z.omega.abs().argmax(dim=0), cols] > 0).all())
    assert float(z.alpha.abs().max()) == 0.0


# ----------------------------------------------------------------------------------------------
# GroMo's failure cases: GroMo's float32 path misbehaves, ours does not
# ----------------------------------------------------------------------------------------------


def _truth(xt, g, n_rows):
    s64 = xt.T @ xt / n_rows
    m64 = xt.T @ g / n_rows
    delta = torch.from_numpy(sla.pinvh(s64.numpy()) @ m64.numpy()).T
    return s64, m64, delta, float(torch.trace(m64 @ delta))


def _fp32_stats(xt, g, n_rows):
    x32 = xt.float()
    return x32.T @ x32 / n_rows, x32.T @ g.float() / n_rows


@pytest.mark.parametrize("kind", ["simplex_bias", "duplicate_feature"])
def test_failure_exact_dependence_through_the_bias_column(kind, generator):
    """Features summing to 1 (softmax-like) make the bias column dependent; a duplicated feature
    likewise. fp32 LU finds no exact zero pivot and solves rounding noise."""
    n_rows, d, o = 2000, 48, 6
    xt, g = _layer_stats(n_rows, d, o, generator, simplex=kind == "simplex_bias",
                         duplicate=kind == "duplicate_feature")
    _, _, truth, truth_dec = _truth(xt, g, n_rows)
    s32, m32 = _fp32_stats(xt, g, n_rows)
    g_delta, g_dec, events = _gromo_delta(s32, m32, dtype=torch.float32)
    assert "pinv" not in events
    assert _rel(g_delta, truth) > 0.1
    out = gk.optimal_delta(s32, m32)
    assert bool(out.used_pinv) and int(gk.solve_psd(s32, m32).rank) == d
    assert _rel(out.delta, truth) < 1e-4
    assert abs(float(out.decrease) - truth_dec) < 1e-4 * truth_dec
    # fp32 work carries fp32 rounding amplified by the kept condition number (≤ 1/(8·d·ε₃₂)).
    out32 = gk.optimal_delta(s32, m32, dtype=torch.float32)
    assert _rel(out32.delta, truth) < 1e-2


def test_failure_dead_relus_gromo_pinv_ours_deflated(generator):
    """Dead units: GroMo's LU hits an exact zero pivot and takes the fp32 SVD pinv; ours deflates
    the zero rows inside Cholesky. Both are right here."""
    n_rows, d, o = 2000, 48, 6
    xt, g = _layer_stats(n_rows, d, o, generator, dead=8)
    _, _, truth, truth_dec = _truth(xt, g, n_rows)
    s32, m32 = _fp32_stats(xt, g, n_rows)
    g_delta, _, events = _gromo_delta(s32, m32, dtype=torch.float32)
    assert events == ["pinv"]
    assert _rel(g_delta, truth) < 1e-4
    out = gk.optimal_delta(s32, m32)
    assert bool(out.used_pinv)
    assert _rel(out.delta, truth) < 1e-5
    assert float(out.delta[:, :8].abs().max()) == 0.0


@pytest.mark.parametrize("cond", [1e6, 1e8, 1e12])
def test_failure_ill_conditioned_fp32(cond, generator):
    """κ ≥ 1e6 in fp32: GroMo's LU inverts rounding noise (delta 10–1e4× off, decrease overestimated,
    or negative then an fp64 pinv retry that inverts the fp32 noise). Ours: the fp32 cutoff."""
    d, o = 64, 10
    s64 = random_psd(d, "geometric", cond=cond, generator=generator)
    m64 = torch.randn(d, o, generator=generator, dtype=F64)
    rtol = d * torch.finfo(torch.float32).eps
    truth = torch.from_numpy(sla.pinvh(s64.numpy(), atol=0.0, rtol=rtol) @ m64.numpy()).T
    truth_dec = float(torch.trace(m64 @ truth))
    s32, m32 = s64.float(), m64.float()
    g_delta, g_dec, _ = _gromo_delta(s32, m32, dtype=torch.float32)
    assert _rel(g_delta, truth) > 1.0
    assert float(g_dec) > 5 * truth_dec
    out = gk.optimal_delta(s32, m32, rtol=rtol)  # the relative rule (the default floor: test_linalg_floor.py)
    assert bool(out.used_pinv)
    assert _rel(out.delta, truth) < 1e-2
    assert 0 < float(out.decrease) < 1.01 * truth_dec


@pytest.mark.parametrize("rank", [63, 32])
def test_failure_rank_deficient_negative_decrease(rank, generator):
    """Exact rank deficiency with M outside range(S): fp32 LU divides by rounding-noise pivots, so
    GroMo's delta is far off. Which way depends on the sign of the noise, i.e. on the CPU's LAPACK
    kernel: a negative decrease (then an fp64 pinv retry of the fp32 data, ~1e7× too large, or a
    zeroed delta) or a decrease overestimated by orders of magnitude."""
    d, o = 64, 10
    s64 = random_psd(d, "geometric", cond=1e3, rank=rank, generator=generator)
    m64 = torch.randn(d, o, generator=generator, dtype=F64)
    truth = torch.from_numpy(sla.pinvh(s64.numpy()) @ m64.numpy()).T
    truth_dec = float(torch.trace(m64 @ truth))
    g_delta, g_dec, events = _gromo_delta(s64.float(), m64.float(), dtype=torch.float32)
    assert "negative_retry_fp64" in events or float(g_dec) > 10 * truth_dec
    assert _rel(g_delta, truth) > 0.5
    out = gk.optimal_delta(s64.float(), m64.float())
    assert int(gk.solve_psd(s64.float(), m64.float()).rank) == rank
    assert _rel(out.delta, truth) < 1e-4
    assert abs(float(out.decrease) - truth_dec) < 1e-4 * truth_dec


def test_failure_growth_inverts_noise_with_absolute_threshold(generator):
    """Summed fp32 growth statistics whose bias column is dependent (features summing to 1): the
    rounding-noise eigenvalue sits far above GroMo's absolute 1e-6, S^{-1/2} amplifies it, and α, ω
    come out O(1) wrong. Ours: relative cutoff, fp64 work."""
    n_rows, s_dim, t_dim = 4000, 40, 8
    x = torch.rand(n_rows, s_dim - 1, generator=generator, dtype=F64)
    x = x / x.sum(dim=1, keepdim=True)
    xt = torch.cat([x, torch.ones(n_rows, 1, dtype=F64)], dim=1)
    grad = torch.randn(n_rows, t_dim, generator=generator, dtype=F64)
    s64, n64 = xt.T @ xt, xt.T @ grad
    ref = gk.optimal_added_neurons(0.5 * (s64 + s64.T), n64, statistical_threshold=0.0)
    s32, n32 = _fp32_sums(xt, xt), _fp32_sums(xt, grad)
    ga, gw, gs, _ = _gromo_added(s32, n32, dtype=torch.float32, statistical_threshold=0.0)
    ga, gw = _fix_signs(ga, gw)
    assert _rel(ga, ref.alpha) > 0.1 and _rel(gw, ref.omega) > 0.1
    ours = gk.optimal_added_neurons(s32, n32, statistical_threshold=0.0)
    assert _rel(ours.sigma, ref.sigma) < 1e-5
    assert _rel(ours.alpha, ref.alpha) < 1e-4 and _rel(ours.omega, ref.omega) < 1e-4


def test_failure_tiny_scale_absolute_threshold(generator):
    """Statistics at scale 1e-8 (e.g. tiny activations): GroMo's absolute λ > 1e-6 drops every
    direction, so α = 0 and all σ = 0 are 'kept'. With numerical_threshold=0 ours is scale-invariant."""
    s = random_psd(20, "geometric", cond=1e2, scale=1e-8, generator=generator)
    n = torch.randn(20, 5, generator=generator, dtype=F64)
    ga, _, gs, _ = _gromo_added(s, n)
    assert float(gs.abs().max()) == 0.0 and float(ga.abs().max()) == 0.0
    ours = gk.optimal_added_neurons(s, n, numerical_threshold=0.0)
    big = gk.optimal_added_neurons(s * 1e8, n, numerical_threshold=0.0)
    torch.testing.assert_close(ours.sigma, big.sigma * 1e4, rtol=1e-10, atol=0)
    torch.testing.assert_close(ours.alpha, big.alpha * 1e6, rtol=1e-10, atol=0)
    torch.testing.assert_close(ours.omega, big.omega * 1e2, rtol=1e-10, atol=0)


def test_no_negative_decrease_or_nan_on_hard_psd_inputs(generator):
    """A PSD S never gives a negative decrease or NaN, whatever its spectrum or scale."""
    d, o = 30, 4
    cases = []
    for cond in (1.0, 1e4, 1e12, 1e16):
        for rank in (d, d - 1, 3, 0):
            for scale in (1e-20, 1.0, 1e20):
                cases.append(random_psd(d, "geometric", cond=cond, rank=rank, scale=scale, generator=generator))
    s = torch.stack(cases)
    m = torch.randn(len(cases), d, o, generator=generator, dtype=F64)
    e = random_psd(o, "geometric", cond=1e3, rank=3, generator=generator, batch_shape=(len(cases),))
    for dt in (torch.float64, torch.float32):
        for work in (None, torch.float32):
            out = gk.optimal_delta(s.to(dt), m.to(dt), E=e.to(dt), dtype=work)
            assert torch.isfinite(out.delta).all() and torch.isfinite(out.decrease).all()
            assert bool((out.decrease >= 0).all())


# ----------------------------------------------------------------------------------------------
# Batched = looped, grouped list = looped
# ----------------------------------------------------------------------------------------------


def test_optimal_delta_batched_equals_looped(generator):
    s = torch.stack([random_psd(20, "geometric", cond=c, rank=r, generator=generator)
                     for c, r in [(1e2, 20), (1e3, 12), (1e14, 20), (1e2, 19)]]).reshape(2, 2, 20, 20)
    m = torch.randn(2, 2, 20, 5, generator=generator, dtype=F64)
    e = random_psd(5, cond=10.0, generator=generator, batch_shape=(2, 2))
    out = gk.optimal_delta(s, m, E=e)
    assert out.delta.shape == (2, 2, 5, 20) and out.decrease.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            one = gk.optimal_delta(s[i, j], m[i, j], E=e[i, j])
            assert _rel(out.delta[i, j], one.delta) < 1e-10
            assert _rel(out.decrease[i, j], one.decrease) < 1e-10
            assert bool(out.used_pinv[i, j]) == bool(one.used_pinv)


def test_optimal_added_neurons_batched_is_a_flat_list(generator):
    s = random_psd(10, "geometric", cond=1e2, generator=generator, batch_shape=(2, 3))
    n = torch.randn(2, 3, 10, 4, generator=generator, dtype=F64)
    out = gk.optimal_added_neurons(s, n, max_neurons=3)
    assert isinstance(out, list) and len(out) == 6
    for idx, res in enumerate(out):
        one = gk.optimal_added_neurons(s[idx // 3, idx % 3], n[idx // 3, idx % 3], max_neurons=3)
        assert res.alpha.shape == one.alpha.shape
        assert _rel(res.alpha, one.alpha) < 1e-10 and _rel(res.omega, one.omega) < 1e-10
        assert _rel(res.sigma, one.sigma) < 1e-10


def test_grouped_lists_equal_looped_and_keep_order(generator):
    """A 'network' of layers with mixed sizes: grouped by shape, results in the input order."""
    dims = [65, 17, 65, 33, 17, 65]
    outs = [8, 4, 8, 8, 4, 8]
    s = [random_psd(d, "geometric", cond=c, rank=r, generator=generator)
         for d, c, r in zip(dims, [1e2, 1e3, 1e13, 1e2, 1e4, 1e2], [65, 17, 65, 30, 10, 60])]
    m = [torch.randn(d, o, generator=generator, dtype=F64) for d, o in zip(dims, outs)]
    e = [random_psd(o, cond=10.0, generator=generator) if i % 2 else None for i, o in enumerate(outs)]
    grouped = gk.optimal_delta(s, m, E=e)
    assert isinstance(grouped, list) and len(grouped) == len(dims)
    for i in range(len(dims)):
        one = gk.optimal_delta(s[i], m[i], E=e[i])
        assert _rel(grouped[i].delta, one.delta) < 1e-10  # batched and single LAPACK calls block differently
        assert _rel(grouped[i].decrease, one.decrease) < 1e-10
        assert bool(grouped[i].used_pinv) == bool(one.used_pinv)
    n = [torch.randn(dims[i - 1], outs[i], generator=generator, dtype=F64) for i in range(1, len(dims))]
    s_prev = [s[i - 1] if i != 3 else None for i in range(1, len(dims))]
    added = gk.optimal_added_neurons(s_prev, n, max_neurons=5)
    for i in range(len(n)):
        one = gk.optimal_added_neurons(s_prev[i], n[i], max_neurons=5)
        assert added[i].alpha.shape == one.alpha.shape
        assert _rel(added[i].alpha, one.alpha) < 1e-10 and _rel(added[i].omega, one.omega) < 1e-10
        assert _rel(added[i].sigma, one.sigma) < 1e-10


def test_grouped_fp32_with_escalation_matches_fp64_where_escalated(generator):
    dims = [40, 40, 24]
    s = [random_psd(40, "geometric", cond=1e10, generator=generator),
         random_psd(40, "geometric", cond=10.0, generator=generator),
         random_psd(24, "geometric", cond=1e10, rank=20, generator=generator)]
    m = [torch.randn(d, 3, generator=generator, dtype=F64) for d in dims]
    out32 = gk.optimal_delta(s, m, dtype=torch.float32)
    out64 = gk.optimal_delta(s, m)
    torch.testing.assert_close(out32[0].delta, out64[0].delta, rtol=0, atol=0)
    torch.testing.assert_close(out32[2].delta, out64[2].delta, rtol=0, atol=0)
    assert _rel(out32[1].delta, out64[1].delta) < 1e-5


# ----------------------------------------------------------------------------------------------
# Empty inputs and bad input
# ----------------------------------------------------------------------------------------------


def test_empty_and_zero_width():
    out = gk.optimal_delta(torch.zeros(0, 3, 3), torch.zeros(0, 3, 2))
    assert out.delta.shape == (0, 2, 3) and out.decrease.shape == (0,)
    out = gk.optimal_delta(torch.zeros(0, 0), torch.zeros(0, 4))
    assert out.delta.shape == (4, 0) and float(out.decrease) == 0.0
    out = gk.optimal_delta(torch.eye(3), torch.zeros(3, 0), E=torch.zeros(0, 0))
    assert out.delta.shape == (0, 3) and float(out.decrease) == 0.0
    a = gk.optimal_added_neurons(torch.zeros(0, 0), torch.zeros(0, 5))
    assert a.alpha.shape == (0, 0) and a.omega.shape == (5, 0) and a.sigma.shape == (0,)
    a = gk.optimal_added_neurons(torch.eye(4), torch.zeros(4, 0))
    assert a.alpha.shape == (0, 4) and a.omega.shape == (0, 0)
    assert gk.optimal_added_neurons(torch.zeros(0, 3, 3), torch.zeros(0, 3, 2)) == []
    assert gk.optimal_delta([], []) == []
    assert gk.optimal_added_neurons(None, []) == []


def test_zero_statistics_give_zero_update():
    out = gk.optimal_delta(torch.zeros(5, 5), torch.zeros(5, 2))
    assert float(out.delta.abs().max()) == 0.0 and float(out.decrease) == 0.0 and bool(out.used_pinv)
    a = gk.optimal_added_neurons(torch.zeros(5, 5), torch.ones(5, 2))
    assert float(a.alpha.abs().max()) == 0.0 and torch.isfinite(a.sigma).all()


def _ok(d=4, o=2):
    g = torch.Generator().manual_seed(2)
    return random_psd(d, cond=10.0, generator=g), torch.randn(d, o, generator=g, dtype=F64), \
        random_psd(o, cond=10.0, generator=g)


@pytest.mark.parametrize("which", ["S", "M", "E"])
def test_optimal_delta_rejects_non_finite(which):
    s, m, e = _ok()
    t = {"S": s, "M": m, "E": e}[which].clone()
    t[0, 0] = float("nan")
    args = {"S": s, "M": m, "E": e, which: t}
    with pytest.raises(ValueError, match=f"{which} contains NaN"):
        gk.optimal_delta(args["S"], args["M"], E=args["E"])


@pytest.mark.parametrize("which", ["S", "N", "E"])
def test_optimal_added_neurons_rejects_non_finite(which):
    s, n, e = _ok()
    t = {"S": s, "N": n, "E": e}[which].clone()
    t[1, 0] = float("inf")
    args = {"S": s, "N": n, "E": e, which: t}
    with pytest.raises(ValueError, match=f"{which} contains NaN"):
        gk.optimal_added_neurons(args["S"], args["N"], E=args["E"])


def test_bad_shapes_types_and_options():
    s, m, e = _ok()
    with pytest.raises(ValueError, match="S must be square"):
        gk.optimal_delta(torch.ones(4, 3, dtype=F64), m)
    with pytest.raises(ValueError, match="M must have D = 4 rows"):
        gk.optimal_delta(s, torch.ones(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="E must be"):
        gk.optimal_delta(s, m, E=torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="M has batch dimensions"):
        gk.optimal_delta(s.expand(2, 4, 4), m.expand(3, 4, 2))
    with pytest.raises(TypeError, match="S must be a floating tensor"):
        gk.optimal_delta(torch.eye(4, dtype=torch.int32), m)
    with pytest.raises(TypeError, match="M has dtype"):
        gk.optimal_delta(s, m.float())
    with pytest.raises(TypeError, match="force_pinv"):
        gk.optimal_delta(s, m, force_pinv=1)
    with pytest.raises(ValueError, match="S must be"):
        gk.optimal_added_neurons(torch.eye(3, dtype=F64), m)
    with pytest.raises(ValueError, match="E must be"):
        gk.optimal_added_neurons(s, m, E=torch.eye(3, dtype=F64))
    with pytest.raises(TypeError, match="N must be a floating tensor"):
        gk.optimal_added_neurons(None, torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="max_neurons"):
        gk.optimal_added_neurons(s, m, max_neurons=2.0)
    with pytest.raises(ValueError, match="max_neurons"):
        gk.optimal_added_neurons(s, m, max_neurons=-1)
    with pytest.raises(ValueError, match="numerical_threshold"):
        gk.optimal_added_neurons(s, m, numerical_threshold=-1.0)
    with pytest.raises(ValueError, match="statistical_threshold"):
        gk.optimal_added_neurons(s, m, statistical_threshold=float("inf"))
    with pytest.raises(TypeError, match="alpha_zero"):
        gk.optimal_added_neurons(s, m, alpha_zero=None)
    with pytest.raises(ValueError, match="dtype"):
        gk.optimal_added_neurons(s, m, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="M has 1 entries"):
        gk.optimal_delta([s, s], [m])
    with pytest.raises(ValueError, match=r"M\[1\] must have D = 4 rows"):
        gk.optimal_delta([s, s], [m, torch.ones(3, 2, dtype=F64)])
    with pytest.raises(ValueError, match=r"S\[1\] must be \(4, 4\)"):
        gk.optimal_added_neurons([s, torch.eye(3, dtype=F64)], [m, m])
    bad = s.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"S\[1\] contains NaN"):
        gk.optimal_delta([s, bad], [m, m])


def test_non_symmetric_inputs():
    s, m, e = _ok()
    broken = s.clone()
    broken[0, 2] += 1.0
    with pytest.raises(ValueError, match="S is not symmetric"):
        gk.optimal_delta(broken, m)
    with pytest.raises(ValueError, match="E is not symmetric"):
        gk.optimal_delta(s, m, E=e + torch.triu(torch.ones_like(e)))
    with pytest.raises(ValueError, match="S is not symmetric"):
        gk.optimal_added_neurons(broken, m)
    noisy = s.clone()
    noisy[0, 2] += 1e-10
    with pytest.warns(UserWarning, match="S is not exactly symmetric"):
        out = gk.optimal_added_neurons(noisy, m)
    torch.testing.assert_close(out.sigma, gk.optimal_added_neurons(0.5 * (noisy + noisy.T), m).sigma,
                               rtol=0, atol=0)
