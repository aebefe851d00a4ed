"""GroMo's ``gromo.modules.conv2d_growing_module``: growing 2-D convolutions (TINY, TMLR 2024).

``Conv2dGrowingModule`` wraps an ``nn.Conv2d`` (weight (C_out, C, kh, kw), unfold feature order
``c·kh·kw + i·kw + j``, bias row last, D = C·kh·kw + b) and collects S (D, D), M (D, C_out) and
E (C_out, C_out). Two subclasses can grow the input channels (new neurons are channels of the
previous conv):

* ``RestrictedConv2dGrowingModule`` ("conv → centre-tap conv"): M₋₂ (D_p, C_out), P (D_p, D);
  S₋₂ is the previous layer's S; ω lives on the centre tap of this layer's kernel.
* ``FullConv2dGrowingModule`` ("conv → full k×k conv"): S₋₂ (D_p, D_p), M₋₂ (D_p, C_out·kk),
  P (kk, D_p, D) of its own; ω is a full kernel.

``Conv2dMergeGrowingModule`` joins convolutions (its input is the sum of their outputs).

Every statistic comes from gromo_kernels (``layer_statistics`` with kind "conv2d",
"conv2d_restricted" or "conv2d_full", one call per batch for all pending statistics, see
gromo/modules/growing_module.py). Neither the masked unfold B̂ (n, L, kk, D_p) of GroMo's Full
module nor the bordered unfold of the Restricted one is ever built for the statistics; the
properties ``masked_unfolded_prev_input``, ``mask_tensor_t``, ``bordered_unfolded_extended_prev_input``
and ``unfolded_extended_input`` still exist and are computed on demand.

Deliberate differences from GroMo:
* float64 and CUDA end to end: every constant (ones row, bordering kernel, mask) is built in the
  dtype/device of the tensors it meets.
* Caches GroMo never invalidates are keyed on what they depend on: the bordering kernel on D_p
  (the previous layer's input channels), kernel, dtype and device; the mask on the input size and
  the geometry; the input grid of the growth statistics is read from the stored tensors of the
  current batch, never from a cached size.
* Zero-width layers stay safe after surgery: the layer is a ``nn.Conv2d`` subclass whose forward
  handles 0 input or 0 output channels (GroMo patches the original object only, and rebuilt layers
  lose the patch). With 0 input channels the output is the bias (GroMo returns zeros, ignoring the
  bias, so a delta applied to that bias had no effect); the bias of such a layer starts at zero
  (torch leaves it uninitialised).
* ``layer_in_extension`` / ``layer_out_extension`` recreate the statistics with the correct declared
  shapes ``(C·kh·kw + b)`` (GroMo declares ``(C + b)·kh·kw`` and ``C + b``, which fail on the next
  update when kh·kw > 1); ``layer_out_extension`` also recreates E (its width changed).
* ``layer_of_tensor(..., force_bias=False)`` creates a bias iff one is given (GroMo creates a
  randomly initialised bias whenever ``use_bias``, which ``apply_change`` then rejects for an input
  extension); layers built from tensors skip torch's default initialisation (no RNG draw).
* ``out_width`` / ``out_height`` account for dilation (GroMo ignores it there). As in GroMo,
  ``out_width`` is the size along the first spatial dimension and ``out_height`` along the second.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import gromo_kernels as gk
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.tensor_statistic import TensorStatistic
from gromo.utils.tools import (
    apply_border_effect_on_unfolded,
    compute_mask_tensor_t,
    compute_output_shape_conv,
    create_bordering_effect_weight,
)
from gromo.utils.utils import get_correct_device

__all__ = [
    "Conv2dGrowingModule",
    "RestrictedConv2dGrowingModule",
    "FullConv2dGrowingModule",
    "Conv2dMergeGrowingModule",
]


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


def _unfold_extended(x: torch.Tensor, layer: nn.Conv2d, bias: bool) -> torch.Tensor:
    """im2col of x (n, C, H, W) with the layer's geometry, plus a ones row when ``bias``: (n, D, L)."""
    g = _geometry_of(layer)
    unfolded = F.unfold(x, g.kernel_size, dilation=g.dilation, padding=g.padding, stride=g.stride)
    if bias:
        ones = torch.ones(unfolded.shape[0], 1, unfolded.shape[2], dtype=unfolded.dtype, device=unfolded.device)
        unfolded = torch.cat([unfolded, ones], dim=1)
    return unfolded


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


def _check_kernel(weight: torch.Tensor, layer: nn.Conv2d) -> None:
    """GroMo's per-dimension kernel check of a weight (K_out, K_in, kh, kw) for ``layer``."""
    ensure(weight.ndim == 4, lambda: f"weight should have 4 dimensions, but got {weight.dim()=}.")
    kernel_size = _pair(layer.kernel_size)
    for i in range(2):
        ensure(weight.shape[2 + i] == kernel_size[i], lambda i=i: (
            f"weight.shape[2 + i]={weight.shape[2 + i]!r} should be equal to "
            f"layer.kernel_size[i]={kernel_size[i]!r}"
        ))


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


# ==============================================================================================
# Conv2dGrowingModule
# ==============================================================================================


class Conv2dGrowingModule(GrowingModule):
    """A growing ``nn.Conv2d``: a = W ⋆ x + b, x (n, C, H, W) -> a (n, C_out, H_o, W_o).

    Statistics (sums over batch and positions divided by n): S (D, D), M (D, C_out), E (C_out,
    C_out), D = C·kh·kw + b. This base class cannot grow its input (no M₋₂ / P / N): use
    :class:`RestrictedConv2dGrowingModule` or :class:`FullConv2dGrowingModule`.

    Args:
        in_channels, out_channels: C, C_out (may be 0).
        kernel_size, stride, padding, dilation: int or pair (integer padding).
        input_size: (H, W) of the input if known.
        use_bias: bias b.
        post_layer_function, extended_post_layer_function, previous_module, next_module,
        allow_growing, device, name: as :class:`GrowingModule`.
        target_in_channels: target number of input channels (growth bookkeeping).
    """

    _layer_type = nn.Conv2d
    _statistics_kind = "conv2d"
    _fused_statistics = {
        "_tensor_s": ("s", frozenset({"x"})),
        "tensor_m": ("m", frozenset({"x", "grad"})),
        "covariance_loss_gradient": ("e", frozenset({"grad"})),
    }

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        input_size: tuple[int, int] | None = None,
        use_bias: bool = True,
        post_layer_function: nn.Module = nn.Identity(),
        extended_post_layer_function: nn.Module | None = None,
        previous_module: nn.Module | None = None,
        next_module: nn.Module | None = None,
        allow_growing: bool = False,
        device: torch.device | None = None,
        name: str | None = None,
        target_in_channels: int | None = None,
    ) -> None:
        geometry = gk.Conv2dGeometry(kernel_size, stride, padding, dilation).normalized()
        layer = _new_conv(in_channels, out_channels, geometry, use_bias, device=get_correct_device(None, device),
                          dtype=None)
        kh, kw = geometry.kernel_size
        width = in_channels * kh * kw + use_bias
        super().__init__(
            layer=layer,
            tensor_s_shape=(width, width),
            tensor_m_shape=(width, out_channels),
            post_layer_function=post_layer_function,
            extended_post_layer_function=extended_post_layer_function,
            allow_growing=allow_growing,
            previous_module=previous_module,
            next_module=next_module,
            device=device,
            name=name,
            target_in_neurons=target_in_channels,
            initial_in_neurons=in_channels,
        )
        self.use_bias = use_bias
        self.kernel_size: tuple[int, int] = geometry.kernel_size
        self._input_size = None if input_size is None else tuple(int(s) for s in input_size)

    # ----- geometry and sizes -------------------------------------------------------------

    @property
    def _geometry(self) -> gk.Conv2dGeometry:
        return _geometry_of(self.layer)

    @property
    def in_neurons(self) -> int:
        """Number of input channels C."""
        return self.layer.in_channels

    @property
    def in_channels(self) -> int:
        """C."""
        return self.layer.in_channels

    @property
    def out_channels(self) -> int:
        """C_out."""
        return self.layer.out_channels

    @property
    def in_features(self) -> int:
        """C·kh·kw (fan-in without bias)."""
        return self.layer.in_channels * self.kernel_size[0] * self.kernel_size[1]

    @property
    def out_features(self) -> int:
        """C_out."""
        return self.layer.out_channels

    @property
    def padding(self) -> tuple[int, int]:
        """Padding of the convolution."""
        return _pair(self.layer.padding)

    @padding.setter
    def padding(self, value: int | tuple[int, int]) -> None:
        self.layer.padding = _pair(value)

    @property
    def stride(self) -> tuple[int, int]:
        """Stride of the convolution."""
        return _pair(self.layer.stride)

    @property
    def dilation(self) -> tuple[int, int]:
        """Dilation of the convolution."""
        return _pair(self.layer.dilation)

    @property
    def out_width(self) -> int:
        """Output size along the FIRST spatial dimension (GroMo's naming), dilation included."""
        return compute_output_shape_conv(self.input_size, self.layer)[0]

    @property
    def out_height(self) -> int:
        """Output size along the SECOND spatial dimension (GroMo's naming), dilation included."""
        return compute_output_shape_conv(self.input_size, self.layer)[1]

    @property
    def input_volume(self) -> int:
        """C·H·W."""
        h, w = self.input_size
        return self.in_channels * h * w

    @property
    def output_volume(self) -> int:
        """C_out·H_o·W_o."""
        h_out, w_out = compute_output_shape_conv(self.input_size, self.layer)
        return self.out_channels * h_out * w_out

    def _stored_input_size(self) -> tuple[int, int] | None:
        try:
            x = self.input
        except (ValueError, AssertionError):
            return None
        if x is None:
            return None
        return (int(x.shape[-2]), int(x.shape[-1]))

    @property
    def input_size(self) -> tuple[int, int]:
        """(H, W) of the input, as GroMo: the recorded size when there is one (an explicit
        assignment is what is read back), else ``update_input_size()`` records it from the stored
        input. The record is refreshed where it matters (``update_computation`` and the growth
        accessors call ``update_input_size``); the growth statistics read their grid from the
        stored tensors of the current batch, never from this record.

        Raises:
            ValueError: it cannot be determined.
        """
        size = self._input_size
        if size is None:
            size = self.update_input_size()
        if size is None:
            raise ValueError(
                f"The input size of the layer {self.name} is not defined. (Give input_size, store an "
                "input or connect a previous convolution whose input size is known.)"
            )
        return size

    @input_size.setter
    def input_size(self, value: tuple[int, int] | None) -> None:
        # GroMo: a value is recorded through update_input_size (warning when it changes the
        # record); None clears the record silently.
        if value is None:
            self._input_size = None
        else:
            self.update_input_size(tuple(int(s) for s in value))

    def update_input_size(
        self,
        input_size: tuple[int, int] | None = None,
        compute_from_previous: bool = False,
        force_update: bool = True,
    ) -> tuple[int, int] | None:
        """Record the input size: explicit > stored input > kept (``not force_update``) > previous conv.

        Args:
            input_size: explicit (H, W).
            compute_from_previous: derive it from the previous conv's input size and geometry.
            force_update: recompute even if a size is already recorded.
        Returns:
            the recorded size, or None if unknown.
        Warns:
            UserWarning: the recorded size changes.
        """
        if input_size is not None:
            new_size = tuple(int(s) for s in input_size)
        else:
            new_size = self._stored_input_size()
            if new_size is None:
                if self._input_size is not None and not force_update:
                    return self._input_size
                if compute_from_previous and isinstance(self.previous_module, Conv2dGrowingModule):
                    previous_size = self.previous_module.update_input_size(force_update=False)
                    if previous_size is None:
                        return self._input_size
                    new_size = compute_output_shape_conv(previous_size, self.previous_module.layer)
                else:
                    return self._input_size
        ensure(len(new_size) == 2,
               f"The input size should be a tuple of two integers, but got {new_size=}.")
        if self._input_size is not None and tuple(new_size) != tuple(self._input_size):
            warnings.warn(
                f"The input size of the layer {self.name} has changed from {self._input_size} to "
                f"{new_size}.This may lead to errors if the size of the tensor statistics and of the "
                "mask tensor T are not updated.",
                UserWarning,
                stacklevel=2,
            )
        self._input_size = tuple(new_size)
        return self._input_size

    @property
    def unfolded_extended_input(self) -> torch.Tensor:
        """Unfolded input with a ones row when ``use_bias``: (n, D, L) (computed on demand)."""
        return _unfold_extended(self.input, self.layer, self.use_bias)

    def number_of_parameters(self) -> int:
        """C·C_out·kh·kw + C_out·b."""
        kh, kw = self.kernel_size
        return self.in_channels * self.out_channels * kh * kw + self.out_channels * self.use_bias

    def __str__(self, verbose: int = 0) -> str:
        # GroMo's one-line form: the literal word "Conv2dGrowingModule" for all three classes, the
        # constructor's name argument, no geometry.
        if verbose == 0:
            return (
                f"Conv2dGrowingModule({self._name})(in_channels={self.in_channels}, "
                f"out_channels={self.out_channels}, use_bias={self.use_bias})"
            )
        return super().__str__(verbose=verbose)

    # ----- statistics -----------------------------------------------------------------------

    def _statistics_kwargs(self) -> dict[str, Any]:
        previous = self.previous_module
        kwargs: dict[str, Any] = {"cur": self._geometry}
        if isinstance(previous, Conv2dGrowingModule):
            kwargs["prev"] = previous._geometry
        return kwargs

    def _input_grid(self, sources: dict[str, torch.Tensor]) -> tuple[int, int]:
        """(H, W) of this layer's input for the current batch (stored tensors first)."""
        if "x" in sources:
            return (int(sources["x"].shape[-2]), int(sources["x"].shape[-1]))
        previous = self.previous_module
        if "x_prev" in sources and isinstance(previous, Conv2dGrowingModule):
            return compute_output_shape_conv(tuple(sources["x_prev"].shape[-2:]), previous.layer)
        return self.input_size

    def _statistics_placeholder_input(self, sources: dict[str, torch.Tensor]) -> torch.Tensor:
        reference = sources.get("grad", sources.get("x_prev"))
        ensure(reference is not None, f"{self.name}: no stored tensor to size the statistics.")
        h, w = self._input_grid(sources)
        return reference.new_zeros(reference.shape[0], 0, h, w)

    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l} U Uᵀ (D, D), n) of the stored input."""
        return self._layer_statistic("s")

    def compute_m_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l} U dAᵀ (D, C_out), n); dA = ``desired_activation`` or the pre-activation gradient.

        Raises:
            AssertionError: no gradient.
        """
        if desired_activation is not None:
            x = self.input
            with torch.no_grad():
                value = gk.conv2d_input_grad(
                    x, desired_activation, self._geometry, bias=self.use_bias
                )
            return value, int(x.shape[0])
        ensure(isinstance(self.pre_activity.grad, torch.Tensor),
               f"The gradient of the pre-activity must be a torch.Tensor (error in {self.name}).")
        return self._layer_statistic("m")

    def compute_covariance_loss_gradient_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,h,w} dA dAᵀ (C_out, C_out), n).

        Raises:
            AssertionError: pre-activation not stored or no gradient.
        """
        ensure(self.store_pre_activity, (
            "The pre-activity must be stored to compute the update of the gradient covariance. "
            f"(error in {self.name})"
        ))
        ensure(isinstance(self.pre_activity.grad, torch.Tensor),
               f"The gradient of the pre-activity must be a torch.Tensor (error in {self.name}).")
        return self._layer_statistic("e")

    def update_computation(self) -> None:
        """Record the input size, then accumulate the statistics of the last batch."""
        self.update_input_size()
        super().update_computation()

    # ----- surgery ---------------------------------------------------------------------------

    def layer_of_tensor(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, force_bias: bool = True
    ) -> nn.Conv2d:
        """A conv with this layer's kernel/stride/padding/dilation holding ``weight`` (K_out, K_in, kh, kw).

        The parameters wrap the given tensors (storage shared, e.g. with ``delta_raw``).

        Raises:
            AssertionError: bias presence differs from ``use_bias`` (with ``force_bias``), or the
                kernel size differs.
        """
        if force_bias:
            use_bias = self.use_bias
            ensure(use_bias is (bias is not None), (
                f"The new layer should have a bias ({bias is not None=}) if and only if the main layer "
                f"bias (use_bias ={use_bias!r}) is not None."
            ))
        _check_kernel(weight, self.layer)
        layer = _new_conv(
            int(weight.shape[1]), int(weight.shape[0]), self._geometry, bias is not None,
            device=weight.device, dtype=weight.dtype, initialise=False,
        )
        layer.weight = nn.Parameter(weight)
        if bias is not None:
            layer.bias = nn.Parameter(bias)
        return layer

    def _rebuild_statistic(self, attribute: str, shape: tuple[int, ...] | None, update_function,
                           label: str) -> None:
        setattr(self, attribute, TensorStatistic(
            shape, update_function=update_function, device=self.device, name=f"{label}({self.name})"
        ))

    @torch.no_grad()
    def layer_in_extension(self, weight: torch.Tensor) -> None:
        """Append input channels: W ← [W, w] along dim 1, w (C_out, K, kh, kw); S and M recreated.

        Raises:
            AssertionError: wrong shape.
        """
        out_channels = self.out_channels
        ensure(weight.ndim == 4 and weight.shape[0] == out_channels, lambda: (
            f"{weight.shape[0]=} should be equal to {out_channels=} (the input extension must have "
            f"shape ({out_channels}, K, kh, kw), got {tuple(weight.shape)})"
        ))
        _check_kernel(weight, self.layer)
        old = self.layer.weight
        new_weight = torch.cat([old.detach(), weight.detach().to(old.device, old.dtype)], dim=1)
        bias = self.layer.bias.detach().clone() if self.layer.bias is not None else None
        self.layer = self.layer_of_tensor(new_weight, bias)
        self._refresh_statistics_after_surgery(input_changed=True)

    @torch.no_grad()
    def layer_out_extension(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Append output channels: W ← [W; w] along dim 0, b ← [b; b_ext]; M and E recreated.

        Raises:
            AssertionError: wrong shape, or no bias for a layer with bias.
        Warns:
            UserWarning: a bias given to a layer without bias (ignored).
        """
        in_channels = self.in_channels
        ensure(weight.ndim == 4 and weight.shape[1] == in_channels, lambda: (
            f"{weight.shape[1]=} should be equal to {in_channels=} (the output extension must have "
            f"shape (K, {in_channels}, kh, kw), got {tuple(weight.shape)})"
        ))
        _check_kernel(weight, self.layer)
        old = self.layer.weight
        new_weight = torch.cat([old.detach(), weight.detach().to(old.device, old.dtype)], dim=0)
        if self.use_bias:
            ensure(bias is not None, (
                "The bias of the extension should be provided because the layer has a bias "
                f"({self.name})"
            ))
            ensure(bias.shape == (weight.shape[0],), lambda: (
                f"{bias.shape[0]=} should be equal to {weight.shape[0]=} (bias shape {tuple(bias.shape)})"
            ))
            new_bias = torch.cat([self.layer.bias.detach(), bias.detach().to(old.device, old.dtype)])
        else:
            if bias is not None:
                warnings.warn(
                    "The bias of the extension should not be provided because the layer has no bias. "
                    f"({self.name}: the bias of the output extension is ignored.)",
                    UserWarning,
                    stacklevel=2,
                )
            new_bias = None
        self.layer = self.layer_of_tensor(new_weight, new_bias)
        self._refresh_statistics_after_surgery(input_changed=False)

    def _refresh_statistics_after_surgery(self, input_changed: bool) -> None:
        """Recreate the statistics whose declared shape changed (correct shapes, unlike GroMo)."""
        kh, kw = self.kernel_size
        width = self.in_channels * kh * kw + self.use_bias
        if input_changed:
            self._rebuild_statistic("_tensor_s", (width, width), self.compute_s_update, "S")
        else:
            self._rebuild_statistic(
                "covariance_loss_gradient", None, self.compute_covariance_loss_gradient_update, "E"
            )
        self._rebuild_statistic("tensor_m", (width, self.out_channels), self.compute_m_update, "M")
        self._clear_statistics_cache()

    def get_fan_in_from_layer(self, layer: nn.Module | None = None, num_neurons: int | None = None) -> int:
        """in_channels·kh·kw of ``layer``, else ``num_neurons``·kh·kw with this layer's kernel.

        Raises:
            AssertionError: layer not an nn.Conv2d, or neither argument given.
        """
        if layer is not None:
            ensure(isinstance(layer, nn.Conv2d), f"The layer should be a torch.nn.Conv2d but got {type(layer)}.")
            kh, kw = _pair(layer.kernel_size)
            return layer.in_channels * kh * kw
        ensure(num_neurons is not None, "Either layer or num_neurons should be provided.")
        return num_neurons * self.kernel_size[0] * self.kernel_size[1]

    def create_layer_in_extension(self, extension_size: int) -> None:
        """``extended_input_layer = Conv2d(extension_size → C_out)`` (own geometry, no bias)."""
        self.extended_input_layer = _new_conv(
            extension_size, self.out_channels, self._geometry, False,
            device=self.layer.weight.device, dtype=self.layer.weight.dtype,
        )

    def create_layer_out_extension(self, extension_size: int) -> None:
        """``extended_output_layer = Conv2d(C → extension_size)`` (own geometry, bias iff use_bias)."""
        self.extended_output_layer = _new_conv(
            self.in_channels, extension_size, self._geometry, self.use_bias,
            device=self.layer.weight.device, dtype=self.layer.weight.dtype,
        )

    # ----- growth: shared checks --------------------------------------------------------------

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
            from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule

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

    def _growth_stats_direct(self, desired_activation: torch.Tensor):
        """Growth statistics for an explicit gradient (not cached)."""
        previous = self._growth_previous("m_prev")
        x_prev = previous.input
        sources = {"x_prev": x_prev, "grad": desired_activation}
        try:
            sources["x"] = self.input
        except (ValueError, AssertionError):
            pass
        x = sources.get("x")
        if x is None:
            x = self._statistics_placeholder_input(sources)
        function = (
            gk.conv2d_full_growth_stats if self._statistics_kind == "conv2d_full"
            else gk.conv2d_restricted_growth_stats
        )
        with torch.no_grad():
            stats = function(
                x_prev, x, desired_activation, prev=previous._geometry, cur=self._geometry,
                bias_prev=previous.use_bias, bias=self.use_bias,
            )
        return stats, int(x_prev.shape[0])

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
            stats, n = self._growth_stats_direct(desired_activation)
            return getattr(stats, key), n
        return self._layer_statistic(key)

    def _alpha_omega(self, use_fisher: bool, **kwargs: Any):
        previous = self._growth_previous("added_parameters")
        alpha, omega, eigenvalues = self._auxiliary_compute_alpha_omega(use_fisher=use_fisher, **kwargs)
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
        return previous, alpha_weight, alpha_bias, omega, eigenvalues

    def _zero_extension_bias(self, like: torch.Tensor) -> torch.Tensor | None:
        if not self.use_bias:
            return None
        return torch.zeros(self.out_channels, dtype=like.dtype, device=like.device)


# ==============================================================================================
# RestrictedConv2dGrowingModule
# ==============================================================================================


class RestrictedConv2dGrowingModule(Conv2dGrowingModule):
    """Growth "conv → centre-tap conv" (TINY, TMLR 2024).

    New neurons: a full kh_p×kw_p conv α in the previous layer followed, here, by a kernel that is
    non-zero only at the centre tap (ω). M₋₂ = Σ Ũ_p dAᵀ / n (D_p, C_out), P = Σ Ũ_p Uᵀ / n
    (D_p, D), S₋₂ = the previous layer's S, N = −M₋₂ + P δᵀ (D_p, C_out); Ũ_p[:, :, l] is the
    previous patch vector at the pixel under the centre tap of output l.

    Args: as :class:`Conv2dGrowingModule`.
    """

    _statistics_kind = "conv2d_restricted"
    _fused_statistics = {
        **Conv2dGrowingModule._fused_statistics,
        "tensor_m_prev": ("m_prev", frozenset({"x_prev", "grad"})),
        "cross_covariance": ("cross_cov", frozenset({"x_prev", "x"})),
    }

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        input_size: tuple[int, int] | None = None,
        use_bias: bool = True,
        post_layer_function: nn.Module = nn.Identity(),
        extended_post_layer_function: nn.Module | None = None,
        previous_module: nn.Module | None = None,
        next_module: nn.Module | None = None,
        allow_growing: bool = False,
        device: torch.device | None = None,
        name: str | None = None,
        target_in_channels: int | None = None,
    ) -> None:
        # Same signature as Conv2dGrowingModule (GroMo inherits it), spelt out for introspection.
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            input_size=input_size, use_bias=use_bias, post_layer_function=post_layer_function,
            extended_post_layer_function=extended_post_layer_function, previous_module=previous_module,
            next_module=next_module, allow_growing=allow_growing, device=device, name=name,
            target_in_channels=target_in_channels,
        )
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
        use_bias = self.use_bias
        ensure(use_bias is (bias is not None), (
            f"The new layer should have a bias ({bias is not None=}) if and only if the main layer "
            f"bias (use_bias ={use_bias!r}) is not None."
        ))
        if weight.ndim == 4:
            ensure(tuple(weight.shape[2:]) == (1, 1), lambda: (
                "weight should have 2 dimensions or the last two dimensions should be (1, 1), but got "
                f"{weight.shape=}."
            ))
            weight = weight[:, :, 0, 0]
        ensure(weight.ndim == 2, lambda: (
            f"weight should have 2 or 4 dimensions, but got {weight.dim()=}. (expected a 2-D weight)"
        ))
        kh, kw = self.kernel_size
        full = weight.new_zeros(weight.shape[0], weight.shape[1], kh, kw)
        full[:, :, kh // 2, kw // 2] = weight
        return self.layer_of_tensor(full, bias)

    def compute_m_prev_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l} Ũ_p dAᵀ (D_p, C_out), n).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("m_prev", "m_prev", desired_activation)

    def compute_cross_covariance_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l} Ũ_p Uᵀ (D_p, D), n).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("cross_cov", "cross_cov")

    @property
    def tensor_n(self) -> torch.Tensor:
        """N = −M₋₂ + P δᵀ: (D_p, C_out).

        Raises:
            AssertionError: no delta, or shapes inconsistent.
        """
        delta_raw = self.delta_raw
        ensure(delta_raw is not None, f"The optimal delta should be computed before the tensor N for {self.name}.")
        m_prev = self.tensor_m_prev()
        cross = self.cross_covariance()
        width = self.in_features + self.use_bias
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
        return -m_prev + cross @ self.delta_raw.to(cross.dtype).T

    def _compute_optimal_added_parameters(
        self,
        numerical_threshold: float = 1e-6,
        statistical_threshold: float = 1e-3,
        maximum_added_neurons: int | None = None,
        update_previous: bool = True,
        dtype: torch.dtype = torch.float32,
        use_covariance: bool = True,
        alpha_zero: bool = False,
        omega_zero: bool = False,
        use_projection: bool = True,
        ignore_singular_values: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """α (k, C_p, kh_p, kw_p) (+ bias) in the previous layer, ω (C_out, k) on the centre tap here.

        Returns:
            (α weight, α bias or None, ω (C_out, k), λ (k,)).
        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        previous, alpha_weight, alpha_bias, omega, eigenvalues = self._alpha_omega(
            numerical_threshold=numerical_threshold,
            statistical_threshold=statistical_threshold,
            maximum_added_neurons=maximum_added_neurons,
            dtype=dtype,
            use_covariance=use_covariance,
            alpha_zero=alpha_zero,
            omega_zero=omega_zero,
            use_projection=use_projection,
            ignore_singular_values=ignore_singular_values,
            use_fisher=use_fisher,
        )
        k = int(eigenvalues.shape[0])
        ensure(omega.shape == (self.out_channels, k),
               "omega should have the same number of output features as the layer.")
        self.eigenvalues_extension = eigenvalues
        self.extended_input_layer = self.linear_layer_of_tensor(omega, self._zero_extension_bias(omega))
        if update_previous:
            previous.extended_output_layer = previous.layer_of_tensor(alpha_weight, alpha_bias)
        return alpha_weight, alpha_bias, omega, eigenvalues


# ==============================================================================================
# FullConv2dGrowingModule
# ==============================================================================================


class FullConv2dGrowingModule(Conv2dGrowingModule):
    """Growth "conv → full k×k conv" (TINY, TMLR 2024).

    With B̂[i,l,e,:] the previous patch vector at the pixel read by tap e of output l:
    S₋₂ = Σ B̂B̂ᵀ / n (D_p, D_p), M₋₂[:, c·kk+e] = Σ B̂[·,e] dA_c / n (D_p, C_out·kk),
    P[e] = Σ B̂[·,e] Uᵀ / n (kk, D_p, D), N = −M₋₂ + P·δ (D_p, C_out·kk). B̂ is never built for
    the statistics.

    Args: as :class:`Conv2dGrowingModule`.
    """

    _statistics_kind = "conv2d_full"
    _fused_statistics = {
        **Conv2dGrowingModule._fused_statistics,
        "tensor_m_prev": ("m_prev", frozenset({"x_prev", "grad"})),
        "cross_covariance": ("cross_cov", frozenset({"x_prev", "x"})),
        "_tensor_s_growth": ("s_growth", frozenset({"x_prev"})),
    }

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        input_size: tuple[int, int] | None = None,
        use_bias: bool = True,
        post_layer_function: nn.Module = nn.Identity(),
        extended_post_layer_function: nn.Module | None = None,
        previous_module: nn.Module | None = None,
        next_module: nn.Module | None = None,
        allow_growing: bool = False,
        device: torch.device | None = None,
        name: str | None = None,
        target_in_channels: int | None = None,
    ) -> None:
        # Same signature as Conv2dGrowingModule (GroMo inherits it), spelt out for introspection.
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
            input_size=input_size, use_bias=use_bias, post_layer_function=post_layer_function,
            extended_post_layer_function=extended_post_layer_function, previous_module=previous_module,
            next_module=next_module, allow_growing=allow_growing, device=device, name=name,
            target_in_channels=target_in_channels,
        )
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
        raise AttributeError(
            f"You tried to set tensor_s_growth of a GrowingModule (name={self.name}).This is not allowed "
            "because tensor_s_growth refers to the previous module's tensor_s, not the current "
            "module's tensor_s. (tensor_s_growth cannot be set.)"
        )

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

    def compute_m_prev_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(M₋₂ (D_p, C_out·kk) with column c·kk + e, n).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("m_prev", "m_prev", desired_activation)

    def compute_cross_covariance_update(self) -> tuple[torch.Tensor, int]:
        """(P (kk, D_p, D), n).

        Raises:
            ValueError: no previous module.  NotImplementedError: previous not a conv.
        """
        return self._growth_statistic("cross_cov", "cross_cov")

    @property
    def tensor_n(self) -> torch.Tensor:
        """N[a, c·kk+e] = −M₋₂[a, c·kk+e] + Σ_d P[e,a,d] δ[c,d]: (D_p, C_out·kk).

        Raises:
            AssertionError: no delta, or shapes inconsistent.
        """
        ensure(self.delta_raw is not None,
               f"The optimal delta should be computed before the tensor N for {self.name}.")
        m_prev = self.tensor_m_prev()
        cross = self.cross_covariance()
        width = self.in_features + self.use_bias
        ensure(cross.ndim == 3 and cross.shape[2] == width,
               lambda: f"P has shape {tuple(cross.shape)}, expected (kk, D_p, {width})")
        ensure(self.delta_raw.shape == (self.out_channels, width), lambda: (
            f"delta_raw has shape {tuple(self.delta_raw.shape)}, expected {(self.out_channels, width)}"
        ))
        projected = torch.einsum("ead,cd->ace", cross, self.delta_raw.to(cross.dtype))
        return -m_prev + projected.reshape(m_prev.shape)

    def _compute_optimal_added_parameters(
        self,
        numerical_threshold: float = 1e-6,
        statistical_threshold: float = 1e-3,
        maximum_added_neurons: int | None = None,
        update_previous: bool = True,
        dtype: torch.dtype = torch.float32,
        use_covariance: bool = True,
        alpha_zero: bool = False,
        omega_zero: bool = False,
        use_projection: bool = True,
        ignore_singular_values: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """α (k, C_p, kh_p, kw_p) (+ bias) in the previous layer, ω (C_out, k, kh, kw) here.

        Returns:
            (α weight, α bias or None, ω (C_out, k, kh, kw), λ (k,)).
        Raises:
            NotImplementedError: ``use_fisher`` (the output dimension C_out·kk is not the Fisher's
                C_out), or previous not a conv.  ValueError: no previous module.
        """
        if use_fisher:
            raise NotImplementedError(
                "use_fisher=True is not supported for FullConv2dGrowingModule because the output "
                "dimension of the SVD target is out_channels * k_h * k_w, which does not match the "
                "(out_channels, out_channels) shape of covariance_loss_gradient."
            )
        previous, alpha_weight, alpha_bias, omega, eigenvalues = self._alpha_omega(
            numerical_threshold=numerical_threshold,
            statistical_threshold=statistical_threshold,
            maximum_added_neurons=maximum_added_neurons,
            dtype=dtype,
            use_covariance=use_covariance,
            alpha_zero=alpha_zero,
            omega_zero=omega_zero,
            use_projection=use_projection,
            ignore_singular_values=ignore_singular_values,
            use_fisher=use_fisher,
        )
        k = int(eigenvalues.shape[0])
        kh, kw = self.kernel_size
        ensure(omega.shape == (self.out_channels * kh * kw, k),
               "omega should have the same number of output features as the layer.")
        omega_kernel = omega.reshape(self.out_channels, kh, kw, k).permute(0, 3, 1, 2).contiguous()
        self.eigenvalues_extension = eigenvalues
        self.extended_input_layer = self.layer_of_tensor(omega_kernel, self._zero_extension_bias(omega))
        if update_previous:
            previous.extended_output_layer = previous.layer_of_tensor(alpha_weight, alpha_bias)
        return alpha_weight, alpha_bias, omega_kernel, eigenvalues


# ==============================================================================================
# Conv2dMergeGrowingModule
# ==============================================================================================


def _linear_types() -> tuple[type, type]:
    # Imported lazily: linear_growing_module does not depend on this module, but keeping the
    # import local avoids an import cycle if it ever does.
    from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule

    return LinearGrowingModule, LinearMergeGrowingModule


class Conv2dMergeGrowingModule(MergeGrowingModule):
    """Merge of convolutions: input (n, C, H, W) = Σ predecessor outputs, activity = post(input).

    ``tensor_s`` = Σ_{i,l} Ũ Ũᵀ / n of the activity unfolded with the NEXT kernel (+ ones row),
    (C·kh·kw + 1)²; previous S / M over the concatenated predecessor unfolds B (n, total, H·W):
    Σ_{i,m} B Bᵀ / n (total, total) and Σ_{i,m} B dAᵀ / n (total, C), dA the gradient of the input.
    The forward returns ``reshape_function(post_merge_function(x))``.

    Args:
        in_channels: C.
        input_size: (H, W) (taken from the first predecessor when None).
        next_kernel_size: kernel (kh, kw) of the next convolution.
        post_merge_function: applied after the merge.
        reshape_function: applied after the post-merge function (e.g. nn.Flatten before a linear).
        previous_modules, next_modules: neighbours.
        allow_growing: stored.
        input_volume: explicit input volume.
        device, name: as MergeGrowingModule.
    """

    def __init__(
        self,
        in_channels: int,
        input_size: int | tuple[int, int] | None,
        next_kernel_size: int | tuple[int, int],
        post_merge_function: nn.Module = nn.Identity(),
        reshape_function: nn.Module = nn.Identity(),
        previous_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        next_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        allow_growing: bool = False,
        input_volume: int | None = None,
        device: torch.device | None = None,
        name: str | None = None,
    ) -> None:
        self.in_channels = in_channels
        self.input_size = None if input_size is None else _pair(input_size)
        self.kernel_size = _pair(next_kernel_size)
        self._input_volume = input_volume
        kh, kw = self.kernel_size
        width = in_channels * kh * kw + 1
        super().__init__(
            post_merge_function=post_merge_function,
            previous_modules=None,
            next_modules=None,
            allow_growing=allow_growing,
            tensor_s_shape=(width, width),
            device=device,
            name=name,
        )
        self.reshape_function = reshape_function
        self.set_next_modules(list(next_modules) if next_modules else [])
        self.set_previous_modules(list(previous_modules) if previous_modules else [])

    # ----- sizes --------------------------------------------------------------------------

    @property
    def out_channels(self) -> int:
        """= in_channels."""
        return self.in_channels

    @property
    def in_features(self) -> int:
        """= in_channels."""
        return self.in_channels

    @property
    def out_features(self) -> int:
        """= in_channels."""
        return self.in_channels

    @property
    def output_size(self) -> tuple[int, int] | None:
        """(H, W) of the activity (a merge keeps the grid)."""
        return self.input_size

    @property
    def input_volume(self) -> int:
        """Explicit volume, else C·H·W, else the first predecessor's output volume (as GroMo).

        Warns:
            UserWarning: no previous module to derive it from (the volume is then −1).
        """
        if self._input_volume is not None:
            return self._input_volume
        if self.input_size is not None:
            return self.in_channels * self.input_size[0] * self.input_size[1]
        if not self.previous_modules:
            warnings.warn(
                "Cannot derive the number of features of Conv2dMergeGrowingModule without setting at "
                "least one previous module",
                UserWarning,
                stacklevel=2,
            )
            return -1
        return self.previous_modules[0].output_volume

    @property
    def output_volume(self) -> int:
        """Number of elements per sample after ``post_merge_function`` and ``reshape_function``;
        ``input_volume`` when the input size is unknown (as GroMo)."""
        if self.input_size is None:
            return self.input_volume
        h, w = self.input_size
        parameters = [*self.post_merge_function.parameters(), *self.reshape_function.parameters()]
        dtype = parameters[0].dtype if parameters else None
        probe = torch.zeros(1, self.in_channels, h, w, device=self.device, dtype=dtype)
        with torch.no_grad():
            out = self.reshape_function(self.post_merge_function(probe))
        return int(out.numel())

    def _next_geometry_attribute(self, attribute: str, for_linear: tuple[int, int],
                                 default: tuple[int, int]) -> tuple[int, int]:
        linear, linear_merge = _linear_types()
        if not self.next_modules:
            warnings.warn(
                f"Cannot derive the {attribute} of Conv2dMergeGrowingModule without setting at least one "
                f"next module ({self.name}: no next module, {attribute} defaults to {default})",
                UserWarning,
                stacklevel=3,
            )
            return default
        following = self.next_modules[0]
        if isinstance(following, Conv2dGrowingModule):
            return _pair(getattr(following.layer, attribute))
        if isinstance(following, Conv2dMergeGrowingModule):
            return getattr(following, attribute)
        if isinstance(following, (linear, linear_merge)):
            return for_linear
        raise NotImplementedError(
            f"{attribute} is not implemented for a next module of type {type(following).__name__}"
        )

    @property
    def padding(self) -> tuple[int, int]:
        """Padding of the next convolution (((kh−1)//2, (kw−1)//2) before a linear)."""
        kh, kw = self.kernel_size
        return self._next_geometry_attribute("padding", ((kh - 1) // 2, (kw - 1) // 2), (0, 0))

    @property
    def stride(self) -> tuple[int, int]:
        """Stride of the next convolution ((1, 1) before a linear)."""
        return self._next_geometry_attribute("stride", (1, 1), (1, 1))

    @property
    def dilation(self) -> tuple[int, int]:
        """Dilation of the next convolution ((1, 1) before a linear)."""
        return self._next_geometry_attribute("dilation", (1, 1), (1, 1))

    @property
    def _geometry(self) -> gk.Conv2dGeometry:
        return gk.Conv2dGeometry(self.kernel_size, self.stride, self.padding, self.dilation)

    @property
    def unfolded_extended_activity(self) -> torch.Tensor:
        """Activity unfolded with the next geometry, plus a ones row when ``use_bias``:
        (n, C·kh·kw + use_bias, L)."""
        ensure(self.activity is not None, f"The activity must be stored. (error in {self.name})")
        g = self._geometry
        unfolded = F.unfold(self.activity, g.kernel_size, dilation=g.dilation, padding=g.padding, stride=g.stride)
        if not self.use_bias:
            return unfolded
        ones = torch.ones(unfolded.shape[0], 1, unfolded.shape[2], dtype=unfolded.dtype, device=unfolded.device)
        return torch.cat([unfolded, ones], dim=1)

    # ----- graph ----------------------------------------------------------------------------

    def set_next_modules(self, next_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the successors.

        Raises:
            AssertionError: a conv successor with another kernel size or channel count, or a
                linear successor whose in_features differs from the output volume.
            NotImplementedError: other successor types.
        Warns:
            UserWarning: the tensor S already holds samples.
        """
        linear, linear_merge = _linear_types()
        next_modules = list(next_modules) if next_modules else []
        for module in next_modules:
            kernel_size, out_channels = self.kernel_size, self.out_channels
            if isinstance(module, Conv2dGrowingModule):
                ensure(tuple(module.kernel_size) == tuple(kernel_size), (
                    f"Kernel size of next Conv2d modules {module.kernel_size} must match this module's "
                    f"kernel_size {kernel_size} (error in {self.name}) (the next module has another kernel "
                    "size)"
                ))
                ensure(module.in_channels == out_channels,
                       f"Next module input channels {module.in_channels} should match {out_channels=}")
            elif isinstance(module, Conv2dMergeGrowingModule):
                ensure(module.in_channels == out_channels,
                       f"Next module input channels {module.in_channels} should match {out_channels=}")
            elif isinstance(module, (linear, linear_merge)):
                output_volume = self.output_volume
                ensure(module.in_features == output_volume,
                       f"Next module input features {module.in_features} should match {output_volume=} "
                       "(in_features of the next module)")
            else:
                raise NotImplementedError(
                    "All next modules must be instances of Conv2dGrowingModule, Conv2dMergeGrowingModule, "
                    f"LinearGrowingModule or LinearMergeGrowingModule (error in {self.name}). "
                    f"(got {type(module).__name__})"
                )
        self._store_next_modules(next_modules)

    def set_previous_modules(self, previous_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the predecessors, fill ``input_size`` from the first one if unknown, and (re)create the
        previous S (total, total) / M (total, C).

        Raises:
            TypeError: a predecessor is neither a Conv2dGrowingModule nor a Conv2dMergeGrowingModule.
            ValueError: a predecessor's out_channels differs from in_channels, or a conv
                predecessor's output volume differs from the input volume.
        Warns:
            UserWarning: the previous statistics already hold samples.
        """
        previous_modules = list(previous_modules) if previous_modules else []
        for module in previous_modules:
            if not isinstance(module, (Conv2dGrowingModule, Conv2dMergeGrowingModule)):
                raise TypeError(
                    "The previous modules must be Conv2dGrowingModule or Conv2dMergeGrowingModule. "
                    f"(got {type(module).__name__})"
                )
            if module.out_channels != self.in_channels:
                raise ValueError(
                    "The input channels must match the output channels of the previous modules. "
                    f"({getattr(module, 'name', module)} has {module.out_channels} output channels, "
                    f"expected in_channels={self.in_channels}.)"
                )
            if isinstance(module, Conv2dGrowingModule) and self.input_size is not None:
                try:
                    volume = module.output_volume
                except ValueError:
                    volume = None
                input_volume = self.input_volume
                if volume is not None and volume != input_volume:
                    raise ValueError(
                        f"The output volume of the previous modules {volume} should match the input "
                        f"volume {input_volume=}. ({module.name})"
                    )
        self._store_previous_modules(previous_modules)
        if self.input_size is None and previous_modules and isinstance(previous_modules[0], Conv2dGrowingModule):
            try:
                self.input_size = (previous_modules[0].out_width, previous_modules[0].out_height)
            except ValueError:
                pass

    def update_size(self) -> None:
        """Follow the predecessors' channels; recreate statistics whose declared shape changed.

        S is declared ``(C·kh·kw + use_bias)²`` (``use_bias`` may be set to False, as in GroMo).
        """
        if self.previous_modules:
            self.in_channels = self.previous_modules[0].out_channels
        kh, kw = self.kernel_size
        self._resize_statistics(self.in_channels * kh * kw + self.use_bias)
        self._input_volume = None

    # ----- forward and statistics -----------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``reshape_function(post_merge_function(x))``; stores x / the (un-reshaped) activity when asked."""
        return self.reshape_function(super().forward(x))

    @torch.no_grad()
    def construct_full_activity(self) -> torch.Tensor:
        """B (n, total, H·W): each growing predecessor's unfolded input (with its ones row).

        Raises:
            AssertionError: no predecessors.
        """
        ensure(self.previous_modules, (
            f"No previous modules for {self.name}. (There are no previous modules to build the activity "
            "from.)"
        ))
        blocks = [module.unfolded_extended_input for module in self._growing_predecessors()]
        return torch.cat(blocks, dim=1)

    @torch.no_grad()
    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l} Ũ Ũᵀ, n) of the activity unfolded with the next geometry: (C·kh·kw+use_bias)².

        Raises:
            AssertionError: the activity is not stored.
        """
        ensure(self.activity is not None, (
            f"The activity must be stored to compute the update of S. (error in {self.name})"
        ))
        value = gk.conv2d_input_cov(self.activity, self._geometry, bias=self.use_bias)
        return value, int(self.activity.shape[0])

    def _single_growing_predecessor(self) -> Conv2dGrowingModule | None:
        growing = self._growing_predecessors()
        if len(growing) == 1 and isinstance(growing[0], Conv2dGrowingModule):
            return growing[0]
        return None

    @torch.no_grad()
    def compute_previous_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,m} B Bᵀ (total, total), n)."""
        single = self._single_growing_predecessor()
        if single is not None:
            x = single.input
            return gk.conv2d_input_cov(x, single._geometry, bias=single.use_bias), int(x.shape[0])
        full = self.construct_full_activity()
        return gk.linear_input_cov(full.transpose(1, 2), bias=False), int(full.shape[0])

    @torch.no_grad()
    def compute_previous_m_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,m} B dAᵀ (total, C), n), dA the gradient of the merge input.

        Raises:
            AssertionError: the input or its gradient is not stored.
        """
        ensure(self.input is not None and self.input.grad is not None,
               f"{self.name}: the input of the merge and its gradient must be stored.")
        grad = self.input.grad
        single = self._single_growing_predecessor()
        if single is not None:
            x = single.input
            return gk.conv2d_input_grad(x, grad, single._geometry, bias=single.use_bias), int(x.shape[0])
        full = self.construct_full_activity()
        rows = grad.flatten(2).transpose(1, 2)
        return gk.linear_input_grad(full.transpose(1, 2), rows, bias=False), int(full.shape[0])
