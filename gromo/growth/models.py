"""The networks the growth command builds, described by a JSON-able spec that rebuilds them at any width.

A spec is ``{"builder": "mlp" | "cnn", "kwargs": {...}, "widths": [...]}``: the builder's keyword
arguments (the network before any growth) and the width of every growable layer now. :func:`rebuild`
constructs the network from ``kwargs`` and widens each growable layer to its recorded width with the
layers' public ``layer_out_extension`` / ``layer_in_extension`` (zero weights: only the shapes matter,
a state dict then fills the values), so a checkpoint holds no pickled code.
"""

from __future__ import annotations

import torch
from torch import nn

from .candidates import growable_layers

ACTIVATIONS = {"relu": nn.ReLU, "selu": nn.SELU, "gelu": nn.GELU, "tanh": nn.Tanh}


def build_mlp(in_features: int, out_features: int, hidden_size: int = 1, hidden_layers: int = 1,
              activation: str = "relu", device=None) -> nn.Module:
    """GrowingMLP ``in_features → hidden_size × hidden_layers → out_features`` (ReLU by default)."""
    from gromo.containers.growing_mlp import GrowingMLP

    return GrowingMLP(
        in_features=in_features, out_features=out_features, hidden_size=hidden_size,
        number_hidden_layers=hidden_layers, activation=ACTIVATIONS[activation](), device=device,
    )


def build_cnn(in_channels: int, num_classes: int, input_size: list[int], channels: int = 16,
              hidden_channels: int = 1, blocks: int = 2, device=None) -> nn.Module:
    """GrowingCNN on images (in_channels, *input_size) with ``blocks`` growing residual blocks."""
    from gromo.containers.growing_cnn import GrowingCNN

    return GrowingCNN(
        in_channels=in_channels, num_classes=num_classes, input_size=tuple(input_size), channels=channels,
        hidden_channels=hidden_channels, number_of_blocks=blocks, device=device,
    )


def _conv_type(growth: str):
    from gromo.modules.conv2d_growing_module import (
        FullConv2dGrowingModule,
        RestrictedConv2dGrowingModule,
    )

    types = {"restricted": RestrictedConv2dGrowingModule, "full": FullConv2dGrowingModule}
    if growth not in types:
        raise ValueError(f"growth: expected 'restricted' or 'full', got {growth!r}")
    return types[growth]


def build_resnet(input_shape: list[int], num_classes: int, channels: int = 16, hidden_channels: int = 1,
                 stages: int = 2, growth: str = "restricted", device=None) -> nn.Module:
    """GroMo's pre-activation ResNet (one growing basic block per stage, batch norm) for small images."""
    from gromo.containers.resnet import init_full_resnet_structure

    return init_full_resnet_structure(
        input_shape=tuple(input_shape), out_features=num_classes, device=device, inplanes=channels,
        nb_stages=stages, number_of_blocks_per_stage=1, hidden_channels=(hidden_channels,) * stages,
        growing_conv_type=_conv_type(growth),
    )


def build_vgg(input_shape: list[int], num_classes: int, channels: int = 16, hidden_channels: int = 1,
              stages: int = 3, growth: str = "restricted", device=None) -> nn.Module:
    """GroMo's VGG (2 growing 3×3 convs per stage, widths ``channels·2^s``; 2 growing classifier layers)."""
    from gromo.containers.vgg import init_full_vgg_structure

    targets = tuple(channels * 2**stage for stage in range(stages))
    model = init_full_vgg_structure(
        input_shape=tuple(input_shape), out_features=num_classes, device=device, number_of_conv_per_stage=2,
        nb_stages=stages, hidden_channels=targets, fc_layer_width=4 * channels, number_of_fc_layers=2,
        dropout=0.0, reduction_factor=hidden_channels / max(targets), growing_conv_type=_conv_type(growth),
    )
    return model


BUILDERS = {"mlp": build_mlp, "cnn": build_cnn, "resnet": build_resnet, "vgg": build_vgg}


def layer_width(layer: nn.Module) -> int:
    """Number of hidden neurons / channels a growth of ``layer`` adds to."""
    if hasattr(layer, "hidden_neurons"):
        return int(layer.hidden_neurons)
    return int(layer.in_neurons)


def make_spec(builder: str, **kwargs) -> dict:
    """A spec for ``BUILDERS[builder](**kwargs)`` (widths filled in by :func:`spec_of`)."""
    if builder not in BUILDERS:
        raise ValueError(f"builder: unknown {builder!r}; choose one of {', '.join(BUILDERS)}")
    return {"builder": builder, "kwargs": dict(kwargs), "widths": None}


def spec_of(spec: dict, model: nn.Module) -> dict:
    """``spec`` with the current widths of ``model``'s growable layers."""
    return dict(spec, widths=[layer_width(layer) for layer in growable_layers(model)])


def _pair(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(layer whose outputs grow, layer whose inputs grow) of a growable layer or block."""
    if hasattr(layer, "first_layer") and hasattr(layer, "second_layer"):
        return layer.first_layer, layer.second_layer
    return layer.previous_module, layer


@torch.no_grad()
def widen(layer: nn.Module, added: int) -> None:
    """Add ``added`` zero neurons to a growable layer or block (public extension methods only)."""
    if added <= 0:
        return
    source, target = _pair(layer)
    weight = target.weight
    target.layer_in_extension(weight.new_zeros(weight.shape[0], added, *weight.shape[2:]))
    weight = source.weight
    bias = weight.new_zeros(added) if getattr(source, "use_bias", False) else None
    source.layer_out_extension(weight.new_zeros(added, *weight.shape[1:]), bias)
    # Growing norms after the grown outputs (ResNet / VGG) widen with them.
    for module in getattr(source, "post_layer_function", nn.Identity()).modules():
        if callable(getattr(module, "grow", None)) and not hasattr(module, "layer_in_extension"):
            module.grow(added)


def rebuild(spec: dict, device=None) -> nn.Module:
    """The network of ``spec`` at its recorded widths (weights to be loaded from a state dict).

    Raises:
        ValueError: unknown builder, or a recorded width smaller than the built one.
    """
    if spec.get("builder") not in BUILDERS:
        raise ValueError(f"spec: unknown builder {spec.get('builder')!r}")
    model = BUILDERS[spec["builder"]](**spec["kwargs"], device=device)
    widths = spec.get("widths") or []
    layers = growable_layers(model)
    if widths and len(widths) != len(layers):
        raise ValueError(f"spec: {len(widths)} widths for {len(layers)} growable layers")
    for layer, width in zip(layers, widths):
        added = int(width) - layer_width(layer)
        if added < 0:
            raise ValueError(f"spec: width {width} below the initial width {layer_width(layer)}")
        widen(layer, added)
    return model
