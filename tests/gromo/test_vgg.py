"""gromo.containers.vgg: GroMo's configurations, names and parameter counts (torchvision's VGG-11 at
full width), argument errors in GroMo's order, and a full growth cycle of convs and classifier."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.vgg import VGG, _reduce_growing_conv_widths, init_full_vgg_structure
from gromo.modules.conv2d_growing_module import FullConv2dGrowingModule, RestrictedConv2dGrowingModule
from gromo.modules.growing_normalisation import GrowingBatchNorm2d
from tests.gromo.container_growth import run_growth_cycle


def test_parameter_counts_and_growable_layers():
    default = init_full_vgg_structure(device="cpu")
    assert default.number_of_parameters() == 3_722_592
    assert [layer.name for layer in default._growable_layers] == [
        "features.4.convs.1.conv", "features.6.convs.1.conv", "features.8.convs.1.conv", "classifier.3", "classifier.6"]
    assert [(layer.in_neurons, layer.target_in_neurons) for layer in default._growable_layers] == [
        (8, 256), (16, 512), (16, 512), (128, 4096), (128, 4096)]
    assert init_full_vgg_structure((3, 32, 32), out_features=10, device="cpu").number_of_parameters() == 449_154
    # torchvision's vgg11 (no batch norm); built on the meta device: 133 M parameters, no memory
    vgg11 = init_full_vgg_structure(normalization=None, hidden_channels=(64, 128, 256, 512, 512),
                                    reduction_factor=None, device="meta")
    assert vgg11.number_of_parameters() == 132_863_336 and vgg11._growable_layers == []


def test_layout_and_shapes(device):
    model = VGG([8, "M", 4, 16, "M"], target_cfg=[8, "M", 32, 16, "M"], num_classes=5, fc_layer_width=12,
                initial_fc_layer_width=6, input_spatial_shape=(8, 8), device=device)
    assert model.final_spatial_shape == (2, 2) and model.avgpool.output_size == (2, 2)
    assert [block.out_channels for block in model.stage_blocks] == [8, 16]
    conv = model.stage_blocks[1].convs[1]
    assert conv.name == "features.2.convs.1.conv" and conv.previous_module is model.stage_blocks[1].convs[0]
    assert isinstance(model.stage_blocks[0].convs[0].post_layer_function[0], GrowingBatchNorm2d)
    assert model._growable_layers == [conv, model.classifier[2], model.classifier[4]]
    assert [layer.name for layer in model._classifier_growing_modules()] == ["classifier.0", "classifier.3",
                                                                             "classifier.6"]
    assert model.classifier[0].in_features == 16 * 4 and model.classifier[2].in_features == 6
    x = torch.randn(3, 3, 8, 8).to(device)
    model.eval()
    assert model(x).shape == (3, 5) and torch.equal(model.extended_forward(x), model(x))
    torch_default = VGG([4, "M"], num_classes=2, number_of_fc_layers=1, normalization=None, device=device)
    assert torch_default.final_spatial_shape == (7, 7) and torch_default.classifier[0].in_features == 4 * 49
    assert torch_default(torch.randn(1, 3, 16, 16).to(device)).shape == (1, 2)
    assert _reduce_growing_conv_widths((256, 256), 1 / 32) == (8, 256)
    assert _reduce_growing_conv_widths((100, 50, 64), 0.3) == (30, 15, 64)
    assert _reduce_growing_conv_widths((7, 9), None) == (7, 9)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"number_of_fc_layers": 0}, ValueError, "number_of_fc_layers must be > 0, got 0."),
    ({"fc_layer_width": -1}, ValueError, "fc_layer_width must be > 0, got -1."),
    ({"initial_fc_layer_width": 0}, ValueError, "initial_fc_layer_width must be > 0, got 0."),
    ({"normalization": "layer"}, ValueError, "normalization must be 'batch', 'group' or None, got 'layer'."),
    ({"target_cfg": [8, 8, "M"]}, ValueError, "target_cfg must match cfg pooling structure exactly."),
    ({"target_cfg": [8, "M"]}, ValueError, "zip()"),
])
def test_vgg_errors(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        VGG([4, "M", 8], device="cpu", **kwargs)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"input_shape": (32, 32)}, ValueError, "input_shape must be a sequence of length 3 (C, H, W), got (32, 32)."),
    ({"number_of_fc_layers": 2.0}, TypeError, "number_of_fc_layers must be an int, got float."),
    ({"number_of_fc_layers": 0}, ValueError, "number_of_fc_layers must be > 0, got 0."),
    ({"fc_layer_width": "8"}, TypeError, "fc_layer_width must be an int, got str."),
    ({"fc_layer_width": 0}, ValueError, "fc_layer_width must be > 0, got 0."),
    ({"reduction_factor": "1"}, TypeError, "reduction_factor must be a float, int, or None, got str."),
    ({"reduction_factor": 1.5}, ValueError, "reduction_factor must satisfy 0 < reduction_factor <= 1, got 1.5."),
    ({"number_of_conv_per_stage": (1, 2)}, TypeError, "number_of_conv_per_stage must be an int or a tuple of 5 ints."),
    ({"number_of_conv_per_stage": (1, 1, 1.0, 1, 1)}, TypeError,
     "Stage 2: number_of_conv_per_stage must contain ints, got float."),
    ({"number_of_conv_per_stage": (1, 0, 1, 1, 1)}, ValueError, "Stage 1: number_of_conv_per_stage must be > 0, got 0."),
    ({"hidden_channels": (8, 8)}, ValueError, "hidden_channels must have 5 elements (one per stage), but got 2."),
    ({"hidden_channels": (8, (8, 8), 8, 8, 8)}, ValueError,
     "Stage 1: hidden_channels has 2 elements but number_of_conv_per_stage is 1."),
    ({"hidden_channels": (8, "8", 8, 8, 8)}, TypeError, "Stage 1: hidden_channels element must be int or tuple, got str."),
    ({"hidden_channels": (8, 8, (8, 8.0), 8, 8)}, TypeError,
     "Stage 2 Block 1: hidden_channels must contain ints, got float."),
    ({"hidden_channels": (8, 8, (8, 0), 8, 8)}, ValueError, "Stage 2 Block 1: hidden_channels must be > 0, got 0."),
])
def test_init_full_vgg_structure_errors(kwargs, error, message):
    escaped = "".join("\\" + c if c in "().[]*+?" else c for c in message)
    with pytest.raises(error, match=escaped):
        init_full_vgg_structure(device="cpu", **kwargs)


@pytest.mark.parametrize("conv_type", [RestrictedConv2dGrowingModule, FullConv2dGrowingModule])
@pytest.mark.parametrize("select", [0, 1])  # a convolution, then a classifier layer
def test_growth_cycle(generator, device, factorization_caches, conv_type, select):
    torch.manual_seed(0)
    # tanh and eps 1e-12: see the ResNet growth test; torch's default initialisation, since VGG's
    # N(0, 0.01²) classifier makes the convolutions' gradients (and their improvement) ~1e-10
    model = init_full_vgg_structure((3, 8, 8), out_features=3, hidden_channels=(4, (6, 8)),
                                    number_of_conv_per_stage=(1, 2), nb_stages=2, fc_layer_width=8,
                                    reduction_factor=0.5, activation=nn.Tanh(), normalization_kwargs={"eps": 1e-12},
                                    dropout=0.3, growing_conv_type=conv_type, init_weights=False,
                                    device=device).double()
    assert [layer.name for layer in model._growable_layers] == ["features.2.convs.1.conv", "classifier.3", "classifier.6"]
    x = torch.randn(24, 3, 8, 8, generator=generator, dtype=torch.float64).to(device)
    y = torch.randn(24, 3, generator=generator, dtype=torch.float64).to(device)
    with torch.no_grad():
        model(x)
    layer = model._growable_layers[select]
    width = layer.in_neurons
    cycle = run_growth_cycle(model, x, y, select=select, dtype=torch.float64, gammas=(0.1, 0.5, 2.0, 8.0))
    assert len(factorization_caches) == 1
    assert cycle.first_order_ratio == pytest.approx(1.0, abs=0.05)
    assert cycle.loss_after < cycle.loss_before and layer.in_neurons > width
