"""GroMo's ``gromo.modules.growing_module``: the growing-layer base classes (TINY, TMLR 2024).

``GrowingModule`` wraps one layer (``self.layer``) and everything a growth step needs: storage of
its input and pre-activation, the statistics (S, M, M₋₂, P, E), the natural-gradient step (optimal
delta), the new neurons (TINY / GradMax), scaling factors, extended forward, and the surgery that
applies a change. ``MergeGrowingModule`` joins several growing layers (sum of their outputs).

The classes live in the private package ``gromo.modules._growing`` (one file per job; how a layer
type plugs into the fused statistics is described in ``gromo.modules._growing.statistics``) and are
re-exported here, where they are documented, pickled and printed.

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

import gromo_kernels as gk  # noqa: F401  (the kernels these classes call, reachable as before)
from gromo.modules._growing.activations import (
    _DERIVATIVE_AT_ZERO,  # noqa: F401  (gromo.utils.utils)
    GRADIENT_COMPUTATION_EPSILON,
    SupportsExtendedForward,
)
from gromo.modules._growing.merge import MergeGrowingModule
from gromo.modules._growing.module import GrowingModule
from gromo.modules._growing.statistics import CachedStatistic as _CachedStatistic  # noqa: F401

# The solvers are looked up here when called, so they are replaced here (as in GroMo).
from gromo.utils.tools import compute_optimal_added_parameters, optimal_delta  # noqa: F401

__all__ = [
    "GRADIENT_COMPUTATION_EPSILON",
    "SupportsExtendedForward",
    "MergeGrowingModule",
    "GrowingModule",
]

# The public path is the classes' home for imports, pickles and reprs (numpy's set_module idiom).
for _public in (SupportsExtendedForward, MergeGrowingModule, GrowingModule):
    _public.__module__ = __name__
del _public
