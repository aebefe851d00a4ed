"""Convolution DAGs: construction, forward, and the bottleneck against a float64 unfold least
squares; candidate fitting is linear-only and says so."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gromo.containers.growing_dag import Expansion, ExpansionType, GrowingDAG
from gromo.containers.growing_graph_network import GrowingGraphNetwork
from gromo.modules.conv2d_growing_module import Conv2dMergeGrowingModule, FullConv2dGrowingModule
from tests.gromo.dag_graphs import quiet_user_warnings  # noqa: F401 (an autouse fixture)


def test_conv_dag_forward_and_bottleneck_match_float64(generator):
    dag = GrowingDAG(3, 4, 5, True, False, default_layer_type="convolution", input_shape=(6, 6))
    edge = dag.get_edge_module("start@", "end@")
    assert isinstance(edge, FullConv2dGrowingModule) and edge._name == "Cstart@_end@"
    assert isinstance(dag.get_node_module("end@"), Conv2dMergeGrowingModule)
    x = torch.randn(16, 3, 6, 6, generator=generator)
    target = torch.randn(16, 4, 6, 6, generator=generator)
    weight, bias = edge.weight.detach().double(), edge.bias.detach().double()
    torch.testing.assert_close(dag(x).double(), F.conv2d(x.double(), weight, bias, padding=1), rtol=1e-5, atol=1e-5)
    loader = [(x[:8], target[:8]), (x[8:], target[8:])]
    action = Expansion(dag, ExpansionType.NEW_EDGE, previous_node="start@", next_node="end@")
    bottleneck, activities = dag.calculate_bottleneck([action], loader, nn.MSELoss())
    gradients = []
    for xb, tb in loader:
        pre = F.conv2d(xb.double(), weight, bias, padding=1).requires_grad_()
        nn.MSELoss()(pre, tb.double()).backward()
        gradients.append(pre.grad)
    grad = torch.cat(gradients).permute(0, 2, 3, 1).reshape(-1, 4)
    unfolded = F.unfold(x.double(), 3, padding=1).transpose(1, 2).reshape(-1, 27)
    unfolded = torch.cat([unfolded, torch.ones(len(unfolded), 1, dtype=torch.float64)], dim=1)
    residual = grad - unfolded @ (torch.linalg.pinv(unfolded) @ grad)
    expected = residual.reshape(16, 6, 6, 4).permute(0, 3, 1, 2)
    assert float((bottleneck["end@"].double() - expected).norm() / expected.norm()) < 1e-5
    assert expected.norm() > 0.5 * grad.norm()
    assert activities["start@"].shape == (16, 3, 6, 6)


def test_conv_candidates_are_not_fitted_silently(generator):
    net = GrowingGraphNetwork(3, 4, nn.MSELoss(), neurons=2, neuron_epochs=0, layer_type="convolution",
                              input_shape=(6, 6))
    net.dag.add_node_with_two_edges("start@", "1@", "end@", {"type": "convolution", "size": 2, "kernel_size": (3, 3),
                                                             "shape": (6, 6), "activation": "relu"},
                                    {"kernel_size": (3, 3)})
    x = torch.randn(4, 3, 6, 6, generator=generator)
    loader = [(x, torch.randn(4, 4, 6, 6, generator=generator))]
    actions = net.dag.define_next_actions()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, nn.MSELoss())
    edges = list(net.dag.edges)
    with pytest.raises(NotImplementedError, match=r"only linear nodes can be expanded"):
        net.execute_expansions(actions, bottleneck, activities, amplitude_factor=False, evaluate=False)
    assert list(net.dag.edges) == edges  # nothing half-done: no candidate entered the graph
