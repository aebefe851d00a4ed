"""The convolution layers of the growing convolutions and their geometry helpers.

A growing convolution's layer is a :class:`_ZeroWidthSafeConv2d` (an ``nn.Conv2d`` that also works
with 0 input or 0 output channels); this file builds such layers, reads their geometry as a
``gromo_kernels.Conv2dGeometry``, unfolds inputs with it and checks kernels against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gromo_kernels as gk
from gromo.modules._conv2d._public_path import public_path
from gromo.utils._assertions import ensure
from gromo.utils.tools import compute_output_shape_conv


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def _geometry_of(layer: nn.Conv2d) -> gk.Conv2dGeometry:
    """Conv2dGeometry (pairs) of an nn.Conv2d with integer padding."""
    if isinstance(layer.padding, str):
        raise ValueError(f"padding must be an int or a pair of ints, got {layer.padding!r}")
    return gk.Conv2dGeometry(
        _pair(layer.kernel_size), _pair(layer.stride), _pair(layer.padding), _pair(layer.dilation)
    )


def _patch_width(channels: int, kernel_size: tuple[int, int], bias: bool) -> int:
    """D = C·kh·kw + bias: the length of an unfolded patch vector (with its ones row when ``bias``)."""
    return channels * kernel_size[0] * kernel_size[1] + bias


def _unfold_with(x: torch.Tensor, geometry: gk.Conv2dGeometry, bias: bool) -> torch.Tensor:
    """im2col of x (n, C, H, W) with ``geometry``, plus a ones row when ``bias``: (n, C·kh·kw + bias, L)."""
    g = geometry
    unfolded = F.unfold(x, g.kernel_size, dilation=g.dilation, padding=g.padding, stride=g.stride)
    if bias:
        ones = torch.ones(unfolded.shape[0], 1, unfolded.shape[2], dtype=unfolded.dtype, device=unfolded.device)
        unfolded = torch.cat([unfolded, ones], dim=1)
    return unfolded


def _unfold_extended(x: torch.Tensor, layer: nn.Conv2d, bias: bool) -> torch.Tensor:
    """im2col of x (n, C, H, W) with the layer's geometry, plus a ones row when ``bias``: (n, D, L)."""
    return _unfold_with(x, _geometry_of(layer), bias)


@public_path  # pickled with every growing convolution: its path is part of the checkpoint format
class _ZeroWidthSafeConv2d(nn.Conv2d):
    """``nn.Conv2d`` that also works with 0 input or 0 output channels.

    in_channels == 0: output = bias broadcast (zeros without bias), shape (n, C_out, H_o, W_o);
    out_channels == 0: output (n, 0, H_o, W_o). Both require grad when grad mode is on, so that a
    stored pre-activation can retain its gradient. torch itself raises (0 outputs) or returns a
    wrong shape (0 inputs).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's argument name)
        """Convolution of input (n, C, H, W) -> (n, C_out, H_o, W_o)."""
        if self.in_channels > 0 and self.out_channels > 0:
            return super().forward(input)
        if input.ndim != 4 or input.shape[1] != self.in_channels:
            raise RuntimeError(
                f"expected input of shape (n, {self.in_channels}, H, W) for a convolution with "
                f"{self.in_channels} input channels, got {tuple(input.shape)}"
            )
        h_out, w_out = compute_output_shape_conv(tuple(input.shape[-2:]), self)
        out = input.new_zeros(input.shape[0], self.out_channels, h_out, w_out)
        if self.bias is not None and self.out_channels > 0:
            out = out + self.bias.view(1, -1, 1, 1)
        if torch.is_grad_enabled() and not out.requires_grad:
            out.requires_grad_(True)
        return out


def _check_kernel(weight: torch.Tensor, layer: nn.Conv2d) -> None:
    """GroMo's per-dimension kernel check of a weight (K_out, K_in, kh, kw) for ``layer``."""
    ensure(weight.ndim == 4, lambda: f"weight should have 4 dimensions, but got {weight.dim()=}.")
    kernel_size = _pair(layer.kernel_size)
    for i in range(2):
        ensure(weight.shape[2 + i] == kernel_size[i], lambda i=i: (
            f"weight.shape[2 + i]={weight.shape[2 + i]!r} should be equal to "
            f"layer.kernel_size[i]={kernel_size[i]!r}"
        ))


def _centre_tap_kernel(weight: torch.Tensor, kernel_size: tuple[int, int]) -> torch.Tensor:
    """The kernel (K_out, K_in, kh, kw) that is ``weight`` (K_out, K_in) at the centre tap, 0 elsewhere."""
    kh, kw = kernel_size
    full = weight.new_zeros(weight.shape[0], weight.shape[1], kh, kw)
    full[:, :, kh // 2, kw // 2] = weight
    return full


def _new_conv(in_channels: int, out_channels: int, geometry: gk.Conv2dGeometry, bias: bool,
              device, dtype, initialise: bool = True) -> nn.Conv2d:
    """A zero-width-safe conv. Without ``initialise`` it lives on the meta device: the caller must
    assign every parameter (no initialisation, no RNG draw, no wasted allocation)."""
    kernel, stride, padding, dilation = geometry
    # torch's "Initializing zero-element tensors is a no-op" warning of a zero-width layer is left
    # to surface, as it does in GroMo (which builds its layers with torch's default initialisation).
    conv = _ZeroWidthSafeConv2d(
        in_channels, out_channels, kernel, stride=stride, padding=padding, dilation=dilation,
        bias=bias, device=device if initialise else "meta", dtype=dtype,
    )
    if initialise and in_channels == 0 and conv.bias is not None:
        # torch skips the bias init when fan_in == 0 and leaves uninitialised memory.
        with torch.no_grad():
            conv.bias.zero_()
    return conv


def _linear_types() -> tuple[type, type]:
    # Imported lazily: linear_growing_module does not depend on the convolutions, but keeping the
    # import local avoids an import cycle if it ever does.
    from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule

    return LinearGrowingModule, LinearMergeGrowingModule
