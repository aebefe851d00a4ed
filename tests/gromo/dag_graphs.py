"""The small GrowingDAG graphs the DAG tests start from, and their warning filter.

A graph is built in GroMo's two phases: ``GrowingDAG(...)`` makes the one edge root → end, then
``add_node_with_two_edges`` / ``add_direct_edge`` / ``remove_edge`` edit it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import pytest

from gromo.containers.growing_dag import GrowingDAG

#: attributes of every hidden node of these graphs
NODE = {"type": "linear", "size": 4, "activation": "selu"}


def build_dag(in_features: int, out_features: int, neurons: int, nodes: Iterable[str] = (),
              edges: Iterable[tuple[str, str]] = (), remove_direct: bool = False, name: str = "",
              **kwargs) -> GrowingDAG:
    """root → end, then a ``NODE`` root → ``f"{node}@{name}"`` → end per entry of ``nodes``, a direct
    edge per ``(previous, next)`` of ``edges`` (base names), and without root → end if asked."""
    dag = GrowingDAG(in_features, out_features, neurons, True, False, name=name, **kwargs)
    for node in nodes:
        dag.add_node_with_two_edges(dag.root, f"{node}@{name}", dag.end, dict(NODE))
    for previous, following in edges:
        dag.add_direct_edge(f"{previous}@{name}", f"{following}@{name}")
    if remove_direct:
        dag.remove_edge(dag.root, dag.end)
    return dag


def chain(name: str = "", in_features: int = 5, out_features: int = 3, **kwargs) -> GrowingDAG:
    """start → 1@ → end plus start → end."""
    return build_dag(in_features, out_features, 10, nodes=("1",), name=name, **kwargs)


def diamond() -> GrowingDAG:
    """start → 1@ → end, start → 2@ → end, 1@ → 2@ (no start → end)."""
    return build_dag(3, 2, 5, nodes=("1", "2"), edges=(("1", "2"),), remove_direct=True)


@pytest.fixture(autouse=True)
def quiet_user_warnings():
    """Silence UserWarnings in every test of a module that imports this fixture."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
