"""GroMo's ``gromo.utils.dependence_estimator``: HSIC dependence between inputs and a target.

    K = k(X, X) (n, n),  K̃ = H K H  with H = I − 11ᵀ/n,  HSIC(K̃, L̃) = tr(K̃ L̃) / (n − 1)²

with a linear kernel ``XXᵀ`` or a Gaussian kernel ``exp(−‖xᵢ − xⱼ‖² / (2v))`` whose bandwidth v is
the (lower) median of the squared distances (+1e-7) unless ``sigma`` gives ``v = sigma²``. The
normalised score ``HSIC(K̃, L̃)/√(HSIC(K̃, K̃)·HSIC(L̃, L̃))`` lies in [0, 1].
"""

from __future__ import annotations

import torch

__all__ = ["linear_kernel", "gaussian_kernel", "center_kernel_matrix", "HSIC", "calculate_dependency"]


def linear_kernel(X: torch.Tensor) -> torch.Tensor:  # noqa: N803 (GroMo's name)
    """``X Xᵀ``: X (n, d) → (n, n)."""
    return X @ X.T


def gaussian_kernel(X: torch.Tensor, sigma: float | None = None) -> torch.Tensor:  # noqa: N803
    """``exp(−D/(2v))`` with D the squared distances: X (n, d) → (n, n).

    Args:
        X: samples (n, d).
        sigma: bandwidth; None: v = lower median of all n² entries of D, plus 1e-7.
    """
    distances = torch.cdist(X, X) ** 2
    variance = torch.median(distances) + 1e-7 if sigma is None else sigma**2
    return torch.exp(-distances / (2 * variance))


def center_kernel_matrix(K: torch.Tensor) -> torch.Tensor:  # noqa: N803
    """``H K H`` with ``H = I − 11ᵀ/n``: (n, n) → (n, n)."""
    n = K.shape[0]
    centering = torch.eye(n, dtype=K.dtype, device=K.device) - torch.full((n, n), 1.0 / n, dtype=K.dtype,
                                                                          device=K.device)
    return centering @ K @ centering


def HSIC(K_centered: torch.Tensor, L_centered: torch.Tensor) -> torch.Tensor:  # noqa: N802, N803
    """``tr(K̃ L̃)/(n − 1)²`` of two centred kernel matrices (n, n) → 0-d tensor."""
    n = K_centered.shape[0]
    return torch.trace(K_centered @ L_centered) / (n - 1) ** 2


def calculate_dependency(X_inputs: dict[str, torch.Tensor], Y: torch.Tensor, n_samples: int,  # noqa: N803
                         normalize: bool = True) -> dict[str, torch.Tensor]:
    """Gaussian-kernel HSIC between each input and Y on one random subset of ``n_samples`` rows.

    Args:
        X_inputs: name → samples (n, …) (flattened per row).
        Y: target (n, …).
        n_samples: rows drawn (``torch.randperm``, the same for every input).
        normalize: divide by ``√(HSIC(K̃, K̃)·HSIC(L̃, L̃))``.
    Returns:
        name → 0-d tensor.
    """
    subset = torch.randperm(len(Y))[:n_samples]
    target = center_kernel_matrix(gaussian_kernel(Y[subset].reshape(len(subset), -1)))
    dependencies = {}
    for name, inputs in X_inputs.items():
        kernel = center_kernel_matrix(gaussian_kernel(inputs[subset].reshape(len(subset), -1)))
        value = HSIC(kernel, target)
        if normalize:
            value = value / torch.sqrt(HSIC(kernel, kernel) * HSIC(target, target))
        dependencies[name] = value
    return dependencies
