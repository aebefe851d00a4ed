"""Expansions of a ``GrowingDAG`` (public path ``gromo.containers.growing_dag``): a new edge, a new
node between two nodes, or new neurons on an existing node, proposed as candidates of one growth step.

An expansion knows the nodes whose activities feed it (``previous_nodes``), the nodes whose
bottleneck it answers (``next_nodes``), the edges it adds or extends (``new_edges``), how to put
itself in the graph as a candidate (``expand``) and take itself out (``delete``), the mask that
admits it in ``extended_forward`` (``create_mask``) and its metrics (``evaluate``).
"""

from __future__ import annotations

import copy
import warnings
from enum import Enum
from typing import Any

from torch import nn

from gromo.utils.utils import compute_BIC

__all__ = ["ExpansionType", "Expansion", "InterMergeExpansion"]


class ExpansionType(Enum):
    """Kind of a DAG expansion."""

    NEW_EDGE = 0
    NEW_NODE = 1
    EXPANDED_NODE = 2


class Expansion:
    """One candidate expansion of a ``GrowingDAG``.

    Args:
        dag: the DAG (kept by reference).
        exp_type: an ``ExpansionType``.
        growth_history: per step, per edge/node, what changed (deep-copied).
        expanding_node: the new node (NEW_NODE) or the node to expand (EXPANDED_NODE).
        previous_node, next_node: ends of the new edge or of the new node's two edges.
        edge_attributes, node_attributes: attributes of the new edges / node.
    Raises:
        ValueError: unknown type, or the nodes the type needs are missing.
    Warns:
        UserWarning: nodes the type does not use are given (they are dropped).
    """

    def __init__(
        self,
        dag: Any,
        exp_type: ExpansionType,
        growth_history: dict = {},  # noqa: B006 (GroMo's default)
        expanding_node: str | None = None,
        previous_node: str | None = None,
        next_node: str | None = None,
        edge_attributes: dict = {},  # noqa: B006
        node_attributes: dict = {},  # noqa: B006
    ) -> None:
        if not isinstance(exp_type, ExpansionType):
            raise ValueError(
                f"The expansion type should be one of {[str(t) for t in ExpansionType]}. Found '{exp_type}'."
            )
        if exp_type is ExpansionType.NEW_EDGE:
            if previous_node is None or next_node is None:
                raise ValueError(
                    "When creating a new edge the previous and next nodes arguments are required. Found "
                    f"{previous_node=} {next_node=}."
                )
            if expanding_node is not None:
                warnings.warn(
                    f"When creating a new edge the expanding node argument is not required. Found {expanding_node=}.",
                    UserWarning,
                    stacklevel=2,
                )
                expanding_node = None
        elif exp_type is ExpansionType.NEW_NODE:
            if expanding_node is None or previous_node is None or next_node is None:
                raise ValueError(
                    "When creating a new node the expanding, previous, and next nodes arguments are required. "
                    f"Found {expanding_node=} {previous_node=} {next_node=}."
                )
        else:
            if expanding_node is None:
                raise ValueError(
                    "When expanding an existing node the expanding node argument is required. Found "
                    f"{expanding_node=}."
                )
            if previous_node is not None or next_node is not None:
                warnings.warn(
                    "When expanding an existing node the previous and next nodes arguments are not required. "
                    f"Found {previous_node=} {next_node=}.",
                    UserWarning,
                    stacklevel=2,
                )
                previous_node = next_node = None
        self.dag = dag
        self.type = exp_type
        self.growth_history = copy.deepcopy(growth_history)
        self.expanding_node = expanding_node
        self.previous_node = previous_node
        self.next_node = next_node
        self.edge_attributes = edge_attributes
        self.node_attributes = node_attributes
        self.metrics: dict[str, Any] = {}

    # ----- what the expansion touches -----------------------------------------------------

    @property
    def previous_nodes(self) -> list:
        """Nodes whose activities feed the expansion."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [n for n in self.dag.predecessors(self.expanding_node) if not self.dag.is_node_candidate(n)]
        return [self.previous_node]

    @property
    def next_nodes(self) -> list:
        """Nodes whose bottleneck the expansion answers."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [n for n in self.dag.successors(self.expanding_node) if not self.dag.is_node_candidate(n)]
        return [self.next_node]

    @property
    def new_edges(self) -> list:
        """Edges added (NEW_EDGE, NEW_NODE) or extended (EXPANDED_NODE): in-edges, then out-edges."""
        if self.type is ExpansionType.NEW_EDGE:
            return [(self.previous_node, self.next_node)]
        if self.type is ExpansionType.NEW_NODE:
            return [(self.previous_node, self.expanding_node), (self.expanding_node, self.next_node)]
        return ([(p, self.expanding_node) for p in self.previous_nodes]
                + [(self.expanding_node, n) for n in self.next_nodes])

    @property
    def in_edges(self) -> list:
        """Modules of the edges into the expansion (NEW_EDGE: the new edge)."""
        if self.type is ExpansionType.NEW_EDGE:
            return self.dag.get_edge_modules(self.new_edges)
        return self.dag.get_edge_modules([(p, self.expanding_node) for p in self.previous_nodes])

    @property
    def out_edges(self) -> list:
        """Modules of the edges out of the expansion (NEW_EDGE: the new edge)."""
        if self.type is ExpansionType.NEW_EDGE:
            return self.dag.get_edge_modules(self.new_edges)
        return self.dag.get_edge_modules([(self.expanding_node, n) for n in self.next_nodes])

    # ----- graph surgery ------------------------------------------------------------------

    def expand(self) -> None:
        """Put the expansion in the DAG as a zero-weight candidate (EXPANDED_NODE: nothing to add)."""
        if self.type is ExpansionType.NEW_EDGE:
            self.dag.add_direct_edge(self.previous_node, self.next_node, self.edge_attributes, zero_weights=True)
            self.dag.toggle_edge_candidate(self.previous_node, self.next_node, candidate=True)
        elif self.type is ExpansionType.NEW_NODE:
            self.dag.add_node_with_two_edges(self.previous_node, self.expanding_node, self.next_node,
                                             self.node_attributes, self.edge_attributes, zero_weights=True)
            self.dag.toggle_node_candidate(self.expanding_node, candidate=True)

    def delete(self) -> None:
        """Take the expansion out: remove its edge / node, drop the extensions around the expanding node
        (deltas are kept)."""
        if self.type is ExpansionType.NEW_EDGE:
            self.dag.remove_edge(self.previous_node, self.next_node)
        elif self.type is ExpansionType.NEW_NODE:
            self.dag.remove_node(self.expanding_node)
        for u, v in self.dag.edges:
            self.dag.get_edge_module(u, v).delete_update(
                include_previous=False, delete_delta=False, delete_input=(u == self.expanding_node),
                delete_output=(v == self.expanding_node),
            )

    def __update_growth_history(self, current_step: int, neurons_added: list = [],  # noqa: B006
                                neurons_updated: list = [], nodes_added: list = []) -> None:  # noqa: B006
        record = self.growth_history.setdefault(current_step, {})
        for edge in self.dag.edges:
            value = 2 if edge in neurons_added else (1 if edge in neurons_updated else 0)
            record[str(edge)] = max(record.get(str(edge), 0), value)
        for node in self.dag.nodes:
            value = 2 if node in nodes_added else 0
            record[str(node)] = max(record.get(str(node), 0), value)

    def update_growth_history(self, current_step: int) -> None:
        """At ``growth_history[current_step]``: new edges 2, other edges 1, the expanding node 2, other
        nodes 0 (max-merged with what was recorded)."""
        new_edges = self.new_edges
        self.__update_growth_history(
            current_step, neurons_added=new_edges,
            neurons_updated=[edge for edge in self.dag.edges if edge not in new_edges],
            nodes_added=[self.expanding_node],
        )

    def create_mask(self) -> dict:
        """``{"nodes": [expanding_node], "edges": new_edges}`` for ``extended_forward``."""
        return {"nodes": [self.expanding_node], "edges": self.new_edges}

    def _counted_edges(self) -> list:
        """New edges and the non-candidate edges between non-candidate nodes."""
        dag = self.dag
        kept = [(u, v) for u, v in dag.edges
                if not dag.is_node_candidate(u) and not dag.is_node_candidate(v) and not dag.is_edge_candidate(u, v)]
        return list(dict.fromkeys([*self.new_edges, *kept]))

    def evaluate(self, model: nn.Module, train_dataloader, dev_dataloader, val_dataloader, loss_fn: nn.Module) -> None:
        """Loss and accuracy of ``model`` with this expansion admitted, per given loader; parameter
        count; BIC with a validation loader (all into ``metrics``)."""
        from gromo.utils.training_utils import evaluate_extended_dataset

        for split, loader in (("train", train_dataloader), ("dev", dev_dataloader), ("val", val_dataloader)):
            if loader is None:
                continue
            accuracy, loss = evaluate_extended_dataset(model, loader, loss_fn=loss_fn, mask=self.create_mask())
            self.metrics[f"loss_{split}"] = loss
            self.metrics[f"acc_{split}"] = accuracy
        self.metrics["nb_params"] = self.dag.count_parameters(self._counted_edges())
        if val_dataloader is not None:
            self.metrics["BIC"] = compute_BIC(self.metrics["nb_params"], self.metrics["loss_val"],
                                              n=len(val_dataloader.dataset))

    def __repr__(self) -> str:
        if self.type is ExpansionType.NEW_EDGE:
            return f"[Expansion]: New edge from {self.previous_node} to {self.next_node}"
        if self.type is ExpansionType.NEW_NODE:
            return f"[Expansion]: New node {self.expanding_node} from {self.previous_node} to {self.next_node}"
        if self.type is ExpansionType.EXPANDED_NODE:
            return f"[Expansion]: Expanding node {self.expanding_node}"
        return "[Expansion]: NotImplemented"


class InterMergeExpansion(Expansion):
    """An expansion of a merge shared by two chained DAGs (A's end is B's root: the same tensor), so
    that expanding it adds neurons to both. Its properties return modules.

    Args:
        adjacent_expanding_node: ``_name`` of the other DAG's merge.
        (others as ``Expansion``)
    """

    def __init__(
        self,
        dag: Any,
        exp_type: ExpansionType,
        growth_history: dict = {},  # noqa: B006
        expanding_node: str | None = None,
        previous_node: str | None = None,
        next_node: str | None = None,
        adjacent_expanding_node: str | None = None,
        edge_attributes: dict = {},  # noqa: B006
        node_attributes: dict = {},  # noqa: B006
    ) -> None:
        super().__init__(dag, exp_type, growth_history=growth_history, expanding_node=expanding_node,
                         previous_node=previous_node, next_node=next_node, edge_attributes=edge_attributes,
                         node_attributes=node_attributes)
        self.adjacent_expanding_node = adjacent_expanding_node

    def _expanding_module(self):
        return self.dag.get_node_module(self.expanding_node)

    def _neighbours(self, side: str) -> list[tuple[Any, Any]]:
        """(node module, edge module) pairs on one side of the expanding merge, kept when the node is
        non-candidate (or, across the other DAG's merge, when the expanding node is this DAG's
        root / end)."""
        module = self._expanding_module()
        from gromo.modules.growing_module import GrowingModule

        pairs = []
        boundary = self.expanding_node == (self.dag.root if side == "previous" else self.dag.end)
        for neighbour in (module.previous_modules if side == "previous" else module.next_modules):
            if isinstance(neighbour, GrowingModule):
                node = neighbour.previous_module if side == "previous" else neighbour.next_module
                if not self.dag.is_node_candidate(node._name):
                    pairs.append((node, neighbour))
            else:
                edges = neighbour.previous_modules if side == "previous" else neighbour.next_modules
                for edge in edges:
                    node = edge.previous_module if side == "previous" else edge.next_module
                    if boundary or not self.dag.is_node_candidate(node._name):
                        pairs.append((node, edge))
        return pairs

    @property
    def previous_nodes(self) -> list:
        """Node modules feeding the expansion."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [node for node, _ in self._neighbours("previous")]
        return self.dag.get_node_modules(super().previous_nodes)

    @property
    def next_nodes(self) -> list:
        """Node modules whose bottleneck the expansion answers."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [node for node, _ in self._neighbours("next")]
        return self.dag.get_node_modules(super().next_nodes)

    @property
    def new_edges(self) -> list:
        """Edge modules added or extended."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [edge for _, edge in self._neighbours("previous")] + [edge for _, edge in self._neighbours("next")]
        return self.dag.get_edge_modules(super().new_edges)

    @property
    def in_edges(self) -> list:
        """Edge modules into the expansion."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [edge for _, edge in self._neighbours("previous")]
        return super().in_edges

    @property
    def out_edges(self) -> list:
        """Edge modules out of the expansion."""
        if self.type is ExpansionType.EXPANDED_NODE:
            return [edge for _, edge in self._neighbours("next")]
        return super().out_edges

    def create_mask(self) -> dict:
        """``{"nodes": [expanding, adjacent], "edges": [edge _names]}``."""
        return {"nodes": [self.expanding_node, self.adjacent_expanding_node],
                "edges": [edge._name for edge in self.new_edges]}
