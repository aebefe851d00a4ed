"""The baseline: GroMo's solves as TINY, TMLR 2024 describe them, layer by layer.

Written from the spec (GroMo is GPL; no code copied). Same algorithms, thresholds and fallbacks:

* ``gromo_optimal_delta``: LU ``solve(S, M)ᵀ`` in ``dtype`` (float32 by default); an *exactly* singular
  pivot (LinAlgError) -> SVD ``pinv``; Fisher ``solve(E, Δ)`` / ``pinv(E)·Δ``; a negative decrease
  ``tr(M·Δ)`` -> a forced-pinv retry in float64 (returned in the outer dtype), and if that is
  negative too, Δ and the decrease are zeroed.
* ``gromo_sqrt_inverse_matrix_semi_positive``: ``eigh`` (one retry after adding finfo.resolution·I on
  a convergence failure), keep ``λ > threshold`` (absolute, strict).
* ``gromo_compute_optimal_added_parameters``: ``S^{-1/2} N [E^{-1/2}]``, SVD, keep
  ``σ ≥ min(statistical_threshold, σ_max)``, truncate, ``α = R U √σ``, ``ω = √σ Vh [E^{-1/2}]``.

Each function also reports what happened (``events``) so tests and the closing note can say which
path GroMo took on each failure case. Used by tests/kernels/test_linalg_gromo.py (the float64
transcription GroMo agreement is measured against) and bench/test_bench_solves.py (the baseline).
"""

from __future__ import annotations

import warnings

import torch

__all__ = [
    "gromo_optimal_delta",
    "gromo_sqrt_inverse_matrix_semi_positive",
    "gromo_compute_optimal_added_parameters",
    "gromo_style_layer_loop",
]


def gromo_optimal_delta(S, M, dtype=torch.float32, force_pseudo_inverse=False, E=None, events=None):
    """GroMo's optimal delta: Δ (o, D) = [E⁻¹] (S⁻¹M)ᵀ and d = tr(M·Δ), GroMo's fallbacks included.

    ``events`` (a list, optional) collects "pinv", "fisher_pinv", "negative_retry_fp64",
    "zeroed" in the order they happened.
    """
    events = [] if events is None else events
    assert S.dtype == M.dtype, "S and M must have the same dtype"
    saved = S.dtype
    S, M = S.to(dtype), M.to(dtype)
    E = None if E is None else E.to(dtype)
    forced = force_pseudo_inverse
    delta = None
    if not forced:
        try:
            delta = torch.linalg.solve(S, M).T
        except torch.linalg.LinAlgError:
            warnings.warn("Using the pseudo-inverse for the computation of the optimal delta")
            events.append("pinv")
            forced = True
    if forced:
        delta = (torch.linalg.pinv(S) @ M).T
    if E is not None:
        if not forced:
            try:
                delta = torch.linalg.solve(E, delta)
            except torch.linalg.LinAlgError:
                warnings.warn("Using the pseudo-inverse for the Fisher matrix")
                events.append("fisher_pinv")
                delta = torch.linalg.pinv(E) @ delta
        else:
            delta = torch.linalg.pinv(E) @ delta
    assert not torch.isnan(delta).any(), "The optimal delta contains NaN"
    decrease = torch.trace(M @ delta)
    if decrease < 0:
        warnings.warn(f"The parameter update decrease should be positive, got {float(decrease):.3g}")
        if not forced:
            warnings.warn("Trying to use the pseudo-inverse with torch.float64")
            events.append("negative_retry_fp64")
            return gromo_optimal_delta(S, M, dtype=torch.float64, force_pseudo_inverse=True, E=E, events=events)
        warnings.warn("Failed to compute the optimal delta, set delta to zero")
        events.append("zeroed")
        delta.fill_(0)
        decrease.fill_(0)
    return delta.to(saved), decrease.to(saved)


def gromo_sqrt_inverse_matrix_semi_positive(matrix, threshold=1e-5, events=None):
    """GroMo's S^{-1/2}: V_k diag(λ_k^{-1/2}) V_kᵀ over λ > threshold (absolute, strict)."""
    events = [] if events is None else events
    assert matrix.shape[0] == matrix.shape[1], "matrix must be square"
    assert torch.allclose(matrix, matrix.T), "matrix must be symmetric"
    assert not torch.isnan(matrix).any(), "matrix must not contain NaN"
    try:
        lam, vecs = torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        matrix += torch.finfo(matrix.dtype).resolution * torch.eye(matrix.shape[0], dtype=matrix.dtype,
                                                                    device=matrix.device)
        warnings.warn("eigh failed to converge, retrying with a regularised matrix", RuntimeWarning)
        events.append("eigh_retry")
        lam, vecs = torch.linalg.eigh(matrix)
    keep = lam > threshold
    v = vecs[:, keep]
    return (v * lam[keep].rsqrt()) @ v.T


def gromo_compute_optimal_added_parameters(matrix_s, matrix_n, numerical_threshold=1e-6,
                                           statistical_threshold=1e-3, maximum_added_neurons=None,
                                           alpha_zero=False, omega_zero=False, ignore_singular_values=False,
                                           matrix_covariance_loss_gradient=None, dtype=None, events=None):
    """GroMo's new neurons (with the cast to ``dtype`` and back to N's dtype): α (k, s), ω (t, k), σ (k,)."""
    events = [] if events is None else events
    saved = matrix_n.dtype
    if dtype is not None:
        matrix_n = matrix_n.to(dtype)
        matrix_s = None if matrix_s is None else matrix_s.to(dtype)
        if matrix_covariance_loss_gradient is not None:
            matrix_covariance_loss_gradient = matrix_covariance_loss_gradient.to(dtype)
    s = matrix_n.shape[0]
    if matrix_s is not None:
        assert matrix_s.shape == (s, s), "S must be (s, s)"
        if not torch.allclose(matrix_s, matrix_s.T):
            warnings.warn(f"S is not symmetric: max asymmetry {float((matrix_s - matrix_s.T).abs().max()):.3g}")
            matrix_s = (matrix_s + matrix_s.T) / 2
        r = gromo_sqrt_inverse_matrix_semi_positive(matrix_s.clone(), threshold=numerical_threshold,
                                                    events=events)
        p = r @ matrix_n
    else:
        r = torch.eye(s, dtype=matrix_n.dtype, device=matrix_n.device)
        p = matrix_n
    q = None
    e = matrix_covariance_loss_gradient
    if e is not None:
        assert e.shape == (matrix_n.shape[1],) * 2, "E must be (t, t)"
        if not torch.allclose(e, e.T):
            e = (e + e.T) / 2
        q = gromo_sqrt_inverse_matrix_semi_positive(e.clone(), threshold=numerical_threshold, events=events)
        p = p @ q
    u, sigma, vh = torch.linalg.svd(p, full_matrices=False)
    mask = sigma >= torch.minimum(torch.tensor(statistical_threshold, dtype=sigma.dtype), sigma.max())
    if maximum_added_neurons is not None:
        mask[maximum_added_neurons:] = False
    sigma, u, vh = sigma[mask], u[:, mask], vh[mask, :]
    root = torch.ones_like(sigma) if ignore_singular_values else sigma.abs().sqrt()
    alpha = root * (r @ u)
    omega = root[:, None] * vh
    if q is not None:
        omega = omega @ q
    if alpha_zero:
        alpha = torch.zeros_like(alpha)
    if omega_zero:
        omega = torch.zeros_like(omega)
    return alpha.T.to(saved), omega.T.to(saved), sigma.to(saved)


def gromo_style_layer_loop(layers, growth, *, dtype=torch.float32):
    """One growth step of a network, GroMo style: a Python loop over layers.

    layers: list of (S (D, D), M (D, o)); growth: list of (S_prev (s, s), N (s, t)).
    Returns ([(Δ, d)], [(α, ω, σ)]).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deltas = [gromo_optimal_delta(s, m, dtype=dtype) for s, m in layers]
        added = [gromo_compute_optimal_added_parameters(s, n, dtype=dtype) for s, n in growth]
    return deltas, added
