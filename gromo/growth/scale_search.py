"""Line search of the scaling factor γ of a pending growth, with a bracket that is never binding.

The candidate scales (default 2^-6 … 2^4) are evaluated on held-out samples with
``extended_forward``. When the best one sits at an edge of the evaluated range, the range is
extended past that edge by the same ratio (×2 beyond the top, ÷2 below the bottom) until the best
scale is interior or ``max_extensions`` extra evaluations were spent. Every evaluated
(γ, loss) pair is returned, sorted by γ, so a record shows the curve the choice was made on.
The chosen γ is never 0: a zero scale would add dead neurons.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def widening_search(loss_at: Callable[[float], float], scales: Sequence[float], max_extensions: int = 8,
                    ) -> tuple[float, list[list[float]], int]:
    """Minimise ``loss_at`` over ``scales`` and, while the minimum is at an edge, beyond that edge.

    Args:
        loss_at: loss of the model with the pending update at scale γ (γ > 0).
        scales: initial candidate scales (> 0; sorted here).
        max_extensions: at most this many evaluations beyond the initial range.

    Returns:
        (best γ, [[γ_i, loss_i], ...] sorted by γ, number of extensions used). Ties go to the
        smaller γ; non-finite losses never win.
    """
    ordered = sorted(float(s) for s in scales)
    ratio_up = ordered[-1] / ordered[-2] if len(ordered) > 1 and ordered[-2] > 0 else 2.0
    ratio_down = ordered[1] / ordered[0] if len(ordered) > 1 else 2.0
    ratio_up, ratio_down = max(ratio_up, 1.5), max(ratio_down, 1.5)
    curve = {scale: float(loss_at(scale)) for scale in ordered}

    def best() -> float:
        finite = [(loss, scale) for scale, loss in curve.items() if math.isfinite(loss)]
        return min(finite)[1] if finite else min(curve)

    extensions = 0
    while extensions < max_extensions:
        chosen, low, high = best(), min(curve), max(curve)
        if chosen == high and len(curve) > 1:
            new = high * ratio_up
        elif chosen == low and len(curve) > 1:
            new = low / ratio_down
        else:
            break
        curve[new] = float(loss_at(new))
        extensions += 1
    return best(), [[scale, curve[scale]] for scale in sorted(curve)], extensions
