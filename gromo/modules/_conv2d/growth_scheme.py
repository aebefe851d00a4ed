"""The growth scheme shared by the Restricted and Full convolutions (growing the input channels).

New neurons are output channels α of the previous convolution and input channels ω of this one.
:class:`_Conv2dGrowthScheme` holds what both schemes do alike: GroMo's checks and texts for a
missing or unsupported previous module, the growth statistics M₋₂ and P (cached fused statistics,
or a direct computation for an explicit gradient), and the packaging of α, ω into extension layers.
A scheme states only how ω becomes a kernel (``_omega_kernel``) and its own statistics.
"""

from __future__ import annotations

import torch

import gromo_kernels as gk
from gromo.modules._conv2d.layers import _linear_types
from gromo.modules._conv2d.merge import Conv2dMergeGrowingModule
from gromo.modules._conv2d.module import Conv2dGrowingModule
from gromo.modules._growth_options import GrowthOptions
from gromo.utils._assertions import ensure

# GroMo's texts for a growth accessor without a usable previous module, per accessor:
# (no previous module, linear previous, linear-merge previous, other previous).
_GROWTH_TEXTS = {
    "m_prev": (
        "No previous module for {name}. Thus M_{{-2}} is not defined.",
        "TODO: implement M_prev for LinearGrowingModule",
        "TODO: implement M_prev for LinearMergeGrowingModule",
        "The computation of M_{{-2}} is not implemented yet for {previous_type} as previous module.",
    ),
    "cross_cov": (
        "No previous module for {name}. Thus the cross covariance is not defined.",
        "TODO: implement cross cov for LinearGrowingModule",
        "TODO: implement cross cov for LinearMergeGrowingModule",
        "The computation of P is not implemented yet for {previous_type} as previous module.",
    ),
    "s_growth": (
        "No previous module for {name}. Thus S growth is not defined.",
        "",
        "",
        "S growth is not implemented yet for {previous_type} as previous module.",
    ),
    "bordered": (
        "Cannot compute the bordered unfolded input without a previous module for {name}.",
        "",
        "",
        "The computation of the bordered unfolded input is not implemented yet for {previous_type} as "
        "previous module.",
    ),
    "masked": (
        "No previous module for {name}.Therefore the previous masked unfolded activation is not defined.",
        "",
        "",
        "The computation of the previous masked unfolded activation is not implemented yet for "
        "{previous_type} as previous module.",
    ),
    "added_parameters": (
        "No previous module for {name}. Thus the optimal added parameters cannot be computed.",
        "TODO: should we implement Lin -> Conv",
        "TODO: should we implement Lin Add -> Conv",
        "The computation of the optimal added parameters is not implemented yet for {previous_type} as "
        "previous module.",
    ),
}


class _Conv2dGrowthScheme(Conv2dGrowingModule):
    """A :class:`Conv2dGrowingModule` that can grow its input channels from a previous convolution.

    Subclasses set ``_statistics_kind`` ("conv2d_restricted" or "conv2d_full"), their fused
    statistics, and ``_omega_kernel``.
    """

    _fused_statistics = {
        **Conv2dGrowingModule._fused_statistics,
        "tensor_m_prev": ("m_prev", frozenset({"x_prev", "grad"})),
        "cross_covariance": ("cross_cov", frozenset({"x_prev", "x"})),
    }

    def _growth_previous(self, what: str) -> "Conv2dGrowingModule":
        """The previous conv of a growth statistic ``what`` (a key of ``_GROWTH_TEXTS``).

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module is not a Conv2dGrowingModule (GroMo's texts: a
                "TODO" for linear and linear-merge predecessors).
        """
        previous = self.previous_module
        no_previous, not_linear, not_merge, other = _GROWTH_TEXTS[what]
        if previous is None:
            raise ValueError(f"{no_previous.format(name=self.name)} ({self.name}: no previous module)")
        if not isinstance(previous, Conv2dGrowingModule):
            LinearGrowingModule, LinearMergeGrowingModule = _linear_types()
            context = f" (previous module of type {type(previous).__name__} for {type(self).__name__})"
            if isinstance(previous, LinearGrowingModule) and not_linear:
                raise NotImplementedError(not_linear + context)
            if isinstance(previous, LinearMergeGrowingModule) and not_merge:
                raise NotImplementedError(not_merge + context)
            if isinstance(previous, Conv2dMergeGrowingModule):
                suffix = ": Conv Add -> Conv" if what == "added_parameters" else ""
                raise NotImplementedError(f"TODO: implement this{suffix}{context}")
            raise NotImplementedError(other.format(previous_type=type(previous)) + context)
        return previous

    def _growth_stats_direct(self, key: str, desired_activation: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(sum, n) of the growth statistic ``key`` ("m_prev" or "s_growth", which do not read this
        layer's input) for an explicit gradient (not cached)."""
        previous = self._growth_previous("m_prev")
        x_prev = previous.input
        with torch.no_grad():
            stats = gk.layer_statistics(
                self._statistics_kind, None, desired_activation, x_prev=x_prev, want=(key,),
                prev=previous._geometry, cur=self._geometry, bias_prev=previous.use_bias, bias=self.use_bias,
            )
        return stats[key], int(x_prev.shape[0])

    def _growth_statistic(
        self, key: str, what: str, desired_activation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """(sum, n) of the growth statistic ``key`` ("m_prev", "cross_cov" or "s_growth") of the
        growth scheme: the cached fused statistic, or, for an explicit ``desired_activation``, a
        direct uncached computation (it replaces the stored gradient).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        self._growth_previous(what)
        if desired_activation is not None:
            return self._growth_stats_direct(key, desired_activation)
        return self._layer_statistic(key)

    def _added_parameters_previous(self, options: GrowthOptions) -> "Conv2dGrowingModule":
        """The previous conv of the new neurons.

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_previous("added_parameters")

    def _zero_extension_bias(self, like: torch.Tensor) -> torch.Tensor | None:
        if not self.use_bias:
            return None
        return torch.zeros(self.out_channels, dtype=like.dtype, device=like.device)


# ==============================================================================================

    def compute_m_prev_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(Σ Ũ_p dAᵀ, n): M₋₂ summed over the batch, (D_p, C_out) for the Restricted scheme and
        (D_p, C_out·kk) with column c·kk + e for the Full one.

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("m_prev", "m_prev", desired_activation)

    def compute_cross_covariance_update(self) -> tuple[torch.Tensor, int]:
        """(Σ Ũ_p Uᵀ, n): P summed over the batch, (D_p, D) for the Restricted scheme and
        (kk, D_p, D) for the Full one.

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("cross_cov", "cross_cov")

    def _omega_rows(self) -> int:
        """Rows of the solved ω: the output side of this scheme's N."""
        raise NotImplementedError

    def _omega_kernel(self, omega: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ω as returned to the caller, ω as this layer's extension kernel (C_out, k, kh, kw)) for
        the solved ω (``_omega_rows()``, k)."""
        raise NotImplementedError

    def _tensor_n_operands(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """(δ = ``delta_raw``, M₋₂, P, D) that N is built from, D = C·kh·kw + b of this layer.

        Raises:
            AssertionError: no optimal delta computed yet.
        """
        ensure(self.delta_raw is not None,
               f"The optimal delta should be computed before the tensor N for {self.name}.")
        return self.delta_raw, self.tensor_m_prev(), self.cross_covariance(), self.in_features + self.use_bias

    def _install_added_parameters(
        self, options: GrowthOptions, previous, alpha: torch.Tensor, omega: torch.Tensor, eigenvalues: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """α (k, C_p, kh_p, kw_p) (+ bias) in the previous layer, ω here (see ``_omega_kernel``).

        Returns:
            (α weight, α bias or None, ω, λ (k,)).
        """
        k = int(eigenvalues.shape[0])
        dp = previous.in_features + previous.use_bias
        ensure(alpha.shape[0] == k and omega.shape[-1] == k, lambda: (
            f"alpha and omega should have the same number of added neurons {k}.but got {alpha.shape} "
            f"and {omega.shape}."
        ))
        ensure(alpha.shape == (k, dp), lambda: f"alpha should have shape ({k}, ...) but got {alpha.shape}.")
        if previous.use_bias:
            alpha_weight, alpha_bias = alpha[:, :-1], alpha[:, -1]
        else:
            alpha_weight, alpha_bias = alpha, None
        kh_p, kw_p = previous.kernel_size
        alpha_weight = alpha_weight.reshape(k, previous.in_channels, kh_p, kw_p)
        ensure(omega.shape == (self._omega_rows(), k),
               "omega should have the same number of output features as the layer.")
        omega, kernel = self._omega_kernel(omega, k)
        self.eigenvalues_extension = eigenvalues
        self.extended_input_layer = self.layer_of_tensor(kernel, self._zero_extension_bias(omega))
        if options.update_previous:
            previous.extended_output_layer = previous.layer_of_tensor(alpha_weight, alpha_bias)
        return alpha_weight, alpha_bias, omega, eigenvalues
