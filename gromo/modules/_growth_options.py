"""GroMo's growth options as one frozen value, passed between the internal hops of a growth solve.

The public methods keep GroMo's keyword signatures (``compute_optimal_updates``,
``_auxiliary_compute_alpha_omega``, ``_compute_optimal_added_parameters`` and the containers'
``compute_optimal_updates``); each builds one :class:`GrowthOptions` and hands it on, so an option
is named once per public signature and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["GrowthOptions"]


@dataclass(frozen=True)
class GrowthOptions:
    """The options of one growth solve, with GroMo's defaults.

    Attributes:
        numerical_threshold: eigenvalues of S (and E) at or below it count as zero.
        statistical_threshold: singular values below it (relative, GroMo's rule) are dropped.
        maximum_added_neurons: keep at most this many new neurons (None: no cap).
        update_previous: also set the previous layer's extension.
        dtype: precision of the solves' inputs.
        compute_delta: compute and store the optimal delta of this layer.
        use_covariance: whiten by S_growth (TINY); False uses the identity (GradMax).
        alpha_zero: the new neurons' input weights start at zero.
        omega_zero: the new neurons' output weights start at zero.
        use_projection: project the goal by the optimal delta (TINY's −M₋₂ − P form).
        ignore_singular_values: do not fold √σ into α and ω.
        use_fisher: precondition the output side with the gradient covariance E.
    """

    numerical_threshold: float = 1e-6
    statistical_threshold: float = 1e-3
    maximum_added_neurons: int | None = None
    update_previous: bool = True
    dtype: torch.dtype = torch.float32
    compute_delta: bool = True
    use_covariance: bool = True
    alpha_zero: bool = False
    omega_zero: bool = False
    use_projection: bool = True
    ignore_singular_values: bool = False
    use_fisher: bool = False

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> GrowthOptions:
        """The options named in ``arguments`` (a public method's ``locals()``), defaults for the rest.

        A GroMo signature lists the options once; ``GrowthOptions.from_arguments(locals())`` as its
        first line turns them into one value without naming each option a second time.
        """
        return cls(**{f.name: arguments[f.name] for f in dataclasses.fields(cls) if f.name in arguments})

    def replace(self, **changes: Any) -> GrowthOptions:
        """A copy with ``changes`` applied (the value itself is frozen)."""
        return dataclasses.replace(self, **changes)

    def as_kwargs(self, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
        """The options as GroMo keyword arguments, less the names in ``drop``.

        For the few calls that must cross a public GroMo signature (a container calling a module).
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in drop}
