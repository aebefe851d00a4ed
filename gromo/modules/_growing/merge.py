"""``MergeGrowingModule``: joins several growing layers (its input is the sum of their outputs),
stores its input and activity, and owns the statistics of its predecessors taken together.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Iterator

import torch
from torch import nn

from gromo.modules import _guards
from gromo.modules._dtypes import match_pending_layer_dtypes
from gromo.modules._growing.abstract import abstract_property, abstract_update
from gromo.modules._growing.description import describe
from gromo.modules._growing.markers import MergeGrowingModuleBase
from gromo.modules._growing.module import GrowingModule
from gromo.modules._growing.statistics import LayerStatistics, new_statistic
from gromo.modules._growing.updates import public_solver
from gromo.modules._transactions import atomic, merge_and_neighbours
from gromo.modules._unlink import detach_neighbours as _detach_neighbours
from gromo.utils._assertions import ensure
from gromo.utils.tensor_statistic import TensorStatistic, update_together
from gromo.utils.utils import get_correct_device

__all__ = ["MergeGrowingModule"]


class MergeGrowingModule(MergeGrowingModuleBase):
    """Joins growing modules: its input is the sum of its predecessors' outputs (done by the user).

    Stores its input (pre-activation of the predecessors, with its gradient) and its activity
    (post-merge output, the input of its successors) when the counters ``store_input`` /
    ``store_activity`` are positive, and owns ``tensor_s`` (S of its activity), and
    ``previous_tensor_s`` / ``previous_tensor_m`` (S and M of the concatenated predecessor inputs).

    Args:
        post_merge_function: applied after the merge.
        previous_modules, next_modules: neighbours.
        allow_growing: stored.
        tensor_s_shape: declared shape of ``tensor_s``.
        device: device (argument > configuration > global device).
        name: name.
    """

    #: the predecessors' statistics: attribute -> (kernel key, sources), computed by one
    #: ``gromo_kernels.layer_statistics("linear", ...)`` call on the full activity ("x") and the
    #: gradient of the merge input ("grad")
    _previous_fused_statistics: dict[str, tuple[str, frozenset[str]]] = {
        "previous_tensor_s": ("s", frozenset({"x"})),
        "previous_tensor_m": ("m", frozenset({"x", "grad"})),
    }

    def __init__(
        self,
        post_merge_function: nn.Module = nn.Identity(),
        previous_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        next_modules: list[GrowingModule | MergeGrowingModule] | None = None,
        allow_growing: bool = False,
        tensor_s_shape: tuple[int, int] | None = None,
        device: torch.device | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        # GroMo's naming: the argument in ``_name``, the composite ``ClassName(name)`` in ``name``.
        self._name = name
        self.name = self.__class__.__name__ if name is None else f"{self.__class__.__name__}({name})"
        self.device = get_correct_device(self, device)
        self._allow_growing = allow_growing
        self.use_bias = True
        self.post_merge_function = post_merge_function
        if self.post_merge_function is not None:
            self.post_merge_function = self.post_merge_function.to(self.device)

        self.store_input = 0
        self.input: torch.Tensor | None = None
        self.store_activity = 0
        self.activity: torch.Tensor | None = None

        self.tensor_s = new_statistic(self, tensor_s_shape, self.compute_s_update, "S")
        self.previous_tensor_s: TensorStatistic | None = None
        self.previous_tensor_m: TensorStatistic | None = None
        self.parameter_update_decrease: torch.Tensor | None = None
        self._statistics = LayerStatistics("linear", self._previous_fused_statistics, type(self).__name__)

        self.previous_modules: list[GrowingModule | MergeGrowingModule] = []
        self.next_modules: list[GrowingModule | MergeGrowingModule] = []
        self.total_in_features = 0
        if next_modules:
            self.set_next_modules(list(next_modules))
        if previous_modules:
            self.set_previous_modules(list(previous_modules))

    # ----- graph ----------------------------------------------------------------------------

    @property
    def number_of_successors(self) -> int:
        """Number of next modules."""
        return len(self.next_modules)

    @property
    def number_of_predecessors(self) -> int:
        """Number of previous modules."""
        return len(self.previous_modules)

    input_volume = abstract_property("Expected input volume.")
    output_volume = abstract_property("Expected output volume.")

    @property
    def pre_activity(self) -> torch.Tensor | None:
        """The merge's input (the predecessors' pre-activation)."""
        return self.input

    @property
    def number_of_parameters(self) -> int:
        """A merge has no parameters (a property, as in GroMo)."""
        return 0

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """A merge has no parameters."""
        return iter(())

    def grow(self) -> None:
        """To call after growing previous or next modules: resize the statistics."""
        self.update_size()

    def add_next_module(self, module: GrowingModule | MergeGrowingModule) -> None:
        """Append a successor (re-runs ``set_next_modules``)."""
        self.set_next_modules(self.next_modules + [module])

    def add_previous_module(self, module: GrowingModule | MergeGrowingModule) -> None:
        """Append a predecessor (re-runs ``set_previous_modules``)."""
        self.set_previous_modules(self.previous_modules + [module])

    def set_next_modules(self, next_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the successors. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def set_previous_modules(self, previous_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Set the predecessors. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def update_size(self) -> None:
        """Recompute sizes after a neighbour grew. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def _checked_previous_modules(
        self, previous_modules: list[GrowingModule | MergeGrowingModule] | None,
        accepted: tuple[type, ...], type_text: str,
    ) -> list[GrowingModule | MergeGrowingModule]:
        """``previous_modules`` as a list, each checked: its type (GroMo's TypeError ``type_text``
        when it is not one of ``accepted``), then its sizes (``_previous_size_mismatch``).

        Raises:
            TypeError: a predecessor of another type.
            ValueError: a predecessor whose sizes do not fit.
        """
        previous_modules = list(previous_modules) if previous_modules else []
        for module in previous_modules:
            if not isinstance(module, accepted):
                raise TypeError(f"{type_text} (got {type(module).__name__})")
            mismatch = self._previous_size_mismatch(module)
            if mismatch is not None:
                raise ValueError(mismatch)
        return previous_modules

    def _previous_size_mismatch(self, module: GrowingModule | MergeGrowingModule) -> str | None:
        """Hook: GroMo's ValueError text when the sizes of a predecessor (of an accepted type) do not
        fit this merge, else None."""
        return None

    def _check_has_previous_modules(self) -> None:
        """Raises AssertionError (GroMo's text): no predecessors to build the full activity from."""
        ensure(self.previous_modules, (
            f"No previous modules for {self.name}. (There are no previous modules to build the activity "
            "from.)"
        ))

    def _store_next_modules(self, next_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Keep the (already validated) successors.

        Warns:
            UserWarning: the tensor S already holds samples.
        """
        if self.tensor_s.samples > 0:
            # stacklevel 3: the caller of the subclass's set_next_modules.
            warnings.warn(
                f"You are setting the next modules of {self.name} with a non-empty tensor S.",
                UserWarning,
                stacklevel=3,
            )
        self.next_modules = next_modules

    def _store_previous_modules(self, previous_modules: list[GrowingModule | MergeGrowingModule]) -> None:
        """Keep the (already validated) predecessors and recreate the previous statistics at the new
        total width.

        Warns:
            UserWarning: the previous statistics already hold samples.
        """
        for label, statistic in (("S", self.previous_tensor_s), ("M", self.previous_tensor_m)):
            if statistic is not None and statistic.samples > 0:
                # stacklevel 3: the caller of the subclass's set_previous_modules.
                warnings.warn(
                    f"You are setting the previous modules of {self.name} with a non-empty previous "
                    f"tensor {label}.",
                    UserWarning,
                    stacklevel=3,
                )
        self.previous_modules = previous_modules
        self.total_in_features = self.sum_in_features(with_bias=True)
        self._create_previous_statistics()

    def _create_previous_statistics(self) -> None:
        """Previous S (total, total) and M (total, in_features); None without growing predecessors."""
        total = self.total_in_features
        if total > 0:
            self.previous_tensor_s = new_statistic(self, (total, total), self.compute_previous_s_update, "S[-1]")
            self.previous_tensor_m = new_statistic(self, (total, self.in_features), self.compute_previous_m_update, "M[-1]")
        else:
            self.previous_tensor_s = None
            self.previous_tensor_m = None

    def _resize_statistics(self, s_width: int) -> None:
        """After ``in_features`` changed: recreate the statistics whose declared shape no longer
        matches (``tensor_s`` (s_width, s_width), previous S / M) and drop the cached sums.

        Statistics whose shape still matches are kept, with their samples.
        """
        self.total_in_features = self.sum_in_features(with_bias=True)
        if self.tensor_s._shape != (s_width, s_width):
            self.tensor_s = new_statistic(self, (s_width, s_width), self.compute_s_update, "S")
        total = self.total_in_features
        if (
            total <= 0
            or self.previous_tensor_s is None
            or self.previous_tensor_s._shape != (total, total)
            or self.previous_tensor_m is None
            or self.previous_tensor_m._shape != (total, self.in_features)
        ):
            self._create_previous_statistics()
        self._statistics.clear()

    def sum_in_features(self, with_bias: bool = False) -> int:
        """Σ in_features (+ use_bias) of the growing predecessors."""
        return sum(
            m.in_features + (m.use_bias if with_bias else 0)
            for m in self.previous_modules
            if isinstance(m, GrowingModule)
        )

    def sum_out_features(self) -> int:
        """Σ out_features of the successors."""
        return sum(m.out_features for m in self.next_modules)

    # ----- forward and statistics ----------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``post_merge_function(x)``; stores x (with its gradient) / the activity when asked.

        A forward that raises changes nothing (the pending batch and its statistics are kept).
        """
        if self.post_merge_function and x is not None:
            y = self.post_merge_function(x)
        else:
            y = x
        for statistic in self._existing_statistics():
            statistic.updated = False
        self._statistics.clear()
        if self.store_input > 0:
            self.input = x
            if x is not None and x.requires_grad:
                x.retain_grad()
        if self.store_activity > 0:
            self.activity = y.detach() if y is not None else None
        return y

    def projected_v_goal(self) -> torch.Tensor:
        """``dA − Σ_prev δ_prev(x_prev)``: the gradient left after the predecessors' optimal deltas."""
        ensure(self.input is not None and self.input.grad is not None,
               f"The input of the merge and its gradient must be stored. (error in {self.name})")
        return self.input.grad - self._sum_of_optimal_delta_outputs()

    def _sum_of_optimal_delta_outputs(self) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        for module in self.previous_modules:
            if isinstance(module, GrowingModule):
                total = total + module._optimal_delta_output(module.input)
            elif isinstance(module, MergeGrowingModule):
                total = total + module._sum_of_optimal_delta_outputs()
        return total

    compute_s_update = abstract_update("S of the activity.")
    compute_previous_s_update = abstract_update("S of the concatenated predecessor inputs.")
    compute_previous_m_update = abstract_update("M of the concatenated predecessor inputs.")

    @torch.no_grad()
    def _activity_sums(
        self, missing_text: str, statistic: Callable[[torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, int]:
        """(``statistic(activity)``, n): the body of a layer type's ``compute_s_update``.

        Raises:
            AssertionError: the activity is not stored (GroMo's ``missing_text``, ``{name}`` the
                merge's name).
        """
        activity = self.activity
        ensure(activity is not None, lambda: missing_text.format(name=self.name))
        return statistic(activity), int(activity.shape[0])

    def _previous_statistic_sources(self) -> dict[str, torch.Tensor]:
        """``{"x": B, "grad": dA}``: the full activity (the subclass's ``construct_full_activity``)
        and, once the backward ran, the gradient of the merge input."""
        sources = {"x": self.construct_full_activity()}
        grad = self.input.grad if self.input is not None else None
        if grad is not None:
            sources["grad"] = grad
        return sources

    def _previous_statistic(self, key: str) -> tuple[torch.Tensor, int]:
        """Previous S ("s") or M ("m") sums; both in one gromo_kernels call when both are pending.

        Raises:
            AssertionError: M is asked before the backward (no gradient of the merge input).
        """
        return self._statistics.sums(
            self, key, self._previous_statistic_sources(),
            missing_message=lambda missing: f"{self.name}: the gradient of the merge input is not available.",
            bias=False,
        )

    def _existing_statistics(self) -> list[TensorStatistic]:
        """tensor_s, plus the previous S / M when there are growing predecessors."""
        return [
            statistic for statistic in (self.tensor_s, self.previous_tensor_s, self.previous_tensor_m)
            if statistic is not None
        ]

    def _growing_predecessors(self) -> list[GrowingModule]:
        return [m for m in self.previous_modules if isinstance(m, GrowingModule)]

    def init_computation(self) -> None:
        """Store input/activity, make the predecessors store theirs, (re)start the statistics."""
        for module in self._growing_predecessors():
            module.store_input = True
            module.store_pre_activity = True
        self.store_input = max(int(self.store_input), 1)
        self.store_activity = max(int(self.store_activity), 1)
        for statistic in self._existing_statistics():
            statistic.init()

    def update_computation(self) -> None:
        """Accumulate S, previous S and previous M for the last batch (all of them or none).

        Raises:
            NonFiniteError: the batch holds NaN or Inf; no statistic changed.
        """
        update_together(self._existing_statistics(), context=lambda: f" (in {self.name})")

    def reset_computation(self) -> None:
        """Stop storing, forget the statistics and the stored tensors."""
        for module in self._growing_predecessors():
            module.store_input = False
            module.store_pre_activity = False
        self.store_input = 0
        self.store_activity = 0
        for statistic in self._existing_statistics():
            statistic.reset()
        self._statistics.clear()
        self.input = None
        self.activity = None

    def delete_update(self, include_previous: bool = False) -> None:
        """Forget the stored tensors; with ``include_previous`` the predecessors' updates too."""
        self.activity = None
        self.input = None
        self._statistics.clear()
        if include_previous:
            for module in self._growing_predecessors():
                module.delete_update(include_previous=False, delete_output=True)

    @atomic(merge_and_neighbours, copy_data=False)
    def compute_optimal_delta(
        self,
        update: bool = True,
        return_deltas: bool = False,
        force_pseudo_inverse: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]] | None:
        """Joint optimal delta of all growing predecessors, split per predecessor.

        Args:
            update: set each predecessor's ``optimal_delta_layer``.
            return_deltas: return the list of (ΔW, Δb).
            force_pseudo_inverse: always use the pseudo-inverse.
            dtype: precision of the solve's inputs.
        Returns:
            list of (ΔW, Δb) if ``return_deltas`` else None.
        Raises:
            AssertionError: previous statistics missing or mis-shaped.
            NonFiniteError: the previous S or M holds NaN or Inf.
        """
        ensure(self.previous_tensor_s is not None,
               f"No previous tensor S for {self.name}. (The previous S is not defined.)")
        ensure(self.previous_tensor_m is not None,
               f"No previous tensor M for {self.name}. (The previous M is not defined.)")
        _guards.check_statistics_finite(self, (self.previous_tensor_s, self.previous_tensor_m))
        previous_s = self.previous_tensor_s()
        previous_m = self.previous_tensor_m()
        ensure(previous_s.shape == (self.total_in_features, self.total_in_features), lambda: (
            "The inverse of S should have the same number of features as the input of all previous "
            f"modules. Expected {self.total_in_features}. Got {previous_s.shape[0]}."
        ))
        ensure(previous_m.shape == (self.total_in_features, self.in_features), lambda: (
            f"The tensor M should have shape ({self.total_in_features}, {self.in_features}). "
            f"Got {previous_m.shape}."
        ))
        delta, decrease = public_solver("optimal_delta")(
            previous_s, previous_m, dtype=dtype, force_pseudo_inverse=force_pseudo_inverse
        )
        self.parameter_update_decrease = decrease
        deltas = []
        index = 0
        for module in self._growing_predecessors():
            width = module.in_features
            delta_w = delta[:, index: index + width]
            delta_b = delta[:, index + width] if module.use_bias else None
            delta_w = delta_w.reshape(module.weight.shape)
            if update:
                module.optimal_delta_layer = module.layer_of_tensor(delta_w, delta_b)
                match_pending_layer_dtypes(module, include_previous=False)
            deltas.append((delta_w, delta_b))
            index += width + module.use_bias
        return deltas if return_deltas else None

    def update_scaling_factor(self, scaling_factor: torch.Tensor | float) -> None:
        """Predecessors' ``output_extension_scaling`` and successors' ``scaling_factor`` ← value.

        Raises:
            TypeError: a neighbour is not a GrowingModule.
        """
        if isinstance(scaling_factor, torch.Tensor):
            scaling_factor = scaling_factor.detach().item()
        _guards.check_scaling(self, "scaling_factor", scaling_factor, None)
        for module in self.previous_modules:
            if not isinstance(module, GrowingModule):
                raise TypeError(f"Previous module must be a GrowingModule, got {type(module)}")
        for module in self.next_modules:
            if not isinstance(module, GrowingModule):
                raise TypeError(f"Next module must be a GrowingModule, got {type(module)}")
        for module in self.previous_modules:
            module.output_extension_scaling = scaling_factor
        for module in self.next_modules:
            module.scaling_factor = scaling_factor

    def __str__(self, verbose: int = 1) -> str:
        """GroMo's description: 0 the class, 1 the neighbour counts, ≥2 one line per attribute.

        Raises:
            ValueError: ``verbose < 0``.
        """
        kind = self.__class__.__name__

        def neighbour_counts() -> str:
            previous = len(self.previous_modules) or "no"
            following = len(self.next_modules) or "no"
            return f"{kind} module with {previous} previous modules and {following} next modules."

        return describe(
            verbose,
            brief=lambda: f"{kind} module.",
            one_line=neighbour_counts,
            header=lambda: f"{kind} module.",
            fields=lambda: [
                ("Previous modules", self.previous_modules),
                ("Next modules", self.next_modules),
                ("Post merge function", self.post_merge_function),
                ("Allow growing", self._allow_growing),
                ("Store input", self.store_input),
                ("Store activity", self.store_activity),
                ("Tensor S", self.tensor_s),
                ("Previous tensor S", self.previous_tensor_s),
                ("Previous tensor M", self.previous_tensor_m),
            ],
        )

    def __repr__(self) -> str:
        """GroMo's ``__str__()`` (not torch's module tree)."""
        return self.__str__()

    def __del__(self) -> None:
        """Detach this merge from its neighbours, then forget them (GroMo's ``__del__``).

        Each growing neighbour linked to this merge runs its own ``__del__`` (so it leaves the
        graph); each merge neighbour drops this merge and is resized. Callable explicitly; never
        raises. Growing neighbours whose link points elsewhere are left alone (they are not
        attached here, and garbage collection of this merge must not cut a live network).
        """
        _detach_neighbours(self, "previous_modules", "next_module", "next_modules")
        _detach_neighbours(self, "next_modules", "previous_module", "previous_modules")
