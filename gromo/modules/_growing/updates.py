"""GrowingModule's growth solves: the optimal delta (natural-gradient step), the optimal new
neurons (TINY / GradMax) and the first-order improvements they promise.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch

from gromo.modules import _guards
from gromo.modules._dtypes import match_pending_layer_dtypes
from gromo.modules._growing.markers import GrowingModuleBase
from gromo.modules._growth_options import GrowthOptions, takes_growth_options
from gromo.modules._transactions import atomic, module_and_neighbours
from gromo.utils._assertions import ensure

__all__ = ["NewNeuronRequest", "UpdatesMixin", "added_parameters_not_implemented", "public_solver"]

# The growth options the new-neuron solver does not take (they choose its inputs).
_NOT_SOLVER_OPTIONS = ("update_previous", "dtype", "compute_delta", "use_covariance", "use_projection", "use_fisher")


def added_parameters_not_implemented(previous: Any) -> NotImplementedError:
    """GroMo's error for a previous module the new-neuron solve does not support."""
    return NotImplementedError(
        "The computation of the optimal added parameters is not implemented yet for "
        f"{type(previous)} as previous module."
    )


def public_solver(name: str) -> Callable[..., Any]:
    """``gromo.modules.growing_module.<name>`` as found when called (``optimal_delta``,
    ``compute_optimal_added_parameters``): GroMo's module namespace is where a user replaces them."""
    from gromo.modules import growing_module

    return getattr(growing_module, name)


class NewNeuronRequest(NamedTuple):
    """The inputs of one new-neuron solve: S₋₂ (s, s) or None (GradMax), N (s, t), E (t, t) or None,
    in the solve's dtype, and the dtype of the statistics the results are returned in."""

    matrix_s: torch.Tensor | None
    matrix_n: torch.Tensor
    matrix_e: torch.Tensor | None
    statistics_dtype: torch.dtype


class UpdatesMixin:
    """GrowingModule's ``compute_optimal_delta``, ``compute_optimal_updates`` and their hops."""

    # ----- optimal delta ------------------------------------------------------------------

    @atomic(module_and_neighbours, copy_data=False)
    def compute_optimal_delta(
        self,
        update: bool = True,
        dtype: torch.dtype = torch.float32,
        force_pseudo_inverse: bool = False,
        use_fisher: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | float]:
        """Natural-gradient step ``δ = E⁻¹ (S⁺ M)ᵀ`` (o, D) and its first-order decrease.

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
        self.delta_raw, decrease = public_solver("optimal_delta")(
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
    @takes_growth_options()
    def compute_optimal_updates(self, options: GrowthOptions) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Optimal delta and optimal new neurons.

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
        previous = self._checked_growth_request(options)
        delta_update = self._growth_delta_plan(options)
        if delta_update is not None:
            self.compute_optimal_delta(update=delta_update, dtype=options.dtype, use_fisher=options.use_fisher)
        if previous is None:
            return None, None
        alpha_weight, alpha_bias, _, _ = self._compute_optimal_added_parameters(
            **options.as_kwargs(drop=("compute_delta",))
        )
        match_pending_layer_dtypes(self)
        return alpha_weight, alpha_bias

    def _checked_growth_request(self, options: GrowthOptions) -> GrowingModuleBase | None:
        """``compute_optimal_updates``'s checks, before any change: the previous module (or None).

        Raises:
            NotImplementedError, TypeError, ValueError, NonFiniteError: see ``compute_optimal_updates``.
        """
        previous = self.previous_module
        if previous is not None and not isinstance(previous, GrowingModuleBase):
            raise added_parameters_not_implemented(previous)
        _guards.check_optimal_updates_arguments(
            self, options.numerical_threshold, options.statistical_threshold, options.maximum_added_neurons
        )
        if previous is not None:  # what the delta and the growth solve will read, checked first
            reads_delta = options.compute_delta or options.use_projection
            _guards.check_statistics_finite(self, (
                self.tensor_s if reads_delta else None, self.tensor_m if reads_delta else None,
                self.tensor_m_prev, self.cross_covariance if options.use_projection else None,
                self.tensor_s_growth if options.use_covariance else None,
                self.covariance_loss_gradient if options.use_fisher else None,
            ))
        return previous

    def _growth_delta_plan(self, options: GrowthOptions) -> bool | None:
        """The optimal delta ``compute_optimal_updates`` needs: its ``update`` flag, or None for none.

        Without ``compute_delta`` the pending delta is cleared here and the decrease set to 0; the
        projection still needs ``delta_raw`` (solved with ``update=False``).
        """
        if options.compute_delta:
            return True
        self.optimal_delta_layer = None
        self.parameter_update_decrease = torch.tensor(0.0, dtype=self.weight.dtype, device=self.weight.device)
        if options.use_projection and self.previous_module is not None:
            return False
        self.delta_raw = None
        return None

    @takes_growth_options(without=("update_previous", "compute_delta"))
    def _auxiliary_compute_alpha_omega(self, options: GrowthOptions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """α (k, s), ω (t, k), σ (k,) from N (or −M₋₂), S₋₂ and optionally E.

        Raises:
            AssertionError: no previous module.
        """
        request = self._alpha_omega_inputs(options)
        alpha, omega, eigenvalues = public_solver("compute_optimal_added_parameters")(
            matrix_s=request.matrix_s, matrix_n=request.matrix_n, matrix_covariance_loss_gradient=request.matrix_e,
            **options.as_kwargs(drop=_NOT_SOLVER_OPTIONS),
        )
        return self._alpha_omega_outcome(options, request, alpha, omega, eigenvalues)

    def _alpha_omega_inputs(self, options: GrowthOptions) -> NewNeuronRequest:
        """The inputs of the new-neuron solve, in ``options.dtype``.

        Raises:
            AssertionError: no previous module.
        """
        ensure(self.previous_module is not None,
               f"No previous module for {self.name}.Therefore neuron addition is not possible.")
        matrix_n = self.tensor_n if options.use_projection else -self.tensor_m_prev()
        matrix_s = self.tensor_s_growth() if options.use_covariance else None
        matrix_e = self.covariance_loss_gradient() if options.use_fisher else None
        dtype = options.dtype
        return NewNeuronRequest(None if matrix_s is None else matrix_s.to(dtype), matrix_n.to(dtype),
                                None if matrix_e is None else matrix_e.to(dtype), matrix_n.dtype)

    def _alpha_omega_outcome(
        self, options: GrowthOptions, request: NewNeuronRequest, alpha: torch.Tensor, omega: torch.Tensor,
        eigenvalues: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The solved (α, ω, σ) of ``request`` in its statistics' dtype; notes how the first-order
        gain reads σ."""
        self._first_order_uses_squared_singular_values = not options.ignore_singular_values
        dtype = request.statistics_dtype
        return alpha.to(dtype), omega.to(dtype), eigenvalues.to(dtype)

    @takes_growth_options(without=("compute_delta",))
    def _compute_optimal_added_parameters(
        self, options: GrowthOptions
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Package α, ω into extension layers: ``_added_parameters`` of these options.

        GroMo's entry point (a user override of it is what ``compute_optimal_updates`` calls); layer
        types implement the two ends of :meth:`_added_parameters`.
        """
        return self._added_parameters(options)

    def _added_parameters(
        self, options: GrowthOptions
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The new neurons for ``options`` as extension layers: (α weight, α bias, ω, eigenvalues).

        Request → solve → install: the layer type checks its previous module
        (:meth:`_added_parameters_previous`), ``_auxiliary_compute_alpha_omega`` solves, and the layer
        type installs α and ω (:meth:`_install_added_parameters`).
        """
        previous = self._added_parameters_previous(options)
        alpha, omega, eigenvalues = self._auxiliary_compute_alpha_omega(
            **options.as_kwargs(drop=("compute_delta", "update_previous"))
        )
        return self._install_added_parameters(options, previous, alpha, omega, eigenvalues)

    def _added_parameters_previous(self, options: GrowthOptions) -> GrowingModuleBase:
        """The previous module the new neurons extend, checked for ``options`` before any solve.

        Raises:
            NotImplementedError: abstract (each layer type implements it).
        """
        raise NotImplementedError

    def _install_added_parameters(
        self, options: GrowthOptions, previous: GrowingModuleBase, alpha: torch.Tensor, omega: torch.Tensor,
        eigenvalues: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Set the extensions from the solved α (k, s), ω (t, k) and σ (k,): (α weight, α bias, ω,
        eigenvalues) as the layer type shapes them.

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

