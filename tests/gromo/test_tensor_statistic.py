"""TensorStatistic / TensorStatiticWithEstimationError (TINY, TMLR 2024)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gromo.utils.tensor_statistic import TensorStatistic, TensorStatiticWithEstimationError


class _Feed:
    """An update function returning the queued (sum, count) pairs in order."""

    def __init__(self, updates):
        self.updates = list(updates)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.updates.pop(0)


def _batches(generator, count, shape=(3, 3), rows=(4, 7, 5)):
    out = []
    for i in range(count):
        n = rows[i % len(rows)]
        x = torch.randn(n, *shape[1:], generator=generator, dtype=torch.float64)
        out.append((x.sum(dim=0, keepdim=True).expand(*shape).clone(), n))
    return out


def test_mean_over_batches_is_sum_over_samples(generator):
    updates = _batches(generator, 3)
    expected = sum(u for u, _ in updates) / sum(k for _, k in updates)
    stat = TensorStatistic((3, 3), _Feed(updates), name="S")
    for _ in range(3):
        stat.updated = False
        stat.update()
    assert stat.samples == 16
    torch.testing.assert_close(stat(), expected, rtol=1e-12, atol=0)


def test_update_is_a_noop_until_the_next_forward(generator):
    feed = _Feed(_batches(generator, 2))
    stat = TensorStatistic(None, feed)
    assert stat.update() is None and feed.calls == 0  # fresh statistics start "updated"
    stat.updated = False
    first = stat.update()
    assert first is not None and first[1] == 4
    assert stat.update() is None and feed.calls == 1 and stat.samples == 4


def test_first_update_is_stored_without_copy(generator):
    updates = _batches(generator, 1)
    stat = TensorStatistic((3, 3), _Feed(updates))
    stat.updated = False
    update, _ = stat.update()
    assert stat._tensor is update


def test_call_before_any_sample_raises_value_error():
    stat = TensorStatistic((2, 2), _Feed([]), name="M(layer)")
    with pytest.raises(ValueError, match="M\\(layer\\)"):
        stat()


def test_declared_shape_is_enforced(generator):
    stat = TensorStatistic((2, 2), _Feed(_batches(generator, 1)))
    stat.updated = False
    with pytest.raises(AssertionError, match="shape"):
        stat.update()


def test_accumulated_shape_is_enforced_when_free(generator):
    updates = [(torch.randn(2, 2, generator=generator), 3), (torch.randn(3, 2, generator=generator), 3)]
    stat = TensorStatistic(None, _Feed(updates))
    stat.updated = False
    stat.update()
    stat.updated = False
    with pytest.raises(AssertionError, match="accumulated"):
        stat.update()


@pytest.mark.parametrize("shape", [(2, -1), (2.0, 2), ("a",)])
def test_constructor_rejects_bad_shapes(shape):
    with pytest.raises(AssertionError, match="shape"):
        TensorStatistic(shape, _Feed([]))


def test_numpy_integer_shapes_are_accepted():
    stat = TensorStatistic((np.int64(2), 3), _Feed([]))
    assert stat._shape == (2, 3)


def test_reset_and_init(generator):
    stat = TensorStatistic((3, 3), _Feed(_batches(generator, 2)), name="S")
    stat.updated = False
    stat.update()
    stat.init()
    assert stat._tensor is None and stat.samples == 0 and stat._in_use
    assert stat.updated is True  # reset leaves the flag alone
    stat.reset()
    assert not stat._in_use
    assert str(stat) == "S tensor of shape (3, 3) with 0 samples"


def test_estimation_error_trace_formula(generator):
    updates = [(torch.randn(2, 3, generator=generator, dtype=torch.float64) * 4.0, 4) for _ in range(3)]
    stat = TensorStatiticWithEstimationError(None, _Feed([(u.clone(), k) for u, k in updates]),
                                            trace_precision=0.0)
    square_sum = 0.0
    total = torch.zeros(2, 3, dtype=torch.float64)
    for b, (u, k) in enumerate(updates, start=1):
        stat.updated = False
        stat.update()
        square_sum += float((u**2).sum()) / k**2
        total += u
        expected = square_sum / b - float((total**2).sum()) / (4 * b) ** 2
        assert math.isclose(stat._trace, expected, rel_tol=1e-12)
    assert math.isclose(stat.error(), stat._trace / 3, rel_tol=1e-12)


def test_estimation_error_single_batch_is_infinite_and_reset_clears(generator):
    stat = TensorStatiticWithEstimationError(None, _Feed(_batches(generator, 1)))
    with pytest.raises(AssertionError, match="trace"):
        stat.error()
    stat.updated = False
    stat.update()
    assert stat.error() == float("inf")
    stat.reset()
    assert (stat._trace, stat._batches, stat._square_norm_sum, stat._compute_trace) == (None, 0, 0, True)


def test_estimation_error_trace_freezes_once_stable(generator):
    a = torch.randn(2, 2, generator=generator, dtype=torch.float64)
    signs = [1, -1, 1, -1, 1, -1]
    stat = TensorStatiticWithEstimationError(None, _Feed([(s * a.clone(), 1) for s in signs]),
                                            trace_precision=0.1)
    for _ in signs:
        stat.updated = False
        stat.update()
    # trace_b = ‖a‖² (even b) or ‖a‖²(1 − 1/b²) (odd b): first relative change < 0.1 at b = 5
    assert stat._compute_trace is False
    assert math.isclose(stat._trace, float((a**2).sum()) * (1 - 1 / 25), rel_tol=1e-12)
    assert stat._batches == 6
