"""GroMo's ``gromo.containers.vgg``: VGG networks whose convolution and classifier widths grow.

    x (n, C, H, W) → features (stages of 3×3 growing convs, each stage ended by a 2×2 max-pool)
      → AdaptiveAvgPool2d(final) → flatten → classifier (growing linears, dropout between) → logits

A configuration ``cfg`` lists conv widths and ``"M"`` (pool); ``target_cfg`` the widths they grow
to. Inside a stage conv j > 0 grows its input channels (= conv j−1's outputs) when its target is
larger; every classifier layer after the first grows its inputs likewise. Layer names follow
torchvision's positions: ``features.{k}.convs.{j}.conv`` and ``classifier.{3i}``.

``init_full_vgg_structure`` builds VGG-11 by default (convs per stage 1, 1, 2, 2, 2; targets 64,
128, 256, 512, 512) starting every conv but the last of a stage at ``ceil(target·reduction_factor)``
channels and the hidden classifier layers at ``ceil(fc_layer_width·reduction_factor)``; with
``normalization=None, reduction_factor=None`` it is torchvision's VGG-11.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from gromo.containers._normalization import complete_norm_kwargs, growing_norm
from gromo.containers._stage_widths import stage_widths
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_module import GrowingModule
from gromo.modules.growing_normalisation import NormKwargs
from gromo.modules.linear_growing_module import LinearGrowingModule

__all__ = ["VGG", "VggNormalizationType", "init_full_vgg_structure"]

VggNormalizationType = Literal["batch", "group"]


class _VGGStageBlock(nn.Module):
    """The convolutions of one stage, chained (conv j's ``previous_module`` is conv j−1).

    Args:
        in_channels: channels entering the stage.
        stage_channels: current output channels of each conv.
        target_stage_channels: target output channels of each conv.
        build_post_conv_layers: channels → the function after a conv (norm and activation).
        growing_conv_type: growing convolution class.
        name: the stage's name (``features.{k}``).
        device: device.
    Raises:
        ValueError: lengths differ, or no convolution.
    """

    def __init__(self, in_channels: int, stage_channels: Sequence[int], target_stage_channels: Sequence[int],
                 build_post_conv_layers: Callable[[int], nn.Module], growing_conv_type: type[Conv2dGrowingModule],
                 name: str, device: torch.device) -> None:
        if len(stage_channels) != len(target_stage_channels):
            raise ValueError("stage_channels and target_stage_channels must have the same length.")
        if not stage_channels:
            raise ValueError("A VGG stage must contain at least one convolution.")
        super().__init__()
        self.convs = nn.ModuleList()
        channels = in_channels
        for j, out_channels in enumerate(stage_channels):
            self.convs.append(growing_conv_type(
                channels, out_channels, kernel_size=3, padding=1, use_bias=True,
                previous_module=None if j == 0 else self.convs[j - 1],
                post_layer_function=build_post_conv_layers(out_channels), allow_growing=j > 0,
                target_in_channels=None if j == 0 else target_stage_channels[j - 1],
                name=f"{name}.convs.{j}.conv", device=device,
            ))
            channels = out_channels
        for previous, following in zip(self.convs[:-1], self.convs[1:]):
            previous.next_module = following

    @property
    def growing_modules(self) -> list[Conv2dGrowingModule]:
        """Every convolution of the stage."""
        return list(self.convs)

    @property
    def growable_layers(self) -> list[Conv2dGrowingModule]:
        """The convolutions whose input channels are below their target."""
        return [conv for j, conv in enumerate(self.convs)
                if j > 0 and conv.target_in_neurons is not None and conv.target_in_neurons > conv.in_channels]

    @property
    def out_channels(self) -> int:
        """Output channels of the stage (its last convolution's)."""
        return self.convs[-1].out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C_in, H, W) → (n, C_out, H, W)."""
        for conv in self.convs:
            x = conv(x)
        return x

    def extended_forward(self, x: torch.Tensor,
                         x_ext: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The pair (main, extension) through every conv's ``extended_forward``."""
        for conv in self.convs:
            x, x_ext = conv.extended_forward(x, x_ext)
        return x, x_ext


def _stages_of(cfg: Sequence[str | int]) -> list[tuple[list[int], bool]]:
    """cfg → [(conv widths of the stage, ends with a pool)]."""
    stages: list[tuple[list[int], bool]] = []
    current: list[int] = []
    for entry in cfg:
        if entry == "M":
            stages.append((current, True))
            current = []
        else:
            current.append(int(entry))
    if current:
        stages.append((current, False))
    return stages


class VGG(SequentialGrowingModel):
    """A VGG network with growable convolutions and classifier layers.

    Args:
        cfg: conv widths and "M" (2×2 max-pool, ending a stage).
        target_cfg: target widths, same pooling structure (default ``cfg``).
        in_features: input channels.
        activation: deep-copied after every conv and hidden classifier layer.
        normalization: "batch", "group" or None (growing norms after the convs).
        normalization_kwargs: overrides of ``base_norm_kwargs``.
        num_classes: outputs.
        init_weights: kaiming-normal convs, N(0, 0.01²) linears, zero biases, unit norms.
        dropout: dropout rate between classifier layers.
        number_of_fc_layers: classifier layers (≥ 1).
        fc_layer_width: target width of the hidden classifier layers.
        initial_fc_layer_width: their current width (default ``fc_layer_width``).
        input_spatial_shape: (H, W) of the inputs: the average pool then outputs the size the
            pools leave; None: (7, 7) as torchvision.
        device: device.
        growing_conv_type: growing convolution class.
    Raises:
        ValueError: a non-positive size, unknown normalisation, or ``target_cfg`` not matching
            ``cfg``'s length and pooling structure.
    """

    def __init__(
        self,
        cfg: list[str | int],
        target_cfg: list[str | int] | None = None,
        in_features: int = 3,
        activation: nn.Module = nn.ReLU(inplace=True),
        normalization: VggNormalizationType | None = "batch",
        normalization_kwargs: NormKwargs | None = None,
        num_classes: int = 1000,
        init_weights: bool = True,
        dropout: float = 0.5,
        number_of_fc_layers: int = 3,
        fc_layer_width: int = 4096,
        initial_fc_layer_width: int | None = None,
        input_spatial_shape: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        growing_conv_type: type[Conv2dGrowingModule] = RestrictedConv2dGrowingModule,
    ) -> None:
        super().__init__(in_features=in_features, out_features=num_classes, device=device)
        if number_of_fc_layers <= 0:
            raise ValueError(f"number_of_fc_layers must be > 0, got {number_of_fc_layers}.")
        if fc_layer_width <= 0:
            raise ValueError(f"fc_layer_width must be > 0, got {fc_layer_width}.")
        if initial_fc_layer_width is not None and initial_fc_layer_width <= 0:
            raise ValueError(f"initial_fc_layer_width must be > 0, got {initial_fc_layer_width}.")
        if normalization not in ("batch", "group", None):
            raise ValueError(f"normalization must be 'batch', 'group' or None, got {normalization!r}.")
        target_cfg = list(cfg) if target_cfg is None else list(target_cfg)
        for entry, target in zip(cfg, target_cfg, strict=True):
            if (entry == "M") != (target == "M"):
                raise ValueError("target_cfg must match cfg pooling structure exactly.")
        self.normalization = normalization
        self.normalization_kwargs = complete_norm_kwargs(normalization_kwargs)
        self.activation = activation

        def post_conv(channels: int) -> nn.Module:
            norm = growing_norm(normalization, channels, self.normalization_kwargs, self.device)
            act = copy.deepcopy(activation)
            return act if norm is None else nn.Sequential(norm, act)

        self.features = nn.Sequential()
        self.stage_blocks: list[_VGGStageBlock] = []
        channels, target_channels = in_features, in_features
        spatial = None if input_spatial_shape is None else tuple(int(s) for s in input_spatial_shape)
        for (widths, pooled), (targets, _) in zip(_stages_of(cfg), _stages_of(target_cfg)):
            block = _VGGStageBlock(channels, widths, targets, post_conv, growing_conv_type,
                                   name=f"features.{len(self.features)}", device=self.device)
            self.features.append(block)
            self.stage_blocks.append(block)
            channels, target_channels = widths[-1], targets[-1]
            if pooled:
                self.features.append(nn.MaxPool2d(kernel_size=2, stride=2))
                if spatial is not None:
                    spatial = (spatial[0] // 2, spatial[1] // 2)
        self.final_spatial_shape = (7, 7) if spatial is None else spatial
        self.avgpool = nn.AdaptiveAvgPool2d(self.final_spatial_shape)
        self.flatten = nn.Flatten(1)

        area = math.prod(self.final_spatial_shape)
        hidden = fc_layer_width if initial_fc_layer_width is None else initial_fc_layer_width
        last_conv = self.stage_blocks[-1].convs[-1]
        self.classifier = nn.ModuleList()
        growable_linears = []
        in_width, target_in = channels * area, target_channels * area
        for i in range(number_of_fc_layers):
            last = i == number_of_fc_layers - 1
            grows = i > 0 and target_in > in_width
            layer = LinearGrowingModule(
                in_width, num_classes if last else hidden,
                post_layer_function=nn.Identity() if last else copy.deepcopy(activation),
                previous_module=last_conv if i == 0 else self.classifier[-2], allow_growing=grows,
                target_in_features=target_in, name=f"classifier.{3 * i}", device=self.device,
            )
            if i > 0:
                self.classifier[-2].next_module = layer
            self.classifier.append(layer)
            if not last:
                self.classifier.append(nn.Dropout(dropout))
            if grows:
                growable_linears.append(layer)
            in_width, target_in = hidden, fc_layer_width
        self._growable_layers = [conv for block in self.stage_blocks for conv in block.growable_layers]
        self._growable_layers += growable_linears
        if init_weights:
            self._initialize_weights()
        self.set_growing_layers("all")

    def _feature_growing_modules(self) -> list[Conv2dGrowingModule]:
        return [conv for block in self.stage_blocks for conv in block.growing_modules]

    def _classifier_growing_modules(self) -> list[LinearGrowingModule]:
        return [layer for layer in self.classifier if isinstance(layer, GrowingModule)]

    def _initialize_weights(self) -> None:
        with torch.no_grad():
            for conv in self._feature_growing_modules():
                nn.init.kaiming_normal_(conv.layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(conv.layer.bias)
                post = conv.post_layer_function
                for module in post if isinstance(post, nn.Sequential) else [post]:
                    if getattr(module, "weight", None) is not None:
                        nn.init.ones_(module.weight)
                    if getattr(module, "bias", None) is not None:
                        nn.init.zeros_(module.bias)
            for layer in self._classifier_growing_modules():
                nn.init.normal_(layer.layer.weight, 0.0, 0.01)
                nn.init.zeros_(layer.layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """logits: (n, C, H, W) → (n, num_classes)."""
        x = self.flatten(self.avgpool(self.features(x)))
        for module in self.classifier:
            x = module(x)
        return x

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every pending update at its current scaling: (n, C, H, W) → (n, num_classes).

        Pools, flatten and dropouts act on the main tensor and, separately, on the extension.
        ``mask`` is accepted for GroMo compatibility and ignored.
        """
        x_ext = None

        def both(function: nn.Module) -> None:
            nonlocal x, x_ext
            x = function(x)
            x_ext = None if x_ext is None else function(x_ext)

        for module in self.features:
            if isinstance(module, _VGGStageBlock):
                x, x_ext = module.extended_forward(x, x_ext)
            else:
                both(module)
        both(self.avgpool)
        both(self.flatten)
        for module in self.classifier:
            if isinstance(module, GrowingModule):
                x, x_ext = module.extended_forward(x, x_ext)
            else:
                both(module)
        return x


def _reduce_growing_conv_widths(stage_hidden_per_block: tuple[int, ...],
                                reduction_factor: float | None) -> tuple[int, ...]:
    """Current widths of a stage: its last conv keeps its target, the others ``ceil(target·rf)``.

    Args:
        stage_hidden_per_block: target widths of the stage's convs.
        reduction_factor: in (0, 1], or None (no reduction).
    Returns:
        tuple of the same length.
    """
    if reduction_factor is None:
        return tuple(stage_hidden_per_block)
    reduced = [math.ceil(width * reduction_factor) for width in stage_hidden_per_block[:-1]]
    return (*reduced, stage_hidden_per_block[-1])


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}.")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}.")


def _convs_per_stage(number_of_conv_per_stage: int | tuple[int, ...], nb_stages: int) -> tuple[int, ...]:
    if isinstance(number_of_conv_per_stage, int) and not isinstance(number_of_conv_per_stage, bool):
        counts: tuple = (number_of_conv_per_stage,) * nb_stages
    elif isinstance(number_of_conv_per_stage, (list, tuple)) and len(number_of_conv_per_stage) == nb_stages:
        counts = tuple(number_of_conv_per_stage)
    else:
        raise TypeError(f"number_of_conv_per_stage must be an int or a tuple of {nb_stages} ints.")
    for stage, count in enumerate(counts):
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"Stage {stage}: number_of_conv_per_stage must contain ints, got {type(count).__name__}.")
        if count <= 0:
            raise ValueError(f"Stage {stage}: number_of_conv_per_stage must be > 0, got {count}.")
    return counts


def _target_widths(hidden_channels: tuple[int | tuple[int, ...], ...] | None,
                   counts: tuple[int, ...]) -> list[tuple[int, ...]]:
    targets = []
    for stage, widths in enumerate(stage_widths(hidden_channels, counts, "number_of_conv_per_stage",
                                                lambda stage: 64 * min(2**stage, 8), accept_bool=False)):
        for block, width in enumerate(widths):
            if isinstance(width, bool) or not isinstance(width, int):
                raise TypeError(
                    f"Stage {stage} Block {block}: hidden_channels must contain ints, got {type(width).__name__}."
                )
            if width <= 0:
                raise ValueError(f"Stage {stage} Block {block}: hidden_channels must be > 0, got {width}.")
        targets.append(widths)
    return targets


def init_full_vgg_structure(
    input_shape: tuple[int, int, int] = (3, 224, 224),
    in_features: int | None = None,
    out_features: int = 1000,
    device: torch.device | str | None = None,
    activation: nn.Module = nn.ReLU(inplace=True),
    normalization: VggNormalizationType | None = "batch",
    normalization_kwargs: NormKwargs | None = None,
    hidden_channels: tuple[int | tuple[int, ...], ...] | None = None,
    number_of_conv_per_stage: int | tuple[int, ...] = (1, 1, 2, 2, 2),
    nb_stages: int = 5,
    init_weights: bool = True,
    dropout: float = 0.5,
    number_of_fc_layers: int = 3,
    fc_layer_width: int = 4096,
    reduction_factor: float | None = 1 / 32,
    growing_conv_type: type[Conv2dGrowingModule] = RestrictedConv2dGrowingModule,
) -> VGG:
    """A VGG (VGG-11 by default) started narrow, whose growable layers grow toward the targets.

    Args:
        input_shape: (C, H, W) of the inputs (the average pool adapts to H, W).
        in_features: input channels (default C).
        out_features: classes.
        hidden_channels: target widths per stage (an int for the whole stage or one per conv);
            default ``64·min(2^s, 8)``.
        number_of_conv_per_stage: an int (every stage) or one int per stage.
        nb_stages: number of stages.
        reduction_factor: initial width fraction (None: start at the targets).
        Others: as :class:`VGG`.
    Returns:
        the network.
    Raises:
        ValueError, TypeError: malformed arguments (checked in GroMo's order, before building).
    """
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be a sequence of length 3 (C, H, W), got {input_shape}.")
    _check_positive_int("number_of_fc_layers", number_of_fc_layers)
    _check_positive_int("fc_layer_width", fc_layer_width)
    if reduction_factor is not None:
        if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, (float, int)):
            raise TypeError(
                f"reduction_factor must be a float, int, or None, got {type(reduction_factor).__name__}."
            )
        if not 0 < reduction_factor <= 1:
            raise ValueError(f"reduction_factor must satisfy 0 < reduction_factor <= 1, got {reduction_factor}.")
    counts = _convs_per_stage(number_of_conv_per_stage, nb_stages)
    targets = _target_widths(hidden_channels, counts)
    cfg: list[str | int] = []
    target_cfg: list[str | int] = []
    for stage_targets in targets:
        cfg += [*_reduce_growing_conv_widths(stage_targets, reduction_factor), "M"]
        target_cfg += [*stage_targets, "M"]
    initial_fc = fc_layer_width if reduction_factor is None else math.ceil(fc_layer_width * reduction_factor)
    return VGG(
        cfg, target_cfg=target_cfg, in_features=input_shape[0] if in_features is None else in_features,
        activation=activation, normalization=normalization, normalization_kwargs=normalization_kwargs,
        num_classes=out_features, init_weights=init_weights, dropout=dropout,
        number_of_fc_layers=number_of_fc_layers, fc_layer_width=fc_layer_width, initial_fc_layer_width=initial_fc,
        input_spatial_shape=tuple(input_shape[1:]), device=device, growing_conv_type=growing_conv_type,
    )
