"""GroMo's ``gromo.modules.growing_module``: the growing-layer base classes (TINY, TMLR 2024).

``GrowingModule`` wraps one layer (``self.layer``) and everything a growth step needs: storage of
its input and pre-activation, the statistics (S, M, M₋₂, P, E), the natural-gradient step (optimal
delta), the new neurons (TINY / GradMax), scaling factors, extended forward, and the surgery that
applies a change. ``MergeGrowingModule`` joins several growing layers (sum of their outputs).

Statistics wiring (how a subclass plugs in)
-------------------------------------------
Every statistic is a :class:`~gromo.utils.tensor_statistic.TensorStatistic` whose update function
is a ``compute_*_update`` method, exactly as in GroMo. Those methods do NOT compute anything
themselves: they call :meth:`GrowingModule._layer_statistic` with a gromo_kernels key ("s", "m",
"e", "m_prev", "cross_cov", "s_growth"). The first such call after a forward computes, in ONE
``gromo_kernels.layer_statistics`` call, the requested statistic plus every other statistic of this
module that (a) was ``init()``-ed (``init_computation``), (b) has not been updated since the last
forward and (c) has its inputs available; the results are cached until the next forward (or until
the stored tensors change, or ``reset_computation`` / ``delete_update``). Each input is therefore
concatenated / unfolded at most once per batch, under ``no_grad``, and the cache holds only the
sums and references to the already-stored input tensors (no autograd graph).

A subclass declares:
* ``_statistics_kind``: the ``kind`` of ``gromo_kernels.layer_statistics`` ("linear", "conv2d",
  "conv2d_restricted", "conv2d_full");
* ``_fused_statistics``: ``{statistic attribute name: (kernel key, required sources)}`` where the
  sources are among ``"x"`` (this layer's input), ``"grad"`` (gradient of the pre-activation) and
  ``"x_prev"`` (previous GrowingModule's input). Use the attribute that holds the statistic object
  (e.g. ``"_tensor_s"``, ``"_tensor_s_growth"``), not a property;
* ``_statistics_kwargs()``: extra keyword arguments of ``layer_statistics`` (conv: ``cur=`` and
  ``prev=`` geometries);
* ``_statistics_placeholder_input(sources)``: a zero-width stand-in for ``x`` when only statistics
  that do not read ``x`` are wanted and ``x`` is not stored (linear: ``(…, 0)``; conv:
  ``(n, 0, H, W)``);
* ``_statistics_accept_previous(previous)``: whether the growth statistics can be computed with
  this previous module (linear: a LinearGrowingModule); others are never fused;
* optionally ``_patch_layer_forward(layer)`` (GroMo's "safe forward" for zero-width layers).
Its ``compute_*_update`` methods check GroMo's preconditions (raising GroMo's errors) and then
``return self._layer_statistic(key)`` → ``(sum, n)``.

Deliberate differences from GroMo (documented where they happen):
* ``previous_module`` / ``next_module`` are plain references, never registered as sub-modules, so
  ``state_dict()`` / ``named_parameters()`` list each layer once and cycles are harmless.
* Calls validate their arguments before mutating anything: a failing call leaves the module as it
  was (GroMo's ``create_layer_extensions`` rescales weights and creates layers before it checks the
  init names; ``compute_optimal_updates`` computes the delta before rejecting a merge predecessor;
  ``sub_select_optimal_added_parameters`` / ``delete_update`` mutate before raising).
* Growth calls are all-or-nothing: arguments (thresholds, sizes, scalings, noise ratios) are checked
  first (:mod:`gromo.modules._guards`) and a call that still fails half-way restores the modules it
  touched (:mod:`gromo.modules._transactions`); ``forward`` stores nothing when it raises.
* ``update_computation`` refuses a batch holding NaN / Inf (``NonFiniteError``, naming the module
  and the statistic) and accumulates none of its statistics; solves refuse non-finite statistics
  the same way, before they run.
* Update and extension layers of float16 / bfloat16 modules come back in the module's dtype
  (:mod:`gromo.modules._dtypes`); their statistics accumulate in float32.
* ``reset_computation`` and ``delete_update`` also drop the stored input / pre-activation and the
  statistics cache, so no batch tensor outlives the computation.
* Store counters of a merge never go negative.
* The post-layer function is grown by the number of output neurons actually added (GroMo grows it
  by the ``extension_size`` argument, which may differ).
* In zeroing mode of ``sub_select_optimal_added_parameters`` with ``zeros_fan_in=False`` the
  previous output extension keeps all its rows (GroMo slices it, so it no longer matches the
  input extension).
* ``scale_layer_extension`` accepts extensions without eigenvalues (created by
  ``create_layer_extensions``) and then scales only the layers.
* Variance-transfer rescaling treats a NaN variance (one-element weight) as "no rescaling" for
  both layers (GroMo only does so for the previous layer).
* ``.to()`` / ``.double()`` also convert the scaling tensors and update ``device`` (GroMo leaves
  them behind, so an extended forward after ``model.to("cuda")`` fails).
* ``forward`` retains the pre-activation's gradient only when it requires grad (GroMo's
  ``retain_grad()`` raises under ``torch.no_grad()``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Iterator, Literal, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

import gromo_kernels as gk
from gromo.modules import _guards
from gromo.modules._dtypes import match_pending_layer_dtypes
from gromo.modules._growth_options import GrowthOptions
from gromo.modules._transactions import atomic, merge_and_neighbours, module_and_neighbours
from gromo.modules._unlink import detach_neighbours as _detach_neighbours
from gromo.modules._unlink import unlink as _unlink
from gromo.utils._assertions import ensure
from gromo.utils.tensor_statistic import TensorStatistic, update_together
from gromo.utils.tools import compute_optimal_added_parameters, optimal_delta
from gromo.utils.utils import ReLUDerivativeOneAtZero, compute_tensor_stats, get_correct_device

__all__ = [
    "GRADIENT_COMPUTATION_EPSILON",
    "SupportsExtendedForward",
    "MergeGrowingModule",
    "GrowingModule",
]

#: point (0⁺) where unknown activation derivatives are evaluated numerically
GRADIENT_COMPUTATION_EPSILON = 1e-5

_SCALING_ATTRIBUTES = (
    "optimal_delta_scaling",
    "input_extension_scaling",
    "output_extension_scaling",
    "scaling_factor",
)
_KNOWN_RESCALINGS = ("default_vt", "vt_constraint_old_shape", "vt_constraint_new_shape")
_KNOWN_PAIRINGS = ("vv_z_negz",)
# Module-level twins of GrowingModule's class constants, so that the method annotations naming them
# resolve with typing.get_type_hints (class attributes are not in the annotations' scope).
_KNOWN_RESCALING_STRATEGIES_TYPE = Literal["default_vt", "vt_constraint_old_shape", "vt_constraint_new_shape"]
_KNOWN_NEURON_PAIRINGS_TYPE = Literal["vv_z_negz"]
# The growth options the new-neuron solver does not take (they choose its inputs).
_NOT_SOLVER_OPTIONS = ("update_previous", "dtype", "compute_delta", "use_covariance", "use_projection", "use_fisher")
_NORMALIZATION_TYPES = (
    "equalize_second_layer",
    "equalize_extensions",
    "match_extending_layer",
    "weird_normalization",
    "legacy_normalization",
    "gradmax_normalization",
)

# σ'(0⁺) of the activations GroMo knows (exact type match).
_DERIVATIVE_AT_ZERO: dict[type, float] = {
    nn.ReLU: 1.0,
    ReLUDerivativeOneAtZero: 1.0,
    nn.GELU: 0.5,
    nn.SELU: 1.0507,
    nn.SiLU: 0.5,
    nn.Tanh: 1.0,
    nn.Sigmoid: 0.25,
    nn.Identity: 1.0,
}


@runtime_checkable
class SupportsExtendedForward(Protocol):
    """A post-layer function that can propagate the extension tensor itself."""

    def extended_forward(
        self, x: torch.Tensor, x_ext: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(f(x), f_ext(x_ext))``."""
        ...


def _numerical_derivative(function: Callable[[torch.Tensor], torch.Tensor]) -> float:
    x = torch.tensor(GRADIENT_COMPUTATION_EPSILON)
    return float(torch.func.grad(function)(x))


def _derivative_at_zero_plus(function: nn.Module | Callable) -> float:
    """σ'(0⁺) from GroMo's table; product over an nn.Sequential; numerical (with a warning) otherwise."""
    known = _DERIVATIVE_AT_ZERO.get(type(function))
    if known is not None:
        return known
    if isinstance(function, nn.Sequential):
        value = 1.0
        for member in function:
            member_value = _DERIVATIVE_AT_ZERO.get(type(member))
            if member_value is None:
                if isinstance(member, _BatchNorm):
                    member_value = 1.0
                else:
                    module = member
                    warnings.warn(
                        f"The computation of the activation gradient does not work necessarily with "
                        f"{type(module)} in a Sequential. We will try to compute it numerically.",
                        UserWarning,
                        stacklevel=3,
                    )
                    member_value = _numerical_derivative(member)
            value *= member_value
        return value
    inspected_function = function
    warnings.warn(
        "The computation of the activation gradient does not work necessarily with "
        f"{type(inspected_function)}. We will try to compute it numerically.",
        UserWarning,
        stacklevel=3,
    )
    return _numerical_derivative(function)


def _grow_function(function: nn.Module | None, size: int) -> None:
    """Call ``.grow(size)`` on a post function (or on each member of an nn.Sequential) that has one."""
    if function is None or size <= 0:
        return
    if hasattr(function, "grow") and callable(function.grow):
        function.grow(size)
    elif isinstance(function, nn.Sequential):
        for member in function:
            if hasattr(member, "grow") and callable(member.grow):
                member.grow(size)


def _rescale_batch_norms(function: nn.Module | None, factor: float) -> None:
    """Running statistics of every BatchNorm1d/2d inside ``function`` follow a rescaled input."""
    if function is None:
        return
    for module in function.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if module.running_mean is not None:
                module.running_mean.mul_(factor)
            if module.running_var is not None:
                module.running_var.mul_(factor**2)


class _CachedStatistic(NamedTuple):
    value: torch.Tensor
    samples: int
    sources: dict[str, torch.Tensor]


# ==============================================================================================
# MergeGrowingModule
# ==============================================================================================


class MergeGrowingModule(nn.Module):
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

        self.tensor_s = TensorStatistic(
            tensor_s_shape, update_function=self.compute_s_update, device=self.device,
            name=f"S({self.name})",
        )
        self.previous_tensor_s: TensorStatistic | None = None
        self.previous_tensor_m: TensorStatistic | None = None
        self.parameter_update_decrease: torch.Tensor | None = None
        self._statistics_cache: dict[str, _CachedStatistic] = {}

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

    @property
    def input_volume(self) -> int:
        """Expected input volume. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def output_volume(self) -> int:
        """Expected output volume. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

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
            self.previous_tensor_s = TensorStatistic(
                (total, total), update_function=self.compute_previous_s_update, device=self.device,
                name=f"S[-1]({self.name})",
            )
            self.previous_tensor_m = TensorStatistic(
                (total, self.in_features), update_function=self.compute_previous_m_update,
                device=self.device, name=f"M[-1]({self.name})",
            )
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
            self.tensor_s = TensorStatistic(
                (s_width, s_width), update_function=self.compute_s_update, device=self.device,
                name=f"S({self.name})",
            )
        total = self.total_in_features
        if (
            total <= 0
            or self.previous_tensor_s is None
            or self.previous_tensor_s._shape != (total, total)
            or self.previous_tensor_m is None
            or self.previous_tensor_m._shape != (total, self.in_features)
        ):
            self._create_previous_statistics()
        self._statistics_cache = {}

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
        self._statistics_cache = {}
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
                ensure(module.optimal_delta_layer is not None, lambda module=module: (
                    "The optimal delta layer is not computed.Therefore the projected gradient cannot "
                    f"be computed. (error in {module.name})"
                ))
                total = total + module.optimal_delta_layer(module.input)
            elif isinstance(module, MergeGrowingModule):
                total = total + module._sum_of_optimal_delta_outputs()
        return total

    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """S of the activity. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_previous_s_update(self) -> tuple[torch.Tensor, int]:
        """S of the concatenated predecessor inputs. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_previous_m_update(self) -> tuple[torch.Tensor, int]:
        """M of the concatenated predecessor inputs. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

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
        self._statistics_cache = {}
        self.input = None
        self.activity = None

    def delete_update(self, include_previous: bool = False) -> None:
        """Forget the stored tensors; with ``include_previous`` the predecessors' updates too."""
        self.activity = None
        self.input = None
        self._statistics_cache = {}
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
        """Joint optimal delta of all growing predecessors, split per predecessor (§4.3).

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
        delta, decrease = optimal_delta(
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
        if verbose < 0:
            raise ValueError(f"verbose={verbose} is not a valid value.")
        kind = self.__class__.__name__
        if verbose == 0:
            return f"{kind} module."
        if verbose == 1:
            previous = len(self.previous_modules) or "no"
            following = len(self.next_modules) or "no"
            return f"{kind} module with {previous} previous modules and {following} next modules."
        return "\n".join([
            f"{kind} module.",
            f"\tPrevious modules: {self.previous_modules}",
            f"\tNext modules: {self.next_modules}",
            f"\tPost merge function: {self.post_merge_function}",
            f"\tAllow growing: {self._allow_growing}",
            f"\tStore input: {self.store_input}",
            f"\tStore activity: {self.store_activity}",
            f"\tTensor S: {self.tensor_s}",
            f"\tPrevious tensor S: {self.previous_tensor_s}",
            f"\tPrevious tensor M: {self.previous_tensor_m}",
        ])

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


# ==============================================================================================
# GrowingModule
# ==============================================================================================


class GrowingModule(nn.Module):
    """A layer of dynamic size and everything needed to grow it (TINY, TMLR 2024).

    Args:
        layer: the wrapped layer.
        tensor_s_shape: declared shape of S (D, D) (a UserWarning when missing).
        tensor_m_shape: declared shape of M (D, out).
        post_layer_function: activation after the layer.
        extended_post_layer_function: deprecated separate function for the extension.
        allow_growing: the module can grow (requires a growing/merge previous module).
        previous_module, next_module: neighbours.
        device: device (argument > configuration > global device).
        name: name.
        target_in_neurons: target fan-in (growth bookkeeping).
        initial_in_neurons: fan-in at construction (growth bookkeeping).
    Raises:
        AssertionError: non-square S shape, S/M shapes incompatible, or ``allow_growing`` without
            a growing / merge previous module.
    """

    _KNOWN_RESCALING_STRATEGIES_TYPE = _KNOWN_RESCALING_STRATEGIES_TYPE
    _KNOWN_NEURON_PAIRINGS_TYPE = _KNOWN_NEURON_PAIRINGS_TYPE

    #: ``gromo_kernels.layer_statistics`` kind (None: no fused statistics)
    _statistics_kind: str | None = None
    #: statistic attribute -> (kernel key, required sources among "x", "grad", "x_prev")
    _fused_statistics: dict[str, tuple[str, frozenset[str]]] = {}

    def __init__(
        self,
        layer: nn.Module,
        tensor_s_shape: tuple[int, int] | None = None,
        tensor_m_shape: tuple[int, int] | None = None,
        post_layer_function: nn.Module = nn.Identity(),
        extended_post_layer_function: nn.Module | None = None,
        allow_growing: bool = True,
        previous_module: nn.Module | None = None,
        next_module: nn.Module | None = None,
        device: torch.device | None = None,
        name: str | None = None,
        target_in_neurons: int | None = None,
        initial_in_neurons: int | None = None,
    ) -> None:
        if tensor_s_shape is None:
            warnings.warn(
                "The tensor S shape is not provided.It will automatically be determined but we "
                "encourage to provide it.",
                UserWarning,
                stacklevel=2,
            )
        else:
            ensure(len(tensor_s_shape) == 2, "The shape of the tensor S must be 2D.")
            ensure(tensor_s_shape[0] == tensor_s_shape[1],
                   f"The tensor S must be square. (got {tensor_s_shape=})")
            if tensor_m_shape is not None:
                ensure(tensor_s_shape[0] == tensor_m_shape[0], (
                    "The input matrices S and M must have compatible shapes."
                    f"(got {tensor_s_shape=} and {tensor_m_shape=})"
                ))
        if allow_growing:
            ensure(isinstance(previous_module, (GrowingModule, MergeGrowingModule)), (
                "to grow previous_module must be an instance of GrowingModuleor MergeGrowingModule, "
                f"but got {type(previous_module)} (allow_growing=True)"
            ))
        super().__init__()
        # GroMo's naming: the argument in ``_name``, the composite ``ClassName(name)`` in ``name``.
        self._name = name
        self.name = self.__class__.__name__ if name is None else f"{self.__class__.__name__}({name})"
        self.device = get_correct_device(self, device)
        self._allow_growing = allow_growing

        self.layer = layer.to(self.device)
        self._patch_layer_forward(self.layer)
        self.post_layer_function = post_layer_function.to(self.device)
        if extended_post_layer_function is not None:
            warnings.warn(
                "The `extended_post_layer_function` parameter is deprecated and will be removed in a "
                "future version. Implement `extended_forward` on the modules used in "
                "`post_layer_function` instead (see `SupportsExtendedForward`).",
                DeprecationWarning,
                stacklevel=2,
            )
            extended_post_layer_function = extended_post_layer_function.to(self.device)
        self.extended_post_layer_function = extended_post_layer_function

        # Plain references (never registered as sub-modules), see the module docstring.
        self.previous_module = previous_module
        self.next_module = next_module

        self.__dict__["store_input"] = False
        self.__dict__["store_pre_activity"] = False
        self._internal_store_input = False
        self._internal_store_pre_activity = False
        self._input: torch.Tensor | None = None
        self._pre_activity: torch.Tensor | None = None
        self._input_size: tuple[int, ...] | None = None
        self._statistics_cache: dict[str, _CachedStatistic] = {}

        self._tensor_s = TensorStatistic(
            tensor_s_shape, update_function=self.compute_s_update, device=self.device,
            name=f"S({self.name})",
        )
        self.tensor_m = TensorStatistic(
            tensor_m_shape, update_function=self.compute_m_update, device=self.device,
            name=f"M({self.name})",
        )
        self.tensor_m_prev = TensorStatistic(
            None, update_function=self.compute_m_prev_update, device=self.device,
            name=f"M_prev({self.name})",
        )
        self.cross_covariance = TensorStatistic(
            None, update_function=self.compute_cross_covariance_update, device=self.device,
            name=f"C({self.name})",
        )
        self.covariance_loss_gradient = TensorStatistic(
            None, update_function=self.compute_covariance_loss_gradient_update,
            device=self.device, name=f"E({self.name})",
        )

        self.optimal_delta_layer: nn.Module | None = None
        self.extended_input_layer: nn.Module | None = None
        self.extended_output_layer: nn.Module | None = None
        self.delta_raw: torch.Tensor | None = None
        self.parameter_update_decrease: torch.Tensor | None = None
        self.eigenvalues_extension: torch.Tensor | None = None
        self._first_order_uses_squared_singular_values = True
        self._activation_gradient_previous_module: torch.Tensor | None = None

        for key in _SCALING_ATTRIBUTES:
            self.__dict__[key] = torch.zeros(1, device=self.device, requires_grad=True)
        # GroMo: building a module resets its growing predecessor's output extension scaling.
        if isinstance(previous_module, GrowingModule):
            previous_module._write_scaling("output_extension_scaling", 0.0)

        self.target_in_neurons = target_in_neurons
        self._initial_in_neurons = initial_in_neurons

    # ----- attribute routing ----------------------------------------------------------------

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "store_input":
            self._set_store_flag("store_input", bool(value))
        elif key == "store_pre_activity":
            self._set_store_flag("store_pre_activity", bool(value))
        elif key in _SCALING_ATTRIBUTES:
            self._set_scaling(key, value)
        elif key in ("previous_module", "next_module"):
            object.__setattr__(self, key, value)
        elif key in ("weight", "bias") and "layer" in self.__dict__.get("_modules", {}):
            setattr(self.layer, key, value)
        else:
            super().__setattr__(key, value)

    def _set_store_flag(self, key: str, value: bool) -> None:
        old = self.__dict__.get(key, False)
        self.__dict__[key] = value
        if value == old:
            return
        if key == "store_input":
            neighbour = self.__dict__.get("previous_module")
            if isinstance(neighbour, MergeGrowingModule):
                neighbour.store_activity = max(0, neighbour.store_activity + (1 if value else -1))
            else:
                self.__dict__["_internal_store_input"] = value
        else:
            neighbour = self.__dict__.get("next_module")
            if isinstance(neighbour, MergeGrowingModule):
                neighbour.store_input = max(0, neighbour.store_input + (1 if value else -1))
            else:
                self.__dict__["_internal_store_pre_activity"] = value

    def _write_scaling(self, key: str, value: torch.Tensor | float) -> None:
        if isinstance(value, torch.Tensor):
            ensure(value.shape == (1,), f"{key} must be a scalar tensor. (got shape {tuple(value.shape)})")
            self.__dict__[key] = value
        else:
            ensure(isinstance(value, (int, float)), (
                f"{key} must be a scalar. (got {type(value).__name__}: an int, a float or a tensor of "
                "shape (1,) is expected)"
            ))
            self.__dict__[key].data[0] = value

    def _set_scaling(self, key: str, value: torch.Tensor | float) -> None:
        _guards.check_scaling(self, key, value, self.__dict__.get(key))
        if key != "scaling_factor":
            self._write_scaling(key, value)
            return
        previous = self.__dict__.get("previous_module")
        if previous is not None and not isinstance(previous, (GrowingModule, MergeGrowingModule)):
            previous_module = previous
            raise TypeError(
                f"Previous module must be a GrowingModule or MergeGrowingModule, got {type(previous_module)} "
                f"(the previous module of {self.name})"
            )
        self._write_scaling("scaling_factor", value)
        # GroMo: an assigned tensor becomes ``scaling_factor`` itself, but only its value is written
        # into the three other (independent, leaf) scaling tensors, so gradients of an extended
        # forward still reach each sub-factor.
        number = value.item() if isinstance(value, torch.Tensor) else value
        self._write_scaling("optimal_delta_scaling", number**2)
        self._write_scaling("input_extension_scaling", number)
        if isinstance(previous, GrowingModule):
            previous._write_scaling("output_extension_scaling", number)

    def _apply(self, fn, recurse: bool = True):
        # Scaling tensors are plain attributes: follow .to() / .double() like the parameters do,
        # and keep ``device`` (used to build extension layers) on the layer's device.
        super()._apply(fn, recurse)
        with torch.no_grad():
            for key in _SCALING_ATTRIBUTES:
                tensor = self.__dict__[key]
                moved = fn(tensor)
                if moved is not tensor:
                    self.__dict__[key] = moved.detach().requires_grad_(
                        tensor.requires_grad and moved.is_floating_point()
                    )
        weight = getattr(self.layer, "weight", None)
        if isinstance(weight, torch.Tensor):
            self.device = weight.device
        return self

    def set_scaling_factor(self, factor: float) -> None:
        """``scaling_factor = factor`` (γ² on the delta, γ on both extensions)."""
        self.scaling_factor = factor

    # ----- sizes (abstract) ----------------------------------------------------------------

    @property
    def in_neurons(self) -> int:
        """Number of input neurons. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def in_features(self) -> int:
        """Fan-in size. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        """Fan-out size. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def input_volume(self) -> int:
        """Expected input volume. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def output_volume(self) -> int:
        """Expected output volume. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def weight(self) -> torch.Tensor:
        """The layer's weight."""
        return self.layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The layer's bias."""
        return self.layer.bias

    @property
    def input_size(self) -> tuple[int, ...]:
        """Expected input shape without batch and channels.

        Raises:
            ValueError: unknown.
        """
        if self._input_size is None:
            raise ValueError(f"The input size of the layer {self.name} is not defined.")
        return self._input_size

    @input_size.setter
    def input_size(self, value: tuple[int, ...] | None) -> None:
        self._input_size = None if value is None else tuple(value)

    def update_input_size(
        self,
        input_size: tuple[int, ...] | None = None,
        compute_from_previous: bool = False,
        force_update: bool = True,
    ) -> tuple[int, ...] | None:
        """Update the expected input size. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @property
    def activation_gradient(self) -> torch.Tensor:
        """σ'(0⁺) of the activation between the previous module and this one (cached).

        Clear ``_activation_gradient_previous_module`` if the previous activation changes.

        Raises:
            NotImplementedError: previous module neither growing nor merge.
        """
        if self._activation_gradient_previous_module is None:
            previous = self.previous_module
            if isinstance(previous, GrowingModule):
                function = previous.post_layer_function
            elif isinstance(previous, MergeGrowingModule):
                function = previous.post_merge_function
            else:
                previous_module = previous
                raise NotImplementedError(
                    "The computation of the activation gradient is not implemented yet for "
                    f"{type(previous_module)} as previous module."
                )
            self._activation_gradient_previous_module = torch.tensor(
                _derivative_at_zero_plus(function), device=self.device
            )
        return self._activation_gradient_previous_module

    # ----- stored tensors -------------------------------------------------------------------

    @property
    def input(self) -> torch.Tensor:
        """This layer's input, routed as GroMo by ``_internal_store_input``: the stored ``_input`` when
        set, else the previous module's ``activity`` (a merge stores it for its successors).

        Raises:
            ValueError: not stored.
            AssertionError: stored internally but not computed yet, or no previous module.
        """
        if not self.store_input:
            raise ValueError(f"The input is not stored. ({self.name}: store_input is False.)")
        if not self._internal_store_input:
            ensure(self.previous_module is not None, (
                "A previous module is needed to store the input.Otherwise _internal_store_input must be "
                f"set to True. (error in {self.name})"
            ))
            return self.previous_module.activity
        ensure(self._input is not None,
               f"The input is not stored. Apparently it was not computed yet. ({self.name}: the input "
               "has not been computed yet.)")
        return self._input

    @property
    def input_extended(self) -> torch.Tensor:
        """The input with a ones column when the layer has a bias.

        Raises:
            NotImplementedError: with a bias (the layer type defines it).
        """
        if getattr(self, "use_bias", False):
            raise NotImplementedError
        return self.input

    @property
    def pre_activity(self) -> torch.Tensor:
        """The pre-activation, routed as GroMo by ``_internal_store_pre_activity``: the stored
        ``_pre_activity`` when set, else the next module's ``input`` (a merge stores it).

        Raises:
            ValueError: not stored.
            AssertionError: stored internally but not computed yet, or no next module.
        """
        if not self.store_pre_activity:
            raise ValueError(f"The pre-activity is not stored for {self.name}.")
        if not self._internal_store_pre_activity:
            ensure(self.next_module is not None, (
                "A next module is needed to store the input.Otherwise _internal_store_pre_activity must "
                f"be set to True. (error in {self.name})"
            ))
            return self.next_module.input
        ensure(self._pre_activity is not None, (
            "The pre-activity is not stored. Apparently it was not computed yet. "
            f"(error in {self.name})"
        ))
        return self._pre_activity

    @property
    def tensor_s(self) -> TensorStatistic:
        """S of this layer's input (the previous merge's S when the previous module is a merge)."""
        if isinstance(self.previous_module, MergeGrowingModule):
            return self.previous_module.tensor_s
        return self._tensor_s

    @property
    def tensor_s_growth(self) -> TensorStatistic:
        """S₋₂: the previous growing module's S.

        Raises:
            ValueError: no previous module.
            NotImplementedError: previous module is a merge or not growing.
        """
        previous = self.previous_module
        if previous is None:
            raise ValueError(f"No previous module for {self.name}. Thus S growth is not defined.")
        if isinstance(previous, GrowingModule):
            return previous.tensor_s
        if isinstance(previous, MergeGrowingModule):
            raise NotImplementedError(
                "S growth is not implemented for module preceded by an MergeGrowingModule. "
                f"(error in {self.name})"
            )
        raise NotImplementedError(
            f"S growth is not implemented yet for {type(previous)} as previous module."
        )

    @tensor_s_growth.setter
    def tensor_s_growth(self, value: Any) -> None:
        raise AttributeError(
            f"You tried to set tensor_s_growth of a GrowingModule (name={self.name}).This is not allowed "
            "because tensor_s_growth refers to the previous module's tensor_s, not the current "
            "module's tensor_s."
        )

    @property
    def tensor_n(self) -> torch.Tensor:
        """N = −M₋₂ + P δᵀ. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    # ----- forward ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``post_layer_function(layer(x))``; stores x (detached) and the pre-activation when asked.

        A forward that raises changes nothing (the pending batch and its statistics are kept).
        """
        pre_activity = self.layer(x)
        output = self.post_layer_function(pre_activity)
        for statistic in (
            self._tensor_s, self.tensor_m, self.tensor_m_prev, self.cross_covariance,
            self.covariance_loss_gradient,
        ):
            statistic.updated = False
        if isinstance(self.previous_module, GrowingModule):
            self.tensor_s_growth.updated = False
        self._statistics_cache = {}
        if self._internal_store_input:
            self._input = x.detach()
        if self._internal_store_pre_activity:
            self._pre_activity = pre_activity
            if pre_activity.requires_grad:
                pre_activity.retain_grad()
        return output

    def extended_forward(
        self,
        x: torch.Tensor,
        x_ext: torch.Tensor | None = None,
        use_optimal_delta: bool = True,
        use_extended_input: bool = True,
        use_extended_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Forward with the update: ``layer(x) − s_δ δ(x) + s_in Z(x_ext)``, extension ``s_out V(x)``.

        Does not store input or pre-activation.

        Returns:
            (output, output extension or None).
        Raises:
            ValueError: an input extension exists but ``x_ext`` is None.
        Warns:
            UserWarning: ``x_ext`` given while there is no input extension.
        """
        pre_activity = self.layer(x)
        if self.optimal_delta_layer is not None and use_optimal_delta:
            pre_activity = pre_activity - self.optimal_delta_scaling * self.optimal_delta_layer(x)
        if use_extended_input:
            if self.extended_input_layer is not None:
                if x_ext is None:
                    raise ValueError(
                        f"x_ext must be provided got None for {self.name}.As the input is extended, "
                        "an extension is needed."
                    )
                pre_activity = pre_activity + self.input_extension_scaling * self.extended_input_layer(x_ext)
            elif x_ext is not None:
                warnings.warn(
                    f"x_ext must be None got {x_ext} for {self.name}. As the input is not extended, "
                    "no extension is needed.",
                    UserWarning,
                    stacklevel=2,
                )
        if self.extended_output_layer is not None and use_extended_output:
            extension = self.output_extension_scaling * self.extended_output_layer(x)
            return self._apply_extended_post_layer_function(pre_activity, extension)
        return self.post_layer_function(pre_activity), None

    def _apply_extended_post_layer_function(
        self, x: torch.Tensor, x_ext: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.extended_post_layer_function is not None:
            return (
                self.post_layer_function(x),
                self.extended_post_layer_function(x_ext) if x_ext is not None else None,
            )
        function = self.post_layer_function
        if isinstance(function, SupportsExtendedForward):
            return function.extended_forward(x, x_ext)
        if isinstance(function, nn.Sequential):
            for member in function:
                if isinstance(member, SupportsExtendedForward):
                    x, x_ext = member.extended_forward(x, x_ext)
                else:
                    x = member(x) if x is not None else None
                    x_ext = member(x_ext) if x_ext is not None else None
            return x, x_ext
        return (
            function(x) if x is not None else None,
            function(x_ext) if x_ext is not None else None,
        )

    # ----- statistics: fused computation (hooks for subclasses) ------------------------------

    def _patch_layer_forward(self, layer: nn.Module) -> None:
        """Hook: install GroMo's "safe forward" on the original layer (default: nothing)."""

    def _statistics_kwargs(self) -> dict[str, Any]:
        """Hook: extra keyword arguments of ``gromo_kernels.layer_statistics`` (conv geometries)."""
        return {}

    def _statistics_placeholder_input(self, sources: dict[str, torch.Tensor]) -> torch.Tensor:
        """Hook: a zero-width stand-in for ``x`` when it is not stored and not read."""
        raise NotImplementedError

    def _statistics_accept_previous(self, previous: GrowingModule) -> bool:
        """Hook: whether growth statistics (``x_prev``) can be fused with this previous module.

        Statistics the layer type cannot compute for this predecessor (GroMo raises
        NotImplementedError when they are asked for) must not be fused into another request.
        """
        return True

    def _statistic_sources(self) -> dict[str, torch.Tensor]:
        """The tensors currently available: "x", "grad", "x_prev" (missing keys: not available)."""
        sources: dict[str, torch.Tensor] = {}
        try:
            x = self.input
        except (ValueError, AssertionError):
            x = None
        if x is not None:
            sources["x"] = x
        try:
            pre_activity = self.pre_activity
        except (ValueError, AssertionError):
            pre_activity = None
        if pre_activity is not None and pre_activity.grad is not None:
            sources["grad"] = pre_activity.grad
        previous = self.previous_module
        if isinstance(previous, GrowingModule) and self._statistics_accept_previous(previous):
            try:
                x_prev = previous.input
            except (ValueError, AssertionError):
                x_prev = None
            if x_prev is not None:
                sources["x_prev"] = x_prev
        return sources

    def _statistic_requirements(self, key: str) -> frozenset[str]:
        for kernel_key, requirements in self._fused_statistics.values():
            if kernel_key == key:
                return frozenset(requirements)
        raise KeyError(f"{type(self).__name__} declares no statistic {key!r}")

    def _cache_is_valid(self, key: str, sources: dict[str, torch.Tensor]) -> bool:
        entry = self._statistics_cache.get(key)
        if entry is None:
            return False
        return all(sources.get(name) is tensor for name, tensor in entry.sources.items())

    @torch.no_grad()
    def _layer_statistic(self, key: str) -> tuple[torch.Tensor, int]:
        """Sum for the gromo_kernels statistic ``key`` of the current batch and its sample count.

        Computes, in one ``gromo_kernels.layer_statistics`` call, ``key`` and every other in-use,
        pending and computable statistic of this module (see the module docstring).

        Raises:
            AssertionError: the inputs ``key`` needs are not stored.
        """
        sources = self._statistic_sources()
        if self._cache_is_valid(key, sources):
            entry = self._statistics_cache[key]
            return entry.value, entry.samples
        requirements = self._statistic_requirements(key)
        missing = [name for name in requirements if name not in sources]
        ensure(not missing, lambda: (
            f"{self.name}: cannot compute statistic {key!r}, missing {missing} "
            "(is the input / pre-activity stored and the backward pass done?)"
        ))
        want = [key]
        for attribute, (kernel_key, needed) in self._fused_statistics.items():
            if kernel_key in want or self._cache_is_valid(kernel_key, sources):
                continue
            statistic = self.__dict__.get(attribute)
            if not isinstance(statistic, TensorStatistic) or not statistic._in_use or statistic.updated:
                continue
            if all(name in sources for name in needed):
                want.append(kernel_key)
        used = set().union(*(self._statistic_requirements(k) for k in want))
        # x is passed only when read: a stale x must not meet a fresh gradient in the checks.
        x = sources["x"] if "x" in used else self._statistics_placeholder_input(sources)
        previous = self.previous_module
        results = gk.layer_statistics(
            self._statistics_kind,
            x,
            sources.get("grad") if "grad" in used else None,
            x_prev=sources.get("x_prev") if "x_prev" in used else None,
            want=tuple(want),
            bias=bool(self.use_bias),
            bias_prev=bool(getattr(previous, "use_bias", True)),
            **self._statistics_kwargs(),
        )
        reference = next(sources[name] for name in ("x", "grad", "x_prev") if name in used)
        samples = int(reference.shape[0])
        for kernel_key in want:
            needed = self._statistic_requirements(kernel_key)
            self._statistics_cache[kernel_key] = _CachedStatistic(
                results[kernel_key], samples, {name: sources[name] for name in needed}
            )
        return results[key], samples

    def _clear_statistics_cache(self) -> None:
        self._statistics_cache = {}

    # ----- statistics: update functions (abstract) --------------------------------------------

    def compute_s_update(self) -> tuple[torch.Tensor, int]:
        """(Σ x̃x̃ᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_m_update(self, desired_activation: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
        """(Σ x̃ dAᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_m_prev_update(
        self, desired_activation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """(Σ x̃₋₂ dAᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_cross_covariance_update(self) -> tuple[torch.Tensor, int]:
        """(Σ x̃₋₂ x̃ᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_n_update(self) -> tuple[torch.Tensor, int]:
        """Legacy N update. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def compute_covariance_loss_gradient_update(self) -> tuple[torch.Tensor, int]:
        """(Σ dA dAᵀ, n). Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def projected_v_goal(self, input_vector: torch.Tensor) -> torch.Tensor:
        """``dA − δ(x)``: the pre-activation gradient left after the optimal delta.

        Raises:
            AssertionError: no optimal delta layer.
        """
        ensure(self.optimal_delta_layer is not None, (
            "The optimal delta layer is not computed.Therefore the projected gradient cannot be "
            f"computed. (error in {self.name})"
        ))
        return self.pre_activity.grad - self.optimal_delta_layer(input_vector)

    def _check_previous_for_computation(self) -> None:
        previous = self.previous_module
        if previous is not None and not isinstance(previous, (GrowingModule, MergeGrowingModule)):
            raise NotImplementedError(
                f"The previous module of type {type(previous).__name__} is not supported."
            )

    def _cycle_statistics(self) -> tuple[TensorStatistic, ...]:
        """The statistics driven by init/update/reset_computation: S, M, E and, with a growing
        previous module, M₋₂, P and S₋₂ (a merge previous module drives its own)."""
        statistics = (self.tensor_s, self.tensor_m, self.covariance_loss_gradient)
        if isinstance(self.previous_module, GrowingModule):
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
        if isinstance(previous, GrowingModule):
            previous.store_input = True
        for statistic in self._cycle_statistics():
            statistic.init()
        if isinstance(previous, MergeGrowingModule):
            previous.init_computation()

    def update_computation(self) -> None:
        """Accumulate the statistics of the last forward/backward (all of them or none).

        Raises:
            NotImplementedError: previous module neither growing nor merge.
            NonFiniteError: the batch (input or gradient) holds NaN or Inf; no statistic changed.
        """
        self._check_previous_for_computation()
        statistics = list(self._cycle_statistics())
        if isinstance(self.previous_module, MergeGrowingModule):
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
        if isinstance(self.previous_module, MergeGrowingModule):
            self.previous_module.reset_computation()
        self._input = None
        self._pre_activity = None
        self._clear_statistics_cache()

    # ----- optimal delta ------------------------------------------------------------------

    @atomic(module_and_neighbours, copy_data=False)
    def compute_optimal_delta(
        self,
        update: bool = True,
        dtype: torch.dtype = torch.float32,
        force_pseudo_inverse: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | float]:
        """Natural-gradient step ``δ = E⁻¹ (S⁺ M)ᵀ`` (o, D) and its first-order decrease (§4.2).

        ``delta_raw`` is always stored; with ``update`` also ``optimal_delta_layer`` (whose
        parameters share storage with ``delta_raw``) and ``parameter_update_decrease``.

        Args:
            update: set ``optimal_delta_layer`` and ``parameter_update_decrease``.
            dtype: precision of the solve's inputs.
            force_pseudo_inverse: always use the pseudo-inverse of S.
            use_fisher: precondition the output side with E = E[dA dAᵀ].
        Returns:
            (ΔW shaped like the weight, Δb or None, decrease).
        Raises:
            NonFiniteError: S, M (or E) holds NaN or Inf.
        """
        _guards.check_statistics_finite(
            self, (self.tensor_s, self.tensor_m, self.covariance_loss_gradient if use_fisher else None)
        )
        tensor_s = self.tensor_s()
        tensor_m = self.tensor_m()
        fisher = self.covariance_loss_gradient() if use_fisher else None
        self.delta_raw, decrease = optimal_delta(
            tensor_s, tensor_m, dtype=dtype, force_pseudo_inverse=force_pseudo_inverse,
            tensor_covariance_loss_gradient=fisher,
        )
        if self.use_bias:
            delta_weight = self.delta_raw[:, :-1]
            delta_bias = self.delta_raw[:, -1]
        else:
            delta_weight = self.delta_raw
            delta_bias = None
        delta_weight = delta_weight.reshape(self.weight.shape)
        if update:
            self.optimal_delta_layer = self.layer_of_tensor(delta_weight, delta_bias)
            self.parameter_update_decrease = decrease
            match_pending_layer_dtypes(self, include_previous=False)
        return delta_weight, delta_bias, decrease

    # ----- new neurons ----------------------------------------------------------------------

    @atomic(module_and_neighbours, copy_data=False)
    def compute_optimal_updates(
        self,
        numerical_threshold: float = 1e-6,
        statistical_threshold: float = 1e-3,
        maximum_added_neurons: int | None = None,
        update_previous: bool = True,
        dtype: torch.dtype = torch.float32,
        compute_delta: bool = True,
        use_covariance: bool = True,
        alpha_zero: bool = False,
        omega_zero: bool = False,
        use_projection: bool = True,
        ignore_singular_values: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Optimal delta and optimal new neurons (§5.1).

        Presets: TINY = ``compute_delta=False, use_covariance=True, alpha_zero=False,
        omega_zero=False, use_projection=True, ignore_singular_values=False``; GradMax =
        ``compute_delta=False, use_covariance=False, alpha_zero=True, omega_zero=False,
        use_projection=False, ignore_singular_values=True``.

        Returns:
            (alpha weight, alpha bias) of the new neurons, or (None, None) without previous module.
        Raises:
            NotImplementedError: previous module is a merge or not growing (raised before any
                change, GroMo computes the delta first).
            TypeError, ValueError: a threshold not a finite number ≥ 0, ``maximum_added_neurons``
                not None or an int ≥ 0.
            NonFiniteError: a statistic the computation reads holds NaN or Inf.
        A call that raises leaves this module and its neighbours unchanged.
        """
        options = GrowthOptions.from_arguments(locals())
        previous = self.previous_module
        if previous is not None and not isinstance(previous, GrowingModule):
            raise NotImplementedError(
                "The computation of the optimal added parameters is not implemented yet for "
                f"{type(previous)} as previous module."
            )
        _guards.check_optimal_updates_arguments(
            self, numerical_threshold, statistical_threshold, maximum_added_neurons
        )
        if previous is not None:  # what the delta and the growth solve will read, checked first
            reads_delta = compute_delta or use_projection
            _guards.check_statistics_finite(self, (
                self.tensor_s if reads_delta else None, self.tensor_m if reads_delta else None,
                self.tensor_m_prev, self.cross_covariance if use_projection else None,
                self.tensor_s_growth if use_covariance else None,
                self.covariance_loss_gradient if use_fisher else None,
            ))
        if compute_delta:
            self.compute_optimal_delta(update=True, dtype=dtype, use_fisher=use_fisher)
        else:
            self.optimal_delta_layer = None
            self.parameter_update_decrease = torch.tensor(
                0.0, dtype=self.weight.dtype, device=self.weight.device
            )
            if use_projection and previous is not None:
                self.compute_optimal_delta(update=False, dtype=dtype, use_fisher=use_fisher)
            else:
                self.delta_raw = None
        if previous is None:
            return None, None
        alpha_weight, alpha_bias, _, _ = self._compute_optimal_added_parameters(
            **options.as_kwargs(drop=("compute_delta",))
        )
        match_pending_layer_dtypes(self)
        return alpha_weight, alpha_bias

    def _auxiliary_compute_alpha_omega(
        self,
        numerical_threshold: float = 1e-6,
        statistical_threshold: float = 1e-3,
        maximum_added_neurons: int | None = None,
        dtype: torch.dtype = torch.float32,
        use_covariance: bool = True,
        alpha_zero: bool = False,
        omega_zero: bool = False,
        use_projection: bool = True,
        ignore_singular_values: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """α (k, s), ω (t, k), σ (k,) from N (or −M₋₂), S₋₂ and optionally E (§5.2).

        Raises:
            AssertionError: no previous module.
        """
        options = GrowthOptions.from_arguments(locals())
        ensure(self.previous_module is not None,
               f"No previous module for {self.name}.Therefore neuron addition is not possible.")
        matrix_n = self.tensor_n if use_projection else -self.tensor_m_prev()
        matrix_s = self.tensor_s_growth() if use_covariance else None
        matrix_e = self.covariance_loss_gradient() if use_fisher else None
        saved_dtype = matrix_n.dtype
        alpha, omega, eigenvalues = compute_optimal_added_parameters(
            matrix_s=None if matrix_s is None else matrix_s.to(dtype),
            matrix_n=matrix_n.to(dtype),
            matrix_covariance_loss_gradient=None if matrix_e is None else matrix_e.to(dtype),
            **options.as_kwargs(drop=_NOT_SOLVER_OPTIONS),
        )
        self._first_order_uses_squared_singular_values = not ignore_singular_values
        return alpha.to(saved_dtype), omega.to(saved_dtype), eigenvalues.to(saved_dtype)

    def _compute_optimal_added_parameters(
        self,
        numerical_threshold: float = 1e-6,
        statistical_threshold: float = 1e-3,
        maximum_added_neurons: int | None = None,
        update_previous: bool = True,
        dtype: torch.dtype = torch.float32,
        use_covariance: bool = True,
        alpha_zero: bool = False,
        omega_zero: bool = False,
        use_projection: bool = True,
        ignore_singular_values: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Package α, ω into extension layers: ``_added_parameters`` of these options.

        GroMo's entry point (a user override of it is what ``compute_optimal_updates`` calls); layer
        types implement :meth:`_added_parameters`.
        """
        return self._added_parameters(GrowthOptions.from_arguments(locals()))

    def _added_parameters(
        self, options: GrowthOptions
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The new neurons for ``options`` as extension layers: (α weight, α bias, ω, eigenvalues).

        Raises:
            NotImplementedError: abstract (each layer type implements it).
        """
        raise NotImplementedError

    # ----- first-order improvements ---------------------------------------------------------

    @property
    def new_neurons_fo_improvement(self) -> torch.Tensor:
        """σ'(0⁺)·Σλ² (σ'(0⁺)·Σλ when the singular values were ignored); 0 without extension."""
        if self.eigenvalues_extension is None:
            return torch.tensor(0.0, dtype=self.weight.dtype, device=self.weight.device)
        if self._first_order_uses_squared_singular_values:
            total = (self.eigenvalues_extension**2).sum()
        else:
            total = self.eigenvalues_extension.sum()
        return self.activation_gradient.to(total.device) * total

    @property
    def first_order_improvement(self) -> torch.Tensor:
        """``parameter_update_decrease + new_neurons_fo_improvement``.

        Raises:
            AssertionError: the delta has not been computed.
        """
        ensure(self.parameter_update_decrease is not None, (
            "The first order improvement is not computed. Use compute_optimal_delta before. "
            f"(error in {self.name})"
        ))
        return self.parameter_update_decrease + self.new_neurons_fo_improvement

    # ----- surgery (abstract parts) -----------------------------------------------------------

    def layer_of_tensor(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, force_bias: bool = True
    ) -> nn.Module:
        """A layer like ``self.layer`` holding ``weight`` / ``bias``. Raises NotImplementedError."""
        raise NotImplementedError

    def add_parameters(self, **kwargs: Any) -> None:
        """Grow the layer with given parameters. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def layer_in_extension(self, weight: torch.Tensor) -> None:
        """Append input columns. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def layer_out_extension(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """Append output rows. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def get_fan_in_from_layer(self, layer: nn.Module | None = None, num_neurons: int | None = None) -> int:
        """Fan-in of a layer or of ``num_neurons`` input neurons. Raises NotImplementedError."""
        raise NotImplementedError

    def create_layer_in_extension(self, extension_size: int) -> None:
        """Create ``extended_input_layer``. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    def create_layer_out_extension(self, extension_size: int) -> None:
        """Create ``extended_output_layer``. Raises NotImplementedError (abstract)."""
        raise NotImplementedError

    @torch.no_grad()
    def parameter_step(
        self, delta_weights: torch.Tensor, delta_biases: torch.Tensor | None = None
    ) -> None:
        """In place ``W += ΔW`` (and ``b += Δb``).

        Raises:
            ValueError: a step that does not broadcast to its parameter (checked before either
                parameter changes).
        """
        _guards.check_step_shapes(self, self.layer.weight, delta_weights, self.layer.bias, delta_biases)
        self.layer.weight.data += delta_weights
        if delta_biases is not None:
            self.layer.bias.data += delta_biases

    # ----- apply a change ----------------------------------------------------------------------

    @atomic(module_and_neighbours, copy_data=True)
    def apply_change(
        self,
        scaling_factor: float | torch.Tensor | None = None,
        apply_previous: bool = True,
        apply_delta: bool = True,
        apply_extension: bool = True,
        extension_size: int | None = None,
        optimal_delta_scaling: float | torch.Tensor | None = None,
        input_extension_scaling: float | torch.Tensor | None = None,
        output_extension_scaling: float | torch.Tensor | None = None,
    ) -> None:
        """Apply ``W −= s_δ δ``, append ``s_in Z`` as input columns and (previous) ``s_out V`` rows.

        Extension layers are not removed (call ``delete_update``).

        Raises:
            ValueError: ``extension_size > 0`` but the previous module has no output extension; a
                NaN / infinite scaling.
            NotImplementedError: previous module is a merge or not growing (with apply_previous).
            AssertionError: input extension with a non-zero bias, or unknown extension size.
        Warns:
            UserWarning: input extension applied with a zero input scaling (as GroMo, before the
                extension size is determined).
        A call that raises leaves this module and its neighbours unchanged.
        """
        previous = self.previous_module
        for key, value in (
            ("scaling_factor", scaling_factor), ("optimal_delta_scaling", optimal_delta_scaling),
            ("input_extension_scaling", input_extension_scaling),
            ("output_extension_scaling", output_extension_scaling),
        ):
            if value is not None:
                owner = previous if key == "output_extension_scaling" else self
                _guards.check_scaling(self, key, value, getattr(owner, "__dict__", {}).get(key))
        if apply_extension and self.extended_input_layer is not None:
            scale_in = input_extension_scaling if input_extension_scaling is not None else (
                scaling_factor if scaling_factor is not None else self.input_extension_scaling
            )
            if float(scale_in.detach().reshape(-1)[0] if isinstance(scale_in, torch.Tensor) else scale_in) == 0.0:
                warnings.warn(
                    "input_extension_scaling is null. The input extension will have no effect. "
                    f"({self.name}: zero input extension scaling)",
                    UserWarning,
                    stacklevel=2,
                )
        _guards.check_count(self, "extension_size", extension_size, allow_none=True)
        extend_previous = apply_extension and apply_previous and previous is not None
        if extend_previous:
            if isinstance(previous, GrowingModule):
                if previous.extended_output_layer is not None:
                    if extension_size is None:
                        ensure(self.eigenvalues_extension is not None, (
                            "We need to determine the size of the extension but it was not given as "
                            "parameter nor could be automatically determined as eigenvalues_extension "
                            f"is None(Error occurred in {self.name}) (extension size unknown)"
                        ))
                        extension_size = int(self.eigenvalues_extension.shape[0])
                else:
                    if extension_size is None:
                        extension_size = 0
                    if extension_size > 0:
                        raise ValueError(
                            f"The layer {self.name} has no input extension but an extension of size "
                            f"{extension_size} was requested. (extension_size={extension_size} but the "
                            "previous module has no output extension.)"
                        )
            elif isinstance(previous, MergeGrowingModule):
                raise NotImplementedError(
                    f"apply_change with a merge previous module is not implemented. (error in {self.name})"
                )
            else:
                raise NotImplementedError(
                    f"apply_change is not implemented yet for {type(previous)} as previous module."
                )
        if apply_extension and self.extended_input_layer is not None:
            extension_bias = self.extended_input_layer.bias
            ensure(extension_bias is None or bool(torch.all(extension_bias == 0)),
                   "The bias of the input extension must be null.")

        if scaling_factor is not None:
            self.scaling_factor = scaling_factor
        if optimal_delta_scaling is not None:
            self.optimal_delta_scaling = optimal_delta_scaling
        if input_extension_scaling is not None:
            self.input_extension_scaling = input_extension_scaling
        if output_extension_scaling is not None and isinstance(previous, GrowingModule):
            previous.output_extension_scaling = output_extension_scaling

        with torch.no_grad():
            if apply_delta and self.optimal_delta_layer is not None:
                scale = self.optimal_delta_scaling
                delta_bias = self.optimal_delta_layer.bias
                self.parameter_step(
                    delta_weights=-scale * self.optimal_delta_layer.weight,
                    delta_biases=None if delta_bias is None else -scale * delta_bias,
                )
            if apply_extension:
                if self.extended_input_layer is not None:
                    self.layer_in_extension(
                        weight=self.input_extension_scaling * self.extended_input_layer.weight
                    )
                if extend_previous:
                    previous._apply_output_changes(extension_size=extension_size)
                if isinstance(previous, MergeGrowingModule):
                    previous.update_size()
                if isinstance(self.next_module, MergeGrowingModule):
                    self.next_module.update_size()
        self._clear_statistics_cache()

    @torch.no_grad()
    def _apply_output_changes(
        self, scaling_factor: float | torch.Tensor | None = None, extension_size: int = 0
    ) -> None:
        """Append ``s_out V`` as output rows and grow the post-layer function.

        The post-layer function (and a next merge's post-merge function) grows by the number of rows
        actually added, not by ``extension_size`` as in GroMo: when the two differ GroMo leaves the
        network inconsistent (its next forward fails); here the network stays consistent and a
        UserWarning reports the difference.

        Raises:
            AssertionError: ``extension_size > 0`` without output extension.
        Warns:
            UserWarning: an explicit scaling differs from ``output_extension_scaling``;
                ``extension_size`` differs from the number of rows added.
        """
        if scaling_factor is None:
            scale = self.output_extension_scaling
        else:
            scale = scaling_factor
            output_extension_scaling = self.output_extension_scaling
            if abs(float(scale) - float(output_extension_scaling[0])) >= 1e-4:
                warnings.warn(
                    f"Scaling factor {scaling_factor} is different from the one used during the "
                    f"extended_forward {output_extension_scaling}. (The scaling factor differs from "
                    "output_extension_scaling.)",
                    UserWarning,
                    stacklevel=2,
                )
        if extension_size > 0 or self.extended_output_layer is not None:
            ensure(self.extended_output_layer is not None, (
                f"The layer {self.name} has no output extension but an extension of size "
                f"{extension_size} was requested."
            ))
            extension = self.extended_output_layer
            added = int(extension.weight.shape[0])
            if extension_size > 0 and extension_size != added:
                warnings.warn(
                    f"extension_size={extension_size} differs from the {added} rows of the output "
                    f"extension of {self.name}: the post-layer function grows by {added}.",
                    UserWarning,
                    stacklevel=2,
                )
            self.layer_out_extension(
                scale * extension.weight,
                bias=scale * extension.bias if extension.bias is not None else None,
            )
            _grow_function(self.post_layer_function, added)
            if isinstance(self.next_module, MergeGrowingModule):
                self.next_module.update_size()
                _grow_function(self.next_module.post_merge_function, added)
        self._clear_statistics_cache()

    # ----- sub-selection, scaling, normalisation -----------------------------------------------

    @atomic(module_and_neighbours, copy_data=True)
    def sub_select_optimal_added_parameters(
        self,
        keep_neurons: int | None = None,
        threshold: float | None = None,
        sub_select_previous: bool = True,
        zeros_if_not_enough: bool = False,
        zeros_fan_in: bool = True,
        zeros_fan_out: bool = False,
    ) -> None:
        """Keep the first ``keep_neurons`` new neurons (or those with ``λ ≥ threshold``) (§8.1).

        Unlike GroMo, which trims the input extension and the eigenvalues before it raises for an
        unsupported previous module (leaving a half-applied selection), every check runs first: a
        failing call leaves the module unchanged. The texts are GroMo's.

        Raises:
            AssertionError: no eigenvalues; zeroing mode with neither zeros_fan_in nor zeros_fan_out.
            ValueError: ``sub_select_previous`` without previous module.
            NotImplementedError: previous module of another class, a merge, or not growing.
            TypeError, ValueError: ``keep_neurons`` not None or an int ≥ 0, ``threshold`` NaN / Inf.
        A call that raises leaves this module and the previous one unchanged.
        """
        _guards.check_count(self, "keep_neurons", keep_neurons, allow_none=True)
        if threshold is not None:
            _guards.check_finite(self, "threshold", threshold)
        ensure(self.eigenvalues_extension is not None, (
            "The eigenvalues of the extension should be computed before sub-selecting the optimal "
            f"added parameters for {self.name}."
        ))
        if keep_neurons is None:
            ensure(threshold is not None, "Give keep_neurons or threshold.")
            keep_neurons = int(torch.sum(self.eigenvalues_extension >= threshold).item())
        zeros_fan_in = zeros_fan_in and zeros_if_not_enough
        if zeros_if_not_enough:
            ensure(zeros_fan_in or zeros_fan_out, (
                "At least one of zeros_fan_in or zeros_fan_out must be True if zeros_if_not_enough is "
                "True."
            ))
        previous = self.previous_module
        if sub_select_previous:
            if previous is None:
                raise ValueError(
                    f"No previous module for {self.name}. Therefore new neurons cannot be sub-selected."
                )
            if isinstance(previous, GrowingModule):
                if not isinstance(previous, type(self)):
                    raise NotImplementedError(
                        "The sub-selection of the optimal added parameters is not implemented yet for "
                        f"a connection from {type(previous)} to {type(self)}."
                    )
            elif isinstance(previous, MergeGrowingModule):
                raise NotImplementedError(
                    "The sub-selection of the optimal added parameters is not implemented yet for "
                    f"{type(previous)} as previous module."
                )
            else:
                raise NotImplementedError(
                    "The sub-selection of the optimal added parameters is not implemented yet for "
                    f"{type(previous)} as previous module."
                )

        with torch.no_grad():
            if self.extended_input_layer is not None:
                if not zeros_if_not_enough:
                    if keep_neurons == 0:
                        self.extended_input_layer = None
                        self.eigenvalues_extension = None
                    else:
                        self.eigenvalues_extension = self.eigenvalues_extension[:keep_neurons]
                        extension = self.extended_input_layer
                        self.extended_input_layer = self.layer_of_tensor(
                            extension.weight[:, :keep_neurons], bias=extension.bias, force_bias=False
                        )
                else:
                    self.eigenvalues_extension[keep_neurons:] = 0
                    if zeros_fan_out:
                        self.extended_input_layer.weight[:, keep_neurons:] = 0
            if sub_select_previous and not (zeros_if_not_enough and not zeros_fan_in):
                previous._sub_select_added_output_dimension(
                    keep_neurons, zeros_if_not_enough=zeros_fan_in
                )

    @torch.no_grad()
    def _sub_select_added_output_dimension(
        self, keep_neurons: int, zeros_if_not_enough: bool = False
    ) -> None:
        """Keep the first ``keep_neurons`` rows of the output extension (or zero the others)."""
        ensure(self.extended_output_layer is not None, (
            f"The layer {self.name} should have an extended output layer to sub-select the output "
            "dimension."
        ))
        extension = self.extended_output_layer
        if zeros_if_not_enough:
            extension.weight[keep_neurons:] = 0
            if extension.bias is not None:
                extension.bias[keep_neurons:] = 0
        elif keep_neurons == 0:
            self.extended_output_layer = None
        else:
            self.extended_output_layer = self.layer_of_tensor(
                extension.weight[:keep_neurons],
                bias=extension.bias[:keep_neurons] if extension.bias is not None else None,
                force_bias=False,
            )

    @staticmethod
    @torch.no_grad()
    def scale_layer(layer: nn.Module, scale: float) -> nn.Module:
        """In place ``weight *= scale``, ``bias *= scale`` where they exist; returns the layer.

        A module without weight (e.g. ``nn.ReLU()``) is returned unchanged, as in GroMo.
        """
        if getattr(layer, "weight", None) is not None:
            layer.weight.data *= scale
        if getattr(layer, "bias", None) is not None:
            layer.bias.data *= scale
        return layer

    def scale_parameter_update(self, scale: float) -> None:
        """Scale the optimal delta layer and ``parameter_update_decrease`` by ``scale``.

        Raises:
            ValueError: ``scale`` NaN or infinite.
        """
        _guards.check_finite(self, "scale", scale)
        if self.optimal_delta_layer is not None:
            self.scale_layer(self.optimal_delta_layer, scale)
            if self.parameter_update_decrease is not None:
                self.parameter_update_decrease = self.parameter_update_decrease * scale

    def scale_layer_extension(
        self, scale: float | None, scale_output: float | None, scale_input: float | None
    ) -> None:
        """``Z *= scale_input``, ``V *= scale_output``, ``λ *= (s_out s_in)^e`` (e = ½, or 1 when the
        singular values were ignored) so the first-order improvement scales by ``s_out s_in``.

        Raises:
            AssertionError: a missing scale without ``scale``, or scales that are not floats.
            ValueError: input extension, previous module or its output extension missing.
        """
        if scale_output is None:
            ensure(scale is not None, "scale can't be None if scale_input or scale_output is None.")
            scale_output = scale
        if scale_input is None:
            ensure(scale is not None, "scale can't be None if scale_input or scale_output is None.")
            scale_input = scale
        ensure(isinstance(scale_output, float) and isinstance(scale_input, float), lambda: (
            f"The scales must be floats, got {type(scale_output).__name__} and "
            f"{type(scale_input).__name__}"
        ))
        _guards.check_finite(self, "scale_output", scale_output)
        _guards.check_finite(self, "scale_input", scale_input)
        previous = self.previous_module
        missing = "Cannot scale layer extension as one of the extensions is None."
        if self.extended_input_layer is None:
            raise ValueError(f"{missing} ({self.name}: no input extension.)")
        if previous is None:
            raise ValueError(f"{missing} ({self.name}: no previous module.)")
        if getattr(previous, "extended_output_layer", None) is None:
            raise ValueError(f"{missing} ({self.name}: no previous output extension.)")
        self.scale_layer(self.extended_input_layer, scale_input)
        self.scale_layer(previous.extended_output_layer, scale_output)
        if self.eigenvalues_extension is not None:
            exponent = 0.5 if self._first_order_uses_squared_singular_values else 1.0
            self.eigenvalues_extension = self.eigenvalues_extension * (scale_output * scale_input) ** exponent

    def _fan_in_of(self, layer: nn.Module, owner: GrowingModule | None = None) -> int:
        return (owner or self).get_fan_in_from_layer(layer)

    def _std_of(self, layer: nn.Module | None, owner: GrowingModule | None = None) -> float | None:
        """std of a layer's weight (>0), else fan_in^{-1/2}; None when there is no weight."""
        weight = getattr(layer, "weight", None) if layer is not None else None
        if weight is None or weight.numel() == 0:
            return None
        # GroMo takes the std of any non-empty weight: one element gives NaN with torch's warning.
        std = float(weight.detach().std())
        if std > 0:
            return std
        return float(self._fan_in_of(layer, owner) ** -0.5)

    @atomic(module_and_neighbours, copy_data=True)
    def normalize_optimal_updates(
        self,
        std_target: float | None = None,
        normalization_type: str = "legacy_normalization",
        gradmax_scale: float = 1.0,
    ) -> None:
        """Rescale the delta and the extensions (§8.3): ``equalize_second_layer``,
        ``equalize_extensions``, ``match_extending_layer``, ``legacy_normalization`` (≡
        ``weird_normalization``), ``gradmax_normalization``.

        Raises:
            ValueError: unknown type, ``gradmax_scale ≤ 0``, gradmax without extension/weights,
                ``match_extending_layer`` without growing previous module, ``equalize_extensions``
                without previous module.
            AssertionError: target std not a positive float or undeterminable.
            ValueError: ``std_target`` or ``gradmax_scale`` NaN or infinite.
        A call that raises leaves this module and its neighbours unchanged.
        """
        if std_target is not None and isinstance(std_target, float):
            _guards.check_finite(self, "std_target", std_target)
        _guards.check_finite(self, "gradmax_scale", gradmax_scale)
        if normalization_type == "gradmax_normalization":
            self._gradmax_normalization(gradmax_scale)
            return

        if std_target is None:
            weight = self.layer.weight
            std = float(weight.detach().std()) if weight.numel() > 0 else float("nan")
            if weight.numel() > 0 and std > 0:
                std_target = std
            else:
                ensure(self.extended_input_layer is not None, (
                    "Cannot determine std_target automatically as the layer has no weights and there "
                    "is no extended_input_layer to get the number of input features from. "
                    f"(error in {self.name})"
                ))
                std_target = float(self.get_fan_in_from_layer(self.extended_input_layer) ** -0.5)
        ensure(isinstance(std_target, float) and std_target > 0,
               lambda: f"std_target must be a positive float. (got {std_target!r})")
        previous = self.previous_module
        extension_out = getattr(previous, "extended_output_layer", None)

        def scale_to(layer: nn.Module | None, target: float, owner: GrowingModule | None = None) -> float:
            std = self._std_of(layer, owner)
            return 1.0 if std is None else target / std

        if normalization_type == "equalize_second_layer":
            scale_delta = scale_to(self.optimal_delta_layer, std_target)
            scale_input = scale_to(self.extended_input_layer, std_target)
            scale_output = scale_delta / scale_input
        elif normalization_type == "equalize_extensions":
            if previous is None:
                raise ValueError(
                    "Cannot use equalize_extensions normalization as there is no previous module. "
                    f"({self.name}: equalize_extensions needs a previous module.)"
                )
            scale_input = scale_to(self.extended_input_layer, std_target)
            scale_output = scale_to(extension_out, std_target, previous)
            scale_delta = scale_input * scale_output
        elif normalization_type == "match_extending_layer":
            if not isinstance(previous, GrowingModule):
                raise ValueError(
                    "match_extending_layer requires a previous GrowingModule with a .layer attribute. "
                    f"({self.name}: match_extending_layer needs a GrowingModule previous module.)"
                )
            std_self = self._std_of(self.layer)
            if std_self is None and self.extended_input_layer is not None:
                std_self = float(self.get_fan_in_from_layer(self.extended_input_layer) ** -0.5)
            std_previous = self._std_of(previous.layer, previous)
            if std_previous is None and extension_out is not None:
                std_previous = float(previous.get_fan_in_from_layer(extension_out) ** -0.5)
            self_std, prev_std = std_self, std_previous
            ensure(isinstance(self_std, float),
                   f"{type(self_std)} is not float ({self.name}: cannot determine the layer std.)")
            ensure(isinstance(prev_std, float),
                   f"{type(prev_std)} is not float ({self.name}: cannot determine the previous std.)")
            scale_delta = scale_to(self.optimal_delta_layer, std_self)
            scale_input = scale_to(self.extended_input_layer, std_self)
            scale_output = scale_to(extension_out, std_previous, previous)
        elif normalization_type in ("legacy_normalization", "weird_normalization"):
            scale_delta = scale_to(self.optimal_delta_layer, std_target)
            scale_input = 1.0
            # GroMo's legacy rule: the output extension is scaled with the INPUT extension's std.
            scale_output = scale_to(self.extended_input_layer, std_target)
        else:
            existing_normalizations = list(_NORMALIZATION_TYPES)
            raise ValueError(
                f"normalization_type must be one of {existing_normalizations}, got {normalization_type} "
                "instead."
            )

        if self.optimal_delta_layer is not None and scale_delta != 1.0:
            self.scale_parameter_update(scale_delta)
        if self.extended_input_layer is not None and previous is not None and extension_out is not None:
            self.scale_layer_extension(None, float(scale_output), float(scale_input))

    @torch.no_grad()
    def _gradmax_normalization(self, gradmax_scale: float) -> None:
        if gradmax_scale <= 0:
            raise ValueError(f"gradmax_scale must be positive, got {gradmax_scale}.")
        weight = getattr(self.layer, "weight", None)
        extension = getattr(self.extended_input_layer, "weight", None)
        if self.extended_input_layer is None or weight is None or extension is None:
            raise ValueError(
                "gradmax_normalization requires extended_input_layer and layer with weights. "
                f"({self.name}: it needs an input extension and layer weights.)"
            )
        # GroMo's guards, in its order; each warns and leaves everything unchanged.
        if extension.ndim < 2:
            warnings.warn(
                "gradmax_normalization: extension weight has no reducible dimensions, skipping.",
                UserWarning, stacklevel=3,
            )
            return
        if weight.ndim < 2:
            warnings.warn(
                "gradmax_normalization: layer weight has no reducible dimensions, skipping.",
                UserWarning, stacklevel=3,
            )
            return
        if weight.shape[1] == 0:
            warnings.warn(
                "gradmax_normalization: no existing neurons to compute reference norm, skipping.",
                UserWarning, stacklevel=3,
            )
            return
        column_norms = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
        target = gradmax_scale * float(column_norms.mean())
        if not target > 0:
            warnings.warn(
                "gradmax_normalization: target norm is zero (all existing weights are zero), skipping.",
                UserWarning, stacklevel=3,
            )
            return
        extension_norms = extension.transpose(0, 1).reshape(extension.shape[1], -1).norm(dim=1)
        ratios = torch.where(
            extension_norms > 0, target / extension_norms.clamp_min(torch.finfo(extension.dtype).tiny),
            torch.ones_like(extension_norms),
        )
        shape = [1] * extension.ndim
        shape[1] = -1
        extension.mul_(ratios.reshape(shape))
        eigenvalues = self.eigenvalues_extension
        if eigenvalues is not None and eigenvalues.shape[0] == extension.shape[1]:
            eigenvalues.mul_(ratios.sqrt().to(eigenvalues.dtype))  # in place, as GroMo

    # ----- extensions: creation, initialisation, VT, pairing --------------------------------

    @torch.no_grad()
    def kaiming_initialization(
        self, tensor: torch.Tensor, reference_tensor: torch.Tensor | None, fan_in: int,
        distribution: str = "uniform",
    ) -> None:
        """In place ``U(±√(6/fan_in))`` ("uniform") or ``N(0, 2/fan_in)`` ("normal").

        Raises:
            ValueError: unknown distribution.
        """
        if distribution == "uniform":
            bound = (6.0 / fan_in) ** 0.5
            tensor.uniform_(-bound, bound)
        elif distribution == "normal":
            tensor.normal_(0.0, (2.0 / fan_in) ** 0.5)
        else:
            raise ValueError(f"Unknown distribution {distribution!r}, expected 'uniform' or 'normal'.")

    @torch.no_grad()
    def copy_initialization_variance(
        self, tensor: torch.Tensor, reference_tensor: torch.Tensor | None, fan_in: int,
        distribution: str = "uniform",
    ) -> None:
        """In place, same std as ``reference_tensor`` (uniform ``U(±√3 std)`` or ``N(0, std²)``);
        Kaiming when the reference is missing, has < 2 elements or zero std.

        Raises:
            ValueError: unknown distribution.
        """
        if distribution not in ("uniform", "normal"):
            raise ValueError(f"Unknown distribution {distribution!r}, expected 'uniform' or 'normal'.")
        # The fallback dispatches through self, so an override (or an instance attribute) is used.
        if reference_tensor is None or reference_tensor.numel() < 2:
            self.kaiming_initialization(tensor, reference_tensor, fan_in, distribution)
            return
        std = float(reference_tensor.std())
        if std == 0:
            self.kaiming_initialization(tensor, reference_tensor, fan_in, distribution)
        elif distribution == "normal":
            tensor.normal_(0.0, std)
        else:
            bound = 3**0.5 * std
            tensor.uniform_(-bound, bound)

    def copy_uniform_initialization(
        self, tensor: torch.Tensor, reference_tensor: torch.Tensor | None, fan_in: int
    ) -> None:
        """``copy_initialization_variance(..., distribution="uniform")`` (older GroMo name)."""
        self.copy_initialization_variance(tensor, reference_tensor, fan_in, "uniform")

    def _known_inits(self) -> dict[str, Callable[[torch.Tensor, torch.Tensor | None, int], None]]:
        def zeros(tensor: torch.Tensor, reference: torch.Tensor | None, fan_in: int) -> None:
            with torch.no_grad():
                tensor.zero_()

        return {
            "copy_uniform": lambda t, r, f: self.copy_initialization_variance(t, r, f, "uniform"),
            "copy_normal": lambda t, r, f: self.copy_initialization_variance(t, r, f, "normal"),
            "kaiming": lambda t, r, f: self.kaiming_initialization(t, r, f, "uniform"),
            "kaiming_normal": lambda t, r, f: self.kaiming_initialization(t, r, f, "normal"),
            "zeros": zeros,
        }

    @staticmethod
    def _check_pairing(neuron_pairing: str | None) -> bool:
        """True when a pairing is requested; ValueError for unknown names."""
        if neuron_pairing is None or neuron_pairing == "none":
            return False
        if neuron_pairing not in _KNOWN_PAIRINGS:
            raise ValueError(
                f"Unknown neuron pairing '{neuron_pairing}'. Available: {_KNOWN_PAIRINGS}. "
                "(neuron_pairing may also be None)"
            )
        return True

    @staticmethod
    def _check_rescaling(rescaling: str | None) -> bool:
        if rescaling is None or rescaling == "none":
            return False
        if rescaling not in _KNOWN_RESCALINGS:
            raise ValueError(
                f"Unknown rescaling strategy '{rescaling}'. Available: {_KNOWN_RESCALINGS}. "
                "(rescaling may also be None)"
            )
        return True

    @atomic(module_and_neighbours, copy_data=True)
    def create_layer_extensions(
        self,
        extension_size: int,
        output_extension_size: int | None = None,
        input_extension_size: int | None = None,
        output_extension_init: str = "copy_uniform",
        input_extension_init: str = "copy_uniform",
        neuron_pairing: _KNOWN_NEURON_PAIRINGS_TYPE | None = None,
        rescaling: _KNOWN_RESCALING_STRATEGIES_TYPE | None = None,
        noise_ratio: float = 0.001,
    ) -> None:
        """Create and initialise the previous output extension V and this input extension Z (§9.1).

        Order: rescaling → creation → initialisation (first half only with pairing) → pairing.
        Inits: "copy_uniform", "copy_normal", "kaiming", "kaiming_normal", "zeros".
        All arguments are validated before anything changes (GroMo validates init names last).

        Raises:
            AssertionError: previous module not growing.
            ValueError: unknown init / rescaling / pairing, odd sizes with pairing, a negative
                size, a NaN / infinite / negative ``noise_ratio``.
            TypeError: a size that is not an int.
        A call that raises leaves this module and the previous one unchanged.
        """
        _guards.check_extension_arguments(
            self,
            {"extension_size": extension_size, "output_extension_size": output_extension_size,
             "input_extension_size": input_extension_size},
            noise_ratio,
        )
        ensure(isinstance(self.previous_module, GrowingModule), lambda: (
            f"The layer {self.name} has no previous module.Therefore, neuron addition is not possible. "
            f"(extensions need a GrowingModule previous module, got {type(self.previous_module).__name__})"
        ))
        previous = self.previous_module
        if output_extension_size is None:
            output_extension_size = extension_size
        if input_extension_size is None:
            input_extension_size = extension_size
        pairing = self._check_pairing(neuron_pairing)
        if pairing:
            for label, size in (
                ("extension_size", extension_size),
                ("output_extension_size", output_extension_size),
                ("input_extension_size", input_extension_size),
            ):
                if size % 2 != 0:
                    param_name, value = label, size
                    raise ValueError(
                        f"{neuron_pairing=} requires an even {param_name}, got {value}. "
                        "(It is the final size, pairing included.)"
                    )
        self._check_rescaling(rescaling)
        known_inits = self._known_inits()
        for label, init in (
            ("output_extension_init", output_extension_init),
            ("input_extension_init", input_extension_init),
        ):
            if init not in known_inits:
                raise ValueError(
                    f"Unknown initialization method '{init}'. Available methods are: "
                    f"{list(known_inits.keys())}. ({label})"
                )

        self.apply_rescaling(rescaling, neuron_pairing, extension_size=input_extension_size)
        previous.create_layer_out_extension(output_extension_size)
        self.create_layer_in_extension(input_extension_size)

        input_weight = self.extended_input_layer.weight
        input_view = input_weight[:, : input_extension_size // 2] if pairing else input_weight
        known_inits[input_extension_init](
            input_view,
            self.weight,
            self.get_fan_in_from_layer(self.extended_input_layer) + self.get_fan_in_from_layer(self.layer),
        )
        output_layer = previous.extended_output_layer
        previous_fan_in = previous.get_fan_in_from_layer(previous.layer)
        output_view = (
            output_layer.weight[: output_extension_size // 2] if pairing else output_layer.weight
        )
        known_inits[output_extension_init](output_view, previous.weight, previous_fan_in)
        if output_layer.bias is not None:
            bias_view = output_layer.bias[: output_extension_size // 2] if pairing else output_layer.bias
            known_inits[output_extension_init](bias_view, previous.bias, previous_fan_in)
        self.apply_neuron_pairing(neuron_pairing, noise_ratio=noise_ratio)

    @atomic(module_and_neighbours, copy_data=True)
    @torch.no_grad()
    def apply_rescaling(
        self,
        rescaling: _KNOWN_RESCALING_STRATEGIES_TYPE | None = None,
        neuron_pairing: _KNOWN_NEURON_PAIRINGS_TYPE | None = None,
        extension_size: int | None = None,
    ) -> None:
        """Variance-transfer rescaling of the existing weights, in place (§9.2).

        ``default_vt``: α = 1, β = √(f_old/f_new); ``vt_constraint_old_shape``:
        α = (f_prev Var W_prev)^{-1/2}, β = (f_old Var W)^{-1/2}; ``vt_constraint_new_shape``: same α,
        β = (f_new Var W)^{-1/2}. The previous layer (and its BatchNorm running stats) is scaled by
        α, this layer (and its post-layer BatchNorms) by β.

        Raises:
            ValueError: unknown strategy or pairing.
            AssertionError: previous module not growing.
        """
        if not self._check_rescaling(rescaling):
            return
        self._check_pairing(neuron_pairing)
        if self.in_neurons == 0:
            return
        if extension_size is None:
            extension_size = (
                int(self.extended_input_layer.weight.shape[1])
                if self.extended_input_layer is not None
                else 0
            )
        fan_in_old = self.get_fan_in_from_layer(self.layer)
        fan_in_new = fan_in_old + self.get_fan_in_from_layer(num_neurons=extension_size)
        ensure(isinstance(self.previous_module, GrowingModule), lambda: (
            f"apply_rescaling requires a GrowingModule as previous_module, got "
            f"{type(self.previous_module)}. ({self.name}: rescaling needs a GrowingModule previous module.)"
        ))
        previous = self.previous_module
        fan_in_previous = previous.get_fan_in_from_layer(previous.layer)

        def inverse_std_factor(weight: torch.Tensor, fan_in: int) -> float:
            variance = float(weight.var()) if weight.numel() > 1 else float("nan")
            if not variance > 0:
                return 1.0
            return (1.0 / (fan_in * variance)) ** 0.5

        if rescaling == "default_vt":
            alpha = 1.0
            beta = (fan_in_old / fan_in_new) ** 0.5
        else:
            alpha = inverse_std_factor(previous.weight, fan_in_previous)
            fan_in = fan_in_old if rescaling == "vt_constraint_old_shape" else fan_in_new
            beta = inverse_std_factor(self.weight, fan_in)
        if alpha != 1.0:
            self.scale_layer(previous.layer, alpha)
            _rescale_batch_norms(previous.post_layer_function, alpha)
        if beta != 1.0:
            self.scale_layer(self.layer, beta)
            _rescale_batch_norms(self.post_layer_function, beta)

    @torch.no_grad()
    def apply_neuron_pairing(
        self, neuron_pairing: _KNOWN_NEURON_PAIRINGS_TYPE | None = None, noise_ratio: float = 0.001
    ) -> None:
        """Fill the second halves: V → (V, V) rows, Z → (Z, −Z) columns; then
        ``Z += noise_ratio·std(Z)·ε`` (``noise_ratio=0`` preserves the function exactly) (§9.3).

        Raises:
            ValueError: unknown pairing, or an extension of odd size.
            RuntimeError: an extension is missing.
            AssertionError: previous module not growing.
        """
        _guards.check_non_negative(self, "noise_ratio", noise_ratio)
        if not self._check_pairing(neuron_pairing):
            return
        ensure(isinstance(self.previous_module, GrowingModule), lambda: (
            f"apply_neuron_pairing requires a GrowingModule as previous_module, got "
            f"{type(self.previous_module)}. ({self.name}: pairing needs a GrowingModule previous module.)"
        ))
        output_layer = self.previous_module.extended_output_layer
        if output_layer is None:
            raise RuntimeError(
                "Cannot apply neuron pairing: previous module has no extended_output_layer. "
                f"({self.name}: the previous module has no output extension to pair.)"
            )
        output_size = dh = int(output_layer.weight.shape[0])
        if output_size % 2 != 0:
            raise ValueError(
                f"apply_neuron_pairing requires an even-sized output extension, got dh={dh}. "
                "(The output extension has an odd size: cannot pair.)"
            )
        input_layer = self.extended_input_layer
        if input_layer is None:
            raise RuntimeError(
                "Cannot apply neuron pairing: current module has no extended_input_layer. "
                f"({self.name}: there is no input extension to pair.)"
            )
        input_size = dh_in = int(input_layer.weight.shape[1])
        if input_size % 2 != 0:
            raise ValueError(
                f"apply_neuron_pairing requires an even-sized input extension, got dh_in={dh_in}. "
                "(The input extension has an odd size: cannot pair.)"
            )
        half = output_size // 2
        output_layer.weight[half:] = output_layer.weight[:half]
        if output_layer.bias is not None:
            output_layer.bias[half:] = output_layer.bias[:half]
        half_in = input_size // 2
        input_layer.weight[:, half_in:] = -input_layer.weight[:, :half_in]
        if noise_ratio > 0:
            weight = input_layer.weight
            std = weight.std() if weight.numel() > 1 else torch.zeros((), dtype=weight.dtype)
            weight += torch.randn_like(weight) * noise_ratio * std

    # ----- growth bookkeeping ---------------------------------------------------------------

    def missing_neurons(self) -> int:
        """``target_in_neurons − in_neurons`` (may be negative).

        Raises:
            ValueError: no target.
        """
        if self.target_in_neurons is None:
            raise ValueError(
                f"Target in neurons is not set, cannot compute missing neurons. ({self.name}: "
                "target_in_neurons is not set.)"
            )
        return self.target_in_neurons - self.in_neurons

    def number_of_neurons_to_add(
        self, method: str = "fixed_proportional", number_of_growth_steps: int = 1
    ) -> int:
        """``(target − initial) // number_of_growth_steps`` ("fixed_proportional").

        Raises:
            ValueError: target or initial size unset, or unknown method.
        """
        if self.target_in_neurons is None:
            raise ValueError(
                f"Target in neurons is not set, cannot compute neurons to add. ({self.name}: "
                "target_in_neurons is not set.)"
            )
        if self._initial_in_neurons is None:
            raise ValueError(
                f"Initial in neurons is not set, cannot compute neurons to add. ({self.name}: "
                "initial in-neurons must be set.)"
            )
        if method != "fixed_proportional":
            raise ValueError(f"Unknown method: {method}. (method must be 'fixed_proportional')")
        return (self.target_in_neurons - self._initial_in_neurons) // number_of_growth_steps

    @atomic(module_and_neighbours, copy_data=True)
    def complete_growth(self, extension_kwargs: dict[str, Any]) -> None:
        """Add the missing neurons at once: extensions, ``apply_change(scaling_factor=1)``, cleanup."""
        missing = self.missing_neurons()
        if missing > 0:
            self.create_layer_extensions(extension_size=missing, **extension_kwargs)
            self.apply_change(extension_size=missing, scaling_factor=1.0)
            self.delete_update(include_previous=True)

    # ----- cleanup, misc ----------------------------------------------------------------

    def delete_update(
        self,
        include_previous: bool = True,
        delete_delta: bool = True,
        delete_input: bool = True,
        delete_output: bool = False,
    ) -> None:
        """Forget the update: delta, scaling (0), decrease, eigenvalues, stored tensors, input
        extension (and the previous output extension with ``include_previous``) (§9.5).

        Raises:
            NotImplementedError: ``include_previous`` with a merge previous module (and an input
                extension to delete).
            TypeError: previous module of an unsupported type.
        """
        previous = self.previous_module
        if previous is not None and not isinstance(previous, (GrowingModule, MergeGrowingModule)):
            previous_module = previous
            raise TypeError(
                f"Unexpected type for previous_module of {self.name}got {type(previous_module)} instead "
                "of GrowingModule or MergeGrowingModule. (The previous module must be a GrowingModule or "
                "a MergeGrowingModule.)"
            )
        deletes_input = self.extended_input_layer is not None and delete_input
        if deletes_input and include_previous and isinstance(previous, MergeGrowingModule):
            raise NotImplementedError(
                "delete_update(include_previous=True) with a merge previous module is not implemented."
            )
        if delete_delta:
            self.optimal_delta_layer = None
        self.scaling_factor = 0.0
        self.parameter_update_decrease = None
        self.eigenvalues_extension = None
        self._first_order_uses_squared_singular_values = True
        self._pre_activity = None
        self._input = None
        self._clear_statistics_cache()
        if delete_output:
            self.extended_output_layer = None
        if not deletes_input:
            return
        self.extended_input_layer = None
        if isinstance(previous, GrowingModule):
            if include_previous:
                previous.extended_output_layer = None
            elif previous.extended_output_layer is not None:
                warnings.warn(
                    f"The extended_input_layer of {self.name} has been deleted. However, the "
                    "extended_output_layer associated stored in the previous module named "
                    f"{previous.name} has not been deleted.This may lead to errors when using "
                    "extended_forward. (The previous module keeps its output extension.)",
                    UserWarning,
                    stacklevel=2,
                )
        elif previous is None:
            warnings.warn(
                f"The extended_input_layer of {self.name} has been deleted.However, no previous module "
                "is associated with this layer.Therefore, no extended_output_layer has been deleted.This "
                "is not supposed to happen as to grow a layer a previous module is needed. (An input "
                "extension existed without a previous module.)",
                UserWarning,
                stacklevel=2,
            )

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        """Only the wrapped layer's parameters (extensions, delta and post function excluded)."""
        return self.layer.parameters(recurse=recurse)

    def number_of_parameters(self) -> int:
        """Number of parameters of the wrapped layer."""
        return sum(p.numel() for p in self.parameters())

    def weights_statistics(self) -> dict[str, dict[str, float]]:
        """``{"weight": {min,max,mean,std}, "bias": {...}}`` (bias only when present)."""
        statistics = {"weight": compute_tensor_stats(self.weight)}
        if self.bias is not None:
            statistics["bias"] = compute_tensor_stats(self.bias)
        return statistics

    def __str__(self, verbose: int = 0) -> str:
        """GroMo's description: 0 the name, 1 one line, ≥2 one line per attribute.

        Raises:
            ValueError: ``verbose < 0``.
        """
        if verbose < 0:
            raise ValueError(f"verbose={verbose} is not a valid value.")
        if verbose == 0:
            return self.name
        if verbose == 1:
            return (
                f"{self.name} module with {self.number_of_parameters()} parameters "
                f"({self._allow_growing=}, {self.store_input=}, {self.store_pre_activity=})."
            )
        return "\n".join([
            f"{self.name} module with {self.number_of_parameters()} parameters.",
            f"\tLayer: {self.layer}",
            f"\tPost layer function: {self.post_layer_function}",
            f"\tAllow growing: {self._allow_growing}",
            f"\tStore input: {self.store_input}",
            f"\t{self._internal_store_input=}",
            f"\tStore pre-activity: {self.store_pre_activity}",
            f"\t{self._internal_store_pre_activity=}",
            f"\tTensor S (internal): {self._tensor_s}",
            f"\tTensor S: {self.tensor_s}",
            f"\tTensor M: {self.tensor_m}",
            f"\tOptimal delta layer: {self.optimal_delta_layer}",
            f"\tExtended input layer: {self.extended_input_layer}",
            f"\tExtended output layer: {self.extended_output_layer}",
        ])

    def __repr__(self) -> str:
        """GroMo's one-line ``__str__`` (not torch's module tree)."""
        return self.__str__()

    def __del__(self) -> None:
        """Unlink this module from its neighbours, then forget them (GroMo's ``__del__``).

        A growing neighbour that points back here loses that link; a merge neighbour drops this
        module from its list and resizes (``update_size``). Callable explicitly; never raises (it
        also runs at garbage collection and interpreter shutdown). Unlike GroMo, a growing
        neighbour whose link points to another module keeps it: a discarded module that merely
        referenced a live layer must not cut the live network when it is collected.
        """
        _unlink(self, "previous_module", "next_module", "next_modules")
        _unlink(self, "next_module", "previous_module", "previous_modules")
