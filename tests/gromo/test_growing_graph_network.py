"""GrowingGraphNetwork: the bottleneck and the candidate fits against float64 brute-force
computations, the batched fit against a loop of single fits, extended_forward against the applied
change, and each GroMo bug fixed."""

from __future__ import annotations

import warnings

import networkx as nx
import pytest
import torch
from torch import nn

from gromo.containers._candidate_fit import CandidatePlan, fit_candidates
from gromo.containers.growing_dag import Expansion, ExpansionType
from gromo.containers.growing_graph_network import GrowingGraphNetwork
from gromo.modules.growing_normalisation import GrowingLayerNorm
from gromo.utils.tools import lecun_normal_

LOSS = nn.CrossEntropyLoss()


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def data(generator, n=192, d=5, c=3, batch=64):
    x = torch.randn(n, d, generator=generator)
    y = torch.randint(0, c, (n,), generator=generator)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch)


def grown_network(use_layer_norm=False, neuron_epochs=0, **kwargs) -> GrowingGraphNetwork:
    """start → 1@ → end and start → end (1@ has 4 neurons, random weights)."""
    net = GrowingGraphNetwork(5, 3, LOSS, neurons=4, neuron_epochs=neuron_epochs, use_layer_norm=use_layer_norm,
                              **kwargs)
    net.dag.add_node_with_two_edges("start@", "1@", "end@", {"type": "linear", "size": 4, "activation": "selu"})
    with torch.no_grad():
        lecun_normal_(net.dag.get_edge_module("1@", "end@").weight)
    return net


def float64_statistics(dag, loader):
    """Activities and pre-activation gradients of every node, recomputed in float64."""
    activities, gradients = {}, {}
    for x, y in loader:
        out, pre = {}, {}
        for node in nx.topological_sort(dag):
            if node == dag.root:
                out[node] = x.double()
                continue
            a = 0.0
            for u in dag.predecessors(node):
                edge = dag.get_edge_module(u, node)
                a = a + out[u] @ edge.weight.double().T + (edge.bias.double() if edge.bias is not None else 0.0)
            a.retain_grad()
            pre[node] = a
            out[node] = dag.get_node_module(node).post_merge_function(a)
        LOSS(out[dag.end], y).backward()
        for node in out:
            activities.setdefault(node, []).append(out[node].detach())
        for node in pre:
            gradients.setdefault(node, []).append(pre[node].grad)
    return ({k: torch.cat(v) for k, v in activities.items()}, {k: torch.cat(v) for k, v in gradients.items()})


def normalised(w: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return w / (features @ w.T).pow(2).sum(1).mean().sqrt()


def test_bottleneck_is_the_gradient_minus_the_best_update_of_the_existing_edges(generator):
    net = grown_network()
    loader = data(generator)
    actions = net.dag.define_next_actions()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, LOSS)
    assert set(bottleneck) == {"1@", "end@"} and set(activities) == {"start@", "1@", "end@"}
    acts64, grads64 = float64_statistics(net.dag, loader)
    for node in ("1@", "end@"):
        features = torch.cat([torch.cat([acts64[u], torch.ones(len(acts64[u]), 1, dtype=torch.float64)], 1)
                              if net.dag.get_edge_module(u, node).use_bias else acts64[u]
                              for u in net.dag.predecessors(node)], dim=1)
        grad = grads64[node]
        expected = grad - features @ (torch.linalg.pinv(features) @ grad)
        error = (bottleneck[node].double() - expected).norm() / expected.norm()
        assert error < 2e-4, (node, float(error))
        assert expected.norm() > 0.1 * grad.norm()  # a real residual, not rounding
        torch.testing.assert_close(activities[node].double(), acts64[node], rtol=1e-5, atol=1e-6)
    # the deltas stay on the edges, statistics are gone
    assert net.dag.get_edge_module("start@", "end@").optimal_delta_layer is not None
    assert net.dag.get_node_module("end@").input is None


def test_bottleneck_of_an_edgeless_dag_is_the_gradient(generator):
    net = GrowingGraphNetwork(5, 3, LOSS)
    net.dag.remove_edge("start@", "end@")
    loader = data(generator)
    action = Expansion(net.dag, ExpansionType.NEW_EDGE, previous_node="start@", next_node="end@")
    bottleneck, _ = net.dag.calculate_bottleneck([action], loader, LOSS)
    # the temporary constant edge outputs zeros: logits 0, gradient (softmax − onehot)/batch
    y = torch.cat([y for _, y in loader])
    expected = (torch.full((len(y), 3), 1 / 3) - nn.functional.one_hot(y, 3)) / 64
    torch.testing.assert_close(bottleneck["end@"], expected)
    assert net.dag.is_empty()


def test_candidate_fits_match_float64_least_squares(generator):
    x = torch.randn(300, 6, generator=generator)
    v = 0.01 * torch.randn(300, 4, generator=generator) + 0.02 * torch.sin(x[:, :4])
    selu = nn.SELU()
    plans = [CandidatePlan("edge", ("a",), ("b",), bias=True),
             CandidatePlan("node", ("a",), ("b",), bias=True, activation=selu, neurons=5)]
    torch.manual_seed(3)
    edge, node = fit_candidates(plans, {"b": v}, {"a": x}, batch_size=64)
    x64, v64 = x.double(), v.double()
    features = torch.cat([x64, torch.ones(300, 1, dtype=torch.float64)], 1)
    w = normalised(-(torch.linalg.pinv(features) @ v64).T, features)
    torch.testing.assert_close(edge.weight.double(), w[:, :-1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(edge.bias.double(), w[:, -1], rtol=1e-4, atol=1e-5)
    out = features @ w.T
    loss = ((out * v64).sum(1).mean() / (out.pow(2).sum(1).mean() + 1e-8).sqrt())
    assert abs(edge.loss - float(loss)) < 1e-5 * abs(float(loss)) + 1e-9
    assert edge.loss < 0  # anti-aligned with the bottleneck
    torch.manual_seed(3)
    alpha = lecun_normal_(torch.empty(5, 6)).double()
    hidden = selu(x64 @ alpha.T)
    omega = normalised(-(torch.linalg.pinv(hidden) @ v64).T, hidden)
    torch.testing.assert_close(node.weight.double(), alpha)
    torch.testing.assert_close(node.omega.double(), omega, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(node.foi.double(), -(hidden * (v64 @ omega)).mean(0), rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(node.block_output.double(), hidden @ omega.T, rtol=1e-4, atol=1e-5)
    assert float(node.bias.abs().sum()) == 0.0


def test_batched_fit_equals_a_loop_of_single_fits(generator):
    acts = {k: torch.randn(200, w, generator=generator) for k, w in (("s", 5), ("a", 3), ("b", 4))}
    bott = {k: torch.randn(200, w, generator=generator) for k, w in (("a", 3), ("b", 4), ("e", 2))}
    selu = nn.SELU()
    plans = [CandidatePlan("edge", ("s",), ("e",), True), CandidatePlan("edge", ("s",), ("b",), True),
             CandidatePlan("edge", ("a",), ("e",), True), CandidatePlan("node", ("s",), ("a",), True, selu, 4),
             CandidatePlan("node", ("s", "a"), ("e", "b"), False, selu, 4),
             CandidatePlan("node", ("b",), ("e",), True, nn.Identity(), 3)]
    torch.manual_seed(0)
    batched = fit_candidates(plans, bott, acts, batch_size=50)
    torch.manual_seed(0)
    single = [fit_candidates([plan], bott, acts, batch_size=50)[0] for plan in plans]
    for one, many in zip(single, batched):
        torch.testing.assert_close(many.weight, one.weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(many.block_output, one.block_output, rtol=1e-5, atol=1e-6)
        assert abs(many.loss - one.loss) < 1e-6
        if one.omega is not None:
            torch.testing.assert_close(many.omega, one.omega, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(many.foi, one.foi, rtol=1e-5, atol=1e-7)


def loss_of(net, loader, mask):
    with torch.no_grad():
        return sum(float(LOSS(net.extended_forward(x, mask=mask)[0], y)) for x, y in loader) / len(loader)


def prepared_step(net, loader, expected_type):
    actions = net.dag.define_next_actions()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, LOSS)
    actions = [a for a in actions if a.type is expected_type]
    net.execute_expansions(actions, bottleneck, activities, amplitude_factor=False, evaluate=False)
    return actions


def test_new_edge_lowers_the_loss_for_a_small_positive_scale(generator):
    # GroMo bug: the edge was stored with (W, b), so its loss rose monotonically with γ.
    net = grown_network()
    net.dag.remove_edge("start@", "end@")
    loader = data(generator)
    (action,) = prepared_step(net, loader, ExpansionType.NEW_EDGE)
    mask = action.create_mask()
    edge = net.dag.get_edge_module("start@", "end@")
    gains = []
    for factor in (0.05, 0.1, 0.2):
        net.set_scaling_factor(factor)
        gains.append(loss_of(net, loader, {}) - loss_of(net, loader, mask))
    assert all(g > 0 for g in gains) and gains[0] < gains[1] < gains[2]
    with torch.no_grad():  # GroMo's sign: the same edge now raises the loss
        edge.optimal_delta_layer.weight.neg_()
        edge.optimal_delta_layer.bias.neg_()
    net.set_scaling_factor(0.1)
    assert loss_of(net, loader, mask) > loss_of(net, loader, {})


@pytest.mark.parametrize("kind", [ExpansionType.NEW_EDGE, ExpansionType.NEW_NODE, ExpansionType.EXPANDED_NODE])
def test_extended_forward_equals_forward_after_the_change(generator, kind):
    # (without layer norms: a grown LayerNorm also renormalises the old neurons by the new ones)
    net = grown_network()
    if kind is ExpansionType.NEW_EDGE:
        net.dag.remove_edge("start@", "end@")
    loader = data(generator)
    actions = prepared_step(net, loader, kind)
    chosen = actions[0]
    for action in actions:
        action.metrics["loss_val"] = 0.0 if action is chosen else 1.0
    factor = 0.7
    net.set_scaling_factor(factor)
    chosen.metrics["scaling_factor"] = factor
    x = torch.cat([x for x, _ in loader])
    with torch.no_grad():
        expected = net.extended_forward(x, mask=chosen.create_mask())[0]
    before = net.dag.count_parameters_all()
    net.choose_growth_best_action(actions)
    net.apply_change()
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, rtol=1e-4, atol=1e-5)
    assert net.dag.count_parameters_all() > before or kind is ExpansionType.NEW_EDGE  # the edge was counted
    assert not any(net.dag.is_node_candidate(n) for n in net.dag.nodes)
    assert all("_" not in n for n in net.dag.nodes)
    for node in net.dag.nodes:
        assert net.dag.nodes[node]["size"] == net.dag.get_node_module(node).in_features


def test_expand_node_keeps_the_node_s_layer_norm(generator):
    # GroMo bug: its shallow copy of the post-merge function stripped the node's norm for good.
    net = grown_network(use_layer_norm=True, neuron_epochs=2)
    loader = data(generator)
    node = net.dag.get_node_module("1@")
    norm = node.post_merge_function[0]
    assert isinstance(norm, GrowingLayerNorm)
    (action,) = prepared_step(net, loader, ExpansionType.EXPANDED_NODE)
    assert node.post_merge_function[0] is norm
    added = action.metrics["active_neurons"]
    assert added == 4 and action.metrics["neuron_foi"].shape == (4,)
    action.metrics["loss_val"], action.metrics["scaling_factor"] = 0.0, 0.5
    net.choose_growth_best_action([action])
    net.apply_change()
    assert net.dag.get_node_module("1@").post_merge_function[0] is norm and norm.normalized_shape == (4 + added,)


def test_neuron_selection_threshold_drops_neurons_and_skips(generator):
    net = grown_network()
    loader = data(generator)
    actions = net.dag.define_next_actions()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, LOSS)
    actions = [a for a in actions if a.type is ExpansionType.EXPANDED_NODE]
    net.execute_expansions(actions, bottleneck, activities, amplitude_factor=False, evaluate=False,
                           neuron_selection_threshold=float("inf"))
    assert actions[0].metrics["skip"] is True and actions[0].metrics["active_neurons"] == 0
    assert "scaling_factor" not in actions[0].metrics


def test_amplitude_factor_uses_the_line_search(generator):
    # GroMo bug: execute_expansions(amplitude_factor=True) dropped the result and crashed.
    net = grown_network()
    loader = data(generator, n=64)
    actions = net.dag.define_next_actions()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, LOSS)
    actions = [a for a in actions if a.type is ExpansionType.NEW_NODE][:1]
    with pytest.raises(AssertionError, match="Development DataLoader should be given if amplitude_factor is True"):
        net.execute_expansions(actions, bottleneck, activities, amplitude_factor=True, evaluate=False)
    net.execute_expansions(actions, bottleneck, activities, amplitude_factor=True, evaluate=False,
                           dev_dataloader=loader)
    factor = actions[0].metrics["scaling_factor"]
    assert factor == net.find_amplitude_factor(loader, actions[0].create_mask()) and factor > 0
    net.set_scaling_factor(factor)
    at_factor = loss_of(net, loader, actions[0].create_mask())
    net.set_scaling_factor(0.0)
    assert at_factor < loss_of(net, loader, actions[0].create_mask())


def test_reset_network_replaces_the_dag_in_the_growing_layers():
    # GroMo bug: the old DAG stayed listed.
    net = grown_network()
    old = net.dag
    net.global_step = 3
    net.growth_history = {1: {}}
    net.reset_network()
    assert net._growing_layers == [net.dag] and net.dag is not old
    assert net.global_step == 0 and net.growth_history == {} and list(net.dag.edges) == [("start@", "end@")]


def test_evaluate_records_losses_parameters_and_bic(generator):
    net = grown_network()
    loader = data(generator)
    actions = net.dag.define_next_actions()
    bottleneck, activities = net.dag.calculate_bottleneck(actions, loader, LOSS)
    with pytest.raises(AssertionError, match="Train DataLoader should be given if evaluate is True"):
        net.execute_expansions(actions, bottleneck, activities, amplitude_factor=False, evaluate=True)
    net.execute_expansions(actions, bottleneck, activities, amplitude_factor=False, evaluate=True,
                           train_dataloader=loader, dev_dataloader=loader, val_dataloader=loader)
    for action in actions:
        assert {"loss_train", "loss_dev", "loss_val", "acc_val", "nb_params", "BIC"} <= set(action.metrics)
        net.set_scaling_factor(action.metrics["scaling_factor"])
        assert abs(action.metrics["loss_val"] - loss_of(net, loader, action.create_mask())) < 1e-5
    net.choose_growth_best_action(actions, use_bic=True)
    assert net.chosen_action.metrics["BIC"] == min(a.metrics["BIC"] for a in actions)


def test_errors_of_the_growth_api(generator):
    net = grown_network()
    actions = net.dag.define_next_actions()
    with pytest.raises(TypeError, match=r"Bottleneck and activities variables should have the same type\. Got "
                                        r"type\(bottlenecks\)=<class 'dict'> and type\(activities\)=<class 'list'>"):
        net.expand_node(actions[-1], {}, [])
    with pytest.raises(TypeError, match=r"Inappropriate type for `bottlenecks` variable\. Expected dict"):
        net.update_edge_weights(actions[0], [], [])
    with pytest.raises(NotImplementedError, match="Joint optimization of weights is not implemented yet!"):
        net.joint_bottleneck_optimization(None, None, None)
    with pytest.warns(UserWarning, match="No input or output was given to restrict the actions"):
        assert net.restrict_action_space(actions) is actions
    with pytest.raises(NotImplementedError, match="You can only restrict inputs or outputs one at a time."):
        net.restrict_action_space(actions, chosen_outputs=["end@"], chosen_inputs=["start@"])
    outputs = net.restrict_action_space(actions, chosen_outputs=["1@"])
    assert [repr(a) for a in outputs] == ["[Expansion]: New node 2@_a from start@ to 1@",
                                          "[Expansion]: Expanding node 1@"]
    inputs = net.restrict_action_space(actions, chosen_inputs=["1@"])
    assert [repr(a) for a in inputs] == ["[Expansion]: New node 2@_b from 1@ to end@"]
    with pytest.raises(KeyError):
        net.choose_growth_best_action(actions)
    x = torch.randn(2, 5)
    ones = torch.ones(2, 3)
    assert float(net.bottleneck_loss(ones[:, :, None, None], ones)) == pytest.approx(3 / (3 + 1e-8) ** 0.5)
    block = net.block_forward(nn.functional.linear, torch.ones(2, 5), torch.ones(3, 2), torch.ones(2, 2), x,
                              torch.relu)
    torch.testing.assert_close(block, torch.relu(x.sum(1, keepdim=True) + 2).repeat(1, 2).sum(1, keepdim=True)
                               .repeat(1, 3))
