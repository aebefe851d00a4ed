"""The default precision floor judged against the float64-from-data truth (gromo_kernels.testing:
statistics of the same inputs accumulated again in float64, solved exactly), on real layer statistics
and on synthetic families; the top-k neuron path against the full SVD; the shared buffer budget."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch

import gromo_kernels as gk
from gromo.utils.tools import optimal_delta as gromo_optimal_delta
from gromo_kernels.testing import delta_errors, exact_added_neurons, exact_delta, neuron_errors, random_psd
from gromo_kernels.torch_impl import buffers, singular

from .real_layers import conv_chain_cases, digits_mlp_cases

F64 = torch.float64


@pytest.fixture(scope="module")
def digits_case():
    return digits_mlp_cases(hidden=32, steps=60)[0]


@pytest.fixture(scope="module")
def chain_cases():
    return conv_chain_cases(channels=8, layers=4, size=8, batch=8, steps=10)


def test_digits_mlp_delta_and_neurons_match_the_float64_truth(digits_case):
    c = digits_case
    out = gk.optimal_delta(c.s32, c.m32)
    err = delta_errors(out.delta, out.decrease, exact_delta(c.s64, c.m64))
    assert err.delta <= 5e-3
    added = gk.optimal_added_neurons(c.s_prev32, c.n32, max_neurons=4, statistical_threshold=0.0)
    n_err = neuron_errors(added.alpha, added.sigma, exact_added_neurons(c.s_prev64, c.n64, 4))
    assert n_err.sigma <= 1e-3 and n_err.subspace <= 3e-2
    # The relative rule d·ε·λ_max it replaces throws real directions away on this layer.
    old = gk.optimal_delta(c.s32, c.m32, rtol=c.s32.shape[0] * torch.finfo(torch.float32).eps)
    assert delta_errors(old.delta, old.decrease, exact_delta(c.s64, c.m64)).delta > 10 * err.delta


def test_conv_chain_positive_definite_layers_match_the_truth_without_pinv_warning(chain_cases):
    positive_definite = [c for c in chain_cases if float(torch.linalg.eigvalsh(c.s64)[0]) > 0]
    assert positive_definite
    for c in positive_definite:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "Using the pseudo-inverse" on a PD layer
            delta, decrease = gromo_optimal_delta(c.s32, c.m32)
        err = delta_errors(delta, decrease, exact_delta(c.s64, c.m64))
        assert err.delta <= 1e-3 and err.decrease <= 3e-6, c.name
        added = gk.optimal_added_neurons(c.s_prev32, c.n32, max_neurons=3, statistical_threshold=0.0)
        n_err = neuron_errors(added.alpha, added.sigma, exact_added_neurons(c.s_prev64, c.n64, 3))
        assert n_err.sigma <= 1e-3 and n_err.subspace <= 3e-2, c.name


# ----------------------------------------------------------------------------------------------
# Synthetic families: the truth is the float64 matrix, the data its fp32 rounding
# ----------------------------------------------------------------------------------------------


def _fp32_case(s64, m64):
    out = gk.optimal_delta(s64.float(), m64.float())
    return delta_errors(out.delta, out.decrease, exact_delta(s64, m64.float().double())), out


@pytest.mark.parametrize("d", [17, 65, 257])
@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6, 1e8, 1e10, 1e12])
def test_kappa_sweep(d, cond, generator):
    s64 = random_psd(d, "geometric", cond=cond, generator=generator)
    m64 = torch.randn(d, 5, generator=generator, dtype=F64)
    err, out = _fp32_case(s64, m64)
    if cond <= 1e6:
        assert err.delta <= 3e-2
    else:  # κ ≥ 1e8: directions under the fp32 noise are dropped, never amplified
        assert err.delta <= 1.5 and err.decrease <= 1.0
    assert float(out.decrease) >= 0


@pytest.mark.parametrize("d,rank", [(17, 9), (65, 40), (257, 200)])
def test_exact_rank_deficiency(d, rank, generator):
    """Statistics of data of rank r (S = BᵀB, M = BᵀG): the null space is noise, the rest is kept."""
    b = torch.randn(4 * d, rank, generator=generator, dtype=F64) @ torch.randn(rank, d, generator=generator,
                                                                                 dtype=F64)
    grad = torch.randn(4 * d, 6, generator=generator, dtype=F64)
    b32, g32 = b.float(), grad.float()
    s32, m32 = b32.T @ b32, b32.T @ g32
    s64, m64 = b32.double().T @ b32.double(), b32.double().T @ g32.double()
    out = gk.optimal_delta(s32, m32)
    assert int(gk.solve_psd(s32, m32).rank) == rank
    assert delta_errors(out.delta, out.decrease, exact_delta(s64, m64)).delta <= 1e-3
    n = torch.randn(d, 7, generator=generator, dtype=F64)
    n64 = s64 @ n
    added = gk.optimal_added_neurons(s32, n64.float(), max_neurons=3, statistical_threshold=0.0)
    assert neuron_errors(added.alpha, added.sigma, exact_added_neurons(s64, n64.float().double(), 3)).sigma <= 1e-4


@pytest.mark.parametrize("exponent", [-20, 20])
def test_scale_extremes(exponent, generator):
    d = 65
    s64 = random_psd(d, "geometric", cond=1e3, generator=generator) * 10.0**exponent
    m64 = torch.randn(d, 4, generator=generator, dtype=F64) * 10.0 ** (exponent / 2)
    err, _ = _fp32_case(s64, m64)
    assert err.delta <= 5e-4


def test_dependent_bias_column_at_large_scale_is_not_inverted(generator):
    """A bias column equal to a feature at scale 1e20: the absolute rule λ > 1e-6 inverts its fp32
    noise; the floor drops it and the neurons' subspace matches the truth."""
    n_rows, d = 400, 12
    x = torch.randn(n_rows, d, generator=generator, dtype=F64) * 1e10
    x = torch.cat([x, x[:, :1]], dim=1).float()  # exactly dependent column
    s32 = x.T @ x
    s64 = x.double().T @ x.double()
    n64 = s64 @ torch.randn(d + 1, 5, generator=generator, dtype=F64)
    ours = gk.optimal_added_neurons(s32, n64.float(), max_neurons=2, numerical_threshold=1e-6,
                                    statistical_threshold=0.0)
    err = neuron_errors(ours.alpha, ours.sigma, exact_added_neurons(s64, n64.float().double(), 2))
    assert err.subspace <= 3e-2


def _psd_with_dead_units(d, cond, dead, generator):
    """A geometric-spectrum PSD matrix (float64) whose first ``dead`` rows and columns are zero."""
    s = random_psd(d, "geometric", cond=cond, generator=generator)
    s[:dead, :] = 0
    s[:, :dead] = 0
    return s


def test_dead_features_are_dropped_exactly(generator):
    d = 40
    s = _psd_with_dead_units(d, 1e3, 5, generator)
    m = s @ torch.randn(d, 3, generator=generator, dtype=F64)
    out = gk.optimal_delta(s.float(), m.float())
    assert float(out.delta[:, :5].abs().max()) == 0.0
    assert delta_errors(out.delta, out.decrease, exact_delta(s, m.float().double())).delta <= 1e-3


def test_absolute_threshold_reproduces_gromo_where_nothing_is_noise(generator):
    """With nothing under the floor, numerical_threshold is GroMo's absolute rule on λ(S)."""
    lam = torch.tensor([4.0, 2.0, 1.0, 1e-3, 5e-7, 2e-7], dtype=F64)
    s, _, q = random_psd(6, lam, generator=generator, return_eig=True)
    n = torch.randn(6, 4, generator=generator, dtype=F64)
    ours = gk.optimal_added_neurons(s, n, numerical_threshold=1e-6, statistical_threshold=0.0)
    root = (q[:, :4] * lam[:4].rsqrt()) @ q[:, :4].T
    sigma = torch.linalg.svdvals(root @ n)
    torch.testing.assert_close(ours.sigma, sigma[: ours.sigma.numel()], rtol=1e-9, atol=0)
    assert int(gk.psd_inv_sqrt(s, threshold=1e-6).rank) == 4


# ----------------------------------------------------------------------------------------------
# The Cholesky path's extreme eigenvalues: exact on small CPU matrices, estimated above that
# ----------------------------------------------------------------------------------------------


def _scaled_with_dead_units(d, cond, dead, generator):
    s = _psd_with_dead_units(d, cond, dead, generator)
    r = torch.where(s.diagonal() > 0, s.diagonal(), torch.ones(d, dtype=F64)).rsqrt()
    return (r[:, None] * s * r[None, :]).unsqueeze(0)


@pytest.mark.parametrize("d", [9, 33, 65])
@pytest.mark.parametrize("dead", [0, 3])
def test_small_matrices_take_their_exact_extreme_eigenvalues(generator, monkeypatch, d, dead):
    """Up to EXACT_SPECTRUM_MAX_DIM the λ_min and λ_max that decide the Cholesky path are the
    eigenvalues of S' as factored (dead units at a unit diagonal); the iterations they replace
    estimate the same two numbers (λ_max from below within 1.25×, λ_min from above within 1.33×)."""
    from gromo_kernels.torch_impl import factorization

    assert d <= factorization.EXACT_SPECTRUM_MAX_DIM
    sp = _scaled_with_dead_units(d, 1e4, dead, generator)
    factored = sp.clone()
    factored.diagonal(dim1=-2, dim2=-1)[:, :dead] = 1.0
    lam = torch.linalg.eigvalsh(factored)
    chol, _, ok, lam_max, lam_min = factorization._cholesky_parts(sp.clone(), "test")
    assert bool(ok.all())
    torch.testing.assert_close(lam_max, lam[:, -1], rtol=1e-12, atol=0)
    torch.testing.assert_close(lam_min, lam[:, 0], rtol=1e-12, atol=0)
    monkeypatch.setattr(factorization, "EXACT_SPECTRUM_MAX_DIM", 0)
    _, _, _, est_max, est_min = factorization._cholesky_parts(sp.clone(), "test")
    assert float(lam[:, -1] / 1.25) <= float(est_max) <= float(lam[:, -1]) * (1 + 1e-12)
    assert float(lam[:, 0]) * (1 - 1e-12) <= float(est_min) <= 1.33 * float(lam[:, 0])


def test_the_exact_and_the_estimated_spectrum_give_the_same_solves(generator, monkeypatch):
    from gromo_kernels.torch_impl import factorization

    d = 33
    s = _psd_with_dead_units(d, 1e3, 2, generator)
    m = s @ torch.randn(d, 4, generator=generator, dtype=F64)

    def no_eigh(a):
        raise AssertionError("the eigh path was taken")

    monkeypatch.setattr(factorization, "eigh_psd_torch", no_eigh)  # both solves: the Cholesky path
    exact = gk.optimal_delta(s.float(), m.float())
    monkeypatch.setattr(factorization, "EXACT_SPECTRUM_MAX_DIM", 0)
    estimated = gk.optimal_delta(s.float(), m.float())
    torch.testing.assert_close(exact.delta, estimated.delta, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(exact.decrease, estimated.decrease, rtol=1e-10, atol=0)
    assert float(exact.delta[:, :2].abs().max()) == 0.0  # the dead units, deflated on both paths


def test_the_float64_floor_skips_the_power_iteration_that_nothing_reads(generator, monkeypatch):
    """Where no cutoff reads λ_max (the precision floor in float64 work), the Cholesky parts hold
    ‖S'‖_F, an upper bound, instead of its power-iteration estimate; the λ_min estimate, the factor
    and every solve are the same bits, and float32 work and the relative rule keep the estimate."""
    from gromo_kernels.torch_impl import factorization

    d = 130
    assert d > factorization.EXACT_SPECTRUM_MAX_DIM
    sp = _scaled_with_dead_units(d, 1e4, 2, generator)
    lam = torch.linalg.eigvalsh(sp + torch.diag_embed((sp.abs().amax(dim=-1) == 0).to(F64)))
    chol, dead, ok, est_max, est_min = factorization._cholesky_parts(sp.clone(), "full")
    chol2, dead2, ok2, bound, est_min2 = factorization._cholesky_parts(sp.clone(), "bound", power_iteration=False)
    assert torch.equal(chol, chol2) and torch.equal(dead, dead2) and torch.equal(ok, ok2)
    assert torch.equal(est_min, est_min2)
    assert float(est_max) <= float(lam[:, -1]) * (1 + 1e-12) <= float(bound)
    s = _psd_with_dead_units(d, 1e3, 2, generator)
    m = s @ torch.randn(d, 4, generator=generator, dtype=F64)
    calls = []
    original = factorization._extreme_eigenvalue_estimates

    def recording(sp, chol, *, power_iteration=True):
        calls.append(power_iteration)
        return original(sp, chol, power_iteration=power_iteration)

    monkeypatch.setattr(factorization, "_extreme_eigenvalue_estimates", recording)
    skipped = gk.optimal_delta(s.float(), m.float())
    gk.optimal_delta(s.float(), m.float(), dtype=torch.float32)
    gk.optimal_delta(s.float(), m.float(), rtol=1e-6)
    assert calls == [False, True, True]
    monkeypatch.setattr(factorization, "_extreme_eigenvalue_estimates",
                        lambda sp, chol, *, power_iteration=True: original(sp, chol, power_iteration=True))
    estimated = gk.optimal_delta(s.float(), m.float())
    assert torch.equal(skipped.delta, estimated.delta) and torch.equal(skipped.decrease, estimated.decrease)


def test_a_failing_eigvalsh_leaves_the_iterations_to_estimate_the_spectrum(generator, monkeypatch):
    from gromo_kernels.torch_impl import factorization

    sp = _scaled_with_dead_units(17, 1e3, 0, generator)
    expected = factorization._cholesky_parts(sp.clone(), "test")
    monkeypatch.setattr(factorization, "EXACT_SPECTRUM_MAX_DIM", 0)
    iterated = factorization._cholesky_parts(sp.clone(), "test")

    def no_convergence(a):
        raise torch.linalg.LinAlgError("linalg.eigh: the algorithm failed to converge")

    monkeypatch.setattr(factorization, "EXACT_SPECTRUM_MAX_DIM", 80)
    monkeypatch.setattr(torch.linalg, "eigvalsh", no_convergence)
    fallback = factorization._cholesky_parts(sp.clone(), "test")
    torch.testing.assert_close(fallback[3], iterated[3], rtol=0, atol=0)
    torch.testing.assert_close(fallback[4], iterated[4], rtol=0, atol=0)
    assert not torch.equal(fallback[4], expected[4])  # the estimate, not the exact λ_min


# ----------------------------------------------------------------------------------------------
# Top-k singular triplets
# ----------------------------------------------------------------------------------------------


def test_top_k_equals_the_full_svd_on_the_kept_neurons(generator):
    s = random_psd(300, "geometric", cond=1e3, generator=generator)
    n = torch.randn(300, 260, generator=generator, dtype=F64)
    assert singular.uses_top_k(4, 300, 260)
    top = gk.optimal_added_neurons(s, n, max_neurons=4, statistical_threshold=0.0)
    full = gk.optimal_added_neurons(s, n, statistical_threshold=0.0)
    torch.testing.assert_close(top.sigma, full.sigma[:4], rtol=1e-9, atol=0)
    # Singular vectors to ρ/gap with ρ ≤ TOPK_RTOL·σ₁.
    torch.testing.assert_close(top.alpha, full.alpha[:4], rtol=1e-4, atol=1e-4 * float(full.alpha.abs().max()))


def test_top_k_falls_back_to_the_full_svd_when_it_does_not_converge(generator, monkeypatch):
    p = torch.randn(2, 300, 260, generator=generator, dtype=F64)
    assert singular.uses_top_k(3, 300, 260)
    monkeypatch.setattr(singular, "TOPK_RTOL", 0.0)  # never accepted: the full SVD answers
    monkeypatch.setattr(singular, "TOPK_RTOL_ULPS", 0)
    u, sig, vh = singular.singular_triplets(p, 3)
    full = torch.linalg.svdvals(p)
    torch.testing.assert_close(sig[:, :3], full[:, :3], rtol=1e-12, atol=0)
    residual = (p @ vh[:, :3].mT - u[:, :, :3] * sig[:, None, :3]).norm()
    assert float(residual) < 1e-10 * float(full.max())


def _geometric_p(base, generator, s_dim=400, t_dim=380):
    sig = base ** torch.arange(t_dim, dtype=F64)
    u = torch.linalg.qr(torch.randn(s_dim, t_dim, generator=generator, dtype=F64)).Q
    v = torch.linalg.qr(torch.randn(t_dim, t_dim, generator=generator, dtype=F64)).Q
    return ((u * sig) @ v.T).unsqueeze(0)


def _counting_tries(monkeypatch, full_svd=False):
    """The Krylov blocks of each Rayleigh–Ritz try, as a list filled by the calls that follow
    (and, unless ``full_svd``, an error if the full SVD is called)."""
    spaces = []
    rayleigh_ritz = singular._RitzSpace.rayleigh_ritz

    def counted(space, l):
        spaces.append(space.q.shape[-1] // l)
        return rayleigh_ritz(space, l)

    def no_full_svd(*args, **kwargs):
        raise AssertionError("the full SVD was called")

    monkeypatch.setattr(singular._RitzSpace, "rayleigh_ritz", counted)
    if not full_svd:
        monkeypatch.setattr(torch.linalg, "svd", no_full_svd)
    return spaces


@pytest.mark.parametrize("base,spaces", [(0.985, [9, 10]), (0.99, [9, 13])])
def test_a_failed_top_k_try_adds_the_blocks_its_residual_decay_predicts(generator, monkeypatch, base, spaces):
    """σ_i = base^i: 9 blocks are not enough; the second try, sized from the residual's decay over the
    first, is (the blocks it needs: 1 and 4), and its triplets are those of the full SVD."""
    p = _geometric_p(base, generator)
    full = torch.linalg.svdvals(p)
    tried = _counting_tries(monkeypatch)
    u, sig, vh = singular.singular_triplets(p, 4)
    assert tried == spaces
    torch.testing.assert_close(sig[:, :4], full[:, :4], rtol=1e-12, atol=0)
    rho = torch.linalg.vector_norm(p @ vh[:, :4].mT - u[:, :, :4] * sig[:, None, :4], dim=-2)
    assert float(rho.max()) <= singular.TOPK_RTOL * float(full[:, 0])


def test_float32_top_k_grows_by_the_fixed_step(generator, monkeypatch):
    """In float32 the residuals stall near the tolerance (64·ε₃₂), so their decay predicts nothing:
    the space grows by TOPK_MAX_ADDED_BLOCKS a try, and the triplets are float32-exact."""
    p = _geometric_p(0.99, generator, 600, 600).float()
    tried = _counting_tries(monkeypatch)
    u, sig, vh = singular.singular_triplets(p, 8)
    assert tried == [9, 9 + singular.TOPK_MAX_ADDED_BLOCKS]
    p64 = p.double()
    rho = torch.linalg.vector_norm(p64 @ vh[:, :8].double().mT - u[:, :, :8].double() * sig[:, None, :8].double(),
                                   dim=-2)
    assert float(rho.max()) <= singular.TOPK_RTOL_ULPS * torch.finfo(torch.float32).eps * float(sig[:, 0])


def test_top_k_hands_over_to_the_full_svd_when_the_room_left_cannot_converge(generator, monkeypatch):
    """σ_i = 0.995^i: after the first try the residual's decay predicts more blocks than the space
    may hold (half of min(s, t)), so the full SVD answers at once, without further tries."""
    p = _geometric_p(0.995, generator)
    full = torch.linalg.svd(p, full_matrices=False)
    tried = _counting_tries(monkeypatch, full_svd=True)
    u, sig, vh = singular.singular_triplets(p, 4)
    assert tried == [9]
    torch.testing.assert_close(sig[:, :4], full.S[:, :4], rtol=1e-12, atol=0)


@pytest.mark.parametrize("zero_rows", [0, 150])
def test_the_grown_krylov_basis_is_the_householder_qr_of_all_its_blocks(generator, zero_rows):
    """Extending the kept QR by new blocks keeps the old columns, stays orthonormal, holds every
    block, and its Rayleigh–Ritz triplets are those of one QR of all the blocks — also when the
    blocks lie almost inside the space (exact zero rows). (Columns made from nearly dependent blocks
    differ with rounding, as between any two QRs of them.)"""
    p = _geometric_p(0.99, generator)
    p[:, :zero_rows] = 0
    blocks = [singular._orth(p @ torch.randn(1, 380, 12, generator=generator, dtype=F64))]
    singular._extend_krylov(p, blocks, 8)
    space = singular._RitzSpace(p, torch.cat(blocks, dim=-1))
    first = space.q.clone()
    for added in (1, 3):
        singular._extend_krylov(p, blocks, added)
        space.extend(torch.cat(blocks[-added:], dim=-1))
    every = torch.cat(blocks, dim=-1)
    assert torch.equal(space.q[..., : first.shape[-1]], first)
    eye = torch.eye(every.shape[-1], dtype=F64)
    torch.testing.assert_close(space.q.mT @ space.q, eye[None], rtol=0, atol=1e-13)
    outside = every - space.q @ (space.q.mT @ every)
    assert float(outside.abs().max()) <= 1e-13
    torch.testing.assert_close(space.small, space.q.mT @ p, rtol=0, atol=1e-13)
    rebuilt = singular._RitzSpace(p, every)
    grown_triplets, rebuilt_triplets = space.rayleigh_ritz(12), rebuilt.rayleigh_ritz(12)
    torch.testing.assert_close(grown_triplets[1], rebuilt_triplets[1], rtol=1e-12, atol=0)
    torch.testing.assert_close(grown_triplets[3], rebuilt_triplets[3], rtol=0, atol=1e-12)


def test_the_blocks_a_failed_try_adds():
    # 7.8e-6 after 9 blocks (the benchmark's trained Linear pair): 2 more reach 1e-7 (measured 4.1e-8).
    assert singular._blocks_to_add([(9, 7.8e-6)], 1e-7) == 2
    assert singular._blocks_to_add([(9, 2.0e-7)], 1e-7) == 1
    # After two tries the rate seen between them: 10× a block from 1e-5 to 1e-6, 1e-7 is one more.
    assert singular._blocks_to_add([(9, 1e-5), (10, 1e-6)], 1e-7) == 1
    assert singular._blocks_to_add([(9, 1e-5), (10, 5e-6)], 1e-7) == 6
    assert singular._blocks_to_add([(9, 1e-5), (10, 2e-5)], 1e-7) is None  # no decay seen
    assert singular._blocks_to_add([(9, 1.5)], 1e-7) is None  # no decay to extrapolate
    assert singular._blocks_to_add([(9, 1e-3)], 0.0) is None  # a tolerance no try can reach


@pytest.mark.parametrize("rank", [12, 40])
def test_top_k_of_a_low_rank_matrix_is_exact_without_the_full_svd(generator, monkeypatch, rank):
    """P of rank ≥ the block: its range is found within a few blocks, after which the Krylov
    blocks add only rounding noise. The basis of the Rayleigh–Ritz step stays orthonormal, so the
    triplets come out exact, without the full SVD."""
    p = (torch.randn(2, 300, rank, generator=generator, dtype=F64)
         @ torch.randn(2, rank, 260, generator=generator, dtype=F64))
    calls = []
    full_svd = torch.linalg.svd
    monkeypatch.setattr(torch.linalg, "svd", lambda *a, **kw: calls.append(1) or full_svd(*a, **kw))
    u, sig, vh = singular.singular_triplets(p, 4)
    assert calls == []
    truth = torch.linalg.svdvals(p)
    torch.testing.assert_close(sig[:, :4], truth[:, :4], rtol=1e-12, atol=0)
    eye = torch.eye(u.shape[-1], dtype=F64)
    assert float((u.mT @ u - eye).abs().max()) < 1e-12
    residual = (p @ vh[:, :4].mT - u[:, :, :4] * sig[:, None, :4]).norm(dim=-2)
    assert float(residual.max()) < 1e-12 * float(truth.max())


def test_top_k_of_a_rank_below_k(generator):
    """Rank 3 < k = 4: the three triplets of P exact, the fourth σ = 0 to rounding, every returned
    triplet within the residual bound."""
    p = (torch.randn(2, 300, 3, generator=generator, dtype=F64)
         @ torch.randn(2, 3, 260, generator=generator, dtype=F64))
    u, sig, vh = singular.singular_triplets(p, 4)
    truth = torch.linalg.svdvals(p)
    torch.testing.assert_close(sig[:, :3], truth[:, :3], rtol=1e-12, atol=0)
    assert float(sig[:, 3].abs().max()) < 1e-12 * float(truth.max())
    residual = (p @ vh[:, :4].mT - u[:, :, :4] * sig[:, None, :4]).norm(dim=-2)
    assert float(residual.max()) < 1e-11 * float(truth.max())


def test_top_k_converges_in_float32_without_the_full_svd(generator, monkeypatch):
    """float32 residuals level off near 10·ε₃₂·σ₁ (above TOPK_RTOL): the float32 check is
    TOPK_RTOL_ULPS·ε₃₂, so the Krylov answer is kept and no full SVD runs."""
    decay = 0.95 ** torch.arange(260, dtype=F64)  # σ_{i+1}/σ_i = 0.95: flat, as a projected gradient's
    u0, _ = torch.linalg.qr(torch.randn(300, 260, generator=generator, dtype=F64))
    v0, _ = torch.linalg.qr(torch.randn(260, 260, generator=generator, dtype=F64))
    p64 = ((u0 * decay) @ v0.T).unsqueeze(0)
    calls = []
    full_svd = torch.linalg.svd

    def counting_svd(*args, **kwargs):
        calls.append(args[0].shape)
        return full_svd(*args, **kwargs)

    monkeypatch.setattr(torch.linalg, "svd", counting_svd)
    u, sig, vh = singular.singular_triplets(p64.float(), 4)
    assert calls == []
    eps = torch.finfo(torch.float32).eps
    sigma_error = (sig[0, :4].double() - decay[:4]).abs().max()
    assert float(sigma_error) <= singular.TOPK_RTOL_ULPS * eps * float(decay[0])


# ----------------------------------------------------------------------------------------------
# One buffer budget for all threads
# ----------------------------------------------------------------------------------------------


def test_four_threads_keep_the_pool_within_its_budget(generator):
    budget = 24 * 2**20
    saved = buffers.budget()
    matrices = [random_psd(400, "geometric", cond=1e3, generator=generator) for _ in range(4)]
    rhs = torch.randn(400, 3, generator=generator, dtype=F64)
    peak, errors = [0], []

    def work(s):
        try:
            for _ in range(3):
                with gk.factorization_cache():
                    gk.solve_psd(torch.stack([s, s + torch.eye(400, dtype=F64)]), torch.stack([rhs, rhs]))
                peak[0] = max(peak[0], buffers.pooled_bytes())
        except Exception as err:  # reported below, in the main thread
            errors.append(err)

    try:
        buffers.set_budget(budget)
        threads = [threading.Thread(target=work, args=(s,)) for s in matrices]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert 0 < peak[0] <= budget
        assert buffers.pooled_bytes() <= budget
    finally:
        buffers.set_budget(saved)


def test_budget_is_checked():
    with pytest.raises(ValueError, match="nbytes"):
        buffers.set_budget(-1)
    with pytest.raises(TypeError, match="nbytes"):
        buffers.set_budget(1.5)
