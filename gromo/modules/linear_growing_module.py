"""GroMo's ``gromo.modules.linear_growing_module``: growing fully-connected layers (TINY, TMLR 2024).

``LinearGrowingModule`` wraps an ``nn.Linear``; its statistics come from one
``gromo_kernels.layer_statistics(kind="linear", ...)`` call per batch (see
:mod:`gromo.modules._growing.statistics`). Inputs may carry extra token dimensions ``(n, …, d)``: sums run
over every token, the sample count is the batch size ``n`` only (GroMo's convention).

Deliberate differences from GroMo:
* the cross-covariance with a ``LinearMergeGrowingModule`` predecessor includes this layer's bias
  column (GroMo omits it, so ``tensor_n`` then fails its shape assertion when ``use_bias``);
* the "safe forward" of a zero-input layer returns zeros of shape ``(*leading, out)`` (GroMo returns
  ``(n, out)`` even for inputs with token dimensions); like GroMo it ignores the bias and is
  attached to the original layer only;
* new layers (deltas, extensions, surgery) are created in the dtype of the tensors they hold
  (GroMo creates float32 layers), and the merge's full activity uses the predecessors' dtype;
* the merge's previous S and M are computed in one gromo_kernels call and the concatenated
  predecessor activity is built once per batch (GroMo rebuilds it for each statistic).
"""


from __future__ import annotations

from gromo.modules._linear.merge import LinearMergeGrowingModule
from gromo.modules._linear.module import (
    LinearGrowingModule,
    _zero_input_linear_hook,  # noqa: F401
)

__all__ = ["LinearGrowingModule", "LinearMergeGrowingModule"]

# The public path is the classes' home for imports, pickles and reprs (numpy's set_module idiom).
for _public in (LinearGrowingModule, LinearMergeGrowingModule):
    _public.__module__ = __name__
del _public
