"""``Conv2dGrowingModule``: a growing ``nn.Conv2d`` (sizes, statistics S, M, E, and surgery).

The layer is a zero-width-safe ``nn.Conv2d`` (weight (C_out, C, kh, kw), unfold feature order
``c·kh·kw + i·kw + j``, bias row last, D = C·kh·kw + b); its statistics come from
``gromo_kernels.layer_statistics`` with kind "conv2d". Growing the input channels is the job of the
growth schemes built on it (Restricted and Full).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._attribute_property import attribute_property
from gromo.modules._conv2d._public_path import public_path
from gromo.modules._conv2d.layers import _check_kernel, _geometry_of, _new_conv, _pair, _patch_width, _unfold_extended
from gromo.modules._growing.statistics import LAYER_STATISTICS, new_statistic
from gromo.modules.growing_module import GrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.tools import compute_output_shape_conv
from gromo.utils.utils import get_correct_device


@public_path
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
    _fused_statistics = dict(LAYER_STATISTICS)

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
        width = _patch_width(in_channels, geometry.kernel_size, use_bias)
        super().__init__(
            layer=layer,
            tensor_s_shape=(width, width),
            tensor_m_shape=(width, out_channels),
            target_in_neurons=target_in_channels,
            initial_in_neurons=in_channels,
            **self._forwarded_arguments(locals()),
        )
        self.use_bias = use_bias
        self.kernel_size: tuple[int, int] = geometry.kernel_size
        self._input_size = None if input_size is None else tuple(int(s) for s in input_size)
        self._init_growth_state()

    def _init_growth_state(self) -> None:
        """Set up the state a growth scheme keeps beside the layer (none here); the last step of
        ``__init__``, so that the subclasses keep this class's signature."""

    # ----- geometry and sizes -------------------------------------------------------------

    @property
    def _geometry(self) -> gk.Conv2dGeometry:
        return _geometry_of(self.layer)

    in_neurons = attribute_property("layer.in_channels", "Number of input channels C.")
    in_channels = attribute_property("layer.in_channels", "C.")
    out_channels = attribute_property("layer.out_channels", "C_out.")
    out_features = attribute_property("layer.out_channels", "C_out.")
    stride = attribute_property("layer.stride", "Stride of the convolution.", _pair)
    dilation = attribute_property("layer.dilation", "Dilation of the convolution.", _pair)

    @property
    def in_features(self) -> int:
        """C·kh·kw (fan-in without bias)."""
        return _patch_width(self.layer.in_channels, self.kernel_size, bias=False)

    @property
    def padding(self) -> tuple[int, int]:
        """Padding of the convolution."""
        return _pair(self.layer.padding)

    @padding.setter
    def padding(self, value: int | tuple[int, int]) -> None:
        self.layer.padding = _pair(value)

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
        x = self._stored_input()
        if x is None:
            return None
        return (int(x.shape[-2]), int(x.shape[-1]))

    def _known_input_size(self) -> tuple[int, int] | None:
        """The recorded input size, else the one ``update_input_size()`` records; None if unknown."""
        return self._input_size if self._input_size is not None else self.update_input_size()

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
        size = self._known_input_size()
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
            return self._one_line_description(
                "Conv2dGrowingModule", in_channels=self.in_channels, out_channels=self.out_channels
            )
        return super().__str__(verbose=verbose)

    # ----- statistics -----------------------------------------------------------------------

    def _statistics_kwargs(self) -> dict[str, Any]:
        previous = self.previous_module
        kwargs: dict[str, Any] = {"cur": self._geometry}
        if isinstance(previous, Conv2dGrowingModule):
            kwargs["prev"] = previous._geometry
        return kwargs

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
        self._check_pre_activity_gradient()
        return self._layer_statistic("m")

    def _check_pre_activity_gradient(self) -> None:
        ensure(isinstance(self.pre_activity.grad, torch.Tensor),
               f"The gradient of the pre-activity must be a torch.Tensor (error in {self.name}).")

    def compute_covariance_loss_gradient_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,h,w} dA dAᵀ (C_out, C_out), n).

        Raises:
            AssertionError: pre-activation not stored or no gradient.
        """
        return self._gradient_covariance_sums()

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
            self._check_bias_presence(bias)
        _check_kernel(weight, self.layer)
        layer = _new_conv(
            int(weight.shape[1]), int(weight.shape[0]), self._geometry, bias is not None,
            device=weight.device, dtype=weight.dtype, initialise=False,
        )
        layer.weight = nn.Parameter(weight)
        if bias is not None:
            layer.bias = nn.Parameter(bias)
        return layer

    def _extended_weight(self, weight: torch.Tensor, dim: int) -> torch.Tensor:
        """W with ``weight`` appended along ``dim`` (1: new input channels, w (C_out, K, kh, kw);
        0: new output channels, w (K, C, kh, kw)), after GroMo's shape checks.

        Raises:
            AssertionError: wrong shape.
        """
        axis = 1 - dim  # the axis ``weight`` shares with W
        if dim == 1:
            name, size, side, shape = "out_channels", self.out_channels, "input", f"({self.out_channels}, K, kh, kw)"
        else:
            name, size, side, shape = "in_channels", self.in_channels, "output", f"(K, {self.in_channels}, kh, kw)"
        ensure(weight.ndim == 4 and weight.shape[axis] == size, lambda: (
            f"weight.shape[{axis}]={weight.shape[axis]!r} should be equal to {name}={size!r} (the {side} "
            f"extension must have shape {shape}, got {tuple(weight.shape)})"
        ))
        _check_kernel(weight, self.layer)
        old = self.layer.weight
        return torch.cat([old.detach(), weight.detach().to(old.device, old.dtype)], dim=dim)

    @torch.no_grad()
    def layer_in_extension(self, weight: torch.Tensor) -> None:
        """Append input channels: W ← [W, w] along dim 1, w (C_out, K, kh, kw); S and M recreated.

        Raises:
            AssertionError: wrong shape.
        """
        new_weight = self._extended_weight(weight, dim=1)
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
        new_weight = self._extended_weight(weight, dim=0)
        old = self.layer.weight
        if self.use_bias:
            self._check_extension_bias(weight, bias, (
                f"The bias of the extension should be provided because the layer has a bias ({self.name})"
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
        width = _patch_width(self.in_channels, self.kernel_size, self.use_bias)
        if input_changed:
            self._tensor_s = new_statistic(self, (width, width), self.compute_s_update, "S")
        else:
            self.covariance_loss_gradient = new_statistic(
                self, None, self.compute_covariance_loss_gradient_update, "E"
            )
        self.tensor_m = new_statistic(self, (width, self.out_channels), self.compute_m_update, "M")
        self._clear_statistics_cache()

    def get_fan_in_from_layer(self, layer: nn.Module | None = None, num_neurons: int | None = None) -> int:
        """in_channels·kh·kw of ``layer``, else ``num_neurons``·kh·kw with this layer's kernel.

        Raises:
            AssertionError: layer not an nn.Conv2d, or neither argument given.
        """
        source = self._fan_in_source(layer, num_neurons)
        if isinstance(source, nn.Module):
            return _patch_width(source.in_channels, _pair(source.kernel_size), bias=False)
        return _patch_width(source, self.kernel_size, bias=False)

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
