"""A small growing CNN for small images (e.g. 8×8 digits), built from Conv2dGrowingBlocks.

    x (n, C_in, H, W) → stem conv 3×3 (C_in → C) → [residual Conv2dGrowingBlock(C → hidden → C)] × B
      → ReLU → 2×2 average pool → flatten → Linear(C·⌊H/2⌋·⌊W/2⌋ → classes)

Each block is ``x + conv₂(act(conv₁(act(x))))`` with 3×3 convolutions (padding 1) whose hidden
width starts at 0 or 1 and grows by TINY updates (Restricted conv growth, TINY, TMLR 2024): the
blocks are the container's growable layers. With 0 hidden channels a block is the identity and its
growth statistics come from the gradient at the block output.
"""

from __future__ import annotations

import torch
from torch import nn

from gromo.containers.growing_block import Conv2dGrowingBlock
from gromo.containers.growing_container import GrowingContainer, forward_through_blocks

__all__ = ["GrowingCNN"]


class GrowingCNN(GrowingContainer):
    """Stem conv, ``number_of_blocks`` growing residual conv blocks, pooled linear head.

    Args:
        in_channels: input channels.
        num_classes: outputs (logits).
        input_size: (H, W) of the input images.
        channels: channels of the stem and of the residual stream (fixed).
        hidden_channels: initial hidden channels of every block (0 or more).
        number_of_blocks: growing blocks (>= 1).
        kernel_size: kernel of the block convolutions (odd; padding keeps the size).
        activation: activation of the blocks (pre- and mid-activation) and before the head.
        device: where the modules live.

    Raises:
        ValueError: a size out of range or an even kernel.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: tuple[int, int] = (8, 8),
        channels: int = 16,
        hidden_channels: int = 1,
        number_of_blocks: int = 2,
        kernel_size: int = 3,
        activation: nn.Module | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        for name, value, low in (
            ("in_channels", in_channels, 1), ("num_classes", num_classes, 1), ("channels", channels, 1),
            ("hidden_channels", hidden_channels, 0), ("number_of_blocks", number_of_blocks, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        height, width = (int(s) for s in input_size)
        if height < 2 or width < 2:
            raise ValueError(f"input_size must be at least (2, 2), got {input_size}")
        super().__init__(in_features=in_channels, out_features=num_classes, device=device)
        activation = activation if activation is not None else nn.ReLU()
        padding = kernel_size // 2
        self.input_size = (height, width)
        self.stem = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, device=self.device)
        self.blocks = nn.ModuleList(
            Conv2dGrowingBlock(
                channels, channels, kernel_size=kernel_size, hidden_channels=hidden_channels,
                activation=activation, name=f"block {index}",
                kwargs_layer={"padding": padding, "use_bias": True, "input_size": (height, width)},
                device=self.device,
            )
            for index in range(number_of_blocks)
        )
        self.head = nn.Sequential(
            type(activation)(), nn.AvgPool2d(2), nn.Flatten(),
            nn.Linear(channels * (height // 2) * (width // 2), num_classes, device=self.device),
        )
        self.set_growing_layers()

    def set_growing_layers(self) -> None:
        """The residual blocks are the growable layers."""
        self._growing_layers = list(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """logits (n, classes) of images x (n, C_in, H, W)."""
        return forward_through_blocks(x, self.stem, self.blocks, self.head)

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every block's pending update at its current scaling factor."""
        return forward_through_blocks(x, self.stem, self.blocks, self.head, extended=True)

    @property
    def hidden_widths(self) -> list[int]:
        """Hidden channels of every block."""
        return [int(block.hidden_neurons) for block in self.blocks]
