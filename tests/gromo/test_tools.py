"""gromo.utils.tools: GroMo's solve wrappers and conv helpers (TINY, TMLR 2024)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from gromo.utils import tools
from gromo_kernels.testing import random_psd


def _delta_reference(s, m, e=None):
    s64, m64 = s.double(), m.double()
    delta = torch.linalg.solve(s64, m64).T
    if e is not None:
        delta = torch.linalg.solve(e.double(), delta)
    return delta, torch.trace(m64 @ delta)


# ----------------------------------------------------------------------------------------------
# optimal_delta
# ----------------------------------------------------------------------------------------------


def test_optimal_delta_matches_solve_on_well_conditioned_s(generator):
    s = random_psd(7, cond=1e2, generator=generator).float()
    m = torch.randn(7, 3, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        delta, decrease = tools.optimal_delta(s, m)
    ref_delta, ref_decrease = _delta_reference(s, m)
    assert delta.shape == (3, 7) and delta.dtype == torch.float32 and decrease.ndim == 0
    torch.testing.assert_close(delta.double(), ref_delta, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decrease.double(), ref_decrease, rtol=1e-5, atol=0)


def test_optimal_delta_returns_the_statistics_dtype(generator):
    s = random_psd(5, cond=10, generator=generator)
    m = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    delta, decrease = tools.optimal_delta(s, m, dtype=torch.float32)
    assert delta.dtype == torch.float64 and decrease.dtype == torch.float64
    ref_delta, _ = _delta_reference(s.float(), m.float())
    torch.testing.assert_close(delta, ref_delta, rtol=1e-5, atol=1e-6)


def test_optimal_delta_fisher_preconditions_the_output_side(generator):
    s = random_psd(6, cond=10, generator=generator).float()
    e = random_psd(3, cond=10, generator=generator).float()
    m = torch.randn(6, 3, generator=generator)
    delta, decrease = tools.optimal_delta(s, m, tensor_covariance_loss_gradient=e)
    ref_delta, ref_decrease = _delta_reference(s, m, e)
    torch.testing.assert_close(delta.double(), ref_delta, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decrease.double(), ref_decrease, rtol=1e-5, atol=0)


def test_optimal_delta_rank_deficient_s_uses_the_pseudo_inverse(generator):
    # fp32 rounding of an exactly rank-3 S: GroMo's LU inverts the noise, we must not.
    s64 = random_psd(8, rank=3, generator=generator)
    b = torch.randn(8, 2, generator=generator, dtype=torch.float64)
    m64 = s64 @ b
    with pytest.warns(UserWarning, match="pseudo-inverse"):
        delta, decrease = tools.optimal_delta(s64.float(), m64.float())
    ref = (torch.linalg.pinv(s64, hermitian=True) @ m64).T
    torch.testing.assert_close(delta.double(), ref, rtol=1e-4, atol=1e-4)
    assert decrease >= 0


def test_optimal_delta_forced_pseudo_inverse_does_not_warn(generator):
    s = random_psd(5, cond=10, generator=generator).float()
    m = torch.randn(5, 2, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        delta, _ = tools.optimal_delta(s, m, force_pseudo_inverse=True)
    torch.testing.assert_close(delta.double(), _delta_reference(s, m)[0], rtol=1e-5, atol=1e-5)


def test_optimal_delta_errors(generator):
    s = random_psd(4, generator=generator).float()
    m = torch.randn(4, 2, generator=generator)
    with pytest.raises(AssertionError, match="dtype"):
        tools.optimal_delta(s, m.double())
    m[0, 0] = float("nan")
    with pytest.raises(AssertionError, match="NaN"):
        tools.optimal_delta(s, m)


# ----------------------------------------------------------------------------------------------
# sqrt_inverse_matrix_semi_positive
# ----------------------------------------------------------------------------------------------


def test_sqrt_inverse_keeps_eigenvalues_strictly_above_the_threshold(generator):
    spectrum = torch.tensor([4.0, 1.0, 1.01e-3, 0.99e-3, 0.0], dtype=torch.float64)
    s, lam, q = random_psd(5, spectrum=spectrum, generator=generator, return_eig=True)
    r = tools.sqrt_inverse_matrix_semi_positive(s, threshold=1e-3)
    keep = lam > 1e-3
    ref = (q[:, keep] * lam[keep] ** -0.5) @ q[:, keep].T
    torch.testing.assert_close(r, ref, rtol=1e-9, atol=1e-9)
    projector = q[:, keep] @ q[:, keep].T
    torch.testing.assert_close(r @ s @ r, projector, rtol=1e-9, atol=1e-9)


def test_sqrt_inverse_eigh_failure_warns_gromo_text_and_keeps_the_matrix(monkeypatch, generator):
    """GroMo warns when eigh fails; here the unmodified matrix goes through the kernels' SVD fallback."""
    spectrum = torch.tensor([3.0, 1.0, 0.5, 0.0, 0.0], dtype=torch.float64)
    s, lam, q = random_psd(5, spectrum=spectrum, generator=generator, return_eig=True)
    before = s.clone()

    def failing(matrix, *args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.eigh: the algorithm failed to converge")

    monkeypatch.setattr(torch.linalg, "eigh", failing)
    with pytest.warns(RuntimeWarning) as record:
        r = tools.sqrt_inverse_matrix_semi_positive(s, threshold=1e-6)
    texts = [str(w.message) for w in record]
    assert len(texts) == 1
    assert texts[0].startswith("Adding a small identity matrix to make the input matrix positive definite.")
    assert "SVD" in texts[0]
    keep = lam > 1e-6
    torch.testing.assert_close(r, (q[:, keep] * lam[keep] ** -0.5) @ q[:, keep].T, rtol=1e-9, atol=1e-9)
    assert torch.equal(s, before)


def test_sqrt_inverse_errors(generator):
    with pytest.raises(AssertionError, match="square"):
        tools.sqrt_inverse_matrix_semi_positive(torch.randn(3, 4, generator=generator))
    with pytest.raises(AssertionError, match="symmetric"):
        tools.sqrt_inverse_matrix_semi_positive(torch.randn(3, 3, generator=generator) + 5 * torch.eye(3))
    bad = torch.eye(3)
    bad[1, 1] = float("nan")
    with pytest.raises(AssertionError, match="NaN"):
        tools.sqrt_inverse_matrix_semi_positive(bad)


# ----------------------------------------------------------------------------------------------
# compute_optimal_added_parameters
# ----------------------------------------------------------------------------------------------


def _added_reference(s, n, e=None, num=1e-6, stat=1e-3, max_neurons=None, ignore=False):
    def inv_sqrt(a):
        lam, v = torch.linalg.eigh(a.double())
        keep = lam > num
        return (v[:, keep] * lam[keep] ** -0.5) @ v[:, keep].T

    r = inv_sqrt(s) if s is not None else torch.eye(n.shape[0], dtype=torch.float64)
    p = r @ n.double()
    q = inv_sqrt(e) if e is not None else None
    if q is not None:
        p = p @ q
    u, sigma, vh = torch.linalg.svd(p, full_matrices=False)
    keep = sigma >= min(stat, float(sigma.max()))
    if max_neurons is not None:
        keep[max_neurons:] = False
    u, sigma, vh = u[:, keep], sigma[keep], vh[keep]
    scale = torch.ones_like(sigma) if ignore else sigma.sqrt()
    alpha = (r @ u) * scale
    omega = scale[:, None] * vh
    if q is not None:
        omega = omega @ q
    return alpha.T, omega.T, sigma


def _assert_same_neurons(alpha, omega, sigma, ref):
    ref_alpha, ref_omega, ref_sigma = ref
    torch.testing.assert_close(sigma.double(), ref_sigma, rtol=1e-5, atol=1e-6)
    # the sign of each singular pair is arbitrary: compare the sign-invariant rank-one products
    ours = torch.einsum("ti,is->its", omega.double(), alpha.double())
    theirs = torch.einsum("ti,is->its", ref_omega, ref_alpha)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_added_parameters_match_the_tiny_formula(generator):
    s = random_psd(6, cond=1e2, generator=generator).float()
    n = torch.randn(6, 4, generator=generator)
    alpha, omega, sigma = tools.compute_optimal_added_parameters(s, n)
    assert alpha.shape == (4, 6) and omega.shape == (4, 4) and sigma.shape == (4,)
    _assert_same_neurons(alpha, omega, sigma, _added_reference(s, n))
    # deterministic sign: the largest-magnitude entry of each alpha row is positive
    rows = alpha.abs().argmax(dim=1)
    assert (alpha[torch.arange(4), rows] > 0).all()


def test_added_parameters_with_fisher(generator):
    s = random_psd(5, cond=10, generator=generator).float()
    e = random_psd(3, cond=10, generator=generator).float()
    n = torch.randn(5, 3, generator=generator)
    got = tools.compute_optimal_added_parameters(s, n, matrix_covariance_loss_gradient=e)
    _assert_same_neurons(*got, _added_reference(s, n, e=e))


@pytest.mark.parametrize(
    "threshold,max_neurons,expected",
    [(1e-3, None, 3), (10.0, None, 1), (1e-3, 2, 2), (1e-3, 0, 0), (0.0, None, 5)],
)
def test_added_parameters_keep_rule(generator, threshold, max_neurons, expected):
    u = torch.linalg.qr(torch.randn(6, 4, generator=generator, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(5, 4, generator=generator, dtype=torch.float64))[0]
    n = (u * torch.tensor([3.0, 1.0, 1e-2, 1e-4], dtype=torch.float64)) @ v.T
    alpha, omega, sigma = tools.compute_optimal_added_parameters(
        None, n, statistical_threshold=threshold, maximum_added_neurons=max_neurons
    )
    assert sigma.shape == (expected,) and alpha.shape == (expected, 6) and omega.shape == (5, expected)
    _assert_same_neurons(alpha, omega, sigma, _added_reference(None, n, stat=threshold, max_neurons=max_neurons))


def test_added_parameters_gradmax_options(generator):
    n = torch.randn(5, 3, generator=generator)
    alpha, omega, sigma = tools.compute_optimal_added_parameters(
        None, n, alpha_zero=True, ignore_singular_values=True
    )
    assert torch.count_nonzero(alpha) == 0
    ref = _added_reference(None, n, ignore=True)
    # ignore_singular_values: ω rows are unit right singular vectors
    torch.testing.assert_close((omega.T @ omega).double(), torch.eye(sigma.shape[0], dtype=torch.float64),
                               rtol=0, atol=1e-5)
    torch.testing.assert_close(sigma.double(), ref[2], rtol=1e-5, atol=1e-6)
    _, omega_zero, _ = tools.compute_optimal_added_parameters(None, n, omega_zero=True)
    assert torch.count_nonzero(omega_zero) == 0


def test_added_parameters_symmetrises_s_with_a_warning(generator):
    s = random_psd(4, cond=10, generator=generator).float()
    n = torch.randn(4, 2, generator=generator)
    skew = s.clone()
    skew[0, 1] += 1e-2
    with pytest.warns(UserWarning, match="not symmetric"):
        got = tools.compute_optimal_added_parameters(skew, n)
    _assert_same_neurons(*got, _added_reference((skew + skew.T) / 2, n))


def test_added_parameters_shape_errors(generator):
    n = torch.randn(4, 3, generator=generator)
    with pytest.raises(AssertionError, match="matrix_s"):
        tools.compute_optimal_added_parameters(torch.eye(5), n)
    with pytest.raises(AssertionError, match="matrix_s"):
        tools.compute_optimal_added_parameters(torch.ones(4, 3), n)
    with pytest.raises(AssertionError, match="matrix_covariance_loss_gradient"):
        tools.compute_optimal_added_parameters(torch.eye(4), n, matrix_covariance_loss_gradient=torch.eye(4))


# ----------------------------------------------------------------------------------------------
# conv helpers
# ----------------------------------------------------------------------------------------------

_GEOMETRIES = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 2), stride=2, padding=(1, 0)),
    dict(kernel_size=3, dilation=2, padding=2, stride=(1, 2)),
    dict(kernel_size=1),
]


@pytest.mark.parametrize("geometry", _GEOMETRIES)
def test_compute_output_shape_conv_matches_a_forward(geometry):
    conv = nn.Conv2d(2, 3, **geometry)
    out = conv(torch.zeros(1, 2, 9, 8))
    assert tools.compute_output_shape_conv((9, 8), conv) == tuple(out.shape[2:])


def test_bordering_weight_and_errors():
    conv = nn.Conv2d(2, 3, kernel_size=(3, 4))
    weight = tools.create_bordering_effect_weight(5, conv)
    expected = torch.zeros(5, 1, 3, 4)
    expected[:, 0, 1, 2] = 1.0
    assert torch.equal(weight, expected)
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="channels"):
            tools.create_bordering_effect_weight(bad, conv)
    with pytest.raises(TypeError, match="convolution"):
        tools.create_bordering_effect_weight(2, nn.Linear(2, 2))


@pytest.mark.parametrize("geometry", _GEOMETRIES)
def test_border_effect_picks_the_centre_tap_column(generator, geometry):
    conv = nn.Conv2d(1, 1, **geometry)
    h, w = 6, 5
    unfolded = torch.randn(2, 4, h * w, generator=generator)
    out = tools.apply_border_effect_on_unfolded(unfolded, (h, w), conv)
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    (ph, pw), (dh, dw) = conv.padding, conv.dilation
    ho, wo = tools.compute_output_shape_conv((h, w), conv)
    image = unfolded.reshape(2, 4, h, w)
    ref = torch.zeros(2, 4, ho, wo)
    for i in range(ho):
        for j in range(wo):
            r, c = i * sh - ph + (kh // 2) * dh, j * sw - pw + (kw // 2) * dw
            if 0 <= r < h and 0 <= c < w:
                ref[:, :, i, j] = image[:, :, r, c]
    torch.testing.assert_close(out, ref.flatten(2), rtol=0, atol=0)


def test_border_effect_errors(generator):
    conv = nn.Conv2d(1, 1, 3)
    with pytest.raises(TypeError, match="unfolded"):
        tools.apply_border_effect_on_unfolded([[1.0]], (2, 2), conv)
    with pytest.raises(AssertionError, match="border_effect_conv"):
        tools.apply_border_effect_on_unfolded(torch.zeros(1, 1, 4), (2, 2), nn.Linear(1, 1))
    with pytest.raises(AssertionError, match="original_size"):
        tools.apply_border_effect_on_unfolded(torch.zeros(1, 1, 4), (0, 4), conv)


@pytest.mark.parametrize("geometry", _GEOMETRIES)
def test_mask_tensor_t_marks_the_pixels_each_tap_reads(geometry):
    conv = nn.Conv2d(1, 1, **geometry)
    h, w = 5, 6
    mask = tools.compute_mask_tensor_t((h, w), conv)
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    (ph, pw), (dh, dw) = conv.padding, conv.dilation
    ho, wo = tools.compute_output_shape_conv((h, w), conv)
    ref = torch.zeros(ho * wo, kh * kw, h * w)
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    r, c = i * sh - ph + a * dh, j * sw - pw + b * dw
                    if 0 <= r < h and 0 <= c < w:
                        ref[i * wo + j, a * kw + b, r * w + c] = 1.0
    assert mask.dtype == torch.float32
    assert torch.equal(mask, ref)


# ----------------------------------------------------------------------------------------------
# gromo.utils.utils: devices and small helpers
# ----------------------------------------------------------------------------------------------


def test_global_device_helpers():
    from gromo.utils import utils

    default = utils.global_device()
    assert default.type == ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        utils.set_device("meta")
        assert utils.global_device() == torch.device("meta")
        assert utils.torch_zeros(2, 3).device == torch.device("meta")
        assert utils.torch_ones(2).device == torch.device("meta")
    finally:
        utils.reset_device()
    assert utils.global_device() == default


def test_device_precedence_argument_config_global(tmp_path, monkeypatch):
    from gromo.utils import utils

    (tmp_path / "pyproject.toml").write_text('[tool.gromo]\ndevice = "meta"\n')
    monkeypatch.chdir(tmp_path)
    holder = object()
    assert utils.get_correct_device(holder, None) == torch.device("meta")
    assert utils.get_correct_device(holder, "cpu") == torch.device("cpu")
    (tmp_path / "pyproject.toml").write_text('[tool.gromo]\nenv = "dev"\n[tool.gromo.dev]\nother = 1\n')
    assert utils.get_correct_device(holder, None) == utils.global_device()


def test_compute_tensor_stats_and_activation_fn():
    from gromo.utils import utils

    stats = utils.compute_tensor_stats(torch.tensor([1.0, 2.0, 4.0]))
    assert stats == pytest.approx({"min": 1.0, "max": 4.0, "mean": 7 / 3, "std": float(torch.tensor([1.0, 2.0, 4.0]).std())})
    assert utils.compute_tensor_stats(torch.tensor([3.0]))["std"] == 0.0
    assert all(v != v for v in utils.compute_tensor_stats(torch.empty(0)).values())
    assert isinstance(utils.activation_fn("relu"), nn.ReLU) and isinstance(utils.activation_fn(None), nn.Identity)
    with pytest.raises(ValueError, match="fn_name"):
        utils.activation_fn("swish42")
    x = torch.tensor([0.0, -1.0, 2.0], requires_grad=True)
    utils.ReLUDerivativeOneAtZero()(x).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 1.0]
