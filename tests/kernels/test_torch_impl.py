"""The torch backend's statistics against the float64 brute-force references of gromo_kernels.testing.

Every fast path is forced explicitly (``method=``) as well as chosen by the cost model, over strides
1–3, padding 0–3, dilation 2, rectangular kernels, bias on/off, zero channels, batch 1, strided
views, fp64/fp32/bf16 inputs and every precision mode (the reference then uses the same rounded
operands, so only accumulation error is measured).
"""

from __future__ import annotations

import pytest
import torch

from gromo_kernels import testing as T
from gromo_kernels.geometry import Conv2dGeometry
from gromo_kernels.torch_impl import (
    conv2d_full_growth_stats_torch,
    conv2d_input_cov_torch,
    conv2d_input_grad_torch,
    conv2d_restricted_growth_stats_torch,
    grad_cov_torch,
    linear_cross_cov_torch,
    linear_input_cov_torch,
    linear_input_grad_torch,
)

PRECISIONS = ("ieee", "tf32x3", "tf32", "bf16")

# (kernel, stride, padding, dilation) covering every branch of the paths.
CONV_GEOMETRIES = [
    (3, 1, 1, 1),
    (3, 1, 0, 1),
    (3, 2, 1, 1),
    (3, 3, 2, 1),
    (3, 1, 2, 2),
    ((2, 3), 1, (0, 1), 1),
    ((3, 1), (1, 2), (1, 0), (2, 1)),
    (1, 1, 0, 1),
    (4, 1, 3, 1),
]
PREV_GEOMETRIES = [(3, 1, 1, 1), (3, 2, 1, 1), ((2, 3), 1, (0, 1), 1), (3, 1, 2, 2)]
CUR_GEOMETRIES = [(3, 1, 1, 1), (3, 1, 0, 1), (3, 3, 2, 1), ((3, 1), 1, (1, 0), (2, 1)), (1, 1, 0, 1)]


def _geo(spec) -> Conv2dGeometry:
    return Conv2dGeometry(*spec).normalized()


def _randn(generator, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def _check(out, ref, *, precision="ieee", dtype=torch.float64, reduction_length, name):
    assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32), name
    T.assert_close_to_reference(out, ref, precision=precision, dtype=dtype,
                                reduction_length=reduction_length, name=name)


def _conv_methods(geo):
    return ["shift", "unfold", "auto"] if geo.stride == (1, 1) else ["unfold", "auto"]


def _growth_methods(prev, cur):
    strided = prev.stride != (1, 1) or cur.stride != (1, 1)
    return ["general", "auto"] if strided else ["shift", "general", "auto"]


# ----------------------------------------------------------------------------------------------
# Linear
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_statistics_match_reference(generator, precision, dtype, bias):
    rows, d, dp, o = 37, 300, 5, 7  # d >= 2·192 exercises the block-triangular Gram
    x = _randn(generator, rows, d, dtype=dtype)
    xp = _randn(generator, rows, dp, dtype=dtype)
    g = _randn(generator, rows, o, dtype=dtype)
    kw = dict(precision=precision, dtype=dtype, reduction_length=rows)
    _check(linear_input_cov_torch(x, bias=bias, precision=precision),
           T.linear_input_cov_reference(x, bias=bias, precision=precision), name="S", **kw)
    _check(linear_input_grad_torch(x, g, bias=bias, precision=precision),
           T.linear_input_grad_reference(x, g, bias=bias, precision=precision), name="M", **kw)
    _check(linear_cross_cov_torch(xp, x, bias_prev=bias, bias=not bias, precision=precision),
           T.linear_cross_cov_reference(xp, x, bias_prev=bias, bias=not bias, precision=precision),
           name="P", **kw)
    _check(grad_cov_torch(g, precision=precision), T.grad_cov_reference(g, precision=precision),
           name="E", **kw)


def test_linear_statistics_strided_views_one_row_and_zero_features(generator):
    base = _randn(generator, 9, 12)
    x = base[::3, ::2]  # (3, 6), non-contiguous in both dims
    g = _randn(generator, 6, 3).T  # (3, 6) transposed view
    s = linear_input_cov_torch(x, bias=True, precision="ieee")
    T.assert_close_to_reference(s, T.linear_input_cov_reference(x), dtype=torch.float64,
                                reduction_length=3)
    assert torch.equal(s, s.T)
    m = linear_input_grad_torch(x[:1], g[:1], bias=True, precision="ieee")
    T.assert_close_to_reference(m, T.linear_input_grad_reference(x[:1], g[:1]), dtype=torch.float64)
    empty = x[:, :0]
    s0 = linear_input_cov_torch(empty, bias=True, precision="ieee")
    assert s0.shape == (1, 1) and s0.item() == 3.0
    p0 = linear_cross_cov_torch(empty, x, bias_prev=True, bias=True, precision="ieee")
    T.assert_close_to_reference(p0, T.linear_cross_cov_reference(empty, x), dtype=torch.float64)


def test_linear_statistics_bfloat16_input_accumulates_in_fp32(generator):
    x = _randn(generator, 64, 10, dtype=torch.bfloat16)
    s = linear_input_cov_torch(x, bias=True, precision="ieee")
    assert s.dtype == torch.float32
    T.assert_close_to_reference(s, T.linear_input_cov_reference(x), dtype=torch.bfloat16,
                                reduction_length=64)


# ----------------------------------------------------------------------------------------------
# Conv S and M
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", CONV_GEOMETRIES)
def test_conv2d_input_cov_every_method_matches_reference(generator, spec):
    geo = _geo(spec)
    n, c, h, w = 2, 3, 6, 7
    ho, wo = geo.output_size(h, w)
    x = _randn(generator, n, c, h, w)
    for bias in (True, False):
        ref = T.conv2d_input_cov_reference(x, geo, bias=bias)
        for method in _conv_methods(geo):
            out = conv2d_input_cov_torch(x, geo, bias=bias, precision="ieee", chunk=1, method=method)
            _check(out, ref, reduction_length=n * ho * wo, name=f"S[{method}, bias={bias}]")
            assert torch.equal(out, out.T)


@pytest.mark.parametrize("spec", CONV_GEOMETRIES)
def test_conv2d_input_grad_matches_reference(generator, spec):
    geo = _geo(spec)
    n, c, h, w, c_out = 2, 3, 6, 7, 4
    ho, wo = geo.output_size(h, w)
    x = _randn(generator, n, c, h, w)
    g = _randn(generator, n, c_out, ho, wo)
    for bias in (True, False):
        out = conv2d_input_grad_torch(x, g, geo, bias=bias, precision="ieee", chunk=1)
        _check(out, T.conv2d_input_grad_reference(x, g, geo, bias=bias),
               reduction_length=n * ho * wo, name=f"M[bias={bias}]")


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("spec", [(3, 1, 1, 1), (3, 2, 1, 1)])
def test_conv2d_statistics_precision_modes_fp32(generator, precision, spec):
    geo = _geo(spec)
    n, c, h, w, c_out = 3, 4, 8, 7, 5
    ho, wo = geo.output_size(h, w)
    x = _randn(generator, n, c, h, w, dtype=torch.float32)
    g = _randn(generator, n, c_out, ho, wo, dtype=torch.float32)
    ref = T.conv2d_input_cov_reference(x, geo, precision=precision)
    for method in _conv_methods(geo):
        out = conv2d_input_cov_torch(x, geo, bias=True, precision=precision, chunk=None, method=method)
        _check(out, ref, precision=precision, dtype=torch.float32, reduction_length=n * ho * wo,
               name=f"S[{method}]")
    out = conv2d_input_grad_torch(x, g, geo, bias=True, precision=precision, chunk=None)
    _check(out, T.conv2d_input_grad_reference(x, g, geo, precision=precision), precision=precision,
           dtype=torch.float32, reduction_length=n * ho * wo, name="M")


def test_conv2d_statistics_larger_fp32_shift_path(generator):
    # Enough rows that fp32 accumulation error is visible: the shift path's inclusion–exclusion
    # (full correlation minus border strips) must stay within the table's tolerance.
    geo = _geo((3, 1, 1, 1))
    n, c, h, w = 8, 8, 12, 12
    x = _randn(generator, n, c, h, w, dtype=torch.float32) + 3.0  # a mean makes cancellation bite
    out = conv2d_input_cov_torch(x, geo, bias=True, precision="ieee", chunk=3, method="shift")
    T.assert_close_to_reference(out, T.conv2d_input_cov_reference(x, geo), dtype=torch.float32,
                                reduction_length=n * h * w, scale=16.0, name="S[shift]")


def test_conv2d_statistics_strided_views_batch_one_and_zero_channels(generator):
    geo = _geo((3, 1, 1, 1))
    base = _randn(generator, 2, 5, 8, 9)
    x = base[:1, ::2, 1:, ::2]  # (1, 3, 7, 5), non-contiguous
    g = _randn(generator, 1, 7, 5, 2).permute(0, 3, 1, 2)  # channels-last view (1, 2, 7, 5)
    for method in ("shift", "unfold"):
        out = conv2d_input_cov_torch(x, geo, bias=True, precision="ieee", chunk=None, method=method)
        _check(out, T.conv2d_input_cov_reference(x, geo), reduction_length=35, name=f"S[{method}]")
    out = conv2d_input_grad_torch(x, g, geo, bias=True, precision="ieee", chunk=None)
    _check(out, T.conv2d_input_grad_reference(x, g, geo), reduction_length=35, name="M")
    empty = x[:, :0]
    s0 = conv2d_input_cov_torch(empty, geo, bias=True, precision="ieee", chunk=None)
    assert s0.shape == (1, 1) and s0.item() == 35.0
    m0 = conv2d_input_grad_torch(empty, g, geo, bias=True, precision="ieee", chunk=None)
    _check(m0, T.conv2d_input_grad_reference(empty, g, geo), reduction_length=35, name="M0")
    s_nobias = conv2d_input_cov_torch(empty, geo, bias=False, precision="ieee", chunk=None)
    assert s_nobias.shape == (0, 0)


@pytest.mark.parametrize("method", ["shift", "unfold"])
def test_conv2d_input_cov_chunked_equals_unchunked(generator, method):
    geo = _geo((3, 1, 1, 1))
    x = _randn(generator, 5, 3, 6, 6)
    whole = conv2d_input_cov_torch(x, geo, bias=True, precision="ieee", chunk=None, method=method)
    for chunk in (1, 2, 4):
        part = conv2d_input_cov_torch(x, geo, bias=True, precision="ieee", chunk=chunk, method=method)
        torch.testing.assert_close(part, whole, rtol=1e-13, atol=1e-12)


def test_conv2d_bad_method_raises():
    x = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="method"):
        conv2d_input_cov_torch(x, _geo((3, 2, 1, 1)), bias=True, precision="ieee", chunk=None,
                               method="shift")
    with pytest.raises(ValueError, match="method"):
        conv2d_input_cov_torch(x, _geo((3,)), bias=True, precision="ieee", chunk=None, method="fft")


# ----------------------------------------------------------------------------------------------
# Conv-of-conv growth statistics
# ----------------------------------------------------------------------------------------------


def _growth_inputs(generator, prev, cur, *, n=2, cp=3, c=2, c_out=4, hp=8, wp=7, dtype=torch.float64):
    h, w = prev.output_size(hp, wp)
    ho, wo = cur.output_size(h, w)
    xp = _randn(generator, n, cp, hp, wp, dtype=dtype)
    x = _randn(generator, n, c, h, w, dtype=dtype)
    g = _randn(generator, n, c_out, ho, wo, dtype=dtype)
    return xp, x, g, n * ho * wo


@pytest.mark.parametrize("prev_spec", PREV_GEOMETRIES)
@pytest.mark.parametrize("cur_spec", CUR_GEOMETRIES)
def test_restricted_growth_stats_every_method_matches_reference(generator, prev_spec, cur_spec):
    prev, cur = _geo(prev_spec), _geo(cur_spec)
    xp, x, g, rows = _growth_inputs(generator, prev, cur)
    for bias_prev, bias in ((True, True), (False, True), (True, False)):
        ref = T.conv2d_restricted_growth_stats_reference(xp, x, g, prev=prev, cur=cur,
                                                         bias_prev=bias_prev, bias=bias)
        for method in _growth_methods(prev, cur):
            out = conv2d_restricted_growth_stats_torch(xp, x, g, prev=prev, cur=cur, bias_prev=bias_prev,
                                                       bias=bias, precision="ieee", chunk=1,
                                                       method=method)
            tag = f"[{method}, bias_prev={bias_prev}, bias={bias}]"
            _check(out.m_prev, ref.m_prev, reduction_length=rows, name="m_prev" + tag)
            _check(out.cross_cov, ref.cross_cov, reduction_length=rows, name="cross_cov" + tag)


@pytest.mark.parametrize("prev_spec", PREV_GEOMETRIES)
@pytest.mark.parametrize("cur_spec", CUR_GEOMETRIES)
def test_full_growth_stats_every_method_matches_reference(generator, prev_spec, cur_spec):
    prev, cur = _geo(prev_spec), _geo(cur_spec)
    xp, x, g, rows = _growth_inputs(generator, prev, cur)
    kk = cur.kernel_area
    for bias_prev, bias in ((True, True), (False, True), (True, False)):
        ref = T.conv2d_full_growth_stats_reference(xp, x, g, prev=prev, cur=cur, bias_prev=bias_prev,
                                                   bias=bias)
        for method in _growth_methods(prev, cur):
            out = conv2d_full_growth_stats_torch(xp, x, g, prev=prev, cur=cur, bias_prev=bias_prev,
                                                 bias=bias, precision="ieee", chunk=1, method=method)
            tag = f"[{method}, bias_prev={bias_prev}, bias={bias}]"
            _check(out.s_growth, ref.s_growth, reduction_length=rows * kk, name="s_growth" + tag)
            assert torch.equal(out.s_growth, out.s_growth.T)
            _check(out.m_prev, ref.m_prev, reduction_length=rows, name="m_prev" + tag)
            _check(out.cross_cov, ref.cross_cov, reduction_length=rows, name="cross_cov" + tag)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("strided", [False, True])
def test_growth_stats_precision_modes_fp32(generator, precision, strided):
    prev = _geo((3, 1, 1, 1))
    cur = _geo((3, 2, 1, 1) if strided else (3, 1, 1, 1))
    xp, x, g, rows = _growth_inputs(generator, prev, cur, n=3, cp=4, c=3, c_out=5, hp=9, wp=8,
                                    dtype=torch.float32)
    kw = dict(precision=precision, dtype=torch.float32)
    rr = T.conv2d_restricted_growth_stats_reference(xp, x, g, prev=prev, cur=cur, precision=precision)
    rf = T.conv2d_full_growth_stats_reference(xp, x, g, prev=prev, cur=cur, precision=precision)
    for method in _growth_methods(prev, cur):
        args = dict(prev=prev, cur=cur, bias_prev=True, bias=True, precision=precision, chunk=None,
                    method=method)
        out = conv2d_restricted_growth_stats_torch(xp, x, g, **args)
        _check(out.m_prev, rr.m_prev, reduction_length=rows, name=f"R.m_prev[{method}]", **kw)
        _check(out.cross_cov, rr.cross_cov, reduction_length=rows, name=f"R.cross_cov[{method}]", **kw)
        out = conv2d_full_growth_stats_torch(xp, x, g, **args)
        _check(out.s_growth, rf.s_growth, reduction_length=rows * cur.kernel_area,
               name=f"F.s_growth[{method}]", **kw)
        _check(out.m_prev, rf.m_prev, reduction_length=rows, name=f"F.m_prev[{method}]", **kw)
        _check(out.cross_cov, rf.cross_cov, reduction_length=rows, name=f"F.cross_cov[{method}]", **kw)


def test_growth_stats_zero_channels_batch_one_and_strided_views(generator):
    prev, cur = _geo((3, 1, 1, 1)), _geo((3, 1, 1, 1))
    xp_full, x_full, g_full, rows = _growth_inputs(generator, prev, cur, n=2, cp=4, c=4, c_out=6)
    xp, x, g = xp_full[:1, ::2], x_full[:1, 1::2], g_full[:1, ::3]  # batch 1, strided channels
    rows = rows // 2
    for cp_slice, c_slice in ((slice(None), slice(None)), (slice(0, 0), slice(None)),
                              (slice(None), slice(0, 0))):
        a, b = xp[:, cp_slice], x[:, c_slice]
        rr = T.conv2d_restricted_growth_stats_reference(a, b, g, prev=prev, cur=cur)
        rf = T.conv2d_full_growth_stats_reference(a, b, g, prev=prev, cur=cur)
        for method in ("shift", "general", "auto"):
            args = dict(prev=prev, cur=cur, bias_prev=True, bias=True, precision="ieee", chunk=None,
                        method=method)
            tag = f"[{method}, C_p={a.shape[1]}, C={b.shape[1]}]"
            out = conv2d_restricted_growth_stats_torch(a, b, g, **args)
            _check(out.m_prev, rr.m_prev, reduction_length=rows, name="R.m_prev" + tag)
            _check(out.cross_cov, rr.cross_cov, reduction_length=rows, name="R.cross_cov" + tag)
            out = conv2d_full_growth_stats_torch(a, b, g, **args)
            _check(out.s_growth, rf.s_growth, reduction_length=9 * rows, name="F.s_growth" + tag)
            _check(out.m_prev, rf.m_prev, reduction_length=rows, name="F.m_prev" + tag)
            _check(out.cross_cov, rf.cross_cov, reduction_length=rows, name="F.cross_cov" + tag)


@pytest.mark.parametrize("method", ["shift", "general"])
def test_growth_stats_chunked_equals_unchunked(generator, method):
    prev, cur = _geo((3, 1, 1, 1)), _geo((3, 1, 0, 1))
    xp, x, g, _ = _growth_inputs(generator, prev, cur, n=5)
    args = dict(prev=prev, cur=cur, bias_prev=True, bias=True, precision="ieee", method=method)
    whole_r = conv2d_restricted_growth_stats_torch(xp, x, g, chunk=None, **args)
    whole_f = conv2d_full_growth_stats_torch(xp, x, g, chunk=None, **args)
    for chunk in (1, 3):
        part_r = conv2d_restricted_growth_stats_torch(xp, x, g, chunk=chunk, **args)
        part_f = conv2d_full_growth_stats_torch(xp, x, g, chunk=chunk, **args)
        for a, b in zip(part_r + part_f, whole_r + whole_f):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-12)


def test_growth_stats_bad_grids_and_methods_raise(generator):
    prev, cur = _geo((3, 1, 1, 1)), _geo((3, 1, 1, 1))
    xp, x, g, _ = _growth_inputs(generator, prev, cur)
    args = dict(prev=prev, cur=cur, bias_prev=True, bias=True, precision="ieee", chunk=None)
    for fn in (conv2d_restricted_growth_stats_torch, conv2d_full_growth_stats_torch):
        with pytest.raises(ValueError, match="x_prev"):
            fn(xp[:, :, 1:], x, g, **args)
        with pytest.raises(ValueError, match="method"):
            fn(xp, x, g, method="fft", **args)
        strided = dict(args, cur=_geo((3, 2, 1, 1)))
        with pytest.raises(ValueError, match="method"):
            fn(xp, x, g[:, :, ::2, ::2], method="shift", **strided)


def test_empty_output_grid_gives_zero_statistics(generator):
    # A 3×3 kernel without padding on a 2×2 input has no output position: every sum is empty.
    prev, cur = _geo((3, 1, 1, 1)), _geo((3, 1, 0, 1))
    xp, x = _randn(generator, 2, 3, 2, 2), _randn(generator, 2, 2, 2, 2)
    g = _randn(generator, 2, 4, 0, 0)
    for method in ("shift", "unfold", "auto"):
        s = conv2d_input_cov_torch(x, cur, bias=True, precision="ieee", chunk=None, method=method)
        assert s.shape == (19, 19) and not s.any()
    m = conv2d_input_grad_torch(x, g, cur, bias=True, precision="ieee", chunk=None)
    assert m.shape == (19, 4) and not m.any()
    for method in ("shift", "general", "auto"):
        args = dict(prev=prev, cur=cur, bias_prev=True, bias=True, precision="ieee", chunk=None,
                    method=method)
        r = conv2d_restricted_growth_stats_torch(xp, x, g, **args)
        f = conv2d_full_growth_stats_torch(xp, x, g, **args)
        assert [tuple(t.shape) for t in r] == [(28, 4), (28, 19)]
        assert [tuple(t.shape) for t in f] == [(28, 28), (28, 36), (9, 28, 19)]
        assert not any(t.any() for t in (*r, *f))
