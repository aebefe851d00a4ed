"""Public statistics (gromo_kernels.statistics) on the torch backend against the float64 references.

Every case draws its geometry with hypothesis (kernel 1–5 incl. rectangular, stride 1–3, padding 0–2,
dilation 1–2, batch 0–5, channels 0–6, odd and even grids), draws the precision mode, the input dtype
and the memory layout, and compares with gromo_kernels.testing's brute-force float64 references
computed on the same rounded operands, within testing.tolerance for the reduction length of the
statistic. Bad input lives in test_statistics_bad_input.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gromo_kernels as gk
import gromo_kernels.torch_impl as torch_impl
from gromo_kernels import testing
from gromo_kernels._precision import accumulate_dtype

PRECISIONS = (None, "ieee", "tf32x3", "tf32", "bf16")
DTYPES = (torch.float32, torch.float64)
LAYOUTS = ("contiguous", "strided", "permuted")

HYPOTHESIS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def make_input(shape, generator, dtype=torch.float32, layout="contiguous", device="cpu") -> torch.Tensor:
    """Unit-normal tensor of ``shape``: contiguous, strided (every other element of the last dim)
    or permuted (stored in reversed dimension order)."""
    shape = tuple(shape)
    if layout == "contiguous" or len(shape) == 0:
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)
    if layout == "strided":
        wide = torch.randn(*shape[:-1], 2 * shape[-1], generator=generator, dtype=torch.float64)
        return wide.to(device, dtype)[..., ::2]
    if layout == "permuted":
        order = tuple(reversed(range(len(shape))))
        stored = torch.randn(tuple(shape[i] for i in order), generator=generator, dtype=torch.float64)
        return stored.to(device, dtype).permute(order)
    raise ValueError(layout)


def check(out, ref, *, precision, dtype, length, name):
    """Output dtype is the accumulation dtype and values match the reference within the table."""
    assert out.dtype == accumulate_dtype(dtype), f"{name}: dtype {out.dtype}"
    assert not out.requires_grad
    testing.assert_close_to_reference(out, ref, precision=precision, dtype=dtype,
                                      reduction_length=length, name=name)


def snapshot(*tensors):
    return [t.clone() for t in tensors]


def assert_unchanged(before, after):
    for b, a in zip(before, after):
        assert torch.equal(b, a), "an input was modified"


# ----------------------------------------------------------------------------------------------
# Strategies
# ----------------------------------------------------------------------------------------------


def _pair(draw, lo, hi):
    if draw(st.booleans()):
        v = draw(st.integers(lo, hi))
        return (v, v)
    return (draw(st.integers(lo, hi)), draw(st.integers(lo, hi)))


@st.composite
def geometries(draw):
    return gk.Conv2dGeometry(_pair(draw, 1, 5), _pair(draw, 1, 3), _pair(draw, 0, 2), _pair(draw, 1, 2))


def min_size(geometry: gk.Conv2dGeometry, dim: int) -> int:
    """Smallest input size that gives an output size >= 1 along ``dim``."""
    k, p, d = geometry.kernel_size[dim], geometry.padding[dim], geometry.dilation[dim]
    return max(1, d * (k - 1) + 1 - 2 * p)


def prev_size_for(prev: gk.Conv2dGeometry, dim: int, needed: int) -> int:
    """Smallest previous input size whose output size along ``dim`` is >= ``needed``."""
    size = 1
    while prev.output_size(size, size)[dim] < needed:
        size += 1
    return size


@st.composite
def conv_case(draw):
    geometry = draw(geometries())
    h = min_size(geometry, 0) + draw(st.integers(0, 3))
    w = min_size(geometry, 1) + draw(st.integers(0, 3))
    return dict(
        geometry=geometry, n=draw(st.integers(0, 5)), c=draw(st.integers(0, 6)),
        c_out=draw(st.integers(0, 6)), h=h, w=w, bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), precision=draw(st.sampled_from(PRECISIONS)),
        layout=draw(st.sampled_from(LAYOUTS)),
    )


@st.composite
def conv_pair_case(draw):
    prev = draw(geometries())
    cur = draw(geometries())
    hp = prev_size_for(prev, 0, min_size(cur, 0)) + draw(st.integers(0, 2))
    wp = prev_size_for(prev, 1, min_size(cur, 1)) + draw(st.integers(0, 2))
    return dict(
        prev=prev, cur=cur, n=draw(st.integers(0, 5)), c_prev=draw(st.integers(0, 6)),
        c=draw(st.integers(0, 6)), c_out=draw(st.integers(0, 6)), hp=hp, wp=wp,
        bias_prev=draw(st.booleans()), bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)), precision=draw(st.sampled_from(PRECISIONS)),
        layout=draw(st.sampled_from(LAYOUTS)),
    )


def pair_tensors(case, generator):
    prev, cur = case["prev"], case["cur"]
    h, w = prev.output_size(case["hp"], case["wp"])
    ho, wo = cur.output_size(h, w)
    mk = lambda shape: make_input(shape, generator, case["dtype"], case["layout"])  # noqa: E731
    x_prev = mk((case["n"], case["c_prev"], case["hp"], case["wp"]))
    x = mk((case["n"], case["c"], h, w))
    grad = mk((case["n"], case["c_out"], ho, wo))
    return x_prev, x, grad, ho * wo


# ----------------------------------------------------------------------------------------------
# Linear statistics and E
# ----------------------------------------------------------------------------------------------


@HYPOTHESIS
@given(
    lead=st.lists(st.integers(0, 4), min_size=0, max_size=2),
    dp=st.integers(0, 6), d=st.integers(0, 6), o=st.integers(0, 6),
    bias_prev=st.booleans(), bias=st.booleans(),
    dtype=st.sampled_from(DTYPES), precision=st.sampled_from(PRECISIONS),
    layout=st.sampled_from(LAYOUTS),
)
def test_linear_statistics_match_reference(generator, lead, dp, d, o, bias_prev, bias, dtype, precision,
                                           layout):
    """S, M, P, E of a linear layer with any leading dims (flattened to rows), every precision mode."""
    lead = tuple(lead)
    x_prev = make_input((*lead, dp), generator, dtype, layout)
    x = make_input((*lead, d), generator, dtype, layout)
    grad = make_input((*lead, o), generator, dtype, layout)
    before = snapshot(x_prev, x, grad)
    rows = math.prod(lead)
    opts = dict(backend="torch", precision=precision)

    s = gk.linear_input_cov(x, bias=bias, **opts)
    m = gk.linear_input_grad(x, grad, bias=bias, **opts)
    p = gk.linear_cross_cov(x_prev, x, bias_prev=bias_prev, bias=bias, **opts)
    e = gk.grad_cov(grad, **opts)

    common = dict(precision=precision, dtype=dtype, length=rows)
    check(s, testing.linear_input_cov_reference(x, bias=bias, precision=precision), name="S", **common)
    check(m, testing.linear_input_grad_reference(x, grad, bias=bias, precision=precision), name="M", **common)
    check(p, testing.linear_cross_cov_reference(x_prev, x, bias_prev=bias_prev, bias=bias,
                                                precision=precision), name="P", **common)
    check(e, testing.grad_cov_reference(grad, precision=precision), name="E", **common)
    assert_unchanged(before, (x_prev, x, grad))


@HYPOTHESIS
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), data=st.data(),
       dtype=st.sampled_from(DTYPES), precision=st.sampled_from(PRECISIONS),
       layout=st.sampled_from(LAYOUTS))
def test_grad_cov_any_channel_dim(generator, shape, data, dtype, precision, layout):
    """E = Σ dA dAᵀ with the channels at any (negative or positive) dimension."""
    channel_dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    grad = make_input(shape, generator, dtype, layout)
    before = snapshot(grad)
    out = gk.grad_cov(grad, channel_dim=channel_dim, backend="torch", precision=precision)
    rows = math.prod(shape) // shape[channel_dim] if shape[channel_dim] else 0
    ref = testing.grad_cov_reference(grad, channel_dim=channel_dim, precision=precision)
    check(out, ref, precision=precision, dtype=dtype, length=rows, name="E")
    assert_unchanged(before, (grad,))


def test_linear_sums_not_means(generator):
    """The bias corner of S counts every row (batch × tokens): a sum, not a mean."""
    x = make_input((3, 5, 4), generator)
    s = gk.linear_input_cov(x, backend="torch")
    assert s[-1, -1].item() == 15.0
    torch.testing.assert_close(s[-1, :-1], x.reshape(-1, 4).sum(0), rtol=1e-6, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Conv statistics
# ----------------------------------------------------------------------------------------------


@HYPOTHESIS
@given(case=conv_case())
def test_conv2d_input_statistics_match_reference(generator, case):
    """S and M of a conv for every geometry; the geometry may be given as a Conv2dGeometry too."""
    g = case["geometry"]
    ho, wo = g.output_size(case["h"], case["w"])
    x = make_input((case["n"], case["c"], case["h"], case["w"]), generator, case["dtype"], case["layout"])
    grad = make_input((case["n"], case["c_out"], ho, wo), generator, case["dtype"], case["layout"])
    before = snapshot(x, grad)
    precision, bias = case["precision"], case["bias"]
    args = dict(stride=g.stride, padding=g.padding, dilation=g.dilation, bias=bias, backend="torch",
                precision=precision)

    s = gk.conv2d_input_cov(x, g.kernel_size, **args)
    m = gk.conv2d_input_grad(x, grad, g.kernel_size, **args)
    e = gk.grad_cov(grad, channel_dim=1, backend="torch", precision=precision)

    common = dict(precision=precision, dtype=case["dtype"], length=case["n"] * ho * wo)
    check(s, testing.conv2d_input_cov_reference(x, g, bias=bias, precision=precision), name="S", **common)
    check(m, testing.conv2d_input_grad_reference(x, grad, g, bias=bias, precision=precision), name="M",
          **common)
    check(e, testing.grad_cov_reference(grad, channel_dim=1, precision=precision), name="E", **common)
    assert torch.equal(s, gk.conv2d_input_cov(x, g, bias=bias, backend="torch", precision=precision))
    assert_unchanged(before, (x, grad))


@HYPOTHESIS
@given(case=conv_pair_case())
def test_conv2d_restricted_growth_stats_match_reference(generator, case):
    """M₋₂ and P of conv -> centre-tap conv for every pair of geometries."""
    x_prev, x, grad, positions = pair_tensors(case, generator)
    before = snapshot(x_prev, x, grad)
    kw = dict(prev=case["prev"], cur=case["cur"], bias_prev=case["bias_prev"], bias=case["bias"],
              precision=case["precision"])
    out = gk.conv2d_restricted_growth_stats(x_prev, x, grad, backend="torch", **kw)
    assert isinstance(out, gk.RestrictedGrowthStats)
    ref = testing.conv2d_restricted_growth_stats_reference(x_prev, x, grad, **kw)
    common = dict(precision=case["precision"], dtype=case["dtype"], length=case["n"] * positions)
    check(out.m_prev, ref.m_prev, name="m_prev", **common)
    check(out.cross_cov, ref.cross_cov, name="cross_cov", **common)
    assert_unchanged(before, (x_prev, x, grad))


@HYPOTHESIS
@given(case=conv_pair_case())
def test_conv2d_full_growth_stats_match_reference(generator, case):
    """S₋₂, M₋₂ and P of conv -> full conv for every pair of geometries."""
    x_prev, x, grad, positions = pair_tensors(case, generator)
    before = snapshot(x_prev, x, grad)
    kw = dict(prev=case["prev"], cur=case["cur"], bias_prev=case["bias_prev"], bias=case["bias"],
              precision=case["precision"])
    out = gk.conv2d_full_growth_stats(x_prev, x, grad, backend="torch", **kw)
    assert isinstance(out, gk.FullGrowthStats)
    ref = testing.conv2d_full_growth_stats_reference(x_prev, x, grad, **kw)
    kk = case["cur"].kernel_area
    common = dict(precision=case["precision"], dtype=case["dtype"])
    n_l = case["n"] * positions
    check(out.s_growth, ref.s_growth, name="s_growth", length=n_l * kk, **common)
    check(out.m_prev, ref.m_prev, name="m_prev", length=n_l, **common)
    check(out.cross_cov, ref.cross_cov, name="cross_cov", length=n_l, **common)
    assert_unchanged(before, (x_prev, x, grad))


@pytest.mark.parametrize("c_prev,c,c_out", [(0, 3, 2), (3, 0, 2), (3, 2, 0), (0, 0, 0)])
@pytest.mark.parametrize("bias_prev,bias", [(True, True), (True, False), (False, True), (False, False)])
def test_conv_pair_zero_channels(generator, c_prev, c, c_out, bias_prev, bias):
    """Zero-width operands: only the bias rows/columns survive, and they match the reference."""
    prev, cur = gk.Conv2dGeometry(3, 1, 1), gk.Conv2dGeometry((3, 2), 2, (1, 0))
    x_prev = make_input((2, c_prev, 7, 6), generator)
    x = make_input((2, c, 7, 6), generator)
    ho, wo = cur.output_size(7, 6)
    grad = make_input((2, c_out, ho, wo), generator)
    kw = dict(prev=prev, cur=cur, bias_prev=bias_prev, bias=bias)
    length = 2 * ho * wo
    full = gk.conv2d_full_growth_stats(x_prev, x, grad, backend="torch", **kw)
    full_ref = testing.conv2d_full_growth_stats_reference(x_prev, x, grad, **kw)
    for name, out, ref in zip(full._fields, full, full_ref):
        check(out, ref, precision=None, dtype=torch.float32, length=length * 6, name=name)
    restricted = gk.conv2d_restricted_growth_stats(x_prev, x, grad, backend="torch", **kw)
    restricted_ref = testing.conv2d_restricted_growth_stats_reference(x_prev, x, grad, **kw)
    for name, out, ref in zip(restricted._fields, restricted, restricted_ref):
        check(out, ref, precision=None, dtype=torch.float32, length=length, name=name)
    s = gk.conv2d_input_cov(x, cur, bias=bias, backend="torch")
    check(s, testing.conv2d_input_cov_reference(x, cur, bias=bias), precision=None, dtype=torch.float32,
          length=length, name="S")
    m = gk.conv2d_input_grad(x, grad, cur, bias=bias, backend="torch")
    check(m, testing.conv2d_input_grad_reference(x, grad, cur, bias=bias), precision=None,
          dtype=torch.float32, length=length, name="M")


def test_empty_batch_returns_zeros_of_the_right_shape(generator):
    """n = 0: zeros with the statistic's shape, in the accumulation dtype."""
    prev, cur = gk.Conv2dGeometry(3, 1, 1), gk.Conv2dGeometry(3, 1, 1)
    x_prev = make_input((0, 2, 5, 5), generator, torch.float64)
    x = make_input((0, 3, 5, 5), generator, torch.float64)
    grad = make_input((0, 4, 5, 5), generator, torch.float64)
    full = gk.conv2d_full_growth_stats(x_prev, x, grad, prev=prev, cur=cur, backend="torch")
    restricted = gk.conv2d_restricted_growth_stats(x_prev, x, grad, prev=prev, cur=cur, backend="torch")
    outs = {
        "S": (gk.conv2d_input_cov(x, cur, backend="torch"), (28, 28)),
        "M": (gk.conv2d_input_grad(x, grad, cur, backend="torch"), (28, 4)),
        "E": (gk.grad_cov(grad, channel_dim=1, backend="torch"), (4, 4)),
        "s_growth": (full.s_growth, (19, 19)),
        "full m_prev": (full.m_prev, (19, 36)),
        "full cross_cov": (full.cross_cov, (9, 19, 28)),
        "restricted m_prev": (restricted.m_prev, (19, 4)),
        "restricted cross_cov": (restricted.cross_cov, (19, 28)),
        "linear S": (gk.linear_input_cov(torch.zeros(0, 5), backend="torch"), (6, 6)),
        "linear M": (gk.linear_input_grad(torch.zeros(2, 0, 5), torch.zeros(2, 0, 3), backend="torch"),
                     (6, 3)),
        "linear P": (gk.linear_cross_cov(torch.zeros(0, 2), torch.zeros(0, 5), backend="torch"), (3, 6)),
    }
    for name, (out, shape) in outs.items():
        assert tuple(out.shape) == shape, name
        assert out.dtype == (torch.float64 if "linear" not in name else torch.float32), name
        assert int(torch.count_nonzero(out)) == 0, name


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_accumulate_in_fp32(generator, dtype):
    """16-bit inputs return fp32 sums that match the reference on the same (exact) values."""
    x = make_input((6, 7), generator, dtype)
    grad = make_input((6, 3), generator, dtype)
    check(gk.linear_input_grad(x, grad, backend="torch"), testing.linear_input_grad_reference(x, grad),
          precision=None, dtype=dtype, length=6, name="M")
    img = make_input((2, 3, 6, 5), generator, dtype)
    check(gk.conv2d_input_cov(img, 3, padding=1, backend="torch"),
          testing.conv2d_input_cov_reference(img, gk.Conv2dGeometry(3, 1, 1)),
          precision=None, dtype=dtype, length=60, name="S")


def test_statistics_are_detached(generator):
    """Inputs that require grad give results without autograd history, and are left untouched."""
    x = make_input((2, 3, 6, 6), generator).requires_grad_()
    grad = make_input((2, 4, 6, 6), generator)
    s = gk.conv2d_input_grad(x, grad, 3, padding=1, backend="torch")
    assert not s.requires_grad and s.grad_fn is None
    assert x.grad is None
    check(s, testing.conv2d_input_grad_reference(x, grad, gk.Conv2dGeometry(3, 1, 1)), precision=None,
          dtype=torch.float32, length=72, name="M")


# ----------------------------------------------------------------------------------------------
# layer_statistics
# ----------------------------------------------------------------------------------------------


def _conv_pair(generator, dtype=torch.float32):
    prev, cur = gk.Conv2dGeometry(3, 1, 1), gk.Conv2dGeometry((3, 2), (2, 1), (1, 0), (1, 2))
    x_prev = make_input((3, 2, 7, 8), generator, dtype, "permuted")
    x = make_input((3, 4, 7, 8), generator, dtype)
    ho, wo = cur.output_size(7, 8)
    grad = make_input((3, 5, ho, wo), generator, dtype, "strided")
    return x_prev, x, grad, prev, cur


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("precision", [None, "bf16"])
def test_layer_statistics_linear_equals_individual_functions(generator, dtype, precision):
    x_prev = make_input((4, 3, 5), generator, dtype)
    x = make_input((4, 3, 6), generator, dtype, "strided")
    grad = make_input((4, 3, 7), generator, dtype, "permuted")
    opts = dict(backend="torch", precision=precision)
    out = gk.layer_statistics("linear", x, grad, x_prev=x_prev, bias_prev=False, **opts)
    assert list(out) == ["s", "m", "e", "s_growth", "m_prev", "cross_cov"]
    expected = {
        "s": gk.linear_input_cov(x, **opts),
        "m": gk.linear_input_grad(x, grad, **opts),
        "e": gk.grad_cov(grad, **opts),
        "s_growth": gk.linear_input_cov(x_prev, bias=False, **opts),
        "m_prev": gk.linear_input_grad(x_prev, grad, bias=False, **opts),
        "cross_cov": gk.linear_cross_cov(x_prev, x, bias_prev=False, **opts),
    }
    for key, value in expected.items():
        assert torch.equal(out[key], value), key
    check(out["cross_cov"], testing.linear_cross_cov_reference(x_prev, x, bias_prev=False, precision=precision),
          precision=precision, dtype=dtype, length=12, name="cross_cov")


@pytest.mark.parametrize("kind", ["conv2d", "conv2d_restricted", "conv2d_full"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_statistics_conv_equals_individual_functions(generator, kind, dtype):
    x_prev, x, grad, prev, cur = _conv_pair(generator, dtype)
    opts = dict(backend="torch", precision="tf32", chunk=2)
    growth = kind != "conv2d"
    out = gk.layer_statistics(kind, x, grad, x_prev=x_prev if growth else None, prev=prev if growth else None,
                              cur=cur, bias=False, **opts)
    expected = {
        "s": gk.conv2d_input_cov(x, cur, bias=False, **opts),
        "m": gk.conv2d_input_grad(x, grad, cur, bias=False, **opts),
        "e": gk.grad_cov(grad, channel_dim=1, backend="torch", precision="tf32"),
    }
    if kind == "conv2d_restricted":
        stats = gk.conv2d_restricted_growth_stats(x_prev, x, grad, prev=prev, cur=cur, bias=False, **opts)
        expected.update(s_growth=gk.conv2d_input_cov(x_prev, prev, **opts), m_prev=stats.m_prev,
                        cross_cov=stats.cross_cov)
    elif kind == "conv2d_full":
        stats = gk.conv2d_full_growth_stats(x_prev, x, grad, prev=prev, cur=cur, bias=False, **opts)
        expected.update(s_growth=stats.s_growth, m_prev=stats.m_prev, cross_cov=stats.cross_cov)
    assert list(out) == list(expected)
    for key, value in expected.items():
        assert torch.equal(out[key], value), key
    check(out["s"], testing.conv2d_input_cov_reference(x, cur, bias=False, precision="tf32"),
          precision="tf32", dtype=dtype, length=grad.shape[0] * grad.shape[2] * grad.shape[3], name="s")


@pytest.mark.parametrize("kind", ["linear", "conv2d_restricted", "conv2d_full"])
def test_layer_statistics_want_subsets(generator, kind):
    """Each requested name alone equals the same name from the full call; nothing else is returned."""
    if kind == "linear":
        x_prev, x, grad = (make_input((5, d), generator) for d in (3, 4, 2))
        geo = {}
    else:
        x_prev, x, grad, prev, cur = _conv_pair(generator)
        geo = dict(prev=prev, cur=cur)
    full = gk.layer_statistics(kind, x, grad, x_prev=x_prev, backend="torch", **geo)
    for key in gk.STATISTIC_NAMES:
        alone = gk.layer_statistics(kind, x, grad, x_prev=x_prev, want=key, backend="torch", **geo)
        assert list(alone) == [key]
        assert torch.equal(alone[key], full[key]), key
    pair = gk.layer_statistics(kind, x, grad, x_prev=x_prev, want=["cross_cov", "s"], backend="torch", **geo)
    assert list(pair) == ["cross_cov", "s"]
    no_grad = gk.layer_statistics(kind, x, None, x_prev=x_prev, backend="torch", **geo)
    assert list(no_grad) == ["s", "s_growth", "cross_cov"]
    for key in no_grad:
        assert torch.equal(no_grad[key], full[key]), key


def test_layer_statistics_default_want_without_x_prev(generator):
    x_prev, x, grad, prev, cur = _conv_pair(generator)
    out = gk.layer_statistics("conv2d_full", x, grad, cur=cur, backend="torch")
    assert list(out) == ["s", "m", "e"]
    check(out["e"], testing.grad_cov_reference(grad, channel_dim=1), precision=None, dtype=torch.float32,
          length=grad.numel() // grad.shape[1], name="e")


# ----------------------------------------------------------------------------------------------
# Backend selection
# ----------------------------------------------------------------------------------------------


def test_environment_backend_torch_is_honoured(generator, monkeypatch):
    """GROMO_KERNELS_BACKEND=torch sends backend="auto" calls to the torch implementation."""
    calls = []
    real = torch_impl.linear_input_cov_torch

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_impl, "linear_input_cov_torch", spy)
    monkeypatch.setenv("GROMO_KERNELS_BACKEND", "torch")
    x = make_input((4, 3), generator)
    out = gk.linear_input_cov(x, precision="bf16")
    assert calls == [dict(bias=True, precision="bf16")]
    check(out, testing.linear_input_cov_reference(x, precision="bf16"), precision="bf16",
          dtype=torch.float32, length=4, name="S")
    from gromo_kernels._backend import resolve_backend

    assert resolve_backend("auto", x) == "torch"


def test_environment_backend_triton_is_honoured_and_raises_without_interpreter(generator, monkeypatch):
    """GROMO_KERNELS_BACKEND=triton replaces "auto": on CPU without the interpreter that must raise."""
    monkeypatch.setenv("GROMO_KERNELS_BACKEND", "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET"):
        gk.linear_input_cov(make_input((4, 3), generator))
