"""GrowingContainer (TINY, TMLR 2024): statistics, selection and application of updates over
the growable layers of a container."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gromo.containers.growing_block import Conv2dGrowingBlock, LinearGrowingBlock
from gromo.containers.growing_container import GrowingContainer
from gromo.modules.conv2d_growing_module import Conv2dMergeGrowingModule, RestrictedConv2dGrowingModule
from gromo.modules.linear_growing_module import LinearGrowingModule


class TwoBlocks(GrowingContainer):
    """x → block_a → block_b (residual linear blocks of width 3)."""

    def __init__(self, device=None):
        super().__init__(in_features=3, out_features=3, device=device, name="two_blocks")
        self.block_a = LinearGrowingBlock(3, 3, hidden_features=1, activation=nn.Tanh(), name="a", device=device)
        self.block_b = LinearGrowingBlock(3, 3, hidden_features=0, activation=nn.Tanh(), name="b", device=device)
        self.set_growing_layers()

    def set_growing_layers(self):
        self._growing_layers = [self.block_a, self.block_b]

    def forward(self, x):
        return self.block_b(self.block_a(x))

    def extended_forward(self, x, mask=None):
        return self.block_b.extended_forward(self.block_a.extended_forward(x))


class TwoLayers(GrowingContainer):
    """Two linear growing modules: the second one grows."""

    def __init__(self, device=None):
        super().__init__(in_features=3, out_features=2, device=device)
        self.first = LinearGrowingModule(3, 2, post_layer_function=nn.Tanh(), device=device)
        self.second = LinearGrowingModule(2, 2, previous_module=self.first, device=device)
        self.first.next_module = self.second
        self._growing_layers = [self.second]

    def forward(self, x):
        return self.second(self.first(x))


def _collect(model, generator, n=8):
    x = torch.randn(n, 3, generator=generator, dtype=torch.float64).to(model.device)
    target = torch.randn(n, model.out_features, generator=generator, dtype=torch.float64).to(model.device)
    model.init_computation()
    model.zero_grad()
    ((model(x) - target) ** 2).sum().backward()
    model.update_computation()
    return x, target


def test_container_statistics_selection_and_application(generator, device, capsys):
    model = TwoBlocks(device=device).double()
    assert model.device.type == device.type and model.currently_updated_layer_index is None
    x, target = _collect(model, generator)
    assert model.block_a.second_layer.tensor_s.samples == 8 and model.block_b.second_layer.tensor_m_prev.samples == 8
    model.compute_optimal_updates(dtype=torch.float64)
    model.reset_computation()
    assert model.block_a.second_layer.tensor_s.samples == 0
    improvements = [float(block.first_order_improvement) for block in (model.block_a, model.block_b)]
    information = model.update_information()
    assert information[1]["update_value"] is not None and information[0]["eigenvalues_extension"] is not None
    best = model.select_best_update()
    assert best == int(torch.tensor(improvements).argmax())
    other = model._growing_layers[1 - best]
    assert other.eigenvalues_extension is None and other.second_layer.extended_input_layer is None
    assert model.currently_updated_layer is model._growing_layers[best]
    model.set_scaling_factor(0.1)
    with torch.no_grad():
        extended = model.extended_forward(x)
    widths = [block.hidden_neurons for block in (model.block_a, model.block_b)]
    model.apply_change()
    assert model.currently_updated_layer_index is None
    assert model._growing_layers[best].hidden_neurons > widths[best]
    with torch.no_grad():
        torch.testing.assert_close(model(x), extended, rtol=1e-12, atol=1e-12)
    assert model.number_of_parameters() == sum(p.numel() for p in model.parameters())
    assert set(model.weights_statistics()) == {0, 1}
    assert model.select_update(1, verbose=True) == 1
    assert "selected layer 1" in capsys.readouterr().out
    assert model.dummy_select_update() == 0
    with pytest.raises(IndexError, match="layer_index"):
        model.select_update(2)


def test_container_of_growing_modules(generator, device):
    model = TwoLayers(device=device).double()
    x, _ = _collect(model, generator)
    model.compute_optimal_delta()
    assert model.second.optimal_delta_layer is not None
    model.delete_update()
    assert model.second.optimal_delta_layer is None
    model.set_scaling_factor(0.5)
    assert float(model.second.scaling_factor.detach()) == 0.5
    assert float(model.second.output_extension_scaling.detach()) == 0.5
    assert float(model.first.output_extension_scaling.detach()) == 0.5
    assert model.weights_statistics()[0]["weight"]["min"] <= model.weights_statistics()[0]["weight"]["max"]


def test_update_size_reaches_merges(generator, device):
    class WithMerge(GrowingContainer):
        def __init__(self):
            super().__init__(in_features=2, out_features=3, device=device)
            self.conv = RestrictedConv2dGrowingModule(2, 3, 3, padding=1, input_size=(4, 4), device=device)
            self.merge = Conv2dMergeGrowingModule(3, (4, 4), 3, previous_modules=[self.conv], device=device)
            self.conv.next_module = self.merge

    model = WithMerge()
    model.conv.layer_out_extension(torch.randn(1, 2, 3, 3, generator=generator).to(device), torch.zeros(1).to(device))
    model.update_size()
    assert model.merge.in_channels == 4 and model.merge.previous_tensor_m._shape == (19, 4)


def test_abstract_members_and_errors(device):
    container = GrowingContainer(1, 1, device=device)
    with pytest.raises(NotImplementedError):
        container.set_growing_layers()
    with pytest.raises(NotImplementedError):
        container(torch.zeros(1))
    with pytest.raises(NotImplementedError):
        container.extended_forward(torch.zeros(1))
    with pytest.raises(AssertionError, match="selected"):
        _ = container.currently_updated_layer
    with pytest.raises(ValueError, match="growable"):
        container.select_best_update()
    assert container.number_of_parameters() == 0 and container.name == "GrowingContainer"


def test_blocks_in_a_container_can_be_conv_blocks(generator, device):
    class ConvNet(GrowingContainer):
        def __init__(self):
            super().__init__(in_features=2, out_features=2, device=device)
            self.block = Conv2dGrowingBlock(2, 2, 3, hidden_channels=0, kwargs_layer={"padding": 1}, device=device)
            self._growing_layers = [self.block]

        def forward(self, x):
            return self.block(x)

    model = ConvNet().double()
    x = torch.randn(3, 2, 4, 4, generator=generator, dtype=torch.float64).to(device)
    model.init_computation()
    model(x).pow(2).sum().backward()
    model.update_computation()
    model.compute_optimal_updates(dtype=torch.float64)
    assert model.select_best_update() == 0
    model.set_scaling_factor(0.5)
    model.apply_change()
    assert model.block.hidden_neurons > 0


@pytest.mark.filterwarnings("ignore:Using the pseudo-inverse")  # dead ReLU units: S is singular
def test_container_updates_reuse_factorisations_and_match_layer_by_layer(generator, device, factorization_caches):
    """GrowingContainer.compute_optimal_updates solves in one factorization_cache() block (layer l's
    growth covariance is layer l-1's S): same updates as each layer solved on its own."""
    from gromo.containers.growing_mlp import GrowingMLP

    torch.manual_seed(0)
    model = GrowingMLP(5, 2, hidden_size=4, number_hidden_layers=3, activation=nn.ReLU(), device=device).double()
    x = torch.randn(40, 5, generator=generator, dtype=torch.float64).to(device)
    model.init_computation()
    model(x).pow(2).sum().backward()
    model.update_computation()
    own = []
    for layer in model._growing_layers:
        layer.compute_optimal_updates()
        own.append((layer.optimal_delta_layer.weight.detach().clone(), layer.eigenvalues_extension.clone(),
                    layer.extended_input_layer.weight.detach().clone()))
        layer.delete_update()
    assert not factorization_caches
    model.compute_optimal_updates()
    assert len(factorization_caches) == 1 and factorization_caches[0].hits == 2
    for layer, (delta, sigma, omega) in zip(model._growing_layers, own):
        torch.testing.assert_close(layer.optimal_delta_layer.weight, delta, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.eigenvalues_extension, sigma, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.extended_input_layer.weight, omega, rtol=1e-10, atol=1e-12)
    model.reset_computation()
    model.delete_update()
