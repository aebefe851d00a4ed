"""Statistics of a growing layer: the one-call-per-batch cache and the GrowingModule methods that
feed, drive and read the statistics (S, M, M₋₂, P, E, S₋₂).

Every statistic is a :class:`~gromo.utils.tensor_statistic.TensorStatistic` whose update function
is a ``compute_*_update`` method, exactly as in GroMo. Those methods do NOT compute anything
themselves: they ask the module's :class:`LayerStatistics` for a gromo_kernels key ("s", "m",
"e", "m_prev", "cross_cov", "s_growth"). The first such request after a forward computes, in ONE
``gromo_kernels.layer_statistics`` call, the requested statistic plus every other statistic of the
module that (a) was ``init()``-ed, (b) has not been updated since the last forward (together: the
statistic is ``pending``) and (c) has its inputs available; the results are cached until the next
forward (or until the stored tensors change, or ``reset_computation`` / ``delete_update``). Each
input is therefore concatenated / unfolded at most once per batch, under ``no_grad``, and the cache
holds only the sums and references to the already-stored input tensors (no autograd graph).

The cache is a memo: entries are valid only while their source tensors are the very tensors stored
now, so a rollback (``gromo.modules._transactions``) that leaves it cleared costs a recomputation,
never a wrong value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

import gromo_kernels as gk
from gromo.modules import _guards
from gromo.modules._growing.abstract import abstract_property, abstract_update
from gromo.modules._growing.markers import GrowingModuleBase, MergeGrowingModuleBase
from gromo.utils._assertions import ensure
from gromo.utils.tensor_statistic import TensorStatistic, update_together

__all__ = [
    "LAYER_STATISTICS", "CachedStatistic", "LayerStatistics", "StatisticsMixin", "new_statistic",
    "tensor_s_growth_is_read_only",
]

#: the sources a statistic may read: this layer's input, the pre-activation gradient, the
#: previous layer's input (the order also picks the tensor whose first dimension counts samples)
_SOURCE_NAMES = ("x", "grad", "x_prev")

#: S, M and E, which every layer type computes from its input and its pre-activation gradient
#: (the start of each layer type's ``_fused_statistics``)
LAYER_STATISTICS: dict[str, tuple[str, frozenset[str]]] = {
    "_tensor_s": ("s", frozenset({"x"})),
    "tensor_m": ("m", frozenset({"x", "grad"})),
    "covariance_loss_gradient": ("e", frozenset({"grad"})),
}


def new_statistic(
    owner: nn.Module, shape: tuple[int, ...] | None, update_function: Callable[..., tuple[torch.Tensor, int]],
    label: str,
) -> TensorStatistic:
    """An empty statistic of ``owner`` (on its device), printed as ``label(owner name)``."""
    return TensorStatistic(shape, update_function=update_function, device=owner.device, name=f"{label}({owner.name})")


def tensor_s_growth_is_read_only(module: nn.Module, note: str = "") -> AttributeError:
    """GroMo's error for an assignment to ``module.tensor_s_growth``, ``note`` appended."""
    return AttributeError(
        f"You tried to set tensor_s_growth of a GrowingModule (name={module.name}).This is not allowed "
        "because tensor_s_growth refers to the previous module's tensor_s, not the current "
        f"module's tensor_s.{note}"
    )


class CachedStatistic(NamedTuple):
    """One cached sum, its sample count and the tensors it was computed from."""

    value: torch.Tensor
    samples: int
    sources: dict[str, torch.Tensor]


class LayerStatistics:
    """The statistics cache of one module: which statistics are wanted, the single
    ``gromo_kernels.layer_statistics`` call, and its sums until their sources change.

    Args:
        kind: the ``kind`` of ``gromo_kernels.layer_statistics`` ("linear", "conv2d", ...).
        declared: ``{statistic attribute of the owner: (kernel key, sources it reads)}``, the
            sources among "x", "grad", "x_prev".
        owner_type: the owner's class name, for messages.
    """

    def __init__(
        self, kind: str | None, declared: Mapping[str, tuple[str, frozenset[str]]], owner_type: str
    ) -> None:
        self.kind = kind
        self.declared = declared
        self.owner_type = owner_type
        self.entries: dict[str, CachedStatistic] = {}

    def clear(self) -> None:
        """Forget every cached sum."""
        self.entries = {}

    def requirements(self, key: str) -> frozenset[str]:
        """The sources the kernel statistic ``key`` reads.

        Raises:
            KeyError: ``key`` is not declared.
        """
        for kernel_key, requirements in self.declared.values():
            if kernel_key == key:
                return frozenset(requirements)
        raise KeyError(f"{self.owner_type} declares no statistic {key!r}")

    def _valid(self, key: str, sources: Mapping[str, torch.Tensor]) -> CachedStatistic | None:
        entry = self.entries.get(key)
        if entry is None or any(sources.get(name) is not tensor for name, tensor in entry.sources.items()):
            return None
        return entry

    @torch.no_grad()
    def sums(
        self,
        owner: nn.Module,
        key: str,
        sources: Mapping[str, torch.Tensor],
        *,
        missing_message: Callable[[list[str]], str],
        **call_kwargs: Any,
    ) -> tuple[torch.Tensor, int]:
        """``(Σ, n)`` of the statistic ``key`` for ``sources`` (the tensors stored now).

        A cached sum computed from these very tensors is returned as is. Otherwise one
        ``gromo_kernels.layer_statistics`` call computes ``key`` and every other declared statistic
        of ``owner`` that is ``pending`` and whose sources are available, and caches them all.

        Args:
            owner: the module whose statistic attributes ``declared`` names.
            key: the kernel key wanted.
            sources: the available tensors among "x", "grad", "x_prev".
            missing_message: the AssertionError text for the sources ``key`` lacks.
            call_kwargs: the other keyword arguments of ``layer_statistics`` (bias, geometries).
        Raises:
            AssertionError: a source ``key`` reads is not available.
        """
        entry = self._valid(key, sources)
        if entry is not None:
            return entry.value, entry.samples
        missing = [name for name in self.requirements(key) if name not in sources]
        ensure(not missing, lambda: missing_message(missing))
        want = [key]
        for attribute, (kernel_key, needed) in self.declared.items():
            if kernel_key in want or self._valid(kernel_key, sources) is not None:
                continue
            statistic = owner.__dict__.get(attribute)
            if isinstance(statistic, TensorStatistic) and statistic.pending and all(
                name in sources for name in needed
            ):
                want.append(kernel_key)
        used = set().union(*(self.requirements(k) for k in want))
        # x is passed only when read: a stale x must not meet a fresh gradient in the checks (the
        # kernels take a conv's grid from x_prev and the previous geometry then).
        results = gk.layer_statistics(
            self.kind,
            sources["x"] if "x" in used else None,
            sources.get("grad") if "grad" in used else None,
            x_prev=sources.get("x_prev") if "x_prev" in used else None,
            want=tuple(want),
            **call_kwargs,
        )
        reference = next(sources[name] for name in _SOURCE_NAMES if name in used)
        samples = int(reference.shape[0])
        for kernel_key in want:
            needed = self.requirements(kernel_key)
            self.entries[kernel_key] = CachedStatistic(
                results[kernel_key], samples, {name: sources[name] for name in needed}
            )
        return results[key], samples


class StatisticsMixin:
    """GrowingModule's statistics: the S / S₋₂ / N accessors, the hooks a layer type fills, the
    update functions (abstract here) and init / update / reset_computation.

    A layer type declares:
    * ``_statistics_kind``: the ``kind`` of ``gromo_kernels.layer_statistics`` ("linear", "conv2d",
      "conv2d_restricted", "conv2d_full");
    * ``_fused_statistics``: ``{statistic attribute name: (kernel key, required sources)}`` where
      the sources are among ``"x"`` (this layer's input), ``"grad"`` (gradient of the
      pre-activation) and ``"x_prev"`` (previous GrowingModule's input). Use the attribute that
      holds the statistic object (e.g. ``"_tensor_s"``, ``"_tensor_s_growth"``), not a property;
    * ``_statistics_kwargs()``: extra keyword arguments of ``layer_statistics`` (conv: ``cur=``
      and ``prev=`` geometries);
    * ``_statistics_accept_previous(previous)``: whether the growth statistics can be computed
      with this previous module (linear: a LinearGrowingModule); others are never fused.
    Its ``compute_*_update`` methods check GroMo's preconditions (raising GroMo's errors) and then
    ``return self._layer_statistic(key)`` → ``(sum, n)``.
    """

    #: ``gromo_kernels.layer_statistics`` kind (None: no fused statistics)
    _statistics_kind: str | None = None
    #: statistic attribute -> (kernel key, required sources among "x", "grad", "x_prev")
    _fused_statistics: dict[str, tuple[str, frozenset[str]]] = {}

    @property
    def tensor_s(self) -> TensorStatistic:
        """S of this layer's input (the previous merge's S when the previous module is a merge)."""
        if isinstance(self.previous_module, MergeGrowingModuleBase):
            return self.previous_module.tensor_s
        return self._tensor_s

    @property
    def tensor_s_growth(self) -> TensorStatistic:
        """S₋₂: the previous growing module's S.

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module is a merge or not growing.
        """
        previous = self._previous_module_for("S growth is not defined")
        if isinstance(previous, GrowingModuleBase):
            return previous.tensor_s
        if isinstance(previous, MergeGrowingModuleBase):
            raise NotImplementedError(
                "S growth is not implemented for module preceded by an MergeGrowingModule. "
                f"(error in {self.name})"
            )
        raise NotImplementedError(
            f"S growth is not implemented yet for {type(previous)} as previous module."
        )

    @tensor_s_growth.setter
    def tensor_s_growth(self, value: Any) -> None:
        raise tensor_s_growth_is_read_only(self)

    def _previous_module_for(self, consequence: str) -> nn.Module:
        """The previous module, needed for what ``consequence`` names.

        Raises:
            ValueError: no previous module (GroMo's "No previous module for … Thus <consequence>.").
        """
        previous = self.previous_module
        if previous is None:
            raise ValueError(f"No previous module for {self.name}. Thus {consequence}.")
        return previous

    tensor_n = abstract_property("N = −M₋₂ + P δᵀ.")

    # ----- statistics: fused computation (hooks for subclasses) ------------------------------

    def _patch_layer_forward(self, layer: nn.Module) -> None:
        """Hook: install GroMo's "safe forward" on the original layer (default: nothing)."""

    def _statistics_kwargs(self) -> dict[str, Any]:
        """Hook: extra keyword arguments of ``gromo_kernels.layer_statistics`` (conv geometries)."""
        return {}

    def _statistics_accept_previous(self, previous: GrowingModuleBase) -> bool:
        """Hook: whether growth statistics (``x_prev``) can be fused with this previous module.

        Statistics the layer type cannot compute for this predecessor (GroMo raises
        NotImplementedError when they are asked for) must not be fused into another request.
        """
        return True

    def _statistic_sources(self) -> dict[str, torch.Tensor]:
        """The tensors currently available: "x", "grad", "x_prev" (missing keys: not available)."""
        sources: dict[str, torch.Tensor] = {}
        x = self._stored_input()
        if x is not None:
            sources["x"] = x
        pre_activity = self._stored_pre_activity()
        if pre_activity is not None and pre_activity.grad is not None:
            sources["grad"] = pre_activity.grad
        previous = self.previous_module
        if isinstance(previous, GrowingModuleBase) and self._statistics_accept_previous(previous):
            x_prev = previous._stored_input()
            if x_prev is not None:
                sources["x_prev"] = x_prev
        return sources

    @property
    def _statistics_cache(self) -> dict[str, CachedStatistic]:
        """The cached sums of the current batch, by kernel key (see :class:`LayerStatistics`)."""
        return self._statistics.entries

    def _layer_statistic(self, key: str) -> tuple[torch.Tensor, int]:
        """Sum for the gromo_kernels statistic ``key`` of the current batch and its sample count.

        Computes, in one ``gromo_kernels.layer_statistics`` call, ``key`` and every other in-use,
        pending and computable statistic of this module (see :class:`LayerStatistics`).

        Raises:
            AssertionError: the inputs ``key`` needs are not stored.
        """
        return self._statistics.sums(
            self, key, self._statistic_sources(),
            missing_message=lambda missing: (
                f"{self.name}: cannot compute statistic {key!r}, missing {missing} "
                "(is the input / pre-activity stored and the backward pass done?)"
            ),
            bias=bool(self.use_bias),
            bias_prev=bool(getattr(self.previous_module, "use_bias", True)),
            **self._statistics_kwargs(),
        )

    def _clear_statistics_cache(self) -> None:
        self._statistics.clear()

    # ----- statistics: update functions (abstract) --------------------------------------------

    compute_s_update = abstract_update("(Σ x̃x̃ᵀ, n).")

    def compute_m_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(Σ x̃ dAᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_m_prev_update(
        self, desired_activation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """(Σ x̃₋₂ dAᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    compute_cross_covariance_update = abstract_update("(Σ x̃₋₂ x̃ᵀ, n).")
    compute_n_update = abstract_update("Legacy N update.")
    compute_covariance_loss_gradient_update = abstract_update("(Σ dA dAᵀ, n).")

    def _check_pre_activity_gradient(self) -> None:
        """Hook: GroMo's AssertionError when the pre-activation has no gradient (each layer type
        has its own text). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def _gradient_covariance_sums(self) -> tuple[torch.Tensor, int]:
        """(Σ dA dAᵀ, n) of the current batch, the body of a layer type's
        ``compute_covariance_loss_gradient_update``.

        Raises:
            AssertionError: pre-activation not stored or no gradient.
        """
        ensure(self.store_pre_activity, (
            "The pre-activity must be stored to compute the update of the gradient covariance. "
            f"(error in {self.name})"
        ))
        self._check_pre_activity_gradient()
        return self._layer_statistic("e")

    def projected_v_goal(self, input_vector: torch.Tensor) -> torch.Tensor:
        """``dA − δ(x)``: the pre-activation gradient left after the optimal delta.

        Raises:
            AssertionError: no optimal delta layer.
        """
        delta_output = self._optimal_delta_output(input_vector)  # GroMo checks the delta first
        return self.pre_activity.grad - delta_output

    def _optimal_delta_output(self, x: torch.Tensor) -> torch.Tensor:
        """``δ(x)``, the pending optimal delta layer applied to ``x``.

        Raises:
            AssertionError: no optimal delta layer (the projected gradient cannot be computed).
        """
        ensure(self.optimal_delta_layer is not None, (
            "The optimal delta layer is not computed.Therefore the projected gradient cannot be "
            f"computed. (error in {self.name})"
        ))
        return self.optimal_delta_layer(x)

    def _check_previous_for_computation(self) -> None:
        previous = self.previous_module
        if previous is not None and not isinstance(previous, (GrowingModuleBase, MergeGrowingModuleBase)):
            raise NotImplementedError(
                f"The previous module of type {type(previous).__name__} is not supported."
            )

    def _cycle_statistics(self) -> tuple[TensorStatistic, ...]:
        """The statistics driven by init/update/reset_computation: S, M, E and, with a growing
        previous module, M₋₂, P and S₋₂ (a merge previous module drives its own)."""
        statistics = (self.tensor_s, self.tensor_m, self.covariance_loss_gradient)
        if isinstance(self.previous_module, GrowingModuleBase):
            statistics += (self.tensor_m_prev, self.cross_covariance, self.tensor_s_growth)
        return statistics

    def init_computation(self) -> None:
        """Store input and pre-activation, (re)start S, M, E and, with a growing previous module,
        M₋₂, P and S₋₂ (a merge previous module starts its own computation).

        Raises:
            NotImplementedError: previous module neither growing nor merge.
        """
        self._check_previous_for_computation()
        self.store_input = True
        self.store_pre_activity = True
        previous = self.previous_module
        if isinstance(previous, GrowingModuleBase):
            previous.store_input = True
        for statistic in self._cycle_statistics():
            statistic.init()
        if isinstance(previous, MergeGrowingModuleBase):
            previous.init_computation()

    def update_computation(self) -> None:
        """Accumulate the statistics of the last forward/backward (all of them or none).

        Raises:
            NotImplementedError: previous module neither growing nor merge.
            NonFiniteError: the batch (input or gradient) holds NaN or Inf; no statistic changed.
        """
        self._check_previous_for_computation()
        statistics = list(self._cycle_statistics())
        if isinstance(self.previous_module, MergeGrowingModuleBase):
            statistics += self.previous_module._existing_statistics()
        update_together(statistics, context=lambda: _guards.describe_non_finite_sources(self))

    def reset_computation(self) -> None:
        """Stop storing, forget the statistics, the stored tensors and the statistics cache.

        Raises:
            NotImplementedError: previous module neither growing nor merge.
        """
        self._check_previous_for_computation()
        self.store_input = False
        self.store_pre_activity = False
        for statistic in self._cycle_statistics():
            statistic.reset()
        if isinstance(self.previous_module, MergeGrowingModuleBase):
            self.previous_module.reset_computation()
        self._input = None
        self._pre_activity = None
        self._clear_statistics_cache()

