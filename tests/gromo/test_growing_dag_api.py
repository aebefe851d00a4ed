"""Public API of ``gromo.containers.growing_dag`` / ``growing_graph_network`` against GroMo's
signatures (names, order, defaults), as a data table."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from torch import nn

from gromo.containers import growing_dag, growing_graph_network

DAG = "gromo.containers.growing_dag"
GGN = "gromo.containers.growing_graph_network"

SIGNATURES = {
    (DAG, "GrowingDAG", "__init__"): "in_features, out_features, neurons, use_bias, use_layer_norm, "
    "default_layer_type='linear', activation='selu', kernel_size=(3, 3), name='', root='start', end='end', "
    "input_shape=None, DAG_parameters=None, device=None",
    (DAG, "GrowingDAG", "compute_optimal_delta"): "update=True, return_deltas=False, force_pseudo_inverse=False",
    (DAG, "GrowingDAG", "add_direct_edge"): "prev_node, next_node, edge_attributes={}, zero_weights=False",
    (DAG, "GrowingDAG", "add_node_with_two_edges"): "prev_node, new_node, next_node, node_attributes, "
    "edge_attributes={}, zero_weights=False",
    (DAG, "GrowingDAG", "update_nodes"): "nodes, node_attributes",
    (DAG, "GrowingDAG", "update_edges"): "edges, edge_attributes={}, zero_weights=False",
    (DAG, "GrowingDAG", "update_connections"): "edges",
    (DAG, "GrowingDAG", "remove_edge"): "prev_node, next_node",
    (DAG, "GrowingDAG", "remove_node"): "node",
    (DAG, "GrowingDAG", "rename_nodes"): "mapping",
    (DAG, "GrowingDAG", "toggle_edge_candidate"): "prev_node, next_node, candidate",
    (DAG, "GrowingDAG", "toggle_node_candidate"): "node, candidate",
    (DAG, "GrowingDAG", "is_edge_candidate"): "prev_node, next_node",
    (DAG, "GrowingDAG", "is_node_candidate"): "node",
    (DAG, "GrowingDAG", "get_edge_module"): "prev_node, next_node",
    (DAG, "GrowingDAG", "get_node_module"): "node",
    (DAG, "GrowingDAG", "get_edge_modules"): "edges",
    (DAG, "GrowingDAG", "get_node_modules"): "nodes",
    (DAG, "GrowingDAG", "calculate_bottleneck"): "actions, dataloader, loss_fn=CrossEntropyLoss()",
    (DAG, "GrowingDAG", "define_next_actions"): "expand_end=False",
    (DAG, "GrowingDAG", "forward"): "x, verbose=False",
    (DAG, "GrowingDAG", "extended_forward"): "x, x_ext=None, mask={}, verbose=False",
    (DAG, "GrowingDAG", "count_parameters"): "edges",
    (DAG, "GrowingDAG", "evaluate"): "x, y, loss_fn, with_f1score=False",
    (DAG, "GrowingDAG", "evaluate_extended"): "x, y, loss_fn, with_f1score=False",
    (DAG, "GrowingDAG", "_get_ancestors"): "root, pre_root=0",
    (DAG, "Expansion", "__init__"): "dag, exp_type, growth_history={}, expanding_node=None, previous_node=None, "
    "next_node=None, edge_attributes={}, node_attributes={}",
    (DAG, "Expansion", "evaluate"): "model, train_dataloader, dev_dataloader, val_dataloader, loss_fn",
    (DAG, "Expansion", "update_growth_history"): "current_step",
    (DAG, "InterMergeExpansion", "__init__"): "dag, exp_type, growth_history={}, expanding_node=None, "
    "previous_node=None, next_node=None, adjacent_expanding_node=None, edge_attributes={}, node_attributes={}",
    (GGN, "GrowingGraphNetwork", "__init__"): "in_features, out_features, loss_fn, neurons=20, neuron_epochs=100, "
    "neuron_lrate=0.001, neuron_batch_size=256, use_bias=True, use_layer_norm=False, layer_type='linear', name='', "
    "input_shape=None, device=None",
    (GGN, "GrowingGraphNetwork", "block_forward"): "layer_fn, alpha, omega, bias, x, sigma, **kwargs",
    (GGN, "GrowingGraphNetwork", "bottleneck_loss"): "activity, bottleneck",
    (GGN, "GrowingGraphNetwork", "bi_level_bottleneck_optimization"): "alpha, omega, bias, B, sigma, bottleneck, "
    "input_keys, target_keys, linear=True, operation_args={}, verbose=True",
    (GGN, "GrowingGraphNetwork", "joint_bottleneck_optimization"): "activity, existing_activity, desired_update",
    (GGN, "GrowingGraphNetwork", "expand_node"): "expansion, bottlenecks, activities, "
    "neuron_selection_threshold=-inf, verbose=True",
    (GGN, "GrowingGraphNetwork", "update_edge_weights"): "expansion, bottlenecks, activities, verbose=True",
    (GGN, "GrowingGraphNetwork", "find_amplitude_factor"): "dataloader, mask={}",
    (GGN, "GrowingGraphNetwork", "execute_expansions"): "actions, bottleneck, input_B, amplitude_factor, evaluate, "
    "neuron_selection_threshold=-inf, train_dataloader=None, dev_dataloader=None, val_dataloader=None, verbose=False",
    (GGN, "GrowingGraphNetwork", "restrict_action_space"): "actions, chosen_outputs=None, chosen_inputs=None",
    (GGN, "GrowingGraphNetwork", "choose_growth_best_action"): "options, use_bic=False, verbose=False",
    (GGN, "GrowingGraphNetwork", "clean_graph_with_chosen_action"): "options",
    (GGN, "GrowingGraphNetwork", "extended_forward"): "x, x_ext=None, mask={}",
    (GGN, "GrowingGraphNetwork", "compute_optimal_delta"): "update=True, return_deltas=False, "
    "force_pseudo_inverse=False",
}
NO_ARGUMENTS = {
    (DAG, "GrowingDAG"): ["set_growing_layers", "init_computation", "update_computation", "reset_computation",
                          "delete_update", "init_dag_parameters", "export_dag_parameters", "get_all_edge_modules",
                          "get_all_node_modules", "is_empty", "update_size", "find_possible_extensions",
                          "parameters", "count_parameters_all"],
    (DAG, "Expansion"): ["expand", "delete", "create_mask"],
    (GGN, "GrowingGraphNetwork"): ["set_growing_layers", "init_computation", "update_computation",
                                   "reset_computation", "delete_update", "update_size", "init_empty_graph",
                                   "reset_network", "apply_change", "parameters"],
}
PROPERTIES = {
    (DAG, "GrowingDAG"): ["nodes", "edges", "out_edges", "in_edges", "in_degree", "out_degree"],
    (DAG, "Expansion"): ["previous_nodes", "next_nodes", "new_edges", "in_edges", "out_edges"],
}


def _text(parameter: inspect.Parameter) -> str:
    if parameter.kind is inspect.Parameter.VAR_KEYWORD:
        return f"**{parameter.name}"
    if parameter.default is inspect.Parameter.empty:
        return parameter.name
    default = parameter.default
    if isinstance(default, float) and np.isinf(default):
        return f"{parameter.name}={default}"
    if isinstance(default, nn.Module):
        return f"{parameter.name}={type(default).__name__}()"
    return f"{parameter.name}={default!r}"


@pytest.mark.parametrize("key", sorted(SIGNATURES), ids=lambda k: ".".join(k[1:]))
def test_signature(key):
    module, cls, method = key
    function = getattr(getattr(__import__(module, fromlist=[cls]), cls), method)
    parameters = list(inspect.signature(function).parameters.values())[1:]
    assert ", ".join(_text(p) for p in parameters) == SIGNATURES[key]


def test_methods_without_arguments_properties_and_public_paths():
    for (module, cls), methods in NO_ARGUMENTS.items():
        owner = getattr(__import__(module, fromlist=[cls]), cls)
        for method in methods:
            assert list(inspect.signature(getattr(owner, method)).parameters) == ["self"], (cls, method)
    for (module, cls), names in PROPERTIES.items():
        owner = getattr(__import__(module, fromlist=[cls]), cls)
        for name in names:
            assert isinstance(inspect.getattr_static(owner, name), property), (cls, name)
    for name in ("GrowingDAG", "Expansion", "ExpansionType", "InterMergeExpansion"):
        assert getattr(growing_dag, name).__module__ == DAG
    assert growing_graph_network.GrowingGraphNetwork.__module__ == GGN
    assert [t.name for t in growing_dag.ExpansionType] == ["NEW_EDGE", "NEW_NODE", "EXPANDED_NODE"]
    assert [t.value for t in growing_dag.ExpansionType] == [0, 1, 2]
