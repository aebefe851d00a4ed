"""GroMo's ``gromo.utils.tools``: thin wrappers that keep GroMo's signatures, warnings and error
types while gromo_kernels does the linear algebra (TINY, TMLR 2024).

Differences from GroMo (deliberate, all in the direction of correctness):
* Solves run in float64 inside gromo_kernels (``dtype`` is still the precision the inputs are
  rounded to first, and the results are returned in the inputs' dtype).
* ``optimal_delta``: GroMo solves with LU and falls back to ``pinv`` only when LU meets an
  *exactly* zero pivot, so a rank-deficient float32 ``S`` (rounding noise instead of zeros) yields a
  delta ~1e9x too large. gromo_kernels uses Cholesky and switches to an eigen pseudo-inverse
  whenever ``S`` is not numerically positive definite (cut-off relative to the precision ``S``
  arrived in). The "Using the pseudo-inverse" warning is therefore emitted whenever that
  pseudo-inverse was used. On a PSD ``S`` (and ``E``) the first-order decrease ``tr(Mᵀ S⁺ M)`` is
  non-negative, so GroMo's negative-decrease retry essentially never triggers; it is kept, and its
  float64 retry returns in the statistics' dtype (GroMo returns the outer ``dtype``).
* ``sqrt_inverse_matrix_semi_positive`` keeps GroMo's rule exactly (eigenvalues
  ``λ > threshold``, absolute: ``rtol=0`` is passed to the kernels). ``compute_optimal_added_parameters``
  keeps GroMo's absolute ``numerical_threshold`` and adds the kernels' precision floor (directions
  of S whose Jacobi-scaled eigenvalue is within the statistics' rounding noise are dropped: GroMo
  inverts that noise once S is large); singular values ``σ ≥ min(statistical_threshold, σ_max)``. The SVD sign of each
  singular pair is fixed (largest-magnitude entry of each alpha row positive) so results do not
  depend on the LAPACK driver; GroMo's signs are the driver's.
* ``compute_output_shape_conv`` uses the exact output-size formula, without GroMo's verification
  forward pass.
* ``compute_mask_tensor_t`` is built by vectorised index arithmetic instead of a Python double loop;
  same tensor.
"""

from __future__ import annotations

import warnings
from warnings import warn  # GroMo's name: patching gromo.utils.tools.warn intercepts the warnings

import torch
import torch.nn.functional as F
from torch import nn

import gromo_kernels as gk
from gromo.modules._growth_options import GrowthOptions
from gromo.utils._assertions import ensure
from gromo.utils._nonfinite import first_non_finite, has_nan

__all__ = [
    "optimal_delta",
    "compute_optimal_added_parameters",
    "sqrt_inverse_matrix_semi_positive",
    "compute_output_shape_conv",
    "create_bordering_effect_weight",
    "apply_border_effect_on_unfolded",
    "compute_mask_tensor_t",
    "lecun_normal_",
]


def _used_pinv(result) -> bool:
    """Whether a gromo_kernels solve result reports a pseudo-inverse (False when it cannot tell)."""
    flag = getattr(result, "used_pinv", None)
    if flag is None:
        return False
    if isinstance(flag, torch.Tensor):
        return bool(flag.any())
    return bool(flag)


def optimal_delta(
    tensor_s: torch.Tensor,
    tensor_m: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    force_pseudo_inverse: bool = False,
    tensor_covariance_loss_gradient: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Natural-gradient step ``Δ = E⁻¹ (S⁺ M)ᵀ`` and first-order decrease ``d = tr(M Δ)``.

    Shapes: S (D, D), M (D, o), E (o, o) -> Δ (o, D), d ().

    Args:
        tensor_s: input covariance S.
        tensor_m: M = E[x̃ dAᵀ].
        dtype: precision the statistics are rounded to before the solve.
        force_pseudo_inverse: always use the pseudo-inverse of S.
        tensor_covariance_loss_gradient: optional gradient covariance E (output-side preconditioner).
    Returns:
        (Δ, d) in the dtype of ``tensor_s``.
    Raises:
        AssertionError: S and M dtypes differ, or Δ contains NaN.
    Warns:
        UserWarning: pseudo-inverse used; negative decrease (float64 retry, then zero).
    """
    ensure(tensor_s.dtype == tensor_m.dtype, (
        "Both input tensors must have the same dtype, got "
        f"{tensor_s.dtype=} and {tensor_m.dtype=}"
    ))
    saved_dtype = tensor_s.dtype
    # GroMo's LU / pinv propagate NaN and then fail the NaN assertion: same error type here.
    ensure(first_non_finite((tensor_s, tensor_m)) is None, (
        "The optimal delta should not contain NaN values. (The statistics are not finite.)"
    ))
    delta, decrease = _optimal_delta(
        tensor_s.to(dtype), tensor_m.to(dtype), dtype, force_pseudo_inverse,
        None if tensor_covariance_loss_gradient is None else tensor_covariance_loss_gradient.to(dtype),
    )
    return delta.to(saved_dtype), decrease.to(saved_dtype)


def _optimal_delta(s, m, dtype, force, e):
    result = gk.optimal_delta(s, m, E=e, force_pinv=force)
    delta, decrease = result.delta.to(dtype), result.decrease.to(dtype)
    if not force and _used_pinv(result):
        warn(
            "Using the pseudo-inverse for the computation of the optimal delta. "
            "(The tensor S, or E, is not numerically positive definite.)"
        )
        force = True
    ensure(not has_nan(delta), "The optimal delta should not contain NaN values.")
    if decrease < 0:
        parameter_update_decrease = decrease
        warn(
            "The parameter update decrease should be positive, but got "
            f"{parameter_update_decrease=} for layer."
        )
        if not force:
            warn("Trying to use the pseudo-inverse with torch.float64.")
            delta64, decrease64 = _optimal_delta(
                s.to(torch.float64), m.to(torch.float64), torch.float64, True,
                None if e is None else e.to(torch.float64),
            )
            return delta64.to(dtype), decrease64.to(dtype)
        warn("Failed to compute the optimal delta, set delta to zero.")
        delta = torch.zeros_like(delta)
        decrease = torch.zeros_like(decrease)
    return delta, decrease


def sqrt_inverse_matrix_semi_positive(
    matrix: torch.Tensor, threshold: float = 1e-5, preferred_linalg_library: str | None = None
) -> torch.Tensor:
    """Pseudo-inverse square root ``V_k diag(λ_k^{-1/2}) V_kᵀ`` keeping eigenvalues ``λ > threshold``.

    Shapes: matrix (s, s) -> (s, s).

    Args:
        matrix: symmetric positive semi-definite matrix.
        threshold: absolute eigenvalue cut-off (strict), as GroMo.
        preferred_linalg_library: accepted for compatibility, ignored.
    Returns:
        the pseudo-inverse square root, in ``matrix``'s dtype.
    Raises:
        AssertionError: not square, not symmetric (a NaN matrix fails here, as in GroMo), or NaN.
        torch.linalg.LinAlgError: the decomposition failed twice.
    Warns:
        RuntimeWarning: GroMo's "Adding a small identity matrix …" text whenever the first
            eigendecomposition failed. The kernels then decompose the same, unmodified matrix
            through an SVD (the result is that decomposition's thresholded pseudo-inverse square
            root); only if that fails too does GroMo's retry run: ``matrix += resolution·I`` in
            place, decomposed once more.
    """
    ensure(matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1], "The input matrix must be square.")
    ensure(_symmetric(matrix), lambda: "The input matrix must be symmetric." + (
        " (It contains NaN values.)" if has_nan(matrix) else ""
    ))
    ensure(not has_nan(matrix), "The input matrix must not contain NaN values.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gk.EighFallbackWarning)
        try:
            result = gk.psd_inv_sqrt(matrix, threshold=threshold, rtol=0.0)
        except torch.linalg.LinAlgError:
            result = None
    fell_back = False
    for record in caught:  # anything but the fallback notice goes out as it came
        if issubclass(record.category, gk.EighFallbackWarning):
            fell_back = True
        else:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
    if result is None or fell_back:
        fallback = ("the SVD of the unmodified matrix was used" if result is not None
                    else "the SVD failed too; regularising the matrix in place and retrying once")
        warn(
            message="Adding a small identity matrix to make the input matrix positive definite. "
            f"(The eigendecomposition failed; {fallback}.)",
            category=RuntimeWarning,
        )
    if result is None:
        resolution = torch.finfo(matrix.dtype).resolution
        matrix += resolution * torch.eye(matrix.shape[0], dtype=matrix.dtype, device=matrix.device)
        result = gk.psd_inv_sqrt(matrix, threshold=threshold, rtol=0.0)
    return result.r.to(matrix.dtype)


# The growth options the new-neuron solve reads, and their gromo_kernels names.
_SOLVE_OPTION_NAMES = {
    "numerical_threshold": "numerical_threshold",
    "statistical_threshold": "statistical_threshold",
    "maximum_added_neurons": "max_neurons",
    "ignore_singular_values": "ignore_singular_values",
    "alpha_zero": "alpha_zero",
    "omega_zero": "omega_zero",
}


def compute_optimal_added_parameters(
    matrix_s: torch.Tensor | None,
    matrix_n: torch.Tensor,
    numerical_threshold: float = 1e-6,
    statistical_threshold: float = 1e-3,
    maximum_added_neurons: int | None = None,
    alpha_zero: bool = False,
    omega_zero: bool = False,
    ignore_singular_values: bool = False,
    matrix_covariance_loss_gradient: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """New neurons from the SVD of ``S^{-1/2} N [E^{-1/2}]`` (TINY, TINY, TMLR 2024).

    ``α = S^{-1/2} U_k √σ_k``, ``ω = √σ_k V_kᵀ [E^{-1/2}]``; keep ``σ ≥ min(statistical_threshold,
    σ_max)`` then the first ``maximum_added_neurons``; eigenvalues of S (and E) ``≤ numerical_threshold``
    are dropped from the inverse square roots. Shapes: S (s, s) or None, N (s, t), E (t, t).

    Args:
        matrix_s: growth covariance S (None: identity, GradMax).
        matrix_n: N = −E[x̃₋₂ vᵀ] (projected) or −M₋₂ (raw gradient).
        numerical_threshold: absolute eigenvalue cut-off for S^{-1/2} and E^{-1/2}.
        statistical_threshold: singular value cut-off (the largest is always kept).
        maximum_added_neurons: keep at most this many (0 keeps none).
        alpha_zero, omega_zero: zero the corresponding weights.
        ignore_singular_values: use r = 1 instead of √σ.
        matrix_covariance_loss_gradient: optional gradient covariance E.
    Returns:
        (alpha (k, s), omega (t, k), sigma (k,)).
    Raises:
        AssertionError: incompatible shapes.
        torch.linalg.LinAlgError: the SVD failed (GroMo's diagnostics are printed first).
    Warns:
        UserWarning: S not symmetric (it is symmetrised).
    """
    options = GrowthOptions.from_arguments(locals())
    matrix_s, matrix_e = _checked_added_parameters_inputs(matrix_s, matrix_n, matrix_covariance_loss_gradient)
    result = _added_neurons_reporting_svd_failure(matrix_s, matrix_n, E=matrix_e, **_added_neurons_options(options))
    dtype = matrix_n.dtype
    return result.alpha.to(dtype), result.omega.to(dtype), result.sigma.to(dtype)


def _added_neurons_options(options: GrowthOptions) -> dict:
    """The ``gk.optimal_added_neurons`` keyword arguments of ``options``."""
    return {kernel_name: getattr(options, name) for name, kernel_name in _SOLVE_OPTION_NAMES.items()}


def _symmetric(matrix: torch.Tensor) -> bool:
    """GroMo's symmetry test, ``torch.allclose(matrix, matrixᵀ)``, answered by ``torch.equal`` first
    where the matrix is exactly symmetric (as the statistics are): the same answer (equal entries
    are close, and NaN is equal to nothing) at a tenth of allclose's cost on CPU."""
    return torch.equal(matrix, matrix.t()) or torch.allclose(matrix, matrix.t())


def _checked_added_parameters_inputs(
    matrix_s: torch.Tensor | None, matrix_n: torch.Tensor, matrix_covariance_loss_gradient: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``compute_optimal_added_parameters``'s checks: (S, E) as solved, each symmetrised if it is not.

    Raises:
        AssertionError: S holds NaN, S or E is not square or does not match N.
    Warns:
        UserWarning: S not symmetric.
    """
    s_dim, t_dim = matrix_n.shape
    if matrix_s is not None:
        ensure(not has_nan(matrix_s), "The input matrix S must not contain NaN values.")
        ensure(matrix_s.ndim == 2 and matrix_s.shape[0] == matrix_s.shape[-1],
               lambda: f"The input matrix S must be square. (got {matrix_s.shape=})")
        ensure(matrix_s.shape[1] == s_dim, lambda: (
            "The input matrices S and N must have compatible shapes."
            f"(got {matrix_s.shape=} and {matrix_n.shape=})"
        ))
        if not _symmetric(matrix_s):
            diff = (matrix_s - matrix_s.t()).abs()
            warn(
                "Warning: The input matrix S is not symmetric.\n"
                f"Max difference: {diff.max():.2e},\n"
                f"% of non-zero elements: {100 * (diff > 1e-10).sum() / diff.numel():.2f}%"
            )
            matrix_s = (matrix_s + matrix_s.t()) / 2
    matrix_e = matrix_covariance_loss_gradient
    if matrix_e is not None:
        ensure(matrix_e.ndim == 2 and matrix_e.shape[0] == matrix_e.shape[-1],
               lambda: f"The input matrix E must be square. (got {matrix_e.shape=})")
        ensure(matrix_e.shape == (t_dim, t_dim), lambda: (
            "The input matrices E and N must have compatible shapes."
            f"(got {matrix_covariance_loss_gradient.shape=} and {matrix_n.shape=})"
        ))
        if not _symmetric(matrix_e):
            matrix_e = (matrix_e + matrix_e.t()) / 2
    return matrix_s, matrix_e


def _added_neurons_reporting_svd_failure(matrix_s, matrix_n, **options):
    """``gk.optimal_added_neurons``; on ``LinAlgError`` print GroMo's SVD diagnostics and re-raise.

    GroMo prints (plain ``print``, to stdout) the ranges and shapes of S, N, ``S^{-1/2}`` (identity
    without S) and ``P = S^{-1/2} N [E^{-1/2}]`` before re-raising the same exception object.
    """
    try:
        return gk.optimal_added_neurons(matrix_s, matrix_n, **options)
    except torch.linalg.LinAlgError:
        _print_svd_diagnostics(matrix_s, matrix_n, options)
        raise


def _print_svd_diagnostics(matrix_s, matrix_n, options) -> None:
    def describe(label: str, matrix: torch.Tensor) -> str:
        return f"{label}: {label}.min()={matrix.min()!r}, {label}.max()={matrix.max()!r}, {label}.shape={matrix.shape!r}"

    print("Warning: An error occurred during the SVD computation.")
    threshold = options.get("numerical_threshold", 1e-6)
    if matrix_s is not None:
        print(describe("matrix_s", matrix_s))
        matrix_s_inverse_sqrt = gk.psd_inv_sqrt(matrix_s, threshold=threshold, rtol=0.0).r.to(matrix_n.dtype)
    else:
        matrix_s_inverse_sqrt = torch.eye(matrix_n.shape[0], dtype=matrix_n.dtype, device=matrix_n.device)
    print(describe("matrix_n", matrix_n))
    print(describe("matrix_s_inverse_sqrt", matrix_s_inverse_sqrt))
    matrix_p = matrix_s_inverse_sqrt @ matrix_n
    matrix_e = options.get("E")
    if matrix_e is not None:
        matrix_p = matrix_p @ gk.psd_inv_sqrt(matrix_e, threshold=threshold, rtol=0.0).r.to(matrix_n.dtype)
    print(describe("matrix_p", matrix_p))


# ----------------------------------------------------------------------------------------------
# Convolution helpers (used by the conv modules)
# ----------------------------------------------------------------------------------------------


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def compute_output_shape_conv(input_shape: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    """Output grid ``⌊(h + 2p − d(k−1) − 1)/s⌋ + 1`` per dimension.

    Args:
        input_shape: (h, w).
        conv: the convolution (integer padding).
    Returns:
        (h_out, w_out).
    Raises:
        AssertionError: non-integer (string) padding.
    """
    ensure(isinstance(conv.padding, (int, tuple)) and not isinstance(conv.padding, str)
           and all(isinstance(p, int) for p in _pair(conv.padding)),
           f"The padding must be an integer. (got {conv.padding!r})")
    padding = _pair(conv.padding)
    kernel, stride, dilation = _pair(conv.kernel_size), _pair(conv.stride), _pair(conv.dilation)
    out = tuple(
        (int(size) + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(input_shape, kernel, stride, padding, dilation)
    )
    return out[0], out[1]


def create_bordering_effect_weight(channels: int, convolution: nn.Conv2d) -> torch.Tensor:
    """Depthwise kernel ``(channels, 1, kh, kw)``: zeros with a 1 at ``(kh//2, kw//2)``.

    Args:
        channels: number of channels (positive int).
        convolution: the convolution whose kernel size is used.
    Returns:
        float32 tensor on the convolution's weight device.
    Raises:
        ValueError: channels not a positive int.
        TypeError: convolution not an nn.Conv2d.
    """
    if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
        raise ValueError(f"Input 'channels' must be a positive integer. (got {channels!r})")
    if not isinstance(convolution, nn.Conv2d):
        raise TypeError(
            f"Input 'convolution' must be a torch.nn.Conv2d instance. (got {type(convolution).__name__})"
        )
    kh, kw = _pair(convolution.kernel_size)
    weight = torch.zeros(channels, 1, kh, kw, device=convolution.weight.device)
    weight[:, 0, kh // 2, kw // 2] = 1.0
    return weight


@torch.no_grad()
def apply_border_effect_on_unfolded(
    unfolded_tensor: torch.Tensor,
    original_size: tuple[int, int],
    border_effect_conv: nn.Conv2d,
    identity_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per output location of ``border_effect_conv``, the unfolded column under its centre tap.

    Shapes: unfolded_tensor (n, D, H·W) -> (n, D, H_o·W_o).

    Args:
        unfolded_tensor: unfolded input of the previous layer, laid out on an H×W grid.
        original_size: (H, W).
        border_effect_conv: the convolution whose stride/padding/dilation are simulated.
        identity_weight: the depthwise bordering kernel (built if None).
    Returns:
        the bordered unfolded tensor.
    Raises:
        TypeError: unfolded_tensor not a tensor.
        AssertionError: bad convolution or size.
    """
    if not isinstance(unfolded_tensor, torch.Tensor):
        raise TypeError(
            f"Input 'unfolded_tensor' must be a torch.Tensor (got {type(unfolded_tensor).__name__})"
        )
    ensure(isinstance(border_effect_conv, nn.Conv2d), "'border_effect_conv' must be a torch.nn.Conv2d instance.")
    ensure(len(original_size) == 2 and all(isinstance(s, int) and s > 0 for s in original_size),
           f"'original_size' must be a tuple of positive integers. (got {original_size})")
    n, channels, positions = unfolded_tensor.shape
    ensure(positions == original_size[0] * original_size[1],
           f"unfolded_tensor has {positions} positions, expected {original_size[0]}x{original_size[1]}")
    if identity_weight is None:
        identity_weight = create_bordering_effect_weight(channels, border_effect_conv)
    image = unfolded_tensor.reshape(n, channels, *original_size)
    out = F.conv2d(
        image,
        identity_weight.to(image.dtype),
        stride=border_effect_conv.stride,
        padding=border_effect_conv.padding,
        dilation=border_effect_conv.dilation,
        groups=channels,
    )
    return out.flatten(2)


def compute_mask_tensor_t(input_shape: tuple[int, int], conv: nn.Conv2d) -> torch.Tensor:
    """0/1 tensor ``T (L, kh·kw, H·W)``: ``T[l, e, p] = 1`` iff output ``l`` reads pixel ``p`` at tap ``e``.

    Args:
        input_shape: (H, W).
        conv: the convolution (kernel/stride/padding/dilation).
    Returns:
        float32 dense tensor on CPU (rows of padding taps are zero).
    """
    h, w = int(input_shape[0]), int(input_shape[1])
    kh, kw = _pair(conv.kernel_size)
    # Unfold the image of pixel indices 1..HW: 0 marks padding.
    index_image = torch.arange(1, h * w + 1, dtype=torch.float64).reshape(1, 1, h, w)
    unfolded = F.unfold(
        index_image, (kh, kw), dilation=conv.dilation,
        padding=conv.padding, stride=conv.stride,
    )[0].round().long()  # (kk, L)
    kk, positions = unfolded.shape
    mask = torch.zeros(positions, kk, h * w, dtype=torch.float32)
    taps, locations = torch.nonzero(unfolded > 0, as_tuple=True)
    mask[locations, taps, unfolded[taps, locations] - 1] = 1.0
    return mask


@torch.no_grad()
def lecun_normal_(tensor: torch.Tensor) -> torch.Tensor:
    """In place ``N(0, 1/fan_in)`` for a 2-D (Linear) or 4-D (Conv) weight.

    Raises:
        ValueError: other ranks.
    """
    if tensor.ndim == 2:
        fan_in = tensor.shape[1]
    elif tensor.ndim == 4:
        fan_in = tensor.shape[1] * tensor.shape[2] * tensor.shape[3]
    else:
        raise ValueError(f"Only supports Linear (2D) or Conv2d (4D) weights, got tensor with shape {tensor.shape}")
    return tensor.normal_(0.0, (1.0 / max(fan_in, 1)) ** 0.5)
