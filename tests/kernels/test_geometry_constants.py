"""Conv2dGeometry's derived constants: the centre tap, unit stride, pointwise."""

from __future__ import annotations

import pytest
import torch

from gromo_kernels import Conv2dGeometry
from gromo_kernels.geometry import POINTWISE


@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (3, 2), (2, 5), (4, 4)])
def test_centre_tap_is_the_unfold_feature_of_the_centre_pixel(kernel):
    """Unfolding an image that is 1 only at one pixel: the centre tap's feature reads it at the output
    whose centre lands there."""
    geometry = Conv2dGeometry(kernel, 1, (kernel[0] // 2, kernel[1] // 2), 1)
    kh, kw = kernel
    assert geometry.centre_tap_position == (kh // 2, kw // 2)
    assert geometry.centre_tap == (kh // 2) * kw + kw // 2
    img = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    img[0, 0, 3, 3] = 1.0
    unfold = torch.nn.functional.unfold(img, kernel, padding=geometry.padding)
    wo = geometry.output_size(7, 7)[1]
    r, c = 3 - geometry.centre_offset[0], 3 - geometry.centre_offset[1]
    assert unfold[0, geometry.centre_tap, r * wo + c] == 1.0


def test_centre_offset_uses_dilation_and_padding():
    geometry = Conv2dGeometry((3, 5), 2, (1, 0), (2, 3))
    assert geometry.centre_offset == (1 * 2 - 1, 2 * 3 - 0)
    assert geometry.centre_tap == 1 * 5 + 2


def test_pointwise_and_unit_stride():
    assert POINTWISE.is_pointwise and POINTWISE.has_unit_stride
    assert Conv2dGeometry(1).is_pointwise
    assert not Conv2dGeometry(1, 2).is_pointwise and not Conv2dGeometry(1, 2).has_unit_stride
    assert not Conv2dGeometry(1, 1, 1).is_pointwise
    assert not Conv2dGeometry(3).is_pointwise and Conv2dGeometry(3, 1, 1, 2).has_unit_stride
