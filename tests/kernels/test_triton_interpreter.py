"""Triton launchers against the float64 brute-force references, in every precision mode.

On CPU these run under TRITON_INTERPRET=1 (set by tests/conftest.py before triton is imported) at
tiny shapes; with GROMO_TEST_DEVICE=cuda the same tests run compiled on the GPU, plus larger shapes.

Low-precision modes are checked against a reference computed on operands rounded the same way
(gromo_kernels.testing.round_reference, independent numpy bit arithmetic), so the tolerance is the
fp32 accumulation tolerance. Under the interpreter the kernels round operands with their own bit
arithmetic and emulate the tensor-core dot (rounded operands, exact products), so tf32 and bf16
rounding are genuinely exercised on random inputs there too; on the GPU the native tf32/bf16 dots
run instead.
"""

from __future__ import annotations

import os

import pytest
import torch

from gromo_kernels import testing as T
from gromo_kernels import triton_impl
from gromo_kernels.geometry import Conv2dGeometry

pytestmark = pytest.mark.interpreter

MODES = ("ieee", "tf32x3", "tf32", "bf16")
ON_GPU = os.environ.get("GROMO_TEST_DEVICE", "cpu") == "cuda"
# On the GPU the same cases run with a larger batch as well.
BATCH_SCALES = (1, 8) if ON_GPU else (1,)


def _randn(generator, *shape, dtype=torch.float32, device="cpu"):
    """Gaussian in float64 then cast: fp64 inputs carry bits that fp32 would lose."""
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype).to(device)


def _close(out, ref, precision, rows, *, dtype=torch.float32, name="output"):
    # On the GPU the tf32/bf16 dots accumulate on tensor cores (truncating): at most ``rows`` per chain.
    T.assert_close_to_reference(out, ref, precision=precision, dtype=dtype, reduction_length=rows,
                                name=name, tensor_core_chain=rows if ON_GPU else None)


# ----------------------------------------------------------------------------------------------
# Linear statistics
# ----------------------------------------------------------------------------------------------

# (rows, d, o, dp, bias, bias_prev): widths 1, 3, 17, 33; one row; a width over one 64-tile.
LINEAR_CASES = [
    (37, 17, 3, 1, True, False),
    (1, 33, 1, 3, False, True),
    (45, 129, 70, 5, True, True),
]


@pytest.mark.parametrize("scale", BATCH_SCALES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=lambda c: "x".join(map(str, c[:4])))
@pytest.mark.parametrize("precision", MODES)
def test_linear_statistics(precision, case, scale, generator, device):
    rows, d, o, dp, bias, bias_prev = case
    rows *= scale
    x = _randn(generator, rows, d, device=device)
    grad = _randn(generator, rows, o, device=device)
    x_prev = _randn(generator, rows, dp, device=device)

    s = triton_impl.linear_input_cov_triton(x, bias=bias, precision=precision)
    m = triton_impl.linear_input_grad_triton(x, grad, bias=bias, precision=precision)
    p = triton_impl.linear_cross_cov_triton(x_prev, x, bias_prev=bias_prev, bias=bias, precision=precision)
    e = triton_impl.grad_cov_triton(grad, precision=precision)

    _close(s, T.linear_input_cov_reference(x, bias=bias, precision=precision), precision, rows, name="S")
    _close(m, T.linear_input_grad_reference(x, grad, bias=bias, precision=precision), precision, rows,
           name="M")
    _close(p, T.linear_cross_cov_reference(x_prev, x, bias_prev=bias_prev, bias=bias,
                                           precision=precision), precision, rows, name="P")
    _close(e, T.grad_cov_reference(grad, precision=precision), precision, rows, name="E")
    assert torch.equal(s, s.T) and torch.equal(e, e.T)


def test_linear_non_contiguous(generator, device):
    """A row-strided view is read in place; a column-strided one (last stride 2) is copied first."""
    base = _randn(generator, 30, 40, device=device)
    grad_base = _randn(generator, 9, 30, device=device)
    x_rows = base[:, 3:20]                 # last stride 1, row stride 40
    x_cols = base[:, ::2]                  # last stride 2
    grad_t = grad_base.T                   # (30, 9), last stride 30
    for x in (x_rows, x_cols):
        s = triton_impl.linear_input_cov_triton(x, bias=True, precision="ieee")
        _close(s, T.linear_input_cov_reference(x, bias=True), "ieee", 30)
    m = triton_impl.linear_input_grad_triton(x_rows, grad_t, bias=False, precision="ieee")
    _close(m, T.linear_input_grad_reference(x_rows, grad_t, bias=False), "ieee", 30)


# ----------------------------------------------------------------------------------------------
# Conv2d S and M (im2col inside the kernel)
# ----------------------------------------------------------------------------------------------

# (n, C, H, W, geometry, C_out, bias)
CONV_CASES = [
    (2, 3, 5, 5, Conv2dGeometry(3, 1, 1, 1), 4, True),
    (1, 2, 7, 6, Conv2dGeometry((2, 3), (2, 1), (1, 0), (1, 2)), 1, False),
    (2, 8, 5, 7, Conv2dGeometry(3, 2, 1, 1), 17, True),        # D = 73: two 64-tiles
]


def _conv_id(case):
    n, c, h, w, g = case[:5]
    return f"{n}x{c}x{h}x{w}-k{g.kernel_size}s{g.stride}p{g.padding}d{g.dilation}"


@pytest.mark.parametrize("scale", BATCH_SCALES)
@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
@pytest.mark.parametrize("precision", MODES)
def test_conv2d_statistics(precision, case, scale, generator, device):
    n, c, h, w, geometry, c_out, bias = case
    n *= scale
    ho, wo = geometry.output_size(h, w)
    x = _randn(generator, n, c, h, w, device=device)
    grad = _randn(generator, n, c_out, ho, wo, device=device)
    rows = n * ho * wo

    s = triton_impl.conv2d_input_cov_triton(x, geometry, bias=bias, precision=precision, chunk=None)
    m = triton_impl.conv2d_input_grad_triton(x, grad, geometry, bias=bias, precision=precision, chunk=None)

    _close(s, T.conv2d_input_cov_reference(x, geometry, bias=bias, precision=precision), precision, rows,
           name="S")
    _close(m, T.conv2d_input_grad_reference(x, grad, geometry, bias=bias, precision=precision),
           precision, rows, name="M")
    assert torch.equal(s, s.T)


def test_conv2d_non_contiguous(generator, device):
    """A channel slice is read in place through its strides; a transposed image is copied first."""
    base = _randn(generator, 2, 6, 6, 5, device=device)
    geometry = Conv2dGeometry((3, 2), 1, (1, 0), 1)
    for x in (base[:, 1:4], base.transpose(2, 3)):
        ho, wo = geometry.output_size(*x.shape[2:])
        grad = _randn(generator, 2, 3, wo, ho, device=device).transpose(2, 3)
        s = triton_impl.conv2d_input_cov_triton(x, geometry, bias=True, precision="ieee")
        m = triton_impl.conv2d_input_grad_triton(x, grad, geometry, bias=True, precision="ieee")
        rows = 2 * ho * wo
        _close(s, T.conv2d_input_cov_reference(x, geometry, bias=True), "ieee", rows, name="S")
        _close(m, T.conv2d_input_grad_reference(x, grad, geometry, bias=True), "ieee", rows, name="M")


def test_conv2d_bias_only(generator, device):
    """Zero input channels with a bias: S is the single entry n·L (ones), M the gradient sums."""
    x = torch.empty(2, 0, 5, 5, device=device)
    grad = _randn(generator, 2, 3, 5, 5, device=device)
    geometry = Conv2dGeometry(3, 1, 1, 1)
    s = triton_impl.conv2d_input_cov_triton(x, geometry, bias=True, precision="ieee")
    m = triton_impl.conv2d_input_grad_triton(x, grad, geometry, bias=True, precision="ieee")
    assert s.shape == (1, 1) and float(s) == 50.0
    _close(m, T.conv2d_input_grad_reference(x, grad, geometry, bias=True), "ieee", 50)


# ----------------------------------------------------------------------------------------------
# Conv-of-conv growth statistics (Restricted and Full)
# ----------------------------------------------------------------------------------------------

# (n, C_p, H_p, W_p, prev, C, cur, C_out, bias_prev, bias)
GROWTH_CASES = [
    (2, 3, 6, 6, Conv2dGeometry(3, 1, 1, 1), 4, Conv2dGeometry(3, 1, 1, 1), 5, True, True),
    (1, 2, 9, 8, Conv2dGeometry((2, 3), (1, 2), (0, 1), (2, 1)), 3,
     Conv2dGeometry((3, 2), (2, 1), (1, 1), (1, 2)), 1, False, True),
    (2, 1, 7, 7, Conv2dGeometry(1), 2, Conv2dGeometry(3, 2, 2, 2), 3, True, False),
]


def _growth_inputs(case, generator, device, scale=1, dtype=torch.float32):
    n, cp, hp, wp, prev, c, cur, c_out, bias_prev, bias = case
    n *= scale
    h, w = prev.output_size(hp, wp)
    ho, wo = cur.output_size(h, w)
    x_prev = _randn(generator, n, cp, hp, wp, dtype=dtype, device=device)
    x = _randn(generator, n, c, h, w, dtype=dtype, device=device)
    grad = _randn(generator, n, c_out, ho, wo, dtype=dtype, device=device)
    kwargs = dict(prev=prev, cur=cur, bias_prev=bias_prev, bias=bias)
    return x_prev, x, grad, kwargs, n * ho * wo


def _growth_id(case):
    return f"p{case[4].kernel_size}s{case[4].stride}-c{case[6].kernel_size}s{case[6].stride}d{case[6].dilation}"


@pytest.mark.parametrize("scale", BATCH_SCALES)
@pytest.mark.parametrize("case", GROWTH_CASES, ids=_growth_id)
@pytest.mark.parametrize("precision", MODES)
def test_restricted_growth_stats(precision, case, scale, generator, device):
    x_prev, x, grad, kwargs, rows = _growth_inputs(case, generator, device, scale)
    out = triton_impl.conv2d_restricted_growth_stats_triton(x_prev, x, grad, precision=precision,
                                                            chunk=None, **kwargs)
    ref = T.conv2d_restricted_growth_stats_reference(x_prev, x, grad, precision=precision, **kwargs)
    _close(out.m_prev, ref.m_prev, precision, rows, name="m_prev")
    _close(out.cross_cov, ref.cross_cov, precision, rows, name="cross_cov")


@pytest.mark.parametrize("scale", BATCH_SCALES)
@pytest.mark.parametrize("case", GROWTH_CASES, ids=_growth_id)
@pytest.mark.parametrize("precision", MODES)
def test_full_growth_stats(precision, case, scale, generator, device):
    x_prev, x, grad, kwargs, rows = _growth_inputs(case, generator, device, scale)
    kk = kwargs["cur"].kernel_area
    out = triton_impl.conv2d_full_growth_stats_triton(x_prev, x, grad, precision=precision, chunk=None,
                                                      **kwargs)
    ref = T.conv2d_full_growth_stats_reference(x_prev, x, grad, precision=precision, **kwargs)
    # S_growth sums over rows × taps (tap-weighted rows: the weights must not lose bits in tf32/bf16).
    _close(out.s_growth, ref.s_growth, precision, rows * kk, name="s_growth")
    _close(out.m_prev, ref.m_prev, precision, rows, name="m_prev")
    _close(out.cross_cov, ref.cross_cov, precision, rows, name="cross_cov")
    assert torch.equal(out.s_growth, out.s_growth.T)


# ----------------------------------------------------------------------------------------------
# Input dtypes: fp64 accumulates in fp64, fp16/bf16 in fp32
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype,precision", [
    (torch.float64, "ieee"), (torch.float64, "bf16"), (torch.float16, "ieee"), (torch.bfloat16, "tf32"),
    (torch.bfloat16, "bf16"),
])
def test_input_dtypes(dtype, precision, generator, device):
    case = GROWTH_CASES[0]
    x_prev, x, grad, kwargs, rows = _growth_inputs(case, generator, device, dtype=dtype)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    full = triton_impl.conv2d_full_growth_stats_triton(x_prev, x, grad, precision=precision, **kwargs)
    ref = T.conv2d_full_growth_stats_reference(x_prev, x, grad, precision=precision, **kwargs)
    for name, length in (("s_growth", rows * kwargs["cur"].kernel_area), ("m_prev", rows),
                         ("cross_cov", rows)):
        assert getattr(full, name).dtype == acc
        _close(getattr(full, name), getattr(ref, name), precision, length, dtype=dtype, name=name)
    xl = _randn(generator, 23, 7, dtype=dtype, device=device)
    s = triton_impl.linear_input_cov_triton(xl, bias=True, precision=precision)
    assert s.dtype == acc
    _close(s, T.linear_input_cov_reference(xl, bias=True, precision=precision), precision, 23, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# Split-K: correct for any split, bit-identical run to run
# ----------------------------------------------------------------------------------------------


def test_split_k_matches_and_repeats(generator, device):
    x_prev, x, grad, kwargs, rows = _growth_inputs(GROWTH_CASES[0], generator, device)
    geometry = kwargs["cur"]
    ref_s = T.conv2d_input_cov_reference(x, geometry, bias=True)
    ref_full = T.conv2d_full_growth_stats_reference(x_prev, x, grad, **kwargs)
    for split in (2, 3):
        first = triton_impl.conv2d_input_cov_triton(x, geometry, bias=True, precision="tf32x3",
                                                    split_k=split)
        again = triton_impl.conv2d_input_cov_triton(x, geometry, bias=True, precision="tf32x3",
                                                    split_k=split)
        _close(first, ref_s, "tf32x3", rows, name=f"S split {split}")
        assert torch.equal(first, again)
        assert torch.equal(first, first.T)
    full = triton_impl.conv2d_full_growth_stats_triton(x_prev, x, grad, precision="ieee", split_k=3,
                                                       **kwargs)
    full_again = triton_impl.conv2d_full_growth_stats_triton(x_prev, x, grad, precision="ieee", split_k=3,
                                                             **kwargs)
    for name in ("s_growth", "m_prev", "cross_cov"):
        assert torch.equal(getattr(full, name), getattr(full_again, name)), name
    _close(full.s_growth, ref_full.s_growth, "ieee", rows * geometry.kernel_area, name="s_growth")
    _close(full.m_prev, ref_full.m_prev, "ieee", rows, name="m_prev")
    _close(full.cross_cov, ref_full.cross_cov, "ieee", rows, name="cross_cov")
    xl = _randn(generator, 70, 20, device=device)
    gl = _randn(generator, 70, 6, device=device)
    m2 = triton_impl.linear_input_grad_triton(xl, gl, bias=True, precision="ieee", split_k=4)
    assert torch.equal(m2, triton_impl.linear_input_grad_triton(xl, gl, bias=True, precision="ieee",
                                                                split_k=4))
    _close(m2, T.linear_input_grad_reference(xl, gl, bias=True), "ieee", 70)


# ----------------------------------------------------------------------------------------------
# The fused per-layer launcher
# ----------------------------------------------------------------------------------------------


def test_layer_statistics_linear(generator, device):
    x = _randn(generator, 40, 9, device=device)
    grad = _randn(generator, 40, 4, device=device)
    x_prev = _randn(generator, 40, 6, device=device)
    ref = {
        "s": T.linear_input_cov_reference(x), "m": T.linear_input_grad_reference(x, grad),
        "e": T.grad_cov_reference(grad), "s_growth": T.linear_input_cov_reference(x_prev),
        "m_prev": T.linear_input_grad_reference(x_prev, grad),
        "cross_cov": T.linear_cross_cov_reference(x_prev, x),
    }
    for names in (tuple(ref), ("m",), ("s", "s_growth")):
        out = triton_impl.layer_statistics_triton("linear", x, grad, x_prev=x_prev, names=names,
                                                  precision="ieee", split_k=2)
        assert tuple(out) == names
        for name in names:
            _close(out[name], ref[name], "ieee", 40, name=name)


@pytest.mark.parametrize("kind", ["conv2d_restricted", "conv2d_full"])
def test_layer_statistics_conv(kind, generator, device):
    x_prev, x, grad, kwargs, rows = _growth_inputs(GROWTH_CASES[0], generator, device)
    prev, cur = kwargs["prev"], kwargs["cur"]
    ref = {"s": T.conv2d_input_cov_reference(x, cur), "m": T.conv2d_input_grad_reference(x, grad, cur),
           "e": T.grad_cov_reference(grad, channel_dim=1)}
    if kind == "conv2d_restricted":
        growth = T.conv2d_restricted_growth_stats_reference(x_prev, x, grad, prev=prev, cur=cur)
        ref.update(s_growth=T.conv2d_input_cov_reference(x_prev, prev), m_prev=growth.m_prev,
                   cross_cov=growth.cross_cov)
    else:
        growth = T.conv2d_full_growth_stats_reference(x_prev, x, grad, prev=prev, cur=cur)
        ref.update(s_growth=growth.s_growth, m_prev=growth.m_prev, cross_cov=growth.cross_cov)
    for names in (tuple(ref), ("m_prev",), ("e", "cross_cov")):
        out = triton_impl.layer_statistics_triton(kind, x, grad, x_prev=x_prev, prev=prev, cur=cur,
                                                  names=names, precision="ieee")
        assert tuple(out) == names
        for name in names:
            _close(out[name], ref[name], "ieee", rows * cur.kernel_area, name=name)


def test_layer_statistics_rejects_missing_operand(generator, device):
    x = _randn(generator, 5, 3, device=device)
    with pytest.raises(ValueError, match="grad"):
        triton_impl.layer_statistics_triton("linear", x, None, names=("m",))
    with pytest.raises(ValueError, match="kind"):
        triton_impl.layer_statistics_triton("dense", x, None, names=("s",))


# ----------------------------------------------------------------------------------------------
# The public API on the triton backend (smoke) and launcher errors
# ----------------------------------------------------------------------------------------------


def test_public_api_triton_backend(generator, device):
    import gromo_kernels as gk

    x_prev, x, grad, kwargs, rows = _growth_inputs(GROWTH_CASES[0], generator, device)
    cur = kwargs["cur"]
    s = gk.conv2d_input_cov(x, cur, backend="triton")
    _close(s, T.conv2d_input_cov_reference(x, cur), "ieee", rows)
    full = gk.conv2d_full_growth_stats(x_prev, x, grad, backend="triton", **kwargs)
    ref = T.conv2d_full_growth_stats_reference(x_prev, x, grad, **kwargs)
    _close(full.cross_cov, ref.cross_cov, "ieee", rows, name="cross_cov")
    stats = gk.layer_statistics("linear", x.flatten(1), None, want=("s",), backend="triton")
    _close(stats["s"], T.linear_input_cov_reference(x.flatten(1)), "ieee", x.shape[0])


def test_launcher_errors(generator, device):
    x = _randn(generator, 4, 3, device=device)
    with pytest.raises(TypeError, match="x"):
        triton_impl.linear_input_cov_triton(x.to(torch.int32), bias=True, precision="ieee")
    with pytest.raises(ValueError, match="split_k"):
        triton_impl.linear_input_cov_triton(x, bias=True, precision="ieee", split_k=0)
    with pytest.raises(ValueError, match="grad"):
        triton_impl.conv2d_input_grad_triton(_randn(generator, 1, 2, 5, 5, device=device),
                                             _randn(generator, 1, 3, 4, 4, device=device),
                                             Conv2dGeometry(3), bias=True, precision="ieee")
    with pytest.raises(ValueError, match="x_prev"):
        triton_impl.conv2d_full_growth_stats_triton(
            _randn(generator, 1, 2, 6, 6, device=device), _randn(generator, 1, 2, 5, 5, device=device),
            _randn(generator, 1, 2, 5, 5, device=device), prev=Conv2dGeometry(3, 1, 1),
            cur=Conv2dGeometry(3, 1, 1), bias_prev=True, bias=True, precision="ieee")


def test_cpu_without_interpreter_raises(generator, monkeypatch):
    """A CPU tensor is refused with a message naming it unless TRITON_INTERPRET=1."""
    x = _randn(generator, 4, 3)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="x_prev"):
        triton_impl.linear_cross_cov_triton(x, x, bias_prev=True, bias=True, precision="ieee")
