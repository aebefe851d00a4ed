"""GroMo's ``gromo.containers.growing_mlp_mixer``: an MLP-Mixer whose token and channel MLPs grow.

    x (n, C, S, S) → Conv2d(C, F, p, stride p) → tokens (n, P, F), P = (S/p)²
      → mixer layers: token mixing  x + MLP_P(LayerNorm(x)ᵀ)ᵀ  then channel mixing  x + MLP_F(LayerNorm(x))
      → mean over tokens → Linear(F, out)

Each MLP is ``dropout ∘ second ∘ dropout ∘ first`` with ``first`` (D → hidden, GELU) and ``second``
(hidden → D) growing linears; growing adds hidden neurons. The extended forward drops the main
tensor and the extension separately between the two layers.

GroMo bug corrected here: GroMo's ``GrowingMLPMixer`` replaces its resolved device by the raw
``device`` argument, so with ``None`` the patcher and classifier land on torch's default device
while the mixers resolve theirs; this keeps the resolved device everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from gromo.containers.growing_container import GrowingContainer, check_second_layer_output_not_extended
from gromo.containers.sequential_growing_container import SequentialGrowingModel
from gromo.modules.linear_growing_module import LinearGrowingModule
from gromo.utils._assertions import ensure

__all__ = [
    "GrowingChannelMixer",
    "GrowingMLPBlock",
    "GrowingMLPMixer",
    "GrowingMixerLayer",
    "GrowingTokenMixer",
    "check_sizes",
]


class GrowingMLPBlock(GrowingContainer):
    """``dropout ∘ second ∘ dropout ∘ first`` over the last dimension: (…, F) → (…, F).

    Args:
        num_features: F.
        hidden_features: initial hidden width.
        dropout: dropout rate.
        name: name.
        kwargs_layer: keyword arguments of both layers (e.g. ``{"device": ...}``).
    """

    def __init__(self, num_features: int, hidden_features: int = 0, dropout: float = 0.0, name: str | None = None,
                 kwargs_layer: dict | None = None) -> None:
        super().__init__(in_features=num_features, out_features=num_features)
        self.name = name
        kwargs_layer = {} if kwargs_layer is None else kwargs_layer
        self.first_layer = LinearGrowingModule(num_features, hidden_features, post_layer_function=nn.GELU(),
                                               **kwargs_layer)
        self.dropout = nn.Dropout(p=dropout)
        self.second_layer = LinearGrowingModule(hidden_features, num_features, previous_module=self.first_layer,
                                                allow_growing=True, **kwargs_layer)
        self.first_layer.next_module = self.second_layer
        self.enable_extended_forward = False
        self.set_growing_layers()

    def set_growing_layers(self) -> None:
        """The second layer grows (its inputs are the hidden neurons)."""
        self._growing_layers = [self.second_layer]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(…, F) → (…, F)."""
        return self.dropout(self.second_layer(self.dropout(self.first_layer(x))))

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with the pending update at its current scaling: (…, F) → (…, F).

        Raises:
            AssertionError: the second layer returns an output extension.
        """
        hidden, hidden_extension = self.first_layer.extended_forward(x)
        hidden = self.dropout(hidden)
        if hidden_extension is not None:
            hidden_extension = self.dropout(hidden_extension)
        out, out_extension = self.second_layer.extended_forward(hidden, hidden_extension)
        check_second_layer_output_not_extended(self.second_layer, out_extension)
        return self.dropout(out)

    def weights_statistics(self) -> dict[int, dict[str, Any]]:
        """Per layer (0, 1; empty layers skipped): weight/bias statistics and its input/output sizes."""
        statistics = {}
        for index, layer in enumerate((self.first_layer, self.second_layer)):
            if layer.weight.numel() == 0:
                continue
            entry = layer.weights_statistics()
            entry["input_shape"] = layer.in_features
            entry["output_shape"] = layer.out_features
            statistics[index] = entry
        return statistics

    def update_information(self) -> dict[str, Any]:
        """The second layer's update: improvement, decrease, eigenvalues, scaling factor, neurons added."""
        layer = self.second_layer
        eigenvalues = layer.eigenvalues_extension
        return {
            "update_value": layer.first_order_improvement,
            "parameter_improvement": layer.parameter_update_decrease,
            "eigenvalues_extension": eigenvalues,
            "scaling_factor": layer.scaling_factor,
            "added_neurons": 0 if eigenvalues is None else len(eigenvalues),
        }


class _ResidualMixer(GrowingContainer):
    """``x + mix(LayerNorm(x))`` on tokens (n, P, F), ``mix`` an MLP over one axis of the tokens.

    The subclasses say which axis in ``_mix``; the MLP's growing layers are the mixer's.

    Args:
        mlp_features: the size of the mixed axis (the MLP's input and output width).
        num_features: F.
        hidden_features: initial hidden width of the MLP.
        dropout: dropout rate.
        name: name.
        device: device.
    """

    def __init__(self, mlp_features: int, num_features: int, hidden_features: int, dropout: float,
                 name: str | None, device: torch.device | str | None) -> None:
        super().__init__(in_features=num_features, out_features=num_features, device=device)
        self.name = name
        self.norm = nn.LayerNorm(num_features, device=self.device)
        self.mlp = GrowingMLPBlock(mlp_features, hidden_features, dropout, kwargs_layer={"device": self.device})
        self.set_growing_layers()

    def _mix(self, x: torch.Tensor, mlp_forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``mlp_forward`` applied along the mixed axis of ``x`` (n, P, F) → (n, P, F)."""
        raise NotImplementedError

    def set_growing_layers(self) -> None:
        """The MLP's growing layers (the same list)."""
        self._growing_layers = self.mlp._growing_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, P, F) → (n, P, F)."""
        return x + self._mix(self.norm(x), self.mlp)

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with the pending update: (n, P, F) → (n, P, F)."""
        return x + self._mix(self.norm(x), self.mlp.extended_forward)

    def weights_statistics(self) -> dict[int, dict[str, Any]]:
        """The MLP's."""
        return self.mlp.weights_statistics()

    def update_information(self) -> dict[str, Any]:
        """The MLP's."""
        return self.mlp.update_information()


class GrowingTokenMixer(_ResidualMixer):
    """Token mixing ``x + mlp(LayerNorm(x)ᵀ)ᵀ`` on tokens (n, P, F), the MLP over the P tokens.

    Args:
        num_patches: P.
        num_features: F.
        hidden_features: initial hidden width of the MLP.
        dropout: dropout rate.
        name: name.
        device: device.
    """

    def __init__(self, num_patches: int, num_features: int, hidden_features: int, dropout: float,
                 name: str | None = None, device: torch.device | str | None = None) -> None:
        super().__init__(num_patches, num_features, hidden_features, dropout, name, device)

    def _mix(self, x: torch.Tensor, mlp_forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return mlp_forward(x.transpose(1, 2)).transpose(1, 2)


class GrowingChannelMixer(_ResidualMixer):
    """Channel mixing ``x + mlp(LayerNorm(x))`` on tokens (n, P, F), the MLP over the F features.

    Args:
        num_features: F.
        hidden_features: initial hidden width of the MLP.
        dropout: dropout rate.
        name: name.
        device: device.
    """

    def __init__(self, num_features: int, hidden_features: int, dropout: float, name: str | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__(num_features, num_features, hidden_features, dropout, name, device)

    def _mix(self, x: torch.Tensor, mlp_forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        return mlp_forward(x)


class GrowingMixerLayer(GrowingContainer):
    """Token mixing then channel mixing: (n, P, F) → (n, P, F).

    Args:
        num_patches: P.
        num_features: F.
        hidden_dim_token: initial hidden width of the token MLP.
        hidden_dim_channel: initial hidden width of the channel MLP.
        dropout: dropout rate.
        name: name.
        device: device.
    """

    def __init__(self, num_patches: int, num_features: int, hidden_dim_token: int, hidden_dim_channel: int,
                 dropout: float, name: str | None = "Mixer Layer", device: torch.device | str | None = None) -> None:
        super().__init__(in_features=num_features, out_features=num_features, device=device)
        self.name = name
        self.token_mixer = GrowingTokenMixer(num_patches, num_features, hidden_dim_token, dropout, device=self.device)
        self.channel_mixer = GrowingChannelMixer(num_features, hidden_dim_channel, dropout, device=self.device)
        self.set_growing_layers()

    def set_growing_layers(self) -> None:
        """The token mixer's growing layer, then the channel mixer's."""
        self._growing_layers = self.token_mixer._growing_layers + self.channel_mixer._growing_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, P, F) → (n, P, F)."""
        return self.channel_mixer(self.token_mixer(x))

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with the pending updates: (n, P, F) → (n, P, F)."""
        return self.channel_mixer.extended_forward(self.token_mixer.extended_forward(x))

    def weights_statistics(self) -> dict[int, dict[int, dict[str, Any]]]:
        """{0: token mixer's, 1: channel mixer's}."""
        return {0: self.token_mixer.weights_statistics(), 1: self.channel_mixer.weights_statistics()}

    def update_information(self) -> dict[str, dict[str, Any]]:
        """{"token_mixer": …, "channel_mixer": …}."""
        return {"token_mixer": self.token_mixer.update_information(),
                "channel_mixer": self.channel_mixer.update_information()}


def check_sizes(image_size: int, patch_size: int) -> int:
    """Number of patches ``(image_size // patch_size)²``.

    Raises:
        AssertionError: ``image_size`` is not a multiple of ``patch_size``.
    """
    ensure(image_size % patch_size == 0, "`image_size` must be divisible by `patch_size`")
    return (image_size // patch_size) ** 2


class GrowingMLPMixer(SequentialGrowingModel):
    """MLP-Mixer on square images with growing token and channel MLPs.

    Args:
        in_features: (C, S, S) input shape.
        out_features: classes.
        patch_size: p (S must be a multiple).
        num_features: F, the token width.
        hidden_dim_token: initial hidden width of the token MLPs.
        hidden_dim_channel: initial hidden width of the channel MLPs.
        num_blocks: mixer layers.
        dropout: dropout rate.
        device: device.
    Raises:
        AssertionError: S not a multiple of p.
    """

    def __init__(self, in_features: tuple[int, int, int] = (3, 32, 32), out_features: int = 10, patch_size: int = 4,
                 num_features: int = 128, hidden_dim_token: int = 64, hidden_dim_channel: int = 512,
                 num_blocks: int = 8, dropout: float = 0.0, device: torch.device | str | None = None) -> None:
        channels, image_size, _ = in_features
        num_patches = check_sizes(image_size, patch_size)
        super().__init__(in_features=int(math.prod(in_features)), out_features=out_features, device=device)
        self.num_patches = num_patches
        self.num_features = num_features
        self.patcher = nn.Conv2d(channels, num_features, kernel_size=patch_size, stride=patch_size,
                                 device=self.device)
        self.mixers = nn.ModuleList([
            GrowingMixerLayer(num_patches, num_features, hidden_dim_token, hidden_dim_channel, dropout,
                              device=self.device)
            for _ in range(num_blocks)
        ])
        self.classifier = nn.Linear(num_features, out_features, device=self.device)
        self._growable_layers = [
            layer for mixer in self.mixers
            for layer in (mixer.token_mixer.mlp.second_layer, mixer.channel_mixer.mlp.second_layer)
        ]
        self.set_growing_layers("all")

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.patcher(x)  # (n, F, S/p, S/p)
        return patches.permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(n, C, S, S) → (n, out)."""
        x = self._tokens(x)
        for mixer in self.mixers:
            x = mixer(x)
        return self.classifier(x.mean(dim=1))

    def extended_forward(self, x: torch.Tensor, mask: dict | None = None) -> torch.Tensor:
        """Forward with every pending update at its current scaling: (n, C, S, S) → (n, out)."""
        x = self._tokens(x)
        for mixer in self.mixers:
            x = mixer.extended_forward(x)
        return self.classifier(x.mean(dim=1))

    def weights_statistics(self) -> dict[int, dict[int, Any]]:
        """Per mixer layer: its statistics."""
        return {index: mixer.weights_statistics() for index, mixer in enumerate(self.mixers)}

    def update_information(self) -> dict[int, dict[str, Any]]:
        """Per mixer layer: its update information."""
        return {index: mixer.update_information() for index, mixer in enumerate(self.mixers)}
