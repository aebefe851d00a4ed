"""gromo.containers.resnet: GroMo's layouts and parameter counts (torchvision's ResNet-18/34 at full
width), forward shapes, argument errors, and a full growth cycle (Restricted and Full growth)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import Conv2dGrowingBlock
from gromo.containers.resnet import ResNetBasicBlock, init_full_resnet_structure
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule
from gromo.modules.growing_normalisation import GrowingBatchNorm2d, GrowingGroupNorm
from tests.gromo.container_growth import run_growth_cycle


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({}, 871_012),
    ({"reduction_factor": 1}, 11_688_616),
    ({"reduction_factor": 1, "use_preactivation": False}, 11_689_512),  # torchvision resnet18
    ({"input_shape": (3, 32, 32), "out_features": 10}, 355_462),
    ({"reduction_factor": 1, "use_preactivation": False, "number_of_blocks_per_stage": (3, 4, 6, 3)},
     21_797_672),  # torchvision resnet34
])
def test_parameter_counts(kwargs, expected):
    assert init_full_resnet_structure(device="cpu", **kwargs).number_of_parameters() == expected


def test_layout_names_and_shapes(device):
    model = init_full_resnet_structure((3, 32, 32), out_features=10, device=device)
    blocks = model._growable_layers
    # creation order: every stage's first block, then the appended ones
    assert [block.name for block in blocks] == [f"Stage {s} Block {b}" for b in range(2) for s in range(4)]
    assert [block.hidden_neurons for block in blocks] == [1, 2, 4, 8, 1, 2, 4, 8]
    assert [block.second_layer.target_in_neurons for block in blocks] == [64, 128, 256, 512] * 2
    assert model._growing_layers is model._growable_layers and model.layer_to_grow_index == -1
    assert isinstance(model.pre_net[0], nn.Conv2d) and model.pre_net[0].kernel_size == (3, 3)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.pre_net)
    assert isinstance(blocks[0].first_layer, RestrictedConv2dGrowingModule)
    assert isinstance(blocks[0].first_layer.post_layer_function[0], GrowingBatchNorm2d)
    x = torch.randn(2, 3, 32, 32).to(device)
    assert model(x).shape == (2, 10) and model.extended_forward(x).shape == (2, 10)
    imagenet = init_full_resnet_structure(device=device, out_features=7)
    assert imagenet.pre_net[0].kernel_size == (7, 7) and isinstance(imagenet.pre_net[-1], nn.MaxPool2d)
    assert imagenet(torch.randn(1, 3, 64, 64).to(device)).shape == (1, 7)
    grouped = init_full_resnet_structure((3, 16, 16), out_features=4, normalization="group", inplanes=8,
                                         normalization_kwargs={"num_groups": 1}, device=device)
    assert isinstance(grouped._growable_layers[0].first_layer.post_layer_function[0], GrowingGroupNorm)
    assert grouped(torch.randn(2, 3, 16, 16).to(device)).shape == (2, 4)
    bare = init_full_resnet_structure((3, 16, 16), out_features=4, normalization=None, inplanes=8,
                                      hidden_channels=(0, (0, 3), 1, 2), device=device)
    assert [block.hidden_neurons for block in bare._growable_layers] == [0, 0, 1, 2, 0, 3, 1, 2]
    assert bare(torch.randn(2, 3, 16, 16).to(device)).shape == (2, 4)


def test_append_block_and_errors(device):
    model = ResNetBasicBlock(in_features=3, out_features=5, hidden_channels=(1, 2), inplanes=8, small_inputs=True,
                             device=device)
    model.append_block(stage_index=1, hidden_channels=3)
    assert model._growable_layers[-1].name == "Stage 1 Block 1" and model._growing_layers[-1].hidden_neurons == 3
    assert model(torch.randn(2, 3, 8, 8).to(device)).shape == (2, 5)
    with pytest.raises(IndexError, match=r"Stage 2 is out of range\. There are 2 stages\."):
        model.append_block(stage_index=2)
    classical = ResNetBasicBlock(hidden_channels=(1,), inplanes=8, use_preactivation=False, device=device)
    with pytest.raises(AssertionError, match="As you are using the classical ResNet, hidden_channels must be greater than 0."):
        classical.append_block(0, hidden_channels=0)
    with pytest.raises(ValueError, match=r"normalization must be 'batch', 'group', or None, got 'layer'\."):
        ResNetBasicBlock(normalization="layer", device=device)
    with pytest.raises(AssertionError, match=r"input_shape must be a tuple of \(C, H, W\)"):
        init_full_resnet_structure((32, 32), device=device)
    with pytest.raises(TypeError, match="number_of_blocks_per_stage must be an int or a tuple of 4 ints."):
        init_full_resnet_structure(number_of_blocks_per_stage=(1, 2), device=device)
    with pytest.raises(ValueError, match=r"hidden_channels must have 4 elements \(one per stage\), but got 2\."):
        init_full_resnet_structure(hidden_channels=(1, 2), device=device)
    with pytest.raises(ValueError, match="Stage 1: hidden_channels has 3 elements but number_of_blocks_per_stage is 2."):
        init_full_resnet_structure(hidden_channels=(1, (1, 2, 3), 1, 1), device=device)
    with pytest.raises(TypeError, match="Stage 0: hidden_channels element must be int or tuple, got str."):
        init_full_resnet_structure(hidden_channels=("a", 1, 1, 1), device=device)


@pytest.mark.parametrize(("conv_type", "preactivation"), [
    (RestrictedConv2dGrowingModule, True), (RestrictedConv2dGrowingModule, False),
    (FullConv2dGrowingModule, True), (FullConv2dGrowingModule, False),
])
def test_growth_cycle(generator, device, factorization_caches, conv_type, preactivation):
    torch.manual_seed(0)
    # tanh: smooth at 0 with σ(0) = 0, σ'(0) = 1, so the first-order improvement is the true slope
    # (with ReLU, σ(γ·Vx) = γ·relu(Vx) and the linearised prediction is only an estimate).
    # eps 1e-12: a grown channel's batch norm (mean 0, var 1) is then the identity that the extended
    # forward assumes, to 1e-12 instead of 1/sqrt(1 + 1e-5)
    model = init_full_resnet_structure((3, 8, 8), out_features=3, inplanes=4, nb_stages=2, reduction_factor=0.25,
                                       use_preactivation=preactivation, normalization_kwargs={"eps": 1e-12}, activation=nn.Tanh(),
                                       growing_conv_type=conv_type, device=device).double()
    x = torch.randn(24, 3, 8, 8, generator=generator, dtype=torch.float64).to(device)
    y = torch.randn(24, 3, generator=generator, dtype=torch.float64).to(device)
    with torch.no_grad():  # running statistics of the data, so that eval-mode norms are not trivial
        model(x)
    hidden = [block.hidden_neurons for block in model._growable_layers]
    cycle = run_growth_cycle(model, x, y, dtype=torch.float64, gammas=(0.1, 0.5, 2.0, 8.0))
    assert len(factorization_caches) == 1  # every block's solves in one block
    assert cycle.first_order_ratio == pytest.approx(1.0, abs=0.05)
    assert cycle.loss_after < cycle.loss_before
    grown = model._growable_layers[cycle.index]
    assert isinstance(grown, Conv2dGrowingBlock) and grown.hidden_neurons > hidden[cycle.index]
    assert grown.first_layer.post_layer_function[0].num_features == grown.hidden_neurons
