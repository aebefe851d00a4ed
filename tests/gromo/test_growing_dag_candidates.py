"""GrowingDAG candidates and expansions: ancestors, exact candidate lists (the same under every
PYTHONHASHSEED), Expansion / InterMergeExpansion construction, errors, surgery and masks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gromo.containers.growing_dag import Expansion, ExpansionType, GrowingDAG, InterMergeExpansion
from gromo.modules.linear_growing_module import LinearGrowingModule
from tests.gromo.dag_graphs import build_dag, diamond, quiet_user_warnings  # noqa: F401 (an autouse fixture)


def test_ancestors_of_a_diamond():
    dag = diamond()
    assert dag.ancestors == {
        "start@": {"start@"}, "1@": {"start@", "1@"}, "2@": {"start@", "1@", "2@"},
        "end@": {"start@", "1@", "2@", "end@"},
    }
    assert dag._indirect_connection_exists("start@", "2@")  # via 1@
    assert dag._indirect_connection_exists("1@", "end@")  # via 2@
    assert not dag._indirect_connection_exists("start@", "1@")


def test_candidates_of_a_chain_are_gromo_s_example():
    dag = build_dag(3, 2, 5, nodes=("1",), remove_direct=True)
    direct, one_hop = dag.find_possible_extensions()
    assert [(c["previous_node"], c["next_node"]) for c in direct] == [("start@", "end@")]
    assert [(c["previous_node"], c["new_node"], c["next_node"]) for c in one_hop] == [
        ("start@", "2@", "1@"), ("1@", "2@", "end@")]
    assert one_hop[0]["node_attributes"] == {"type": "linear", "size": 0, "activation": "selu",
                                             "kernel_size": (3, 3), "shape": None}
    actions = dag.define_next_actions()
    assert [repr(a) for a in actions] == [
        "[Expansion]: New edge from start@ to end@",
        "[Expansion]: New node 2@_a from start@ to 1@",
        "[Expansion]: New node 2@_b from 1@ to end@",
        "[Expansion]: Expanding node 1@",
    ]


def test_candidates_of_a_diamond_are_sorted():
    actions = diamond().define_next_actions()
    assert [repr(a) for a in actions] == [
        "[Expansion]: New edge from start@ to end@",
        "[Expansion]: New node 3@_a from start@ to 1@",
        "[Expansion]: New node 3@_b from 1@ to 2@",
        "[Expansion]: New node 3@_c from 2@ to end@",
        "[Expansion]: Expanding node 1@",
        "[Expansion]: Expanding node 2@",
    ]


_PRINT_ACTIONS = """
import warnings; warnings.simplefilter("ignore")
from gromo.containers.growing_dag import GrowingDAG
dag = GrowingDAG(3, 2, 5, True, False)
for i in range(1, 6):
    dag.add_node_with_two_edges("start@", f"{i}@", "end@", {"type": "linear", "size": 2})
dag.remove_edge("start@", "end@")
for a in dag.define_next_actions():
    print(repr(a))
"""


def test_candidate_names_do_not_depend_on_the_hash_seed():
    outputs = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", _PRINT_ACTIONS], env=env, capture_output=True, text=True,
                             check=True)
        outputs.add(run.stdout)
    assert len(outputs) == 1
    lines = outputs.pop().splitlines()
    assert lines[:3] == ["[Expansion]: New edge from start@ to end@", "[Expansion]: New edge from 1@ to 2@",
                         "[Expansion]: New edge from 1@ to 3@"]
    assert lines[21:26] == [f"[Expansion]: New node 6@_{letter} from start@ to {i}@"
                            for letter, i in zip("abcde", range(1, 6))]
    assert lines[26:28] == ["[Expansion]: New node 6@_f from 1@ to 2@", "[Expansion]: New node 6@_g from 1@ to 3@"]
    assert lines[-1] == "[Expansion]: Expanding node 5@"
    # new edges: start→end and i→j (i ≠ j); new nodes: start→i, i→j, i→end; expansions of 1@…5@
    assert len(lines) == (1 + 20) + (5 + 20 + 5) + 5


def test_expansion_errors_and_warnings():
    dag = diamond()
    with pytest.raises(ValueError, match=r"The expansion type should be one of \['ExpansionType.NEW_EDGE', "
                                         r"'ExpansionType.NEW_NODE', 'ExpansionType.EXPANDED_NODE'\]\. Found '3'\."):
        Expansion(dag, 3)
    with pytest.raises(ValueError, match=r"When creating a new edge the previous and next nodes arguments are "
                                         r"required\. Found previous_node=None next_node='end@'\."):
        Expansion(dag, ExpansionType.NEW_EDGE, next_node="end@")
    with pytest.raises(ValueError, match=r"When creating a new node the expanding, previous, and next nodes arguments"
                                         r" are required\. Found expanding_node=None previous_node='1@' "):
        Expansion(dag, ExpansionType.NEW_NODE, previous_node="1@", next_node="end@")
    with pytest.raises(ValueError, match=r"When expanding an existing node the expanding node argument is required\. "
                                         r"Found expanding_node=None\."):
        Expansion(dag, ExpansionType.EXPANDED_NODE)
    with pytest.warns(UserWarning, match=r"the expanding node argument is not required\. Found expanding_node='x'\."):
        edge = Expansion(dag, ExpansionType.NEW_EDGE, expanding_node="x", previous_node="1@", next_node="end@")
    assert edge.expanding_node is None
    with pytest.warns(UserWarning, match=r"the previous and next nodes arguments are not required\. Found "
                                         r"previous_node='1@' next_node=None\."):
        node = Expansion(dag, ExpansionType.EXPANDED_NODE, expanding_node="2@", previous_node="1@")
    assert node.previous_node is None


def test_expansion_properties_surgery_and_masks():
    dag = diamond()
    history = {0: {"x": 1}}
    new_node = Expansion(dag, ExpansionType.NEW_NODE, history, expanding_node="3@_a", previous_node="start@",
                         next_node="1@", node_attributes={"type": "linear", "size": 0, "activation": "selu"})
    history[0]["x"] = 5
    assert new_node.growth_history == {0: {"x": 1}}  # deep copy
    assert new_node.new_edges == [("start@", "3@_a"), ("3@_a", "1@")]
    new_node.expand()
    assert dag.is_node_candidate("3@_a") and dag.nodes["3@_a"]["candidate"] is True
    assert new_node.in_edges[0] is dag.get_edge_module("start@", "3@_a")
    assert new_node.out_edges[0].use_bias is False and float(new_node.out_edges[0].weight.abs().sum()) == 0.0
    assert new_node.create_mask() == {"nodes": ["3@_a"], "edges": [("start@", "3@_a"), ("3@_a", "1@")]}
    expanded = Expansion(dag, ExpansionType.EXPANDED_NODE, expanding_node="1@")
    assert expanded.previous_nodes == ["start@"]  # the candidate 3@_a is not a source
    assert expanded.next_nodes == ["end@", "2@"]
    assert expanded.new_edges == [("start@", "1@"), ("1@", "end@"), ("1@", "2@")]
    new_node.update_growth_history(4)
    record = new_node.growth_history[4]
    assert record["('start@', '3@_a')"] == 2 and record["('1@', 'end@')"] == 1 and record["3@_a"] == 2
    assert record["1@"] == 0
    new_node.delete()
    assert "3@_a" not in dag.nodes and dag.number_of_edges() == 5
    edge = Expansion(dag, ExpansionType.NEW_EDGE, previous_node="start@", next_node="end@")
    edge.expand()
    assert dag.is_edge_candidate("start@", "end@") and edge.in_edges == edge.out_edges
    assert float(edge.in_edges[0].weight.abs().sum()) == 0.0
    assert dag.count_parameters([("start@", "end@")]) == 3 * 2 + 2
    edge.delete()
    assert not dag.has_edge("start@", "end@")


def test_define_next_actions_with_expand_end():
    first = GrowingDAG(3, 2, 5, True, False, name="a")
    assert [a.type for a in first.define_next_actions(expand_end=True)] == [ExpansionType.NEW_NODE]
    second = GrowingDAG(2, 4, 5, True, False, name="b")
    end, shared = first.get_node_module("end@a"), second.get_node_module("start@b")
    end.set_next_modules([shared])
    shared.set_previous_modules([end])
    actions = first.define_next_actions(expand_end=True)
    inter = actions[-1]
    assert isinstance(inter, InterMergeExpansion)
    assert inter.expanding_node == "end@a" and inter.adjacent_expanding_node == "start@b"
    assert inter.previous_nodes == [first.get_node_module("start@a")]
    assert inter.next_nodes == [second.get_node_module("end@b")]
    assert inter.new_edges == [first.get_edge_module("start@a", "end@a"), second.get_edge_module("start@b", "end@b")]
    assert inter.create_mask() == {"nodes": ["end@a", "start@b"], "edges": ["Lstart@a_end@a", "Lstart@b_end@b"]}
    end.set_next_modules([shared, LinearGrowingModule(2, 1)])
    with pytest.raises(NotImplementedError, match="Can only expand single connected inter-merge nodes"):
        first.define_next_actions(expand_end=True)


def test_extended_forward_skips_candidates_outside_the_mask(generator):
    dag = diamond()
    x = torch.randn(4, 3, generator=generator)
    base = dag(x)
    action = Expansion(dag, ExpansionType.NEW_EDGE, previous_node="start@", next_node="end@")
    action.expand()
    with torch.no_grad():
        dag.get_edge_module("start@", "end@").weight.fill_(1.0)
    torch.testing.assert_close(dag.extended_forward(x)[0], base)
    torch.testing.assert_close(dag.extended_forward(x, mask=action.create_mask())[0], base + x.sum(1, keepdim=True))
