"""Normalisation layers whose feature (channel) count can grow (TINY, TMLR 2024).

A growing norm is an ordinary torch norm plus ``grow(k, ...)``: it appends ``k`` features whose
affine weight is 1, bias 0, running mean 0 and running variance 1 unless values are given, so that a
new channel ``c`` is normalised as ``(x_c − 0)/√(1 + eps)·1 + 0`` in eval mode. Growth happens through
``GrowingModule._apply_output_changes`` which calls ``post_layer_function.grow(extension_size)``.
``extended_forward(x, x_ext) = (norm(x), x_ext)``: the extension bypasses normalisation.

Differences from GroMo (deliberate): the batch norms also accept zero features (a block at hidden
width 0 carries a ``GrowingBatchNorm2d(0)``; torch's own batch norm raises IndexError on that), and
every new value is created in the dtype/device of the tensor it extends (float64 and CUDA end to end).
"""

from __future__ import annotations

from typing import Callable, Literal, TypedDict

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from gromo.utils._assertions import ensure

__all__ = [
    "NormalizationType",
    "NormKwargs",
    "CompleteNormKwargs",
    "base_norm_kwargs",
    "GrowingBatchNorm",
    "GrowingBatchNorm1d",
    "GrowingBatchNorm2d",
    "GrowingLayerNorm",
    "GrowingGroupNorm",
]

NormalizationType = Literal["batch", "group", "layer"]


# The norms' keyword arguments and their types, listed once for both TypedDicts below.
_NORM_KWARG_TYPES = {
    "eps": float,
    "momentum": float,
    "affine": bool,
    "track_running_stats": bool,
    "num_groups": int,
    "elementwise_affine": bool,
    "bias": bool,
}

NormKwargs = TypedDict("NormKwargs", _NORM_KWARG_TYPES, total=False)
NormKwargs.__doc__ = "Optional keyword arguments of the growing norms (any subset)."

CompleteNormKwargs = TypedDict("CompleteNormKwargs", _NORM_KWARG_TYPES)
CompleteNormKwargs.__doc__ = "Every keyword argument of the growing norms (the defaults live in ``base_norm_kwargs``)."


base_norm_kwargs: CompleteNormKwargs = {
    "eps": 1e-5,
    "momentum": 0.1,
    "affine": True,
    "track_running_stats": True,
    "num_groups": 1,
    "elementwise_affine": True,
    "bias": True,
}


def _check_additional(name: str, additional: int) -> None:
    if isinstance(additional, bool) or not isinstance(additional, int) or additional <= 0:
        raise ValueError(f"{name} must be positive, got {additional} (a positive int is expected)")


def _check_new_values(label: str, arg_name: str, values: torch.Tensor | None, leading: int,
                      trailing: tuple[int, ...] = (), by_count: bool = False) -> None:
    """Validate a user tensor of new values before anything is mutated.

    GroMo's texts: ``"{label} must have {leading} elements, got {n}"`` (``by_count``, the batch
    norms) or ``"{label} must have shape {required}, got {shape}"``, where ``label`` is GroMo's
    ``new_<parameter>`` name; the argument's own name follows when it differs.
    """
    if values is None:
        return
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{arg_name} must be a torch.Tensor or None, got {type(values).__name__}")
    shape = tuple(values.shape)
    argument = "" if arg_name == label else f" (argument {arg_name})"
    if by_count and (not shape or shape[0] != leading):
        got = shape[0] if shape else "a 0-d tensor"
        raise ValueError(f"{label} must have {leading} elements, got {got}{argument}; shape {shape}")
    if shape != (leading, *trailing):
        raise ValueError(f"{label} must have shape {(leading, *trailing)}, got {shape}{argument}")


def _extend(module: nn.Module, param_name: str, additional: int, new_values: torch.Tensor | None,
            default_value_fn: Callable[..., torch.Tensor], device: torch.device | None,
            as_parameter: bool) -> None:
    """Concatenate ``additional`` rows to ``module.<param_name>`` (no-op when it is None)."""
    current = getattr(module, param_name, None)
    if current is None:
        return
    target_device = current.device if device is None else torch.device(device)
    trailing = tuple(current.shape[1:])
    if new_values is None:
        new_values = default_value_fn((additional, *trailing), device=target_device, dtype=current.dtype)
    else:
        new_values = new_values.detach().to(device=target_device, dtype=current.dtype)
    with torch.no_grad():
        extended = torch.cat([current.detach().to(target_device), new_values], dim=0)
    if as_parameter:
        setattr(module, param_name, nn.Parameter(extended, requires_grad=current.requires_grad))
    else:
        # register_buffer replaces the buffer in place in _buffers (keeps persistence flags).
        module.register_buffer(param_name, extended, persistent=param_name not in module._non_persistent_buffers_set)


class _GrowingNormMixin:
    """``extended_forward`` and the name shared by every growing norm."""

    name: str
    # GroMo words a wrong new-values tensor by its element count for the batch norms, by shape otherwise.
    _new_values_by_count = False

    def extended_forward(self, x: torch.Tensor | None,
                         x_ext: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(norm(x), x_ext): the extension passes through un-normalised.

        Args:
            x: main input or None.
            x_ext: extension input (new channels before they are added) or None.
        Returns:
            (normalised x or None, x_ext unchanged).
        """
        return (self(x) if x is not None else None), x_ext

    def _extend_parameter(self, param_name: str, additional_features: int,
                          new_values: torch.Tensor | None, default_value_fn: Callable[..., torch.Tensor],
                          device: torch.device | None, as_parameter: bool = True) -> None:
        """Append ``additional_features`` rows to a parameter (``as_parameter``) or buffer.

        Args:
            param_name: attribute name ("weight", "bias", "running_mean", "running_var").
            additional_features: number of rows to append (> 0).
            new_values: (additional_features, ...) tensor or None for ``default_value_fn``.
            default_value_fn: factory like ``torch.ones(shape, device=, dtype=)``.
            device: target device (None = that of the current tensor).
            as_parameter: re-wrap as ``nn.Parameter`` (else registered as a buffer).
        Raises:
            ValueError: if ``new_values`` does not have ``additional_features`` rows.
        """
        _check_additional("additional_features", additional_features)
        current = getattr(self, param_name, None)
        trailing = tuple(current.shape[1:]) if current is not None else ()
        _check_new_values(f"new_{param_name}", "new_values", new_values, additional_features, trailing,
                          by_count=self._new_values_by_count)
        _extend(self, param_name, additional_features, new_values, default_value_fn, device, as_parameter)

    def get_growth_info(self) -> dict:
        """{"num_features": current feature count, "name": name}."""
        return {"num_features": self._growth_size(), "name": self.name}

    def _growth_size(self) -> int:
        raise NotImplementedError


class GrowingBatchNorm(_GrowingNormMixin, _BatchNorm):
    """Batch norm over ``num_features`` channels that can ``grow``: y = γ (x − μ)/√(σ² + eps) + β.

    Args:
        num_features: number of channels C (may be 0).
        eps, momentum, affine, track_running_stats, device, dtype: as ``torch.nn.BatchNorm*``.
        name: label reported by ``get_growth_info``/``extra_repr``.
    """

    _new_values_by_count = True

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None,
                 name: str = "growing_batch_norm") -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.name = name

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (torch's argument name)
        """Normalised input, (n, C, ...) -> same shape; zero channels pass through unchanged."""
        if self.num_features == 0 and input.ndim >= 2 and input.shape[1] == 0:
            # torch.batch_norm indexes channel 0 even for an empty channel axis.
            return input
        return super().forward(input)

    def _growth_size(self) -> int:
        return self.num_features

    def grow(self, additional_features: int, new_weights: torch.Tensor | None = None,
             new_biases: torch.Tensor | None = None, new_running_mean: torch.Tensor | None = None,
             new_running_var: torch.Tensor | None = None) -> None:
        """Append ``k = additional_features`` channels: γ←[γ; w or 1], β←[β; b or 0], μ←[μ; m or 0], σ²←[σ²; v or 1].

        ``num_batches_tracked`` is unchanged. All arguments are validated before any mutation.

        Args:
            additional_features: k > 0.
            new_weights, new_biases, new_running_mean, new_running_var: (k,) tensors or None.
        Raises:
            ValueError: if k <= 0 or a provided tensor's first dimension is not k.
            AssertionError: ``running_mean`` is None while ``track_running_stats`` is True.
        """
        _check_additional("additional_features", additional_features)
        for arg_name, values in (("new_weights", new_weights), ("new_biases", new_biases),
                                 ("new_running_mean", new_running_mean),
                                 ("new_running_var", new_running_var)):
            _check_new_values(arg_name, arg_name, values, additional_features, by_count=True)
        ensure(not self.track_running_stats or self.running_mean is not None,
               "running_mean is not initialized while track_running_stats is True")
        device = self._current_device()
        if self.affine:
            _extend(self, "weight", additional_features, new_weights, torch.ones, device, True)
            _extend(self, "bias", additional_features, new_biases, torch.zeros, device, True)
        if self.track_running_stats:
            _extend(self, "running_mean", additional_features, new_running_mean, torch.zeros, device, False)
            _extend(self, "running_var", additional_features, new_running_var, torch.ones, device, False)
        self.num_features += additional_features

    def _current_device(self) -> torch.device | None:
        for tensor in (self.weight, self.running_mean):
            if tensor is not None:
                return tensor.device
        return None

    def extra_repr(self) -> str:
        """torch's batch-norm description plus the name."""
        return f"{super().extra_repr()}, name={self.name}"


class GrowingBatchNorm1d(GrowingBatchNorm, nn.BatchNorm1d):
    """Growing batch norm for (n, C) or (n, C, L) inputs; an ``nn.BatchNorm1d`` (``GrowingBatchNorm``'s constructor)."""


class GrowingBatchNorm2d(GrowingBatchNorm, nn.BatchNorm2d):
    """Growing batch norm for (n, C, H, W) inputs; an ``nn.BatchNorm2d`` (``GrowingBatchNorm``'s constructor)."""


class GrowingLayerNorm(_GrowingNormMixin, nn.LayerNorm):
    """Layer norm over ``normalized_shape`` whose FIRST normalised dimension can grow.

    y = γ ⊙ (x − mean)/√(var + eps) + β over the trailing ``normalized_shape`` dims; γ, β have
    shape ``normalized_shape``.

    Args:
        normalized_shape: int or tuple; the first entry is the one that grows.
        eps, elementwise_affine, bias, device, dtype: as ``torch.nn.LayerNorm``.
        name: label.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None, name: str = "growing_layer_norm") -> None:
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine, bias=bias,
                         device=device, dtype=dtype)
        self.name = name

    def _growth_size(self) -> int:
        return self.normalized_shape[0]

    def grow(self, additional_first_dim: int, new_weights: torch.Tensor | None = None,
             new_biases: torch.Tensor | None = None) -> None:
        """normalized_shape[0] += k; γ ← [γ; w or 1], β ← [β; b or 0] along dim 0.

        Args:
            additional_first_dim: k > 0.
            new_weights, new_biases: (k, *normalized_shape[1:]) tensors or None.
        Raises:
            ValueError: if k <= 0 or a provided tensor has the wrong shape.
        """
        _check_additional("additional_first_dim", additional_first_dim)
        trailing = tuple(self.normalized_shape[1:])
        _check_new_values("new_weight", "new_weights", new_weights, additional_first_dim, trailing)
        _check_new_values("new_bias", "new_biases", new_biases, additional_first_dim, trailing)
        _extend(self, "weight", additional_first_dim, new_weights, torch.ones, None, True)
        _extend(self, "bias", additional_first_dim, new_biases, torch.zeros, None, True)
        self.normalized_shape = (self.normalized_shape[0] + additional_first_dim, *trailing)

    def get_growth_info(self) -> dict:
        """{"num_features": normalized_shape[0], "normalized_shape": shape, "name": name}."""
        info = super().get_growth_info()
        info["normalized_shape"] = tuple(self.normalized_shape)
        return info

    def extra_repr(self) -> str:
        """torch's layer-norm description plus the name."""
        return f"{super().extra_repr()}, name={self.name}"


class GrowingGroupNorm(_GrowingNormMixin, nn.GroupNorm):
    """Group norm over ``num_channels`` channels in ``num_groups`` groups; channels can grow.

    Args:
        num_groups: G, must divide num_channels.
        num_channels: C.
        eps, affine, device, dtype: as ``torch.nn.GroupNorm``.
        name: label.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, name: str = "growing_group_norm") -> None:
        super().__init__(num_groups, num_channels, eps=eps, affine=affine, device=device, dtype=dtype)
        self.name = name

    def _growth_size(self) -> int:
        return self.num_channels

    def grow(self, additional_channels: int, new_weights: torch.Tensor | None = None,
             new_biases: torch.Tensor | None = None, new_num_groups: int | None = None) -> None:
        """num_channels += k (optionally num_groups ← new_num_groups); γ ← [γ; w or 1], β ← [β; b or 0].

        Args:
            additional_channels: k > 0.
            new_weights, new_biases: (k,) tensors or None.
            new_num_groups: new group count or None to keep it.
        Raises:
            ValueError: if k <= 0, a provided tensor has the wrong shape, or the new channel count
                is not divisible by the group count.
        """
        _check_additional("additional_channels", additional_channels)
        _check_new_values("new_weight", "new_weights", new_weights, additional_channels)
        _check_new_values("new_bias", "new_biases", new_biases, additional_channels)
        groups = self.num_groups if new_num_groups is None else new_num_groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"new_num_groups must be a positive int, got {new_num_groups!r}")
        channels = self.num_channels + additional_channels
        if channels % groups != 0:
            raise ValueError(
                f"After growth: num_channels ({channels}) must be divisible by num_groups ({groups}). "
                "(Pass new_num_groups.)"
            )
        if self.affine:
            _extend(self, "weight", additional_channels, new_weights, torch.ones, None, True)
            _extend(self, "bias", additional_channels, new_biases, torch.zeros, None, True)
        self.num_channels = channels
        self.num_groups = groups

    def get_growth_info(self) -> dict:
        """{"num_features": C, "num_channels": C, "num_groups": G, "name": name}."""
        info = super().get_growth_info()
        info["num_channels"] = self.num_channels
        info["num_groups"] = self.num_groups
        return info

    def extra_repr(self) -> str:
        """torch's group-norm description plus the name."""
        return f"{super().extra_repr()}, name={self.name}"
