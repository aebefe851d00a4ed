"""The public statistics with backend="triton": dispatch, the fused layer_statistics path, and the
public layer's empty-batch / zero-width handling in front of the triton launchers.

On CPU these run the kernels under TRITON_INTERPRET=1 (set by tests/conftest.py), at tiny shapes.
The launchers' own accuracy sweep lives with them; here every result is still checked against the
float64 references of gromo_kernels.testing.
"""

from __future__ import annotations

import pytest
import torch

import gromo_kernels as gk
from gromo_kernels import testing
from gromo_kernels._precision import accumulate_dtype

pytest.importorskip("triton")

pytestmark = pytest.mark.interpreter

PREV = gk.Conv2dGeometry(3, 1, 1)
CUR = gk.Conv2dGeometry((3, 2), (2, 1), (1, 0), (1, 2))


def rand(shape, generator, device, dtype=torch.float32):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)


def check(out, ref, *, length, precision=None, dtype=torch.float32, name="output"):
    assert out.dtype == accumulate_dtype(dtype), name
    testing.assert_close_to_reference(out, ref, precision=precision, dtype=dtype,
                                      reduction_length=length, name=name)


def conv_pair(generator, device, n=2, c_prev=2, c=3, c_out=4):
    x_prev = rand((n, c_prev, 6, 7), generator, device)
    x = rand((n, c, 6, 7), generator, device)
    ho, wo = CUR.output_size(6, 7)
    grad = rand((n, c_out, ho, wo), generator, device)
    return x_prev, x, grad, n * ho * wo


def conv_references(kind, x_prev, x, grad, precision=None, bias=True):
    refs = dict(s=testing.conv2d_input_cov_reference(x, CUR, bias=bias, precision=precision),
                m=testing.conv2d_input_grad_reference(x, grad, CUR, bias=bias, precision=precision),
                e=testing.grad_cov_reference(grad, channel_dim=1, precision=precision))
    if kind == "conv2d_restricted":
        growth = testing.conv2d_restricted_growth_stats_reference(x_prev, x, grad, prev=PREV, cur=CUR,
                                                                   bias=bias, precision=precision)
        refs.update(s_growth=testing.conv2d_input_cov_reference(x_prev, PREV, precision=precision),
                    m_prev=growth.m_prev, cross_cov=growth.cross_cov)
    elif kind == "conv2d_full":
        growth = testing.conv2d_full_growth_stats_reference(x_prev, x, grad, prev=PREV, cur=CUR, bias=bias,
                                                             precision=precision)
        refs.update(s_growth=growth.s_growth, m_prev=growth.m_prev, cross_cov=growth.cross_cov)
    return refs


@pytest.mark.parametrize("precision", [None, "tf32"])
@pytest.mark.parametrize("kind", ["conv2d", "conv2d_restricted", "conv2d_full"])
def test_layer_statistics_triton_matches_reference(generator, device, kind, precision):
    x_prev, x, grad, positions = conv_pair(generator, device)
    growth = kind != "conv2d"
    out = gk.layer_statistics(kind, x, grad, x_prev=x_prev if growth else None, prev=PREV if growth else None,
                              cur=CUR, backend="triton", precision=precision)
    refs = conv_references(kind, x_prev, x, grad, precision)
    assert list(out) == list(refs)
    for key, ref in refs.items():
        length = positions * CUR.kernel_area if (kind, key) == ("conv2d_full", "s_growth") else positions
        check(out[key], ref, length=length, precision=precision, name=key)


def test_layer_statistics_triton_linear_matches_reference(generator, device):
    x_prev, x, grad = (rand((3, 4, d), generator, device) for d in (5, 6, 3))
    out = gk.layer_statistics("linear", x, grad, x_prev=x_prev, bias_prev=False, backend="triton")
    refs = dict(s=testing.linear_input_cov_reference(x), m=testing.linear_input_grad_reference(x, grad),
                e=testing.grad_cov_reference(grad),
                s_growth=testing.linear_input_cov_reference(x_prev, bias=False),
                m_prev=testing.linear_input_grad_reference(x_prev, grad, bias=False),
                cross_cov=testing.linear_cross_cov_reference(x_prev, x, bias_prev=False))
    assert list(out) == list(refs)
    for key, ref in refs.items():
        check(out[key], ref, length=12, name=key)


def test_individual_functions_triton_match_reference(generator, device):
    x_prev, x, grad, positions = conv_pair(generator, device)
    check(gk.conv2d_input_cov(x, CUR, backend="triton"), testing.conv2d_input_cov_reference(x, CUR),
          length=positions, name="S")
    check(gk.conv2d_input_grad(x, grad, CUR, backend="triton"),
          testing.conv2d_input_grad_reference(x, grad, CUR), length=positions, name="M")
    check(gk.grad_cov(grad, channel_dim=1, backend="triton"), testing.grad_cov_reference(grad, channel_dim=1),
          length=positions, name="E")
    restricted = gk.conv2d_restricted_growth_stats(x_prev, x, grad, prev=PREV, cur=CUR, backend="triton")
    ref = testing.conv2d_restricted_growth_stats_reference(x_prev, x, grad, prev=PREV, cur=CUR)
    check(restricted.m_prev, ref.m_prev, length=positions, name="m_prev")
    check(restricted.cross_cov, ref.cross_cov, length=positions, name="cross_cov")
    full = gk.conv2d_full_growth_stats(x_prev, x, grad, prev=PREV, cur=CUR, backend="triton")
    ref = testing.conv2d_full_growth_stats_reference(x_prev, x, grad, prev=PREV, cur=CUR)
    check(full.s_growth, ref.s_growth, length=positions * CUR.kernel_area, name="s_growth")
    check(full.m_prev, ref.m_prev, length=positions, name="m_prev")
    check(full.cross_cov, ref.cross_cov, length=positions, name="cross_cov")
    rows_prev, rows, rows_grad = (rand((5, d), generator, device) for d in (2, 3, 4))
    check(gk.linear_input_cov(rows, backend="triton"), testing.linear_input_cov_reference(rows), length=5)
    check(gk.linear_input_grad(rows, rows_grad, backend="triton"),
          testing.linear_input_grad_reference(rows, rows_grad), length=5)
    check(gk.linear_cross_cov(rows_prev, rows, backend="triton"),
          testing.linear_cross_cov_reference(rows_prev, rows), length=5)


@pytest.mark.parametrize("n,c_prev,c,c_out", [(0, 2, 3, 4), (2, 0, 3, 4), (2, 2, 0, 4), (2, 2, 3, 0)])
@pytest.mark.parametrize("kind", ["conv2d_restricted", "conv2d_full"])
def test_empty_and_zero_width_through_triton(generator, device, kind, n, c_prev, c, c_out):
    """The public layer's substitutions (zeros, one channel of ones) in front of the triton launchers."""
    x_prev, x, grad, positions = conv_pair(generator, device, n, c_prev, c, c_out)
    out = gk.layer_statistics(kind, x, grad, x_prev=x_prev, prev=PREV, cur=CUR, backend="triton")
    refs = conv_references(kind, x_prev, x, grad)
    for key, ref in refs.items():
        check(out[key], ref, length=max(positions * CUR.kernel_area, 1), name=key)
