"""GroMo's ``gromo.containers.growing_dag``: a network that is a DAG of merge nodes joined by growing
layers, and the expansions proposed to grow it.

``GrowingDAG`` is at once a ``networkx.DiGraph`` (networkx algorithms and drawing apply) and a torch
``Module``. Nodes hold merge modules (the sum of the incoming edge outputs goes through the node's
``Sequential(norm, activation)``), edges hold growing layers. This file holds construction, graph
editing, statistics and the forward passes; candidate generation and the expressivity bottleneck are
in :mod:`gromo.containers._dag_growth`, the expansions in :mod:`gromo.containers._dag_expansion`
(both re-exported here: their public path is this module).

Naming (GroMo's): the root and end keys are ``f"{root}@{name}"`` / ``f"{end}@{name}"``; a key with
``"_"`` is a candidate node (``"2@_a"``), renamed to the part before ``"_"`` when chosen; tensor
dictionaries are keyed by the node modules' ``_name``.

Deliberate differences from GroMo (fixes):
* candidate targets are visited in sorted order, so candidate names and letters are the same in
  every process (GroMo iterates a set: they depend on ``PYTHONHASHSEED``);
* ancestors are recomputed from scratch after every edit and follow renamed nodes (GroMo's only
  grow, so a removed path leaves stale ancestors, and renamed nodes keep their old keys); renamed
  nodes and their edges are also re-registered under their new sub-module keys;
* ``extended_forward`` treats an absent extension (``None``) as zero whatever the order of the
  incoming edges (GroMo fails when a ``None`` extension follows a tensor).
"""

from __future__ import annotations

import warnings
from typing import Any

import networkx as nx
import torch
from networkx.classes import reportviews
from torch import nn

from gromo.containers import _dag_growth
from gromo.containers._dag_expansion import Expansion, ExpansionType, InterMergeExpansion
from gromo.containers._dag_parts import (
    SUPPORTED_LAYER_TYPES,
    apply_post_merge,
    base_name,
    detach_edge,
    detach_node,
    make_edge_module,
    make_node_module,
)
from gromo.containers.growing_container import GrowingContainer
from gromo.modules.growing_module import GrowingModule, MergeGrowingModule
from gromo.utils._assertions import ensure

__all__ = ["supported_layer_types", "GrowingDAG", "ExpansionType", "Expansion", "InterMergeExpansion"]

#: layer types a GrowingDAG is built of
supported_layer_types = SUPPORTED_LAYER_TYPES

for _cls in (ExpansionType, Expansion, InterMergeExpansion):
    _cls.__module__ = __name__


def _graph_view(view_type: type, label: str) -> property:
    """A read-only property: a new networkx ``view_type`` of the graph at each access."""
    return property(lambda graph: view_type(graph), doc=f"networkx's {label} view.")


def _per_edge(edge_attributes: dict) -> bool:
    """Whether ``edge_attributes`` maps ``str((u, v))`` to dicts (else it is shared by all edges)."""
    return any(isinstance(value, dict) for value in edge_attributes.values())


class GrowingDAG(nx.DiGraph, _dag_growth.DAGGrowthMixin, GrowingContainer):
    """A DAG of merge nodes (``LinearMergeGrowingModule`` / ``Conv2dMergeGrowingModule``) joined by
    growing layers, from ``root`` to ``end``.

    Args:
        in_features: size of the root node (features or channels).
        out_features: size of the end node.
        neurons: neurons proposed per node expansion (informational here).
        use_bias: default bias of the edges.
        use_layer_norm: default layer norm of the nodes (never on the root).
        default_layer_type: "linear" or "convolution".
        activation: default activation name of new nodes (``activation_fn``).
        kernel_size: default kernel size (convolution).
        name: DAG name (no ``"_"``), suffix of every node key.
        root, end: base names of the root and end nodes.
        input_shape: (H, W) of convolution nodes.
        DAG_parameters: ``{"edges", "node_attributes", "edge_attributes"}``; None → one root → end
            edge (``init_dag_parameters()``); ``{}`` → empty graph.
        device: device.
    Raises:
        ValueError: ``"_"`` in ``name``.
        NotImplementedError: unsupported ``default_layer_type``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        neurons: int,
        use_bias: bool,
        use_layer_norm: bool,
        default_layer_type: str = "linear",
        activation: str = "selu",
        kernel_size: tuple[int, int] = (3, 3),
        name: str = "",
        root: str = "start",
        end: str = "end",
        input_shape: tuple[int, int] | None = None,
        DAG_parameters: dict | None = None,  # noqa: N803 (GroMo's argument name)
        device: torch.device | str | None = None,
    ) -> None:
        if "_" in name:
            raise ValueError(f"The character '_' is not allowed in the name of a GrowingDAG. Found {name}.")
        if default_layer_type not in supported_layer_types:
            raise NotImplementedError(
                f"The default layer type is not supported. Expected one of {supported_layer_types}, got "
                f"{default_layer_type}"
            )
        nx.DiGraph.__init__(self)
        GrowingContainer.__init__(self, in_features, out_features, device=device)
        self._name = name
        self.root = f"{root}@{name}"
        self.end = f"{end}@{name}"
        self.neurons = neurons
        self.use_bias = use_bias
        self.use_layer_norm = use_layer_norm
        self.activation = activation
        self.kernel_size = kernel_size
        self.layer_type = default_layer_type
        self.input_shape = input_shape
        self.ancestors: dict[str, set[str]] = {}
        if DAG_parameters is None:
            DAG_parameters = self.init_dag_parameters()
        edges = list(DAG_parameters.get("edges", []))
        node_attributes = DAG_parameters.get("node_attributes", {})
        edge_attributes = DAG_parameters.get("edge_attributes", {})
        self.add_edges_from(edges)
        self.update_nodes(list(self.nodes), node_attributes)
        self.update_edges(edges, edge_attributes=edge_attributes, zero_weights=False)
        self.update_connections(edges)
        self.set_growing_layers()

    # ----- parameters of a DAG ------------------------------------------------------------

    def init_dag_parameters(self) -> dict:
        """The default DAG: one edge root → end (no activation anywhere: one layer)."""
        node = {"type": self.layer_type, "shape": self.input_shape, "kernel_size": self.kernel_size}
        return {
            "edges": [(self.root, self.end)],
            "node_attributes": {
                self.root: {**node, "size": self.in_features, "use_layer_norm": False},
                self.end: {**node, "size": self.out_features, "use_layer_norm": self.use_layer_norm},
            },
            "edge_attributes": {"type": self.layer_type, "use_bias": self.use_bias, "kernel_size": self.kernel_size},
        }

    def export_dag_parameters(self) -> dict:
        """The current structure as ``DAG_parameters`` (DAG-wide type, kernel size, activation)."""
        return {
            "edges": list(self.edges),
            "node_attributes": {
                node: {
                    "type": self.layer_type,
                    "size": attrs["size"],
                    "shape": attrs.get("shape"),
                    "kernel_size": self.kernel_size,
                    "activation": "id" if node == self.root else self.activation,
                    "use_layer_norm": False if node == self.root else self.use_layer_norm,
                }
                for node, attrs in self.nodes.items()
            },
            "edge_attributes": {
                str(edge): {"type": self.layer_type, "use_bias": self.get_edge_module(*edge).use_bias,
                            "kernel_size": self.kernel_size}
                for edge in self.edges
            },
        }

    # ----- views and getters --------------------------------------------------------------

    nodes = _graph_view(reportviews.NodeView, "node")
    edges = _graph_view(reportviews.OutEdgeView, "edge")
    out_edges = _graph_view(reportviews.OutEdgeView, "out-edge")
    in_edges = _graph_view(reportviews.InEdgeView, "in-edge")
    in_degree = _graph_view(reportviews.InDegreeView, "in-degree")
    out_degree = _graph_view(reportviews.OutDegreeView, "out-degree")

    def get_edge_module(self, prev_node: str, next_node: str) -> GrowingModule:
        """The growing layer of edge ``(prev_node, next_node)``."""
        return self[prev_node][next_node]["module"]

    def get_node_module(self, node: str) -> MergeGrowingModule:
        """The merge module of ``node``."""
        return self.nodes[node]["module"]

    def get_edge_modules(self, edges: list[tuple[str, str]]) -> list[GrowingModule]:
        """The growing layers of ``edges`` (same order)."""
        return [self.get_edge_module(*edge) for edge in edges]

    def get_node_modules(self, nodes: list[str]) -> list[MergeGrowingModule]:
        """The merge modules of ``nodes`` (same order)."""
        return [self.get_node_module(node) for node in nodes]

    def get_all_edge_modules(self) -> list[GrowingModule]:
        """Every edge's growing layer (graph order)."""
        return [self.get_edge_module(*edge) for edge in self.edges]

    def get_all_node_modules(self) -> list[MergeGrowingModule]:
        """Every node's merge module (graph order)."""
        return [self.get_node_module(node) for node in self.nodes]

    def is_empty(self) -> bool:
        """No edges."""
        return self.number_of_edges() == 0

    # ----- editing ------------------------------------------------------------------------

    def set_growing_layers(self) -> None:
        """``_growing_layers`` = all edge modules, then all node modules."""
        self._growing_layers = [*self.get_all_edge_modules(), *self.get_all_node_modules()]

    def update_nodes(self, nodes: list[str], node_attributes: dict[str, dict]) -> None:
        """Give each of ``nodes`` its attributes and a new merge module (replacing the old one).

        Raises:
            KeyError: ``type`` or ``size`` missing from a node's attributes (and conv requirements).
            NotImplementedError: unknown node type.
        """
        for node in nodes:
            attrs = node_attributes.get(node, {})
            for key in ("type", "size"):
                if key not in attrs:
                    raise KeyError(
                        f"The {key} of the node should be specified at initialization. Example: key "
                        f'"{key}" in node_attributes[new_node]'
                    )
            module = make_node_module(node, attrs, self.use_layer_norm, self.device)
            self.nodes[node].update(attrs)
            self.nodes[node]["module"] = module
            self.add_module(node, module)

    def update_edges(self, edges: list[tuple[str, str]], edge_attributes: dict = {},  # noqa: B006 (GroMo's)
                     zero_weights: bool = False) -> None:
        """Give each of ``edges`` a new growing layer (weights LeCun-normal, or zero; biases zero).

        ``edge_attributes`` is keyed by ``str((u, v))`` when any value is a dict, else shared.

        Raises:
            KeyError: conv→conv edge without ``kernel_size``.
            NotImplementedError: linear→convolution edge.
        """
        per_edge = _per_edge(edge_attributes)
        for u, v in edges:
            attrs = edge_attributes.get(str((u, v)), {}) if per_edge else edge_attributes
            module, edge_type = make_edge_module(u, v, self.nodes[u], self.nodes[v], attrs, self.use_bias,
                                                 zero_weights, self.device)
            self[u][v]["module"] = module
            self[u][v]["type"] = edge_type
            self.add_module(str((u, v)), module)

    def update_connections(self, edges: list[tuple[str, str]]) -> None:
        """Link each edge module to its two merges, refresh the merges' neighbour lists, ancestors."""
        if not edges:
            return
        for u, v in edges:
            edge = self.get_edge_module(u, v)
            edge.previous_module = self.get_node_module(u)
            edge.next_module = self.get_node_module(v)
            self.get_node_module(u).set_next_modules(self.get_edge_modules(list(self.out_edges(u))))
            self.get_node_module(v).set_previous_modules(self.get_edge_modules(list(self.in_edges(v))))
        self._get_ancestors(self.root)

    def add_direct_edge(self, prev_node: str, next_node: str, edge_attributes: dict = {},  # noqa: B006
                        zero_weights: bool = False) -> None:
        """Add edge ``prev_node → next_node`` with a new layer, linked and listed."""
        self.add_edge(prev_node, next_node)
        edges = [(prev_node, next_node)]
        self.update_edges(edges, edge_attributes=edge_attributes, zero_weights=zero_weights)
        self.update_connections(edges)
        self.set_growing_layers()

    def add_node_with_two_edges(self, prev_node: str, new_node: str, next_node: str, node_attributes: dict,
                                edge_attributes: dict = {}, zero_weights: bool = False) -> None:  # noqa: B006
        """Add ``new_node`` between ``prev_node`` and ``next_node`` (the outgoing edge without bias).

        Raises:
            KeyError: ``type`` or ``size`` missing from ``node_attributes`` (the edges are added
                first, as in GroMo).
        """
        edges = [(prev_node, new_node), (new_node, next_node)]
        self.add_edges_from(edges)
        for key in ("type", "size"):
            if key not in node_attributes:
                raise KeyError(
                    f"The {key} of the node should be specified at initialization. Example: key "
                    f'"{key}" in node_attributes'
                )
        self.update_nodes([new_node], {new_node: node_attributes})
        self.update_edges([edges[0]], edge_attributes=dict(edge_attributes), zero_weights=zero_weights)
        self.update_edges([edges[1]], edge_attributes={**edge_attributes, "use_bias": False},
                          zero_weights=zero_weights)
        self.update_connections(edges)
        self.set_growing_layers()

    def remove_edge(self, prev_node: str, next_node: str) -> None:
        """Remove an edge and its layer (the merges follow their remaining neighbours); no-op if absent."""
        if not self.has_edge(prev_node, next_node):
            return
        detach_edge(self.get_edge_module(prev_node, next_node))
        nx.DiGraph.remove_edge(self, prev_node, next_node)
        self._get_ancestors(self.root)
        self.set_growing_layers()
        self._modules.pop(str((prev_node, next_node)), None)

    def remove_node(self, node: str) -> None:
        """Remove a node, its module and its edges; no-op if absent."""
        if not self.has_node(node):
            return
        edges = [*self.in_edges(node), *self.out_edges(node)]
        detach_node(self.get_node_module(node))
        nx.DiGraph.remove_node(self, node)
        self._get_ancestors(self.root)
        self.set_growing_layers()
        for edge in edges:
            self._modules.pop(str(edge), None)
        self._modules.pop(node, None)

    def rename_nodes(self, mapping: dict[str, str]) -> None:
        """Rename nodes ``old → new`` (skipped when equal or absent); the node moves to the end of the
        node order with its edges and attributes.

        Raises:
            ValueError: ``new`` already exists.
        """
        for old, new in mapping.items():
            if old == new or old not in self.nodes:
                continue
            if new in self.nodes:
                raise ValueError(f"New node name '{new}' already exists in the graph.")
            in_edges = [(u, self[u][old]) for u in self.predecessors(old)]
            out_edges = [(v, self[old][v]) for v in self.successors(old)]
            attrs = dict(self.nodes[old])
            nx.DiGraph.remove_node(self, old)
            self.add_node(new, **attrs)
            self._modules.pop(old, None)
            self.add_module(new, attrs["module"])
            for u, data in in_edges:
                self.add_edge(u, new, **data)
                self._modules.pop(str((u, old)), None)
                self.add_module(str((u, new)), data["module"])
            for v, data in out_edges:
                self.add_edge(new, v, **data)
                self._modules.pop(str((old, v)), None)
                self.add_module(str((new, v)), data["module"])
        self._get_ancestors(self.root)

    def update_size(self) -> None:
        """Merges follow their neighbours; node sizes and the DAG's in/out features follow the modules."""
        GrowingContainer.update_size(self)
        for node in self.nodes:
            module = self.get_node_module(node)
            self.nodes[node]["size"] = (module.in_channels if self.nodes[node]["type"] == "convolution"
                                        else module.in_features)
        if self.root in self.nodes:
            self.in_features = self.nodes[self.root]["size"]
        if self.end in self.nodes:
            self.out_features = self.nodes[self.end]["size"]

    def toggle_edge_candidate(self, prev_node: str | None, next_node: str | None, candidate: bool) -> None:
        """Set the ``candidate`` flag of an edge (no-op when an end is None).

        Raises:
            ValueError: the edge is absent.
        """
        if prev_node is None or next_node is None:
            return
        if not self.has_edge(prev_node, next_node):
            raise ValueError(f"Edge ({prev_node}, {next_node}) is not present in the graph")
        self[prev_node][next_node]["candidate"] = candidate

    def toggle_node_candidate(self, node: str | None, candidate: bool) -> None:
        """Set the ``candidate`` flag of a node (no-op for None).

        Raises:
            ValueError: the node is absent.
        """
        if node is None:
            return
        if node not in self.nodes:
            raise ValueError(f"Node {node} is not present in the graph")
        self.nodes[node]["candidate"] = candidate

    def is_edge_candidate(self, prev_node: str, next_node: str) -> bool:
        """True if a name contains ``"_"``, else the edge's ``candidate`` flag (default False).

        Warns:
            UserWarning: the edge is not in this DAG (then False).
        """
        if "_" in prev_node or "_" in next_node:
            return True
        if not self.has_edge(prev_node, next_node):
            warnings.warn(
                f"Edge ({prev_node},{next_node}) does not belong in the current GrowingDAG({self._name}). All "
                "external edges are assumed to be non-candidate.",
                UserWarning,
                stacklevel=2,
            )
            return False
        return self[prev_node][next_node].get("candidate", False)

    def is_node_candidate(self, node: str) -> bool:
        """True if ``"_"`` is in ``node``, else the ``candidate`` flag of the node whose key cut at
        ``"_"`` is ``node`` (last match wins).

        Warns:
            UserWarning: no such node (then False).
        """
        if "_" in node:
            return True
        found = None
        for key in self.nodes:
            if node in key and base_name(key) == node:
                found = key
        if found is None:
            warnings.warn(
                f"Node {node} does not belong in the current GrowingDAG({self._name}). All external nodes are "
                "assumed to be non-candidate.",
                UserWarning,
                stacklevel=2,
            )
            return False
        return self.nodes[found].get("candidate", False)

    # ----- statistics ---------------------------------------------------------------------

    def init_computation(self) -> None:
        """The root stores its activity; every other node makes its incoming edges store theirs."""
        for node in self.nodes:
            module = self.get_node_module(node)
            if node == self.root:
                module.store_activity = True
            else:
                module.init_computation()

    def update_computation(self) -> None:
        """Accumulate every non-root node's statistics for the last batch."""
        for node in self.nodes:
            if node != self.root:
                self.get_node_module(node).update_computation()

    def reset_computation(self) -> None:
        """Edges, then nodes, stop storing and forget their statistics."""
        for module in self.get_all_edge_modules():
            module.reset_computation()
        for module in self.get_all_node_modules():
            module.reset_computation()

    def compute_optimal_delta(self, update: bool = True, return_deltas: bool = False,
                              force_pseudo_inverse: bool = False) -> None:
        """Each non-root node's joint natural-gradient step for its incoming edges (sets their
        ``optimal_delta_layer`` when ``update``).

        Raises:
            AssertionError: a node's decrease was not set.
        """
        for node in self.nodes:
            if node == self.root:
                continue
            module = self.get_node_module(node)
            module.compute_optimal_delta(update=update, return_deltas=return_deltas,
                                         force_pseudo_inverse=force_pseudo_inverse)
            ensure(module.parameter_update_decrease is not None, f"{module.name}: no parameter update decrease.")
    def compute_optimal_updates(self, *args: Any, **kwargs: Any) -> None:
        """= ``compute_optimal_delta(*args, **kwargs)``."""
        self.compute_optimal_delta(*args, **kwargs)

    def delete_update(self) -> None:
        """Every node forgets its tensors and its incoming edges' updates (output extensions too)."""
        for module in self.get_all_node_modules():
            module.delete_update(include_previous=True)

    def set_scaling_factor(self, factor: float) -> None:
        """Every edge: ``scaling_factor = factor`` (γ² on deltas, γ on input extensions) and
        ``output_extension_scaling = factor``."""
        for module in self.get_all_edge_modules():
            module.scaling_factor = factor
            module.output_extension_scaling = factor

    # ----- forward passes -----------------------------------------------------------------

    def forward(self, x: torch.Tensor, verbose: bool = False) -> torch.Tensor:
        """Nodes in topological order: each sums its incoming edges' outputs and applies its module.

        Args:
            x: input (n, in_features) or (n, C, H, W).
        Returns:
            the end node's output (n, out_features) or (n, C, H, W).
        Raises:
            AssertionError: a node's summed input does not have its size.
        """
        output: dict[str, torch.Tensor] = {}
        for node in nx.topological_sort(self):
            module = self.get_node_module(node)
            if node == self.root:
                output[node] = module(x)
                continue
            activity = None
            for pred in self.predecessors(node):
                contribution = self.get_edge_module(pred, node)(output[pred])
                activity = contribution if activity is None else activity + contribution
            ensure(activity.shape[1] == self.nodes[node]["size"], lambda: (
                f"{activity.shape[1]=} != {self.nodes[node]['size']=} for {node=}"
            ))
            if verbose:
                print(f"{node}: {tuple(activity.shape)}")
            output[node] = module(activity)
        return output[self.end]

    def extended_forward(self, x: torch.Tensor, x_ext: torch.Tensor | None = None, mask: dict = {},  # noqa: B006
                         verbose: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward with the pending updates: deltas of every non-candidate edge, and the candidates
        admitted by ``mask = {"nodes": [...], "edges": [(u, v), ...]}`` (new edges, new neurons).

        With ``set_scaling_factor(γ)`` an admitted new node adds ``γ·Z σ(γ·V x)`` to its target and
        every delta adds ``−γ² δ(x)``.

        Args:
            x: input (n, in_features) or (n, C, H, W).
            x_ext: extension of the input (when the root itself is expanded).
            mask: candidates admitted.
        Returns:
            (output, output extension or None).
        """
        mask = mask or {}
        mask_nodes = list(mask.get("nodes", []))
        mask_edges = [tuple(edge) for edge in mask.get("edges", []) if not isinstance(edge, str)]
        output: dict[str, tuple[torch.Tensor | None, torch.Tensor | None]] = {}
        for node in nx.topological_sort(self):
            if self.is_node_candidate(node) and node not in mask_nodes:
                continue
            module = self.get_node_module(node)
            if node == self.root:
                output[node] = apply_post_merge(module, x, x_ext)
                continue
            activity, activity_ext = None, None
            for pred in self.predecessors(node):
                if pred not in output:  # a candidate node left out of the mask
                    continue
                if self.is_edge_candidate(pred, node) and (pred, node) not in mask_edges:
                    continue
                use_input = pred in mask_nodes
                x_pred, x_pred_ext = output[pred]
                main, ext = self.get_edge_module(pred, node).extended_forward(
                    x_pred, x_pred_ext if use_input else None, use_optimal_delta=True,
                    use_extended_input=use_input, use_extended_output=node in mask_nodes,
                )
                activity = main if activity is None else activity + main
                if ext is not None:
                    activity_ext = ext if activity_ext is None else activity_ext + ext
            if verbose:
                print(f"{node}: {None if activity is None else tuple(activity.shape)}")
            output[node] = apply_post_merge(module, activity, activity_ext)
        return output[self.end]

    # ----- text -----------------------------------------------------------------------------

    def __str__(self) -> str:
        lines = [f"GrowingDAG[{self._name}](", f"\tNodes ({self.number_of_nodes()}):"]
        for node, attrs in self.nodes.items():
            function = attrs["module"].post_merge_function
            members = list(function) if isinstance(function, nn.Sequential) else [function]
            activation = None if all(isinstance(m, nn.Identity) for m in members) else members
            lines.append(f"\t\t{node} (layer type: {attrs['type']}, hidden size: {attrs['size']}, "
                         f"activation: {activation})")
        lines.append(f"\tEdges ({self.number_of_edges()}):")
        lines.append("\t\t" + ", ".join(f"{u}->{v}" for u, v in self.edges))
        lines.append(")")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.__str__()

