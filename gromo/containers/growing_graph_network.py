"""GroMo's ``gromo.containers.growing_graph_network``: a network whose architecture grows — a
``GrowingDAG`` plus the growth step that proposes expansions, fits their new weights against the
expressivity bottleneck, scores them and applies the best.

A growth step (GroMo's graph tutorial): ``dag.define_next_actions`` → ``dag.calculate_bottleneck``
→ ``restrict_action_space`` → ``execute_expansions`` → score each action (``metrics["loss_val"]``,
``metrics["scaling_factor"]``) → ``choose_growth_best_action`` → ``apply_change``.

Fitting. ``execute_expansions`` fits all candidates of a step in one batched computation
(:mod:`gromo.containers._candidate_fit`: shared statistics, grouped solves): a new edge gets the
exact minimiser of the bottleneck loss (GroMo trains it by gradient descent from a random start);
new neurons start from GroMo's random draw with their output weights solved exactly, then get
``neuron_epochs`` epochs of GroMo's bi-level gradient descent, all node candidates of the step in one
batched optimisation (:mod:`gromo.containers._candidate_descent`; ``neuron_epochs=0``: the fit alone).

Deliberate differences from GroMo (fixes):
* a new edge's optimal delta is stored as ``(−W, −b)``: ``extended_forward`` subtracts ``γ²·δ(x)``
  while ``W, b`` are anti-aligned with the bottleneck, so GroMo's ``(W, b)`` makes the loss rise with
  γ; ours makes it fall for small γ > 0;
* ``expand_node`` trains with a copy of the node's post-merge function without its growing norms
  and leaves the node intact (GroMo's shallow copy strips the node's own layer norm for good);
* ``execute_expansions(amplitude_factor=True)`` uses the amplitude found by the line search (GroMo
  drops it and fails with UnboundLocalError);
* ``reset_network()`` replaces the old DAG in ``_growing_layers`` (GroMo keeps the old one listed);
* choosing a NEW_NODE action marks its node and its two new edges non-candidate (GroMo toggles the
  edge ``(previous_node, next_node)``, a ValueError when that edge does not exist);
* ``apply_change`` deletes the applied deltas and extensions (GroMo keeps them, so a later
  ``extended_forward`` would apply them a second time).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gromo.containers._candidate_descent import descend_candidates
from gromo.containers._candidate_fit import CandidatePlan, fit_candidates
from gromo.containers.growing_container import GrowingContainer
from gromo.containers.growing_dag import Expansion, ExpansionType, GrowingDAG, InterMergeExpansion
from gromo.modules.linear_growing_module import LinearMergeGrowingModule
from gromo.utils._assertions import ensure
from gromo.utils.utils import line_search, mini_batch_gradient_descent

__all__ = ["GrowingGraphNetwork"]


def _progress(iterable, verbose: bool, **kwargs: Any):
    if not verbose:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


def _surrogate_activation(module: nn.Module) -> nn.Sequential:
    """The node's post-merge function without its growing norms, as a new Sequential (the node's own
    function is not touched)."""
    function = module.post_merge_function
    members = list(function) if isinstance(function, nn.Sequential) else [function]
    return nn.Sequential(*[nn.Identity() if callable(getattr(m, "grow", None)) else m for m in members])


class GrowingGraphNetwork(GrowingContainer):
    """A network that grows its graph: a ``GrowingDAG`` from one root to one end node.

    Args:
        in_features, out_features: network sizes.
        loss_fn: loss used to score candidates.
        neurons: neurons proposed per node expansion.
        neuron_epochs, neuron_lrate, neuron_batch_size: gradient descent refining new neurons.
        use_bias, use_layer_norm, layer_type, name, input_shape: as ``GrowingDAG``.
        device: device.
    """

    def __init__(self, in_features: int, out_features: int, loss_fn: nn.Module, neurons: int = 20,
                 neuron_epochs: int = 100, neuron_lrate: float = 1e-3, neuron_batch_size: int = 256,
                 use_bias: bool = True, use_layer_norm: bool = False, layer_type: str = "linear", name: str = "",
                 input_shape: tuple[int, int] | None = None, device: torch.device | str | None = None) -> None:
        super().__init__(in_features, out_features, device=device)
        self._name = name
        self.neurons = neurons
        self.neuron_epochs = neuron_epochs
        self.neuron_lrate = neuron_lrate
        self.neuron_batch_size = neuron_batch_size
        self.use_bias = use_bias
        self.use_layer_norm = use_layer_norm
        self.layer_type = layer_type
        self.input_shape = input_shape
        self.loss_fn = loss_fn
        self.global_step = 0
        self.global_epoch = 0
        self.reset_network()

    # ----- structure ------------------------------------------------------------------------

    def set_growing_layers(self) -> None:
        """``_growing_layers = [dag]``."""
        self._growing_layers = [self.dag]

    def init_empty_graph(self) -> None:
        """A new one-layer DAG (root → end)."""
        self.dag = GrowingDAG(self.in_features, self.out_features, self.neurons, self.use_bias, self.use_layer_norm,
                              default_layer_type=self.layer_type, name=self._name, input_shape=self.input_shape,
                              device=self.device)

    def reset_network(self) -> None:
        """A new DAG (listed in place of the old one), counters 0, empty growth history."""
        self.init_empty_graph()
        self.global_step = 0
        self.global_epoch = 0
        self.growth_history: dict = {}
        self.set_growing_layers()

    def init_computation(self) -> None:
        """= ``dag.init_computation()``."""
        self.dag.init_computation()

    def update_computation(self) -> None:
        """= ``dag.update_computation()``."""
        self.dag.update_computation()

    def reset_computation(self) -> None:
        """= ``dag.reset_computation()``."""
        self.dag.reset_computation()

    def compute_optimal_delta(self, update: bool = True, return_deltas: bool = False,
                              force_pseudo_inverse: bool = False) -> None:
        """= ``dag.compute_optimal_delta(...)``."""
        self.dag.compute_optimal_delta(update=update, return_deltas=return_deltas,
                                       force_pseudo_inverse=force_pseudo_inverse)

    def delete_update(self) -> None:
        """= ``dag.delete_update()``."""
        self.dag.delete_update()

    def update_size(self) -> None:
        """Merges follow their neighbours, then the DAG's sizes, then the network's."""
        super().update_size()
        self.dag.update_size()
        self.in_features = self.dag.nodes[self.dag.root]["size"]
        self.out_features = self.dag.nodes[self.dag.end]["size"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """= ``dag(x)``."""
        return self.dag(x)

    def extended_forward(self, x: torch.Tensor, x_ext: torch.Tensor | None = None,
                         mask: dict = {}) -> tuple[torch.Tensor, torch.Tensor | None]:  # noqa: B006
        """= ``dag.extended_forward(x, x_ext, mask)`` → (output, output extension)."""
        return self.dag.extended_forward(x, x_ext, mask=mask)

    def parameters(self):  # type: ignore[override]
        """= ``dag.parameters()``."""
        return self.dag.parameters()

    # ----- new weights against the bottleneck -------------------------------------------------

    def block_forward(self, layer_fn: Callable, alpha: torch.Tensor, omega: torch.Tensor, bias: torch.Tensor,
                      x: torch.Tensor, sigma: Callable, **kwargs: Any) -> torch.Tensor:
        """``ω σ(α x + Σ_j b_j)``: ``layer_fn`` is ``F.linear`` or ``F.conv2d``, ``bias (N, k)`` one column
        per incoming edge."""
        hidden = sigma(layer_fn(x, alpha, bias=bias.sum(dim=1), **kwargs))
        return layer_fn(hidden, omega, bias=None, **kwargs)

    def bottleneck_loss(self, activity: torch.Tensor, bottleneck: torch.Tensor) -> torch.Tensor:
        """``mean_b ⟨a_b, v_b⟩ / √(mean_b ‖a_b‖² + 1e-8)``: minimising it anti-aligns the block output
        (added to the target) with the bottleneck, whatever its scale."""
        if activity.ndim == bottleneck.ndim + 2:
            activity = activity.squeeze(-1).squeeze(-1)
        inner = (activity * bottleneck).flatten(1).sum(dim=1).mean()
        norm = activity.flatten(1).pow(2).sum(dim=1).mean()
        return inner / torch.sqrt(norm + 1e-8)

    def bi_level_bottleneck_optimization(self, alpha: torch.Tensor, omega: torch.Tensor, bias: torch.Tensor,
                                         B: torch.Tensor, sigma: Callable, bottleneck: torch.Tensor,  # noqa: N803
                                         input_keys: list[str], target_keys: list[str], linear: bool = True,
                                         operation_args: dict = {}, verbose: bool = True) -> list[float]:  # noqa: B006
        """Gradient descent of ``bottleneck_loss(block_forward(...), bottleneck)`` over α, ω, b.

        Returns:
            the mean loss of each epoch.
        """
        layer_fn = F.linear if linear else F.conv2d

        def block(x: torch.Tensor) -> torch.Tensor:
            return self.block_forward(layer_fn, alpha, omega, bias, x, sigma, **operation_args)

        for parameter in (alpha, omega, bias):
            parameter.requires_grad_(True)
        try:
            history, _ = mini_batch_gradient_descent(
                block, cost_fn=self.bottleneck_loss, X=B, Y=bottleneck, lrate=self.neuron_lrate,
                max_epochs=self.neuron_epochs, batch_size=self.neuron_batch_size, x_keys=input_keys,
                y_keys=target_keys, parameters=[alpha, omega, bias], fast=True, verbose=verbose)
        finally:
            for parameter in (alpha, omega, bias):
                parameter.requires_grad_(False)
        return history

    def joint_bottleneck_optimization(self, activity: torch.Tensor, existing_activity: torch.Tensor,
                                      desired_update: torch.Tensor) -> None:
        """Not implemented (as in GroMo).

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("Joint optimization of weights is not implemented yet!")

    # ----- fitting one expansion ---------------------------------------------------------------

    def _node_modules(self, expansion: Expansion, side: str) -> list:
        nodes = expansion.previous_nodes if side == "previous" else expansion.next_nodes
        if isinstance(expansion, InterMergeExpansion):
            return nodes
        return self.dag.get_node_modules(nodes)

    @staticmethod
    def _check_inputs(bottlenecks: Any, activities: Any) -> None:
        if type(bottlenecks) is not type(activities):
            raise TypeError("Bottleneck and activities variables should have the same type. Got "
                            f"{type(bottlenecks)=} and {type(activities)=}")
        if isinstance(bottlenecks, str):
            raise NotImplementedError("File-backed bottlenecks (MemMapDataset) are not supported; give "
                                      "dict[str, torch.Tensor]")
        if not isinstance(bottlenecks, dict):
            raise TypeError("Inappropriate type for `bottlenecks` variable. Expected dict[str, torch.Tensor] or str. "
                            f"Got {type(bottlenecks)}")

    def _check_linear(self, actions: list[Expansion]) -> None:
        """Candidate fitting handles linear nodes only.

        Raises:
            NotImplementedError: an action touches a convolution node.
        """
        for action in actions:
            modules = [*self._node_modules(action, "previous"), *self._node_modules(action, "next")]
            if action.type is ExpansionType.EXPANDED_NODE:
                modules.append(self.dag.get_node_module(action.expanding_node))
            elif action.type is ExpansionType.NEW_NODE and action.node_attributes.get("type") != "linear":
                raise NotImplementedError(f"execute_expansions: only linear nodes can be expanded, {action} "
                                          f"adds a {action.node_attributes.get('type')} node")
            for module in modules:
                if not isinstance(module, LinearMergeGrowingModule):
                    raise NotImplementedError(f"execute_expansions: only linear nodes can be expanded, {action} "
                                              f"touches {module.name} ({type(module).__name__})")

    def _plan(self, expansion: Expansion) -> CandidatePlan:
        """What the expansion reads and answers (its in-edges must exist: after ``expand()``)."""
        inputs = tuple(m._name for m in self._node_modules(expansion, "previous"))
        targets = tuple(m._name for m in self._node_modules(expansion, "next"))
        if expansion.type is ExpansionType.NEW_EDGE:
            return CandidatePlan("edge", inputs, targets, bias=True)
        node = self.dag.get_node_module(expansion.expanding_node)
        if not isinstance(node, LinearMergeGrowingModule):
            raise NotImplementedError(f"expand_node: only linear nodes can be expanded, {node.name} is "
                                      f"{type(node).__name__}")
        biased = any(edge.use_bias for edge in expansion.in_edges)
        return CandidatePlan("node", inputs, targets, bias=biased, activation=_surrogate_activation(node),
                             neurons=self.neurons)

    def _fit(self, expansion: Expansion, bottlenecks: dict, activities: dict):
        fit = getattr(expansion, "_candidate_fit", None)
        if fit is None:
            fit = fit_candidates([self._plan(expansion)], bottlenecks, activities,
                                 batch_size=self.neuron_batch_size)[0]
        expansion._candidate_fit = None
        return fit

    def _start_bias(self, fit, expansion: Expansion) -> torch.Tensor:
        """GroMo's bias layout (K, k): one column per biased in-edge, the fit's bias shared equally."""
        columns = sum(edge.use_bias for edge in expansion.in_edges)
        if columns:
            return (fit.bias.to(self.device) / columns)[:, None].repeat(1, columns)
        return torch.zeros(fit.weight.shape[0], 0, device=self.device)

    def _neuron_outputs(self, plan: CandidatePlan, alpha, bias, omega, bottlenecks: dict, activities: dict):
        """(FOI (K,), block output (n, O) on CPU) of trained neurons: a non-shuffled pass."""
        x = torch.cat([activities[name] for name in plan.inputs], dim=1).to(self.device)
        v = torch.cat([bottlenecks[name] for name in plan.targets], dim=1).to(self.device)
        with torch.no_grad():
            hidden = torch.cat([plan.activation(F.linear(x[r:r + self.neuron_batch_size], alpha, bias.sum(1)))
                                for r in range(0, len(x), self.neuron_batch_size)])
            return -(hidden * (v @ omega)).mean(dim=0), (hidden @ omega.T).cpu()

    def _refine_neurons(self, fit, plan: CandidatePlan, expansion: Expansion, bottlenecks: dict,
                        activities: dict, verbose: bool):
        """``neuron_epochs`` of GroMo's bi-level descent from the fitted neurons (this candidate alone,
        unless ``execute_expansions`` descended all candidates together); new outputs."""
        refined = getattr(expansion, "_candidate_descent", None)
        expansion._candidate_descent = None
        if refined is not None:
            alpha, bias, omega, history = refined
        else:
            x = torch.cat([activities[name] for name in plan.inputs], dim=1).to(self.device)
            v = torch.cat([bottlenecks[name] for name in plan.targets], dim=1).to(self.device)
            alpha, omega = fit.weight.clone().to(self.device), fit.omega.clone().to(self.device)
            bias = self._start_bias(fit, expansion)
            history = self.bi_level_bottleneck_optimization(alpha, omega, bias, x, plan.activation, v,
                                                            list(plan.inputs), list(plan.targets), verbose=verbose)
        foi, output = self._neuron_outputs(plan, alpha, bias, omega, bottlenecks, activities)
        return alpha, bias.sum(dim=1) if fit.bias is not None else None, omega, foi, output, history

    def _descend_all(self, actions: list[Expansion], plans: list[CandidatePlan], fits: list, bottlenecks: dict,
                     activities: dict) -> None:
        """GroMo's descent for every node candidate in one batched optimisation per activation."""
        groups: dict[str, list[int]] = {}
        for i, plan in enumerate(plans):
            if plan.kind == "node":
                groups.setdefault(repr(plan.activation), []).append(i)
        for members in groups.values():
            sources = list(dict.fromkeys(name for i in members for name in plans[i].inputs))
            targets = list(dict.fromkeys(name for i in members for name in plans[i].targets))
            x = torch.cat([activities[name] for name in sources], dim=1).to(self.device)
            v = torch.cat([bottlenecks[name] for name in targets], dim=1).to(self.device)

            def columns(names, order, table):
                offsets, start = {}, 0
                for name in order:
                    offsets[name], start = start, start + table[name].shape[1]
                return [offsets[name] + j for name in names for j in range(table[name].shape[1])]

            alphas, biases, omegas, history = descend_candidates(
                [fits[i].weight.to(self.device) for i in members],
                [self._start_bias(fits[i], actions[i]) for i in members],
                [fits[i].omega.to(self.device) for i in members],
                [columns(plans[i].inputs, sources, activities) for i in members],
                [columns(plans[i].targets, targets, bottlenecks) for i in members],
                plans[members[0]].activation, x, v, lrate=self.neuron_lrate, epochs=self.neuron_epochs,
                batch_size=self.neuron_batch_size)
            for j, i in enumerate(members):
                actions[i]._candidate_descent = (alphas[j], biases[j], omegas[j], history[j])

    def expand_node(self, expansion: Expansion, bottlenecks: dict, activities: dict,
                    neuron_selection_threshold: float = -np.inf, verbose: bool = True) -> list[float]:
        """Propose new neurons for a new or existing node: fill the extension slots of its in-edges
        (``extended_output_layer``, rows of α and b) and out-edges (``extended_input_layer``, columns
        of ω); nothing is applied.

        Args:
            expansion: a NEW_NODE or EXPANDED_NODE expansion (already ``expand()``-ed).
            bottlenecks: target ``_name`` → (n, size).
            activities: source ``_name`` → (n, size).
            neuron_selection_threshold: neurons with a lower first-order improvement are dropped.
            verbose: progress of the gradient descent.
        Returns:
            the bottleneck loss history ([loss of the closed form] without gradient descent).
        Raises:
            TypeError: bottlenecks and activities of different or unsupported types.
            NotImplementedError: a convolution node.
        """
        self._check_inputs(bottlenecks, activities)
        plan = self._plan(expansion)
        fit = self._fit(expansion, bottlenecks, activities)
        if self.neuron_epochs > 0:
            alpha, bias, omega, foi, output, history = self._refine_neurons(fit, plan, expansion, bottlenecks,
                                                                            activities, verbose)
        else:
            alpha, bias, omega, foi, output, history = (fit.weight, fit.bias, fit.omega, fit.foi, fit.block_output,
                                                        [fit.loss])
        expansion.metrics["neuron_foi"] = foi
        keep = (foi >= neuron_selection_threshold).nonzero().flatten()
        expansion.metrics["active_neurons"] = int(keep.numel())
        if keep.numel() == 0:
            expansion.metrics["skip"] = True
            return []
        alpha, omega = alpha[keep].to(self.device), omega[:, keep].to(self.device)
        bias = None if bias is None else bias[keep].to(self.device)
        if keep.numel() != foi.numel():  # the kept neurons' block output, without the dropped ones
            x = torch.cat([activities[name] for name in plan.inputs], dim=1).to(self.device)
            with torch.no_grad():
                output = (plan.activation(F.linear(x, alpha, bias)) @ omega.T).cpu()
        self._install_neurons(expansion, alpha, bias, omega, output)
        return history

    def _install_neurons(self, expansion: Expansion, alpha: torch.Tensor, bias: torch.Tensor | None,
                         omega: torch.Tensor, output: torch.Tensor) -> None:
        """Extension layers from α (K, I), b (K,), ω (O, K); the bias goes to the first biased in-edge."""
        count, offset, bias_given = alpha.shape[0], 0, False
        for edge in expansion.in_edges:
            width = edge.in_features
            edge_bias = None
            if edge.use_bias:
                edge_bias = (bias if bias is not None and not bias_given else torch.zeros(count, device=alpha.device))
                bias_given = True
            edge.output_extension_scaling = 1.0
            edge.extended_output_layer = edge.layer_of_tensor(
                alpha[:, offset:offset + width].reshape(count, *edge.weight.shape[1:]).clone(),
                bias=None if edge_bias is None else edge_bias.clone())
            offset += width
        expansion.metrics["block_output"] = {}
        offset = 0
        for edge in expansion.out_edges:
            width = edge.out_features
            layer = nn.Linear(count, width, bias=False, device=alpha.device, dtype=alpha.dtype)
            layer.weight = nn.Parameter(omega[offset:offset + width].clone())
            edge.extended_input_layer = layer
            edge.scaling_factor = 1.0
            expansion.metrics["block_output"][edge.next_module._name] = output[:, offset:offset + width]
            offset += width

    def update_edge_weights(self, expansion: Expansion, bottlenecks: dict, activities: dict,
                            verbose: bool = True) -> list[float]:
        """Weights of a new edge: the exact minimiser ``W, b`` of the bottleneck loss, stored as the
        edge's optimal delta ``(−W, −b)`` (``extended_forward`` adds ``γ²·W x``: a descent direction).

        Returns:
            [bottleneck loss of the fit].
        Raises:
            TypeError: bottlenecks and activities of different or unsupported types.
            AssertionError: the edge has no bias.
        """
        self._check_inputs(bottlenecks, activities)
        edge = self.dag.get_edge_module(expansion.previous_node, expansion.next_node)
        ensure(edge.use_bias, f"{edge.name}: a new edge must have a bias.")
        fit = self._fit(expansion, bottlenecks, activities)
        target = self.dag.get_node_module(expansion.next_node)
        expansion.metrics["block_output"] = {target._name: fit.block_output}
        weight = fit.weight.reshape(edge.weight.shape).to(self.device)
        edge.optimal_delta_layer = edge.layer_of_tensor(-weight, -fit.bias.to(self.device))
        return [fit.loss]

    # ----- running candidates ---------------------------------------------------------------

    def find_amplitude_factor(self, dataloader, mask: dict = {}) -> float:  # noqa: B006
        """The γ of ``set_scaling_factor`` minimising the mean batch loss of ``extended_forward`` with
        ``mask`` (line search; the last tried γ stays set)."""

        @torch.no_grad()
        def cost(factor: float) -> float:
            self.set_scaling_factor(factor)
            losses = [float(self.loss_fn(self.extended_forward(x, mask=mask)[0], y)) for x, y in dataloader]
            return sum(losses) / len(losses)

        factor, _ = line_search(cost)
        return factor

    def execute_expansions(self, actions: list[Expansion], bottleneck: dict, input_B: dict,  # noqa: N803
                           amplitude_factor: bool, evaluate: bool, neuron_selection_threshold: float = -np.inf,
                           train_dataloader=None, dev_dataloader=None, val_dataloader=None,
                           verbose: bool = False) -> None:
        """Put every action in the DAG as a candidate and fit it (all at once, see the module
        docstring); set its amplitude (1, or the line search's with ``amplitude_factor``) and optionally
        evaluate it. Candidates coexist: masks keep them apart.

        Raises:
            AssertionError: a loader the options need is missing.
        """
        if amplitude_factor:
            ensure(dev_dataloader is not None, "Development DataLoader should be given if amplitude_factor is True")
        if evaluate:
            ensure(train_dataloader is not None, "Train DataLoader should be given if evaluate is True")
            ensure(dev_dataloader is not None, "Development DataLoader should be given if evaluate is True")
            ensure(val_dataloader is not None, "Validation DataLoader should be given if evaluate is True")
        self._check_inputs(bottleneck, input_B)
        self._check_linear(actions)  # before any candidate enters the graph
        for expansion in actions:
            expansion.growth_history = copy.copy(self.growth_history)
            expansion.expand()
            expansion.update_growth_history(self.global_step)
        plans = [self._plan(e) for e in actions]
        fits = fit_candidates(plans, bottleneck, input_B, batch_size=self.neuron_batch_size) if actions else []
        if self.neuron_epochs > 0:
            self._descend_all(actions, plans, fits, bottleneck, input_B)
        for expansion, fit in _progress(list(zip(actions, fits)), verbose, desc="candidates"):
            expansion._candidate_fit = fit
            if expansion.type is ExpansionType.NEW_EDGE:
                if verbose:
                    print(f"Adding direct edge from {expansion.previous_node} to {expansion.next_node}")
                loss_history = self.update_edge_weights(expansion, bottleneck, input_B, verbose=verbose)
            else:
                loss_history = self.expand_node(expansion, bottleneck, input_B,
                                                neuron_selection_threshold=neuron_selection_threshold,
                                                verbose=verbose)
                if expansion.metrics.get("skip"):
                    continue
            factor = 1.0
            if amplitude_factor:
                factor = self.find_amplitude_factor(dev_dataloader, expansion.create_mask())
            self.set_scaling_factor(factor)
            expansion.metrics["scaling_factor"] = factor
            expansion.metrics["loss_bott"] = loss_history[-1]
            if evaluate:
                expansion.evaluate(self, train_dataloader, dev_dataloader, val_dataloader, loss_fn=self.loss_fn)

    # ----- choosing and applying --------------------------------------------------------------

    def restrict_action_space(self, actions: list[Expansion], chosen_outputs: list[str] | None = None,
                              chosen_inputs: list[str] | None = None) -> list[Expansion]:
        """The actions whose targets (or expanding node) are in ``chosen_outputs``, or whose sources are in
        ``chosen_inputs``.

        Raises:
            NotImplementedError: both given.
        Warns:
            UserWarning: neither given (the list is returned unchanged).
        """
        if chosen_outputs is None and chosen_inputs is None:
            import warnings

            warnings.warn("No input or output was given to restrict the actions. No restriction will happen.",
                          UserWarning, stacklevel=2)
            return actions
        if chosen_outputs is not None and chosen_inputs is not None:
            raise NotImplementedError("You can only restrict inputs or outputs one at a time.")

        def names(nodes: list) -> set:
            return {n._name if isinstance(n, nn.Module) else n for n in nodes}

        if chosen_outputs is not None:
            chosen = set(chosen_outputs)
            return [a for a in actions if a.expanding_node in chosen or names(a.next_nodes) & chosen]
        chosen = set(chosen_inputs)
        return [a for a in actions if names(a.previous_nodes) & chosen]

    def choose_growth_best_action(self, options: list[Expansion], use_bic: bool = False,
                                  verbose: bool = False) -> None:
        """Keep the option of least ``metrics["BIC"]`` (or ``"loss_val"``), first on ties; clean the
        graph of the others.

        Raises:
            KeyError: the metric is missing.
        """
        key = "BIC" if use_bic else "loss_val"
        values = [option.metrics[key] for option in options]
        best = int(np.argmin(values))
        if verbose:
            print(f"Chose option {best}")
        self.chosen_action = options[best]
        self.clean_graph_with_chosen_action(options)

    def clean_graph_with_chosen_action(self, options: list[Expansion]) -> None:
        """Make the chosen expansion permanent, remove the other new edges / nodes, drop every
        extension not around the chosen node (deltas are kept)."""
        chosen, dag = self.chosen_action, self.dag
        expanding = None
        if chosen.dag is dag and not isinstance(chosen, InterMergeExpansion):
            if chosen.type is ExpansionType.NEW_EDGE:
                dag.toggle_edge_candidate(chosen.previous_node, chosen.next_node, candidate=False)
            elif chosen.type is ExpansionType.NEW_NODE:
                dag.toggle_node_candidate(chosen.expanding_node, candidate=False)
                for u, v in chosen.new_edges:
                    dag.toggle_edge_candidate(u, v, candidate=False)
            for option in options:
                if option is chosen or option.dag is not dag:
                    continue
                if option.type is ExpansionType.NEW_EDGE:
                    dag.remove_edge(option.previous_node, option.next_node)
                elif option.type is ExpansionType.NEW_NODE:
                    dag.remove_node(option.expanding_node)
            expanding = chosen.expanding_node
        elif isinstance(chosen, InterMergeExpansion) and chosen.adjacent_expanding_node in dag.nodes:
            expanding = chosen.adjacent_expanding_node
        for u, v in dag.edges:
            dag.get_edge_module(u, v).delete_update(include_previous=False, delete_delta=False,
                                                    delete_input=(u != expanding), delete_output=(v != expanding))

    def apply_change(self) -> None:
        """Apply the chosen expansion at its scaling factor γ: every edge ``W ← W − γ²δ`` and ``γ·Z``
        appended as input columns, ``γ·V`` appended as output rows; a chosen candidate node is renamed;
        the growth history and the chosen metrics are recorded."""
        chosen, dag = self.chosen_action, self.dag
        factor = chosen.metrics["scaling_factor"]
        edges = dag.get_all_edge_modules()
        for edge in edges:
            edge.scaling_factor = factor
            edge.output_extension_scaling = factor
            edge.apply_change(scaling_factor=factor, apply_previous=False)
        for edge in edges:
            if edge.extended_output_layer is not None:
                edge._apply_output_changes(scaling_factor=factor, extension_size=chosen.metrics["active_neurons"])
        if chosen.type is not ExpansionType.NEW_EDGE:
            node = chosen.expanding_node
            if isinstance(chosen, InterMergeExpansion) and node not in dag.nodes:
                node = chosen.adjacent_expanding_node
            dag.update_size()
            if node in dag.nodes:
                dag.rename_nodes({node: node.split("_")[0]})
        for edge in dag.get_all_edge_modules():
            edge.delete_update(include_previous=False, delete_delta=True, delete_input=True, delete_output=True)
        self.growth_history = copy.copy(chosen.growth_history)
        for split in ("train", "dev", "val"):
            setattr(self, f"growth_loss_{split}", chosen.metrics.get(f"loss_{split}"))
            setattr(self, f"growth_acc_{split}", chosen.metrics.get(f"acc_{split}"))
        self.update_size()

