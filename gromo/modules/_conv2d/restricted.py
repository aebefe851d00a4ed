"""``RestrictedConv2dGrowingModule``: the growth scheme "conv → centre-tap conv" (TINY, TMLR 2024).

M₋₂ (D_p, C_out), P (D_p, D); S₋₂ is the previous layer's S; ω lives on the centre tap of this
layer's kernel. The bordered unfold Ũ_p is never built for the statistics (kind
"conv2d_restricted" of ``gromo_kernels.layer_statistics``); the property
``bordered_unfolded_extended_prev_input`` computes it on demand.
"""

from __future__ import annotations

import torch
from torch import nn

from gromo.modules._conv2d._public_path import public_path
from gromo.modules._conv2d.growth_scheme import _Conv2dGrowthScheme
from gromo.modules._conv2d.layers import _centre_tap_kernel
from gromo.modules._conv2d.module import Conv2dGrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.tools import (
    apply_border_effect_on_unfolded,
    compute_output_shape_conv,
    create_bordering_effect_weight,
)


@public_path
class RestrictedConv2dGrowingModule(_Conv2dGrowthScheme):
    """Growth "conv → centre-tap conv" (TINY, TMLR 2024).

    New neurons: a full kh_p×kw_p conv α in the previous layer followed, here, by a kernel that is
    non-zero only at the centre tap (ω). M₋₂ = Σ Ũ_p dAᵀ / n (D_p, C_out), P = Σ Ũ_p Uᵀ / n
    (D_p, D), S₋₂ = the previous layer's S, N = −M₋₂ + P δᵀ (D_p, C_out); Ũ_p[:, :, l] is the
    previous patch vector at the pixel under the centre tap of output l.

    Args: as :class:`Conv2dGrowingModule`.
    """

    _statistics_kind = "conv2d_restricted"

    # GroMo lists these overrides; the work is shared with the Full scheme.
    compute_m_prev_update = _Conv2dGrowthScheme.compute_m_prev_update
    compute_cross_covariance_update = _Conv2dGrowthScheme.compute_cross_covariance_update
    _compute_optimal_added_parameters = Conv2dGrowingModule._compute_optimal_added_parameters

    def _init_growth_state(self) -> None:
        """The bordering kernel (a non-persistent buffer) and what it was built for."""
        self.register_buffer("bordering_weight", None, persistent=False)
        self._bordering_key: tuple | None = None

    def _bordering_kernel(self, channels: int, like: torch.Tensor) -> torch.Tensor:
        """The depthwise centre-tap kernel (channels, 1, kh, kw), rebuilt when D_p, kernel, dtype or
        device changed (GroMo builds it once)."""
        key = (channels, tuple(self.kernel_size), like.dtype, like.device)
        if self.bordering_weight is None or self._bordering_key != key:
            weight = create_bordering_effect_weight(channels, self.layer).to(like.device, like.dtype)
            self.bordering_weight = weight
            self._bordering_key = key
        return self.bordering_weight

    @property
    def bordered_unfolded_extended_prev_input(self) -> torch.Tensor:
        """Ũ_p (n, D_p, L): previous patch vectors under this layer's centre tap (on demand).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        previous = self._growth_previous("bordered")
        self.update_input_size(compute_from_previous=True)  # GroMo records the size here
        unfolded = previous.unfolded_extended_input
        size = compute_output_shape_conv(tuple(previous.input.shape[-2:]), previous.layer)
        n, channels = unfolded.shape[:2]
        if channels == 0:
            h_out, w_out = compute_output_shape_conv(size, self.layer)
            return unfolded.new_zeros(n, 0, h_out * w_out)
        weight = self._bordering_kernel(channels, unfolded)
        return apply_border_effect_on_unfolded(unfolded, size, self.layer, identity_weight=weight)

    def linear_layer_of_tensor(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> nn.Conv2d:
        """A conv (own geometry) whose kernel is ``weight`` (C_out, k) at the centre tap, 0 elsewhere.

        Args:
            weight: (C_out, k) or (C_out, k, 1, 1).
            bias: (C_out,) iff ``use_bias``.
        Raises:
            AssertionError: other weight shapes, or bias presence differs from ``use_bias``.
        """
        self._check_bias_presence(bias)
        if weight.ndim == 4:
            ensure(tuple(weight.shape[2:]) == (1, 1), lambda: (
                "weight should have 2 dimensions or the last two dimensions should be (1, 1), but got "
                f"{weight.shape=}."
            ))
            weight = weight[:, :, 0, 0]
        ensure(weight.ndim == 2, lambda: (
            f"weight should have 2 or 4 dimensions, but got {weight.dim()=}. (expected a 2-D weight)"
        ))
        return self.layer_of_tensor(_centre_tap_kernel(weight, self.kernel_size), bias)

    @property
    def tensor_n(self) -> torch.Tensor:
        """N = −M₋₂ + P δᵀ: (D_p, C_out).

        Raises:
            AssertionError: no delta, or shapes inconsistent.
        """
        delta_raw, m_prev, cross, width = self._tensor_n_operands()
        ensure(cross.shape[1] == width, lambda: (
            f"The cross covariance should have shape (..., {width}) but got {cross.shape}."
        ))
        ensure(delta_raw.shape[1] == width, lambda: (
            f"Expected delta_raw.shape[1] == {width}, but got {delta_raw.shape[1]} (full shape: "
            f"{delta_raw.shape})."
        ))
        ensure(delta_raw.shape[0] == self.out_channels, lambda: (
            f"Expected delta_raw.shape[0] == {self.out_channels}, but got {delta_raw.shape[0]}."
        ))
        return -m_prev + cross @ delta_raw.to(cross.dtype).T

    def _omega_rows(self) -> int:
        return self.out_channels

    def _omega_kernel(self, omega: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ω (C_out, k), returned as solved and placed on the centre tap of this layer's kernel."""
        return omega, _centre_tap_kernel(omega, self.kernel_size)
