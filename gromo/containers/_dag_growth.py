"""Growth-side methods of ``GrowingDAG``: ancestors, candidate expansions, the expressivity
bottleneck, parameter counts and evaluation (a mixin of :class:`gromo.containers.growing_dag.GrowingDAG`).

Candidates are listed deterministically: sources in graph order, targets sorted by key, so the
letters of new-node candidates (``2@_a``, ``2@_b``, …) are the same in every process.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Iterator

import torch
from torch import nn

from gromo.containers._dag_expansion import Expansion, ExpansionType, InterMergeExpansion
from gromo.utils._assertions import ensure
from gromo.utils.utils import alphabetic_index, f1_micro


class DAGGrowthMixin:
    """Ancestors, candidates, bottleneck and evaluation of a GrowingDAG (methods only)."""

    # ----- ancestors and candidates --------------------------------------------------------

    def _get_ancestors(self, root: str, pre_root: Any = 0) -> None:
        """``ancestors[n]``: the nodes with a path to ``n``, ``n`` included (recomputed from scratch).

        Breadth-first from ``root``: a node takes its predecessors' sets and is propagated once all
        its in-edges were visited. With ``pre_root`` the root also counts ``pre_root`` as an ancestor.
        """
        self.ancestors = {}
        if not self.has_node(root):
            return
        self.ancestors[root] = {root} if pre_root == 0 else {pre_root, root}
        visited_in: dict[str, int] = {}
        queue = deque((root, v) for v in self.successors(root))
        while queue:
            u, v = queue.popleft()
            self.ancestors.setdefault(v, set()).update(self.ancestors[u])
            visited_in[v] = visited_in.get(v, 0) + 1
            if visited_in[v] == self.in_degree(v):
                self.ancestors[v].add(v)
                queue.extend((v, w) for w in self.successors(v))

    def _indirect_connection_exists(self, prev_node: str, next_node: str) -> bool:
        """A two-hop path ``prev_node → w → next_node`` exists."""
        return bool(set(self.successors(prev_node)) & set(self.predecessors(next_node)))

    def _acyclic_targets(self) -> dict[str, list[str]]:
        """Per node (graph order), the sorted nodes an edge from it may reach without a cycle."""
        nodes = list(self.nodes)
        return {u: sorted(set(nodes) - self.ancestors.get(u, {u})) for u in nodes}

    def _find_possible_direct_connections(self, nodes_set: dict[str, list[str]]) -> list[dict]:
        """New-edge candidates ``u → v`` (v not already a successor)."""
        return [
            {"previous_node": u, "next_node": v, "edge_attributes": {"kernel_size": self.kernel_size}}
            for u, targets in nodes_set.items()
            for v in targets
            if not self.has_edge(u, v)
        ]

    def _find_possible_one_hop_connections(self, nodes_set: dict[str, list[str]], size: int = 0) -> list[dict]:
        """New-node candidates ``u → new → v`` (no two-hop path ``u → · → v`` yet)."""
        new_node = f"{self.number_of_nodes() - 1}@{self._name}"
        candidates = []
        for u, targets in nodes_set.items():
            for v in targets:
                if self._indirect_connection_exists(u, v):
                    continue
                candidates.append({
                    "previous_node": u,
                    "new_node": new_node,
                    "next_node": v,
                    "node_attributes": {
                        "type": self.nodes[u]["type"], "size": size, "activation": self.activation,
                        "kernel_size": self.kernel_size, "shape": self.input_shape,
                    },
                    "edge_attributes": {"kernel_size": self.kernel_size},
                })
        return candidates

    def find_possible_extensions(self) -> tuple[list[dict], list[dict]]:
        """(new-edge candidates, new-node candidates), deterministic (targets sorted)."""
        nodes_set = self._acyclic_targets()
        return (self._find_possible_direct_connections(nodes_set),
                self._find_possible_one_hop_connections(nodes_set))

    def define_next_actions(self, expand_end: bool = False) -> list[Expansion]:
        """Every candidate expansion: new edges, new nodes (``{base}_{a, b, …}``), then each node
        other than root and end expanded; with ``expand_end``, the end merge shared with one next DAG.

        Raises:
            NotImplementedError: ``expand_end`` and the end merge feeds several modules.
        """
        direct, one_hop = self.find_possible_extensions()
        actions: list[Expansion] = [
            Expansion(self, ExpansionType.NEW_EDGE, previous_node=c["previous_node"], next_node=c["next_node"],
                      edge_attributes=c["edge_attributes"])
            for c in direct
        ]
        for i, c in enumerate(one_hop):
            actions.append(Expansion(
                self, ExpansionType.NEW_NODE, expanding_node=f"{c['new_node']}_{alphabetic_index(i)}",
                previous_node=c["previous_node"], next_node=c["next_node"],
                edge_attributes=c["edge_attributes"], node_attributes=c["node_attributes"],
            ))
        for node in self.nodes:
            if node not in (self.root, self.end):
                actions.append(Expansion(self, ExpansionType.EXPANDED_NODE, expanding_node=node))
        if expand_end and self.end in self.nodes:
            following = self.get_node_module(self.end).next_modules
            if len(following) > 1:
                raise NotImplementedError("Can only expand single connected inter-merge nodes")
            if len(following) == 1:
                actions.append(InterMergeExpansion(self, ExpansionType.EXPANDED_NODE, expanding_node=self.end,
                                                   adjacent_expanding_node=following[0]._name))
        return actions

    # ----- the expressivity bottleneck ----------------------------------------------------

    def calculate_bottleneck(self, actions: list[Expansion], dataloader,
                             loss_fn: nn.Module = nn.CrossEntropyLoss()) -> tuple[dict, dict]:  # noqa: B008
        """The expressivity bottleneck of the actions' target nodes over ``dataloader``.

        ``b_v = ∂ℓ/∂a_v − Σ_(u,v) δ_uv(x_u)`` (n, size_v): the gradient at node v's pre-activation that
        the best update of the existing edges (their joint optimal delta, left set on the edges)
        cannot explain. Also returns every node's activity x_u (n, size_u), on CPU.

        Args:
            actions: expansions (their ``next_nodes`` are the targets).
            dataloader: batches ``(x, y)``.
            loss_fn: loss (a mean loss gives values with a 1/batch factor).
        Returns:
            (bottleneck by target ``_name``, activity by node ``_name``).
        Raises:
            AssertionError: a statistic is missing.
        """
        temporary = self.is_empty()
        if temporary:
            self.add_direct_edge(self.root, self.end, {"type": self.layer_type, "use_bias": self.use_bias,
                                                       "constant": True})
        next_keys = list(dict.fromkeys(n for action in actions for n in action.next_nodes))
        next_modules = self.get_node_modules(next_keys)
        node_modules = self.get_all_node_modules()
        gradients: dict[str, list[torch.Tensor]] = {m._name: [] for m in next_modules}
        activities: dict[str, list[torch.Tensor]] = {m._name: [] for m in node_modules}
        self.init_computation()
        for x, y in dataloader:
            self.zero_grad()
            loss_fn(self(x), y).backward()
            self.update_computation()
            for module in next_modules:
                ensure(module.pre_activity is not None and module.pre_activity.grad is not None, lambda: (
                    f"{module.name}: the gradient of its pre-activation is missing."
                ))
                gradients[module._name].append(module.pre_activity.grad.detach().cpu())
            for module in node_modules:
                ensure(module.activity is not None, f"{module.name}: its activity is missing.")
                activities[module._name].append(module.activity.detach().cpu())
        input_b = {name: torch.cat(chunks) for name, chunks in activities.items()}
        self.compute_optimal_delta()
        bottleneck = {}
        with torch.no_grad():
            for key, module in zip(next_keys, next_modules):
                explained = 0.0
                for u in self.predecessors(key):
                    edge = self.get_edge_module(u, key)
                    source = input_b[self.get_node_module(u)._name].to(edge.device)
                    explained = explained + edge.optimal_delta_layer(source).cpu()
                bottleneck[module._name] = torch.cat(gradients[module._name]) - explained
        self.reset_computation()
        for module in node_modules:
            module.delete_update()
        if temporary:
            self.remove_edge(self.root, self.end)
        return bottleneck, input_b

    # ----- parameters and evaluation ------------------------------------------------------

    def parameters(self) -> Iterator[nn.Parameter]:  # type: ignore[override]
        """Each edge's weight and, with ``use_bias``, bias."""
        for module in self.get_all_edge_modules():
            yield module.weight
            if self.use_bias and module.bias is not None:
                yield module.bias

    def count_parameters_all(self) -> int:
        """Σ numel of ``parameters()``."""
        return sum(p.numel() for p in self.parameters())

    def count_parameters(self, edges: list[tuple[str, str]]) -> int:
        """Σ numel of the parameters of the given edges' layers."""
        return sum(p.numel() for module in self.get_edge_modules(edges) for p in module.parameters())

    @torch.no_grad()
    def _scores(self, prediction: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, with_f1score: bool,
                classify: bool) -> tuple:
        loss = loss_fn(prediction, y)
        labels = prediction.argmax(dim=1)
        accuracy = float((labels == y).float().mean()) if classify else -1
        if with_f1score:
            f1 = f1_micro(y, labels) if self.out_features > 1 else -1
            return accuracy, loss.item(), f1
        return accuracy, loss.item()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, with_f1score: bool = False) -> tuple:
        """(accuracy of the argmax or −1, loss[, micro-F1 or −1]) of ``forward``."""
        classify = self.out_features > 1 and y.ndim == 1
        return self._scores(self(x), y, loss_fn, with_f1score, classify)

    @torch.no_grad()
    def evaluate_extended(self, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module,
                          with_f1score: bool = False) -> tuple:
        """As ``evaluate`` with ``extended_forward(x)[0]`` (no candidate admitted)."""
        return self._scores(self.extended_forward(x)[0], y, loss_fn, with_f1score, self.out_features > 1)
