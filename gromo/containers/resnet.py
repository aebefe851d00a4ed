"""GroMo's ``gromo.containers.resnet``: ResNets whose residual blocks grow their hidden channels.

    x (n, C, H, W) → pre_net → stage 0 → … → stage S−1 → post_net → logits (n, out)

Stage i maps ``inplanes·2^{max(0,i−1)}`` to ``inplanes·2^i`` channels (stride 2 except in stage 0,
and stage 1 with ``skip_first_downsample``); each of its blocks is a ``Conv2dGrowingBlock``
``x ↦ downsample(x) + conv₂(mid(conv₁(pre(x))))`` whose hidden width (conv₁'s outputs) grows toward
the stage width, starting from a few channels (or none). Two layouts:

* pre-activation (default): ``pre = norm-act(in)``, the downsample has its own norm-act, and
  ``post_net`` starts with norm-act;
* classical: norm-act after the stem convolution, ``norm(out)`` before the addition, an activation
  after it.

``init_full_resnet_structure`` builds ResNet-18 (2 blocks per stage) or other layouts with hidden
widths ``ceil(stage width · reduction_factor)``. With ``reduction_factor=1`` the network is
torchvision's ResNet-18 (11 689 512 parameters, classical) or its pre-activation variant.

Deliberate difference from GroMo: the network grows all its blocks by default
(``set_growing_layers("all")`` at construction, blocks appended later included); GroMo leaves
``_growing_layers`` empty until ``set_growing_layers`` is called, so that its container methods
silently do nothing.
"""

from __future__ import annotations

import inspect
import math
from typing import Literal

import torch
from torch import nn

from gromo.containers._normalization import complete_norm_kwargs, growing_norm, norm
from gromo.containers._stage_widths import stage_widths
from gromo.containers.growing_block import Conv2dGrowingBlock, GrowingBlock
from gromo.containers.growing_container import forward_through_blocks
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_dropout import GrowingDropout2d
from gromo.modules.growing_normalisation import NormKwargs
from gromo.utils._assertions import ensure

__all__ = ["ResNetBasicBlock", "ResNetNormalizationType", "init_full_resnet_structure"]

ResNetNormalizationType = Literal["batch", "group"]


class ResNetBasicBlock(SequentialGrowingModel):
    """A whole ResNet of growing basic blocks (one block per stage; more via ``append_block``).

    Args:
        in_features: input channels C.
        out_features: classes.
        device: device.
        activation: the activation, one instance used everywhere.
        dropout_rate: channel dropout after each block's mid activation.
        input_block_kernel_size: kernel of each block's first convolution (padding 1).
        output_block_kernel_size: kernel of each block's second convolution (padding 1).
        hidden_channels: initial hidden channels of each stage's first block (its length is the
            number of stages S).
        small_inputs: 3×3/s1 stem without max-pool (CIFAR) instead of 7×7/s2 + max-pool.
        skip_first_downsample: stride 1 in stage 1.
        inplanes: channels after the stem (stage 0 width).
        use_preactivation: pre-activation layout (else classical).
        normalization: "batch", "group" or None.
        normalization_kwargs: overrides of ``base_norm_kwargs``.
        growing_conv_type: ``RestrictedConv2dGrowingModule`` or ``FullConv2dGrowingModule``.
    Raises:
        ValueError: unknown ``normalization``.
    """

    def __init__(
        self,
        in_features: int = 3,
        out_features: int = 1000,
        device: torch.device | str | None = None,
        activation: nn.Module = nn.ReLU(),
        dropout_rate: float = 0.0,
        input_block_kernel_size: int = 3,
        output_block_kernel_size: int = 3,
        hidden_channels: tuple[int, ...] = (0, 0, 0, 0),
        small_inputs: bool = False,
        skip_first_downsample: bool = False,
        inplanes: int = 64,
        use_preactivation: bool = True,
        normalization: ResNetNormalizationType | None = "batch",
        normalization_kwargs: NormKwargs | None = None,
        growing_conv_type: type[Conv2dGrowingModule] = RestrictedConv2dGrowingModule,
    ) -> None:
        super().__init__(in_features=in_features, out_features=out_features, device=device)
        if normalization not in ("batch", "group", None):
            raise ValueError(f"normalization must be 'batch', 'group', or None, got {normalization!r}.")
        self.activation = activation.to(self.device)
        self.dropout_rate = dropout_rate
        self.input_block_kernel_size = input_block_kernel_size
        self.output_block_kernel_size = output_block_kernel_size
        self.small_inputs = small_inputs
        self.skip_first_downsample = skip_first_downsample
        self.inplanes = inplanes
        self.use_preactivation = use_preactivation
        self.normalization = normalization
        self.normalization_kwargs = complete_norm_kwargs(normalization_kwargs)
        self.growing_conv_type = growing_conv_type

        stem: list[nn.Module] = [
            nn.Conv2d(in_features, inplanes, kernel_size=3, stride=1, padding=1, bias=False, device=self.device)
            if small_inputs else
            nn.Conv2d(in_features, inplanes, kernel_size=7, stride=2, padding=3, bias=False, device=self.device)
        ]
        if not use_preactivation:
            stem += self._norm_act(inplanes)
        if not small_inputs:
            stem.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        self.pre_net = nn.Sequential(*stem)

        self.stages = nn.ModuleList()
        for stage_index, hidden in enumerate(hidden_channels):
            stage_in = inplanes * 2 ** max(0, stage_index - 1)
            stage_out = inplanes * 2**stage_index
            first_stage = stage_index == 0 or (skip_first_downsample and stage_index == 1)
            block = self._create_block(
                stage_in, stage_out, hidden, stride=1 if first_stage else 2, downsample=stage_index > 0,
                name=f"Stage {stage_index} Block 0", input_kernel=input_block_kernel_size,
                output_kernel=output_block_kernel_size,
            )
            stage: list[nn.Module] = [block]
            if not use_preactivation:
                stage.append(self.activation)
            self.stages.append(nn.Sequential(*stage))
            self._growable_layers.append(block)

        final = inplanes * 2 ** (len(hidden_channels) - 1)
        head: list[nn.Module] = self._norm_act(final) if use_preactivation else []
        head += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(final, out_features, device=self.device)]
        self.post_net = nn.Sequential(*head)
        self.set_growing_layers("all")

    # ----- builders ---------------------------------------------------------------------------

    def _norm(self, channels: int) -> list[nn.Module]:
        layer = norm(self.normalization, channels, self.normalization_kwargs, self.device)
        return [] if layer is None else [layer]

    def _norm_act(self, channels: int) -> list[nn.Module]:
        return [*self._norm(channels), self.activation]

    def _growing_norm_act(self, channels: int) -> list[nn.Module]:
        layer = growing_norm(self.normalization, channels, self.normalization_kwargs, self.device)
        return ([] if layer is None else [layer]) + [self.activation]

    def _create_block(self, in_channels: int, out_channels: int, hidden_channels: int, stride: int,
                      downsample: bool, name: str, input_kernel: int, output_kernel: int) -> Conv2dGrowingBlock:
        """One growing basic block in → hidden → out (hidden grows toward ``out_channels``)."""
        if self.use_preactivation:
            pre_activation: nn.Module = nn.Sequential(*self._norm_act(in_channels))
            pre_addition: nn.Module = nn.Identity()
            shortcut: nn.Module = (
                nn.Sequential(*self._norm_act(in_channels),
                              nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, device=self.device))
                if downsample else nn.Identity()
            )
        else:
            pre_activation = nn.Identity()
            norms = self._norm(out_channels)
            pre_addition = norms[0] if norms else nn.Identity()
            shortcut = (
                nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, device=self.device),
                              *self._norm(out_channels))
                if downsample else nn.Identity()
            )
        mid_activation = nn.Sequential(*self._growing_norm_act(hidden_channels), GrowingDropout2d(self.dropout_rate))
        return Conv2dGrowingBlock(
            in_channels, out_channels, hidden_channels=hidden_channels, target_hidden_channels=out_channels,
            pre_activation=pre_activation, mid_activation=mid_activation, pre_addition_function=pre_addition,
            name=name, downsample=shortcut, growing_conv_type=self.growing_conv_type, device=self.device,
            kwargs_first_layer={"kernel_size": input_kernel, "padding": 1, "use_bias": False, "stride": stride},
            kwargs_second_layer={"kernel_size": output_kernel, "padding": 1, "use_bias": False, "stride": 1},
        )

    def append_block(self, stage_index: int = 0, input_block_kernel_size: int | None = None,
                     output_block_kernel_size: int | None = None, hidden_channels: int = 0) -> None:
        """Append a block ``Stage {s} Block {k}`` (width-preserving, stride 1) to a stage; it grows too.

        Args:
            stage_index: the stage.
            input_block_kernel_size, output_block_kernel_size: kernels (default: the network's).
            hidden_channels: initial hidden channels.
        Raises:
            AssertionError: classical layout with ``hidden_channels <= 0``.
            IndexError: no such stage.
        """
        if not self.use_preactivation:
            ensure(hidden_channels > 0,
                         "As you are using the classical ResNet, hidden_channels must be greater than 0.")
        if not 0 <= stage_index < len(self.stages):
            raise IndexError(f"Stage {stage_index} is out of range. There are {len(self.stages)} stages.")
        stage = self.stages[stage_index]
        blocks = [module for module in stage if isinstance(module, GrowingBlock)]
        channels = blocks[-1].out_features
        block = self._create_block(
            channels, channels, hidden_channels, stride=1, downsample=False,
            name=f"Stage {stage_index} Block {len(blocks)}",
            input_kernel=self.input_block_kernel_size if input_block_kernel_size is None else input_block_kernel_size,
            output_kernel=(self.output_block_kernel_size if output_block_kernel_size is None
                           else output_block_kernel_size),
        )
        stage.append(block)
        if not self.use_preactivation:
            stage.append(self.activation)
        self._growable_layers.append(block)

    # ----- forward ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """logits = post_net(stages(pre_net(x))): (n, C, H, W) → (n, out)."""
        return forward_through_blocks(x, self.pre_net, self.stages, self.post_net)

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every block's pending update at its current scaling: (n, C, H, W) → (n, out).

        ``mask`` is accepted for GroMo compatibility and ignored.
        """
        x = self.pre_net(x)
        for stage in self.stages:
            for module in stage:
                x = module.extended_forward(x) if isinstance(module, GrowingBlock) else module(x)
        return self.post_net(x)


def _blocks_per_stage(number_of_blocks_per_stage: int | tuple[int, ...], nb_stages: int) -> tuple[int, ...]:
    if isinstance(number_of_blocks_per_stage, int):
        return (number_of_blocks_per_stage,) * nb_stages
    if isinstance(number_of_blocks_per_stage, (list, tuple)) and len(number_of_blocks_per_stage) == nb_stages:
        return tuple(number_of_blocks_per_stage)
    raise TypeError(f"number_of_blocks_per_stage must be an int or a tuple of {nb_stages} ints.")


def init_full_resnet_structure(
    input_shape: tuple[int, int, int] = (3, 224, 224),
    in_features: int | None = None,
    out_features: int = 1000,
    device: torch.device | str | None = None,
    activation: nn.Module = nn.ReLU(),
    dropout_rate: float = 0.0,
    input_block_kernel_size: int = 3,
    output_block_kernel_size: int = 3,
    reduction_factor: float = 1 / 64,
    hidden_channels: tuple[int | tuple[int, ...], ...] | None = None,
    small_inputs: bool | None = None,
    skip_first_downsample: bool | None = None,
    number_of_blocks_per_stage: int | tuple[int, ...] = 2,
    inplanes: int = 64,
    nb_stages: int = 4,
    use_preactivation: bool = True,
    normalization: ResNetNormalizationType | None = "batch",
    normalization_kwargs: NormKwargs | None = None,
    growing_conv_type: type[Conv2dGrowingModule] = RestrictedConv2dGrowingModule,
) -> ResNetBasicBlock:
    """A ResNet with ``number_of_blocks_per_stage`` growing blocks per stage (default: ResNet-18).

    Args:
        input_shape: (C, H, W) of the inputs; sets the defaults of ``in_features`` (C),
            ``small_inputs`` (H ≤ 32 and W ≤ 32) and ``skip_first_downsample`` (= small_inputs).
        reduction_factor: initial hidden channels = ceil(stage width · reduction_factor).
        hidden_channels: per stage an int (all its blocks) or a tuple (one per block), instead.
        number_of_blocks_per_stage: an int (every stage) or one int per stage.
        nb_stages: number of stages.
        Others: as :class:`ResNetBasicBlock`.
    Returns:
        the network (every block growable).
    Raises:
        AssertionError: ``input_shape`` is not (C, H, W).
        TypeError, ValueError: malformed ``number_of_blocks_per_stage`` / ``hidden_channels``.
    """
    if isinstance(input_shape, torch.Size):
        input_shape = tuple(input_shape)
    ensure(len(input_shape) == 3, "input_shape must be a tuple of (C, H, W)")
    channels, height, width = input_shape
    in_features = channels if in_features is None else in_features
    small_inputs = (height <= 32 and width <= 32) if small_inputs is None else small_inputs
    skip_first_downsample = small_inputs if skip_first_downsample is None else skip_first_downsample
    blocks = _blocks_per_stage(number_of_blocks_per_stage, nb_stages)
    widths = list(stage_widths(hidden_channels, blocks, "number_of_blocks_per_stage",
                               lambda stage: math.ceil(inplanes * 2**stage * reduction_factor), accept_bool=True))
    # The network takes this builder's arguments of the same name (now resolved), except the widths.
    arguments = locals()
    network = ResNetBasicBlock(**{
        **{name: arguments[name] for name in inspect.signature(ResNetBasicBlock).parameters},
        "hidden_channels": tuple(stage[0] for stage in widths),
    })
    for stage, block_widths in enumerate(widths):
        for hidden in block_widths[1:]:
            network.append_block(stage_index=stage, input_block_kernel_size=input_block_kernel_size,
                                 output_block_kernel_size=output_block_kernel_size, hidden_channels=hidden)
    return network
