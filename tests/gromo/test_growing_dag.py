"""GrowingDAG: construction, naming, every editing operation and its errors, ancestors, forward."""

from __future__ import annotations

import warnings

import networkx as nx
import pytest
import torch
from torch import nn

from gromo.containers.growing_dag import GrowingDAG, supported_layer_types
from gromo.modules.growing_normalisation import GrowingLayerNorm
from gromo.modules.linear_growing_module import LinearGrowingModule, LinearMergeGrowingModule
from tests.gromo.dag_graphs import chain, quiet_user_warnings  # noqa: F401 (an autouse fixture)


def test_default_dag_is_one_layer_with_gromo_names():
    dag = GrowingDAG(5, 3, 10, True, False, name="x")
    assert isinstance(dag, nx.DiGraph) and isinstance(dag, nn.Module)
    assert list(dag.nodes) == ["start@x", "end@x"] and list(dag.edges) == [("start@x", "end@x")]
    assert dag.name == "GrowingContainer" and dag._name == "x"
    edge = dag.get_edge_module("start@x", "end@x")
    assert isinstance(edge, LinearGrowingModule) and edge._name == "Lstart@x_end@x"
    assert edge.name == "LinearGrowingModule(Lstart@x_end@x)"
    assert dag.get_node_module("end@x")._name == "end@x"
    assert set(dag._modules) == {"start@x", "end@x", "('start@x', 'end@x')"}
    assert dag.ancestors == {"start@x": {"start@x"}, "end@x": {"start@x", "end@x"}}
    assert dag._growing_layers == [edge, dag.get_node_module("start@x"), dag.get_node_module("end@x")]
    assert [p.shape for p in dag.parameters()] == [torch.Size([3, 5]), torch.Size([3])]
    assert dag.count_parameters_all() == 18
    assert nx.is_directed_acyclic_graph(dag)
    assert supported_layer_types == ["linear", "convolution"]


def test_constructor_errors_and_empty_graph():
    with pytest.raises(ValueError, match=r"The character '_' is not allowed in the name of a GrowingDAG\. Found a_b\."):
        GrowingDAG(2, 2, 1, True, False, name="a_b")
    with pytest.raises(NotImplementedError, match=r"Expected one of \['linear', 'convolution'\], got dense"):
        GrowingDAG(2, 2, 1, True, False, default_layer_type="dense")
    empty = GrowingDAG(2, 2, 1, True, False, DAG_parameters={})
    assert empty.is_empty() and empty.number_of_nodes() == 0 and empty.ancestors == {}


def test_export_round_trip_rebuilds_the_same_structure():
    dag = chain()
    params = dag.export_dag_parameters()
    assert params["node_attributes"]["start@"]["activation"] == "id"
    assert params["edge_attributes"]["('1@', 'end@')"]["use_bias"] is False
    copy = GrowingDAG(5, 3, 10, True, False, DAG_parameters=params)
    assert list(copy.edges) == list(dag.edges)
    assert {n: copy.nodes[n]["size"] for n in copy.nodes} == {n: dag.nodes[n]["size"] for n in dag.nodes}
    assert copy.get_edge_module("1@", "end@").use_bias is False


def test_update_nodes_and_add_node_errors():
    dag = GrowingDAG(2, 2, 1, True, False)
    dag.add_node("n")
    with pytest.raises(KeyError, match='The type of the node should be specified at initialization'):
        dag.update_nodes(["n"], {"n": {"size": 3}})
    with pytest.raises(KeyError, match='The size of the node should be specified'):
        dag.update_nodes(["n"], {"n": {"type": "linear"}})
    with pytest.raises(KeyError, match=r'Example: key "type" in node_attributes'):
        dag.add_node_with_two_edges("start@", "m", "end@", {"size": 2})
    assert dag.has_edge("start@", "m")  # GroMo adds the edges before checking
    with pytest.raises(NotImplementedError):
        dag.update_nodes(["n"], {"n": {"type": "dense", "size": 1}})


def test_layer_norm_node_and_conv_edge_errors():
    dag = GrowingDAG(2, 2, 1, True, True)
    norm = dag.get_node_module("end@").post_merge_function[0]
    assert isinstance(norm, GrowingLayerNorm) and norm.normalized_shape == (2,)
    assert isinstance(dag.get_node_module("start@").post_merge_function[0], nn.Identity)
    conv = GrowingDAG(2, 2, 1, True, False, default_layer_type="convolution", input_shape=(4, 4))
    conv.add_node("c")
    conv.update_nodes(["c"], {"c": {"type": "convolution", "size": 3, "kernel_size": (3, 3), "shape": (4, 4)}})
    conv.add_edge("start@", "c")
    with pytest.raises(KeyError, match='The kernel size of the edge should be specified at initialization'):
        conv.update_edges([("start@", "c")], {"use_bias": True})
    with pytest.raises(KeyError, match=r'The shape of the input \(h,w\) should be specified'):
        conv.update_nodes(["c"], {"c": {"type": "convolution", "size": 3, "kernel_size": (3, 3),
                                        "use_layer_norm": True}})
    mixed = GrowingDAG(2, 2, 1, True, False)
    mixed.add_node("c")
    mixed.update_nodes(["c"], {"c": {"type": "convolution", "size": 3, "kernel_size": (3, 3), "shape": (4, 4)}})
    mixed.add_edge("start@", "c")
    with pytest.raises(NotImplementedError):
        mixed.update_edges([("start@", "c")])


def test_add_and_remove_edges_and_nodes_keep_merges_consistent():
    dag = chain()
    start, node, end = (dag.get_node_module(n) for n in ("start@", "1@", "end@"))
    assert [m._name for m in end.previous_modules] == ["Lstart@_end@", "L1@_end@"]
    assert end.total_in_features == 5 + 1 + 4  # the outgoing edge of the new node has no bias
    dag.remove_edge("start@", "end@")
    assert [m._name for m in end.previous_modules] == ["L1@_end@"] and end.total_in_features == 4
    assert [m._name for m in start.next_modules] == ["Lstart@_1@"]
    assert "('start@', 'end@')" not in dag._modules
    dag.remove_edge("start@", "end@")  # absent: no-op
    assert dag.ancestors == {"start@": {"start@"}, "1@": {"start@", "1@"}, "end@": {"start@", "1@", "end@"}}
    dag.add_direct_edge("start@", "end@")
    dag.remove_node("1@")
    assert list(dag.nodes) == ["start@", "end@"] and list(dag.edges) == [("start@", "end@")]
    assert node.previous_modules == [] and node.next_modules == []
    assert [m._name for m in end.previous_modules] == ["Lstart@_end@"]
    assert set(dag._modules) == {"start@", "end@", "('start@', 'end@')"}
    # stale ancestors are gone (GroMo's only grow)
    assert dag.ancestors == {"start@": {"start@"}, "end@": {"start@", "end@"}}
    dag.remove_node("1@")  # absent: no-op
    assert dag(torch.randn(3, 5)).shape == (3, 3)


def test_rename_nodes_moves_node_edges_ancestors_and_submodules():
    dag = chain()
    module = dag.get_node_module("1@")
    dag.rename_nodes({"1@": "7@", "absent": "x", "start@": "start@"})
    assert list(dag.nodes) == ["start@", "end@", "7@"]
    assert set(dag.edges) == {("start@", "end@"), ("start@", "7@"), ("7@", "end@")}
    assert dag.get_node_module("7@") is module
    assert dag.ancestors["7@"] == {"start@", "7@"} and "1@" not in dag.ancestors
    assert "7@" in dag._modules and "('7@', 'end@')" in dag._modules and "1@" not in dag._modules
    with pytest.raises(ValueError, match="New node name 'end@' already exists in the graph."):
        dag.rename_nodes({"7@": "end@"})


def test_candidate_flags_and_their_errors():
    dag = chain(name="g")
    dag.toggle_edge_candidate(None, "end@g", True)  # no-op
    dag.toggle_node_candidate(None, True)
    with pytest.raises(ValueError, match=r"Edge \(1@g, start@g\) is not present in the graph"):
        dag.toggle_edge_candidate("1@g", "start@g", True)
    with pytest.raises(ValueError, match="Node 9@g is not present in the graph"):
        dag.toggle_node_candidate("9@g", True)
    assert dag.is_edge_candidate("start@g", "end@g") is False
    dag.toggle_edge_candidate("start@g", "end@g", True)
    assert dag.is_edge_candidate("start@g", "end@g") is True
    assert dag.is_edge_candidate("2@g_a", "end@g") is True
    assert dag.is_node_candidate("2@g_a") is True and dag.is_node_candidate("1@g") is False
    dag.toggle_node_candidate("1@g", True)
    assert dag.is_node_candidate("1@g") is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match=r"Edge \(end@g,1@g\) does not belong in the current GrowingDAG\(g\)\. "
                                              "All external edges are assumed to be non-candidate."):
            dag.is_edge_candidate("end@g", "1@g")
        with pytest.raises(UserWarning, match=r"Node 5@ does not belong in the current GrowingDAG\(g\)"):
            dag.is_node_candidate("5@")


def test_text_lists_nodes_and_edges():
    text = str(chain())
    assert text.splitlines() == [
        "GrowingDAG[](",
        "\tNodes (3):",
        "\t\tstart@ (layer type: linear, hidden size: 5, activation: None)",
        "\t\tend@ (layer type: linear, hidden size: 3, activation: None)",
        "\t\t1@ (layer type: linear, hidden size: 4, activation: [Identity(), SELU()])",
        "\tEdges (3):",
        "\t\tstart@->end@, start@->1@, 1@->end@",
        ")",
    ]
    assert repr(chain()) == text


def test_forward_equals_a_float64_recomputation(generator):
    dag = chain()
    x = torch.randn(6, 5, generator=generator)
    w = {e: dag.get_edge_module(*e) for e in dag.edges}
    x64 = x.double()
    hidden = torch.selu(x64 @ w[("start@", "1@")].weight.double().T + w[("start@", "1@")].bias.double())
    expected = (x64 @ w[("start@", "end@")].weight.double().T + w[("start@", "end@")].bias.double()
                + hidden @ w[("1@", "end@")].weight.double().T)
    torch.testing.assert_close(dag(x).double(), expected, rtol=1e-5, atol=1e-5)
    main, ext = dag.extended_forward(x)
    torch.testing.assert_close(main, dag(x))
    assert ext is None
    dag.nodes["1@"]["size"] = 5
    with pytest.raises(AssertionError, match=r"activity.shape\[1\]=4 != self.nodes\[node\]\['size'\]=5 for node='1@'"):
        dag(x)


def test_update_size_follows_the_modules():
    dag = chain()
    edge = dag.get_edge_module("start@", "1@")
    edge.layer_out_extension(torch.randn(2, 5), torch.zeros(2))
    dag.get_edge_module("1@", "end@").layer_in_extension(torch.randn(3, 2))
    dag.update_size()
    assert dag.nodes["1@"]["size"] == 6 and dag.out_features == 3 and dag.in_features == 5
    assert isinstance(dag.get_node_module("1@"), LinearMergeGrowingModule)
