"""``Conv2dMergeGrowingModule``: the merge of growing convolutions (its input is the sum of their outputs).

It keeps S of its activity unfolded with the next convolution's geometry, and the previous S / M
over its predecessors' unfolded inputs, for the predecessors' optimal deltas.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules._attribute_property import attribute_property
from gromo.modules._conv2d._public_path import public_path
from gromo.modules._conv2d.layers import _linear_types, _pair, _patch_width, _unfold_with
from gromo.modules._conv2d.module import Conv2dGrowingModule
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure


@public_path
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
        width = _patch_width(in_channels, self.kernel_size, bias=True)
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

    out_channels = attribute_property("in_channels", "= in_channels.")
    in_features = attribute_property("in_channels", "= in_channels.")
    out_features = attribute_property("in_channels", "= in_channels.")
    output_size = attribute_property("input_size", "(H, W) of the activity (a merge keeps the grid).")

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
        return _unfold_with(self.activity, self._geometry, self.use_bias)

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
            if isinstance(module, (Conv2dGrowingModule, Conv2dMergeGrowingModule)):
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
        previous_modules = self._checked_previous_modules(
            previous_modules, (Conv2dGrowingModule, Conv2dMergeGrowingModule),
            "The previous modules must be Conv2dGrowingModule or Conv2dMergeGrowingModule.",
        )
        self._store_previous_modules(previous_modules)
        first = previous_modules[0] if previous_modules else None
        if self.input_size is None and isinstance(first, Conv2dGrowingModule) and first._known_input_size() is not None:
            self.input_size = (first.out_width, first.out_height)

    def _previous_size_mismatch(self, module: GrowingModule | MergeGrowingModule) -> str | None:
        if module.out_channels != self.in_channels:
            return (
                "The input channels must match the output channels of the previous modules. "
                f"({getattr(module, 'name', module)} has {module.out_channels} output channels, "
                f"expected in_channels={self.in_channels}.)"
            )
        if isinstance(module, Conv2dGrowingModule) and self.input_size is not None:
            volume = module.output_volume if module._known_input_size() is not None else None
            input_volume = self.input_volume
            if volume is not None and volume != input_volume:
                return (
                    f"The output volume of the previous modules {volume} should match the input "
                    f"volume {input_volume=}. ({module.name})"
                )
        return None

    def update_size(self) -> None:
        """Follow the predecessors' channels; recreate statistics whose declared shape changed.

        S is declared ``(C·kh·kw + use_bias)²`` (``use_bias`` may be set to False, as in GroMo).
        """
        if self.previous_modules:
            self.in_channels = self.previous_modules[0].out_channels
        self._resize_statistics(_patch_width(self.in_channels, self.kernel_size, self.use_bias))
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
        self._check_has_previous_modules()
        blocks = [module.unfolded_extended_input for module in self._growing_predecessors()]
        return torch.cat(blocks, dim=1)

    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ_{i,l} Ũ Ũᵀ, n) of the activity unfolded with the next geometry: (C·kh·kw+use_bias)².

        Raises:
            AssertionError: the activity is not stored.
        """
        return self._activity_sums(
            "The activity must be stored to compute the update of S. (error in {name})",
            lambda activity: gk.conv2d_input_cov(activity, self._geometry, bias=self.use_bias),
        )

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
