"""``FullConv2dGrowingModule``: the growth scheme "conv → full k×k conv" (TINY, TMLR 2024).

S₋₂ (D_p, D_p), M₋₂ (D_p, C_out·kk), P (kk, D_p, D) of its own; ω is a full kernel. The masked
unfold B̂ (n, L, kk, D_p) of GroMo is never built for the statistics (kind "conv2d_full" of
``gromo_kernels.layer_statistics``); the properties ``masked_unfolded_prev_input`` and
``mask_tensor_t`` compute it (and the mask T) on demand.
"""

from __future__ import annotations

from typing import Any

import torch

from gromo.modules._conv2d._public_path import public_path
from gromo.modules._conv2d.growth_scheme import _Conv2dGrowthScheme
from gromo.modules._conv2d.layers import _unfold_extended
from gromo.modules._conv2d.module import Conv2dGrowingModule
from gromo.modules._growing.statistics import tensor_s_growth_is_read_only
from gromo.modules._growth_options import GrowthOptions
from gromo.utils._assertions import ensure
from gromo.utils.tensor_statistic import TensorStatistic
from gromo.utils.tools import compute_mask_tensor_t, compute_output_shape_conv


@public_path
class FullConv2dGrowingModule(_Conv2dGrowthScheme):
    """Growth "conv → full k×k conv" (TINY, TMLR 2024).

    With B̂[i,l,e,:] the previous patch vector at the pixel read by tap e of output l:
    S₋₂ = Σ B̂B̂ᵀ / n (D_p, D_p), M₋₂[:, c·kk+e] = Σ B̂[·,e] dA_c / n (D_p, C_out·kk),
    P[e] = Σ B̂[·,e] Uᵀ / n (kk, D_p, D), N = −M₋₂ + P·δ (D_p, C_out·kk). B̂ is never built for
    the statistics.

    Args: as :class:`Conv2dGrowingModule`.
    """

    _statistics_kind = "conv2d_full"
    _fused_statistics = {
        **_Conv2dGrowthScheme._fused_statistics,
        "_tensor_s_growth": ("s_growth", frozenset({"x_prev"})),
    }

    # GroMo lists these overrides; the work is shared with the Restricted scheme.
    compute_m_prev_update = _Conv2dGrowthScheme.compute_m_prev_update
    compute_cross_covariance_update = _Conv2dGrowthScheme.compute_cross_covariance_update
    _compute_optimal_added_parameters = Conv2dGrowingModule._compute_optimal_added_parameters

    def _init_growth_state(self) -> None:
        """This module's own S₋₂ statistic, and the mask T cache with what it was built for."""
        self._tensor_s_growth = TensorStatistic(
            None, update_function=self.compute_s_growth_update, device=self.device,
            name=f"S_growth({self._name})",
        )
        self._mask_tensor_t: torch.Tensor | None = None
        self._mask_key: tuple | None = None

    @property
    def tensor_s_growth(self) -> TensorStatistic:
        """This module's own S₋₂ statistic (over positions and kernel taps)."""
        return self._tensor_s_growth

    @tensor_s_growth.setter
    def tensor_s_growth(self, value: Any) -> None:
        raise tensor_s_growth_is_read_only(self, " (tensor_s_growth cannot be set.)")

    @property
    def mask_tensor_t(self) -> torch.Tensor:
        """T (L, kk, H·W): 1 iff output l reads input pixel p at tap e (cached per size/geometry).

        Raises:
            ValueError: the input size is unknown.
        """
        size = self.update_input_size(compute_from_previous=True) or self.input_size
        device = self.layer.weight.device
        key = (tuple(size), self._geometry, device)
        if self._mask_tensor_t is None or self._mask_key != key:
            self._mask_tensor_t = compute_mask_tensor_t(size, self.layer).to(device)
            self._mask_key = key
        return self._mask_tensor_t

    @property
    def masked_unfolded_prev_input(self) -> torch.Tensor:
        """B̂ (n, L, kk, D_p): previous patch vectors read by each tap of each output (on demand).

        Computed as an unfold of the previous unfold laid out as an image (a gather, no dense
        contraction with T).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        previous = self._growth_previous("masked")
        unfolded = previous.unfolded_extended_input
        h, w = compute_output_shape_conv(tuple(previous.input.shape[-2:]), previous.layer)
        n, channels = unfolded.shape[:2]
        image = unfolded.reshape(n, channels, h, w)
        kk = self.kernel_size[0] * self.kernel_size[1]
        patches = _unfold_extended(image, self.layer, bias=False)
        return patches.reshape(n, channels, kk, -1).permute(0, 3, 2, 1)

    def compute_s_growth_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l,e} B̂ B̂ᵀ (D_p, D_p), n).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("s_growth", "s_growth")

    @property
    def tensor_n(self) -> torch.Tensor:
        """N[a, c·kk+e] = −M₋₂[a, c·kk+e] + Σ_d P[e,a,d] δ[c,d]: (D_p, C_out·kk).

        Raises:
            AssertionError: no delta, or shapes inconsistent.
        """
        delta_raw, m_prev, cross, width = self._tensor_n_operands()
        ensure(cross.ndim == 3 and cross.shape[2] == width,
               lambda: f"P has shape {tuple(cross.shape)}, expected (kk, D_p, {width})")
        ensure(delta_raw.shape == (self.out_channels, width), lambda: (
            f"delta_raw has shape {tuple(delta_raw.shape)}, expected {(self.out_channels, width)}"
        ))
        projected = torch.einsum("ead,cd->ace", cross, delta_raw.to(cross.dtype))
        return -m_prev + projected.reshape(m_prev.shape)

    def _omega_rows(self) -> int:
        kh, kw = self.kernel_size
        return self.out_channels * kh * kw

    def _omega_kernel(self, omega: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ω (C_out·kk, k) laid out as the kernel (C_out, k, kh, kw), which is also what is returned."""
        kh, kw = self.kernel_size
        omega_kernel = omega.reshape(self.out_channels, kh, kw, k).permute(0, 3, 1, 2).contiguous()
        return omega_kernel, omega_kernel

    def _added_parameters_previous(self, options: GrowthOptions) -> Conv2dGrowingModule:
        """The previous conv of the new neurons (ω is returned as the kernel (C_out, k, kh, kw)).

        Raises:
            NotImplementedError: ``use_fisher`` (the output dimension C_out·kk is not the Fisher's
                C_out), or previous not a conv.  ValueError: no previous module.
        """
        if options.use_fisher:
            raise NotImplementedError(
                "use_fisher=True is not supported for FullConv2dGrowingModule because the output "
                "dimension of the SVD target is out_channels * k_h * k_w, which does not match the "
                "(out_channels, out_channels) shape of covariance_loss_gradient."
            )
        return super()._added_parameters_previous(options)
