"""Running averages of statistics over machine batches (TINY, TMLR 2024).

``TensorStatistic`` accumulates the SUM returned by its update function and the number of samples;
calling it returns the mean. Its ``updated`` flag is the guard against double counting: a module's
forward sets it to False, the first ``update()`` after that forward consumes it.

Differences from GroMo (deliberate):
* ``init()`` marks the statistic as *in use* and ``reset()`` clears that mark (otherwise both do
  the same thing, as in GroMo). The mark is only a hint: the owning module computes every
  ``pending`` statistic (in use and waiting for this forward) in ONE gromo_kernels call, instead
  of one pass per statistic. Statistics that were never ``init()``-ed still update correctly when asked.
* ``TensorStatiticWithEstimationError`` keeps its trace estimate as Python floats.
* A batch update holding NaN or Inf is refused (:class:`~gromo.utils._nonfinite.NonFiniteError`
  naming the statistic) and nothing is accumulated; :func:`update_together` refuses a batch for a
  group of statistics at once (one host sync), so a refused batch leaves all of them as they were.
* Half-precision updates (float16 / bfloat16) are accumulated in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from gromo.utils._assertions import ensure
from gromo.utils._nonfinite import NonFiniteError, first_non_finite

__all__ = ["TensorStatistic", "TensorStatiticWithEstimationError", "update_together"]

# Sums of half-precision products overflow (fp16 max 65504) and lose digits (bf16 has 8 bits).
_HALF_DTYPES = (torch.float16, torch.bfloat16)


class TensorStatistic:
    """Mean over samples of a tensor statistic: ``value = Σ_batches U_b / Σ_batches k_b``.

    Args:
        shape: expected shape of every update (None: free), entries non-negative ints.
        update_function: callable returning ``(U, k)``: the update (a sum) and its sample count.
        device: stored for reference (allocation follows the update tensors).
        name: printed name (default "TensorStatistic").
    Raises:
        AssertionError: a shape entry is not a non-negative int.
    """

    def __init__(
        self,
        shape: tuple[int, ...] | None,
        update_function: Callable[..., tuple[torch.Tensor, int]],
        device: torch.device | str | None = None,
        name: str | None = None,
    ) -> None:
        if shape is not None:
            # GroMo's text says "positive"; 0 is accepted here (zero-width layers have 0-sized S).
            ensure(all(isinstance(i, (int, np.integer)) and i >= 0 for i in shape),
                   f"The shape must be a tuple of positive integers. {type(shape)}, {shape}")
            shape = tuple(int(i) for i in shape)
        self._shape = shape
        self._update_function = update_function
        self.name = name if name is not None else "TensorStatistic"
        self._tensor: torch.Tensor | None = None
        self.samples = 0
        self.updated = True
        self.device = device
        self._in_use = False

    def __str__(self) -> str:
        return f"{self.name} tensor of shape {self._shape} with {self.samples} samples"

    @property
    def pending(self) -> bool:
        """In use (``init()``-ed) and still waiting for the update of the last forward's batch."""
        return self._in_use and not self.updated

    @torch.no_grad()
    def update(self, **kwargs: Any) -> tuple[torch.Tensor, int] | None:
        """Add one batch, once per forward: no-op (returns None) if already updated.

        Returns:
            (U, k) the update and its sample count, or None when nothing was done.
        Raises:
            AssertionError: the update's shape differs from the declared / accumulated shape.
            NonFiniteError: the update holds NaN or Inf (nothing is accumulated).
        """
        if self.updated:
            return None
        update, samples = self._compute_update(**kwargs)
        _refuse_non_finite([(self, update)])
        return self._accumulate(update, samples)

    def _compute_update(self, **kwargs: Any) -> tuple[torch.Tensor, int]:
        """The batch update ``(U, k)`` with its shape checked; nothing is stored."""
        update, samples = self._update_function(**kwargs)
        ensure(self._shape is None or tuple(self._shape) == tuple(update.shape), lambda: self._size_message(update))
        if self._tensor is not None:
            ensure(self._tensor.shape == update.shape,
                   lambda: self._size_message(update) + " (differs from the accumulated tensor)")
        if update.dtype in _HALF_DTYPES:
            update = update.float()
        return update, samples

    def _accumulate(self, update: torch.Tensor, samples: int) -> tuple[torch.Tensor, int]:
        """Add a checked update (cannot fail)."""
        if self._tensor is None:
            self._tensor = update
        else:
            self._tensor += update
        self.samples += samples
        self.updated = True
        return update, samples

    def _size_message(self, update: torch.Tensor) -> str:
        _shape, _tensor = self._shape, self._tensor
        return (
            f"The update tensor has a different size than the tensor statistic {self.name} : "
            f"{_shape=}, {update.size()=}, {None if _tensor is None else _tensor.size()=}"
        )

    def init(self) -> None:
        """Reset and mark as in use (see the module docstring)."""
        self.reset()
        self._in_use = True

    def reset(self) -> None:
        """Forget the accumulated tensor and samples (the ``updated`` flag is untouched)."""
        self._tensor = None
        self.samples = 0
        self._in_use = False

    def __call__(self) -> torch.Tensor:
        """The mean ``Σ U / Σ k`` (a fresh tensor).

        Raises:
            ValueError: no sample accumulated yet.
        """
        if self.samples == 0:
            raise ValueError(f"The tensor statistic has not been computed. ({self.name})")
        ensure(self._tensor is not None,
               f"If the number of samples is not zero the tensor should not be None. ({self.name})")
        return self._tensor / self.samples


class TensorStatiticWithEstimationError(TensorStatistic):
    """TensorStatistic that also estimates the variance of its mean (GroMo's misspelt name).

    trace t = mean_b ‖U_b/k_b‖² − ‖mean‖²; ``error() = t / batches`` (inf after one batch).
    The trace stops being updated once it moves by less than ``trace_precision·|t|``.

    Args:
        shape, update_function, device, name: as TensorStatistic.
        trace_precision: relative change below which the trace is frozen.
    """

    def __init__(
        self,
        shape: tuple[int, ...] | None,
        update_function: Callable[..., tuple[torch.Tensor, int]],
        device: torch.device | str | None = None,
        name: str | None = None,
        trace_precision: float = 1e-3,
    ) -> None:
        super().__init__(shape, update_function, device=device, name=name)
        self._trace_precision = trace_precision
        self._square_norm_sum: float = 0
        self._batches = 0
        self._trace: float | None = None
        self._compute_trace = True

    @torch.no_grad()
    def update(self, **kwargs: Any) -> tuple[torch.Tensor, int] | None:
        """As TensorStatistic.update, plus the trace estimate (updated when the batch is added)."""
        return super().update(**kwargs)

    def _accumulate(self, update: torch.Tensor, samples: int) -> tuple[torch.Tensor, int]:
        """As TensorStatistic._accumulate, plus the trace estimate."""
        result = super()._accumulate(update, samples)
        self._batches += 1
        if self._compute_trace:
            self._square_norm_sum += float(update.pow(2).sum()) / samples**2
            mean_square = float(self._tensor.pow(2).sum()) / self.samples**2
            trace = self._square_norm_sum / self._batches - mean_square
            if self._trace is not None and abs(trace - self._trace) < self._trace_precision * abs(trace):
                self._compute_trace = False
            self._trace = trace
        return result

    def error(self) -> float:
        """Estimated squared error of the mean: ``trace / batches`` (inf with one batch).

        Raises:
            AssertionError: nothing accumulated yet.
        """
        ensure(self._trace is not None, f"The trace has not been computed yet. ({self.name})")
        if self._batches == 1:
            return float("inf")
        return self._trace / self._batches

    def reset(self) -> None:
        """Also forget the trace estimate."""
        super().reset()
        self._square_norm_sum = 0
        self._batches = 0
        self._trace = None
        self._compute_trace = True


def _refuse_non_finite(
    pending: list[tuple[TensorStatistic, torch.Tensor]], context: Callable[[], str] | None = None
) -> None:
    """NonFiniteError naming the first statistic whose batch update holds NaN or Inf (one sync)."""
    bad = first_non_finite([update for _, update in pending])
    if bad is None:
        return
    detail = context() if context is not None else ""
    raise NonFiniteError(
        f"The batch update of the statistic {pending[bad][0].name} contains NaN or Inf{detail}; "
        "this batch was not accumulated (skip it and go on)."
    )


@torch.no_grad()
def update_together(
    statistics: Iterable[TensorStatistic], context: Callable[[], str] | None = None
) -> None:
    """``update()`` every statistic for the last batch, all or none.

    Every pending update is computed (and shape-checked) first, then all are checked for NaN / Inf
    with one host sync, and only then accumulated: when any step fails, no statistic changes.
    Statistics listed twice or already updated are skipped.

    Args:
        statistics: the statistics of one batch (e.g. a module's S, M, M₋₂, P, E).
        context: called only when an update is not finite; returns text appended to the message
            (e.g. which of the module's stored tensors is not finite).
    Raises:
        AssertionError: an update's shape differs from the declared / accumulated shape.
        NonFiniteError: an update holds NaN or Inf.
    """
    pending: list[tuple[TensorStatistic, torch.Tensor, int]] = []
    seen: set[int] = set()
    for statistic in statistics:
        if statistic.updated or id(statistic) in seen:
            continue
        seen.add(id(statistic))
        update, samples = statistic._compute_update()
        pending.append((statistic, update, samples))
    _refuse_non_finite([(statistic, update) for statistic, update, _ in pending], context)
    for statistic, update, samples in pending:
        statistic._accumulate(update, samples)
